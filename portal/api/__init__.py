"""The JSON API under ``/api/v1``: bearer tokens, schemas, problem details, OpenAPI."""
