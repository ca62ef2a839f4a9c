"""The ``/api/v1`` blueprint and the :func:`route` decorator every resource module uses.

flask-openapi3 validates each request against the pydantic models in the view's
signature (``path``, ``query``, ``body``) and builds the OpenAPI document from
them and from the response models given to :func:`route`. Around that,
:func:`route` adds what every endpoint shares: the token scopes it accepts
(checked by :func:`portal.api.auth.authenticate` before validation), the
problem responses, ``Idempotency-Key`` handling for creating POSTs, and the
one commit at the end of a request that changes something.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Iterable
from functools import wraps
from typing import Any

from flask import Response, jsonify
from flask_openapi3 import APIBlueprint, Tag
from pydantic import BaseModel, ValidationError

from portal.api import auth, idempotency
from portal.api.models import TokenScope
from portal.api.schemas import ApiSchema, IdempotencyHeader, Problem
from portal.db import db_session
from portal.errors import problem
from portal.kernel import policy
from portal.kernel.policy import Action
from portal.validation import errors_from

api = APIBlueprint(
    "api",
    __name__,
    url_prefix="/api/v1",
    abp_security=[{"bearerAuth": []}],
)
api.before_request(auth.authenticate)

SECURITY_SCHEMES: dict[str, Any] = {
    "bearerAuth": {
        "type": "http",
        "scheme": "bearer",
        "description": (
            "An API token (`pk_c_…` council, `pk_o_…` organisation, `pk_v_…` vendor), "
            "created by council staff on the Tokens page or with `portal token create`."
        ),
    }
}

_PROBLEM_DESCRIPTIONS = {
    400: "Bad request",
    401: "Missing, unknown, revoked or expired token",
    403: "The token's scope does not allow this",
    404: "Not found, or not visible to this token (also an unknown slug or SKU named in the body)",
    409: "Conflicts with the current state (see `code`)",
    413: "The request body is larger than the server accepts",
    422: "Validation failed; `errors` holds messages per field",
    429: "Too many requests; try again after `Retry-After` seconds",
    503: "The service is briefly unavailable (the database, say); try again after `Retry-After`",
}
_IDEMPOTENCY_CONFLICT = (
    "Conflicts with the current state (see `code`); `idempotency_key_reused` when the "
    "`Idempotency-Key` was already used for a different request"
)
_RETRY_AFTER = {
    "Retry-After": {
        "description": "Seconds to wait before trying again",
        "schema": {"type": "integer", "minimum": 0},
    }
}


def problem_response(status: int, description: str | None = None) -> dict[str, Any]:
    """An OpenAPI response object for a problem+json answer."""
    response: dict[str, Any] = {
        "description": description or _PROBLEM_DESCRIPTIONS.get(status, "Problem"),
        "content": {
            "application/problem+json": {"schema": {"$ref": "#/components/schemas/Problem"}}
        },
    }
    if status in (429, 503):
        response["headers"] = _RETRY_AFTER
    return response


def validation_error_response(error: ValidationError) -> Response:
    """flask-openapi3's request validation errors as a 422 problem with ``errors``."""
    if any(not e["loc"] and e["type"] in ("model_type", "dict_type") for e in error.errors()):
        errors = {"_": ["Send a JSON object with Content-Type: application/json."]}
    else:
        errors = errors_from(error)
    return problem(
        422,
        "Validation failed",
        "Some fields need attention.",
        code="validation_failed",
        errors=errors,
    )


def reply(body: BaseModel | dict[str, Any], status: int = 200) -> Response:
    """A JSON response from a schema instance or a plain dict."""
    data = body.model_dump(mode="json") if isinstance(body, BaseModel) else body
    response = jsonify(data)
    response.status_code = status
    return response


def route(
    method: str,
    rule: str,
    *,
    scopes: Iterable[str],
    tag: Tag,
    responses: dict[int, type[BaseModel] | None],
    errors: Iterable[int] = (),
    creates: bool = False,
    raw_body: type[BaseModel] | None = None,
    action: Action | None = None,
) -> Callable[[Callable[..., Response]], Callable[..., Response]]:
    """Register an API view on :data:`api`.

    ``scopes`` are the token scopes allowed; ``responses`` the success answers
    and their schemas; ``errors`` the problem statuses beyond those every
    operation can answer (401, 403, 422, 429 and 503; 413 with a body; 409 for a
    creating POST, which accepts ``Idempotency-Key``). A view
    that is not a GET is committed once after it returns. ``raw_body`` documents
    a JSON body that the view reads and validates itself (no model may nest
    another), for bodies too large to validate in one piece. ``action`` is what the
    view does (:mod:`portal.kernel.policy`): every scope allowed must be one whose
    role may do it, and a token whose actor may not is refused before the view runs.
    """
    allowed = frozenset(scopes)
    if action is not None:
        roles = {s: auth.ROLE_OF_SCOPE[TokenScope(s)] for s in allowed}
        unfit = sorted(s for s, role in roles.items() if action not in policy.RULES[role])
        if unfit:
            raise ValueError(f"{rule}: {', '.join(unfit)} tokens may not {action} (policy)")
    method = method.lower()

    def decorator(view: Callable[..., Response]) -> Callable[..., Response]:
        @wraps(view)
        def handler(**kwargs: Any) -> Response:
            if creates:
                kwargs.pop("header", None)
                return idempotency.run(lambda: view(**kwargs))
            response = view(**kwargs)
            if method != "get":
                db_session().commit()
            return response

        handler.api_scopes = allowed  # type: ignore[attr-defined]
        handler.api_action = action  # type: ignore[attr-defined]
        handler.__annotations__ = dict(view.__annotations__)
        if creates:
            handler.__annotations__["header"] = IdempotencyHeader
        for model in _request_models(view, creates):
            _memoise_json_schema(model)
        summary, _, details = inspect.cleandoc(view.__doc__ or view.__name__).partition("\n")
        who = ", ".join(s for s in ("council", "organisation", "vendor") if s in allowed)
        description = f"{details.strip()}\n\nToken scopes: {who}.".strip()
        all_responses: dict[Any, Any] = dict(responses)
        statuses = {401, 403, 422, 429, 503, *errors}
        if method in ("post", "put", "patch"):
            statuses.add(413)
        if creates:
            statuses.add(409)
        for status in sorted(statuses):
            conflict = _IDEMPOTENCY_CONFLICT if status == 409 and creates else None
            all_responses[status] = problem_response(status, conflict)
        register = getattr(api, method)
        register(
            rule,
            tags=[tag],
            summary=summary,
            description=description,
            operation_id=view.__name__,
            responses=all_responses,
            openapi_extensions={
                "x-token-scopes": sorted(allowed),
                **(_request_body(raw_body) if raw_body else {}),
            },
        )(handler)
        return view

    return decorator


def _request_models(view: Callable[..., Any], creates: bool) -> list[type[BaseModel]]:
    """The query and header models flask-openapi3 will read a request of ``view`` into."""
    try:
        hints = inspect.get_annotations(view, eval_str=True)
    except NameError:  # pragma: no cover (a model defined after its view: left alone)
        hints = {}
    models = [hints.get("query"), IdempotencyHeader if creates else hints.get("header")]
    return [m for m in models if isinstance(m, type) and issubclass(m, BaseModel)]


def _memoise_json_schema(model: type[BaseModel]) -> None:
    """Build a query or header model's JSON schema once, not on every request.

    flask-openapi3 calls ``model.model_json_schema()`` (no arguments) for each
    request to see which fields are lists; pydantic builds the schema anew each
    time, a sizeable share of a small request. The schema of a class does not
    change, so that call is answered from a copy made now; calls with other
    arguments (the OpenAPI document's) and calls on subclasses are pydantic's own.
    """
    if "_portal_json_schema" in model.__dict__:
        return
    schema = model.model_json_schema()
    generic = model.model_json_schema.__func__  # type: ignore[attr-defined]

    def model_json_schema(cls: type[BaseModel], *args: Any, **kwargs: Any) -> dict[str, Any]:
        if cls is model and not args and not kwargs:
            return schema
        return generic(cls, *args, **kwargs)

    model._portal_json_schema = schema  # type: ignore[attr-defined]
    model.model_json_schema = classmethod(model_json_schema)  # type: ignore[method-assign,assignment]


def _request_body(model: type[BaseModel]) -> dict[str, Any]:
    return {
        "requestBody": {
            "required": True,
            "content": {
                "application/json": {"schema": model.model_json_schema(schema_generator=ApiSchema)}
            },
        }
    }


# Problem must be a named schema even when no view declares it as a model.
__all__ = ["Problem", "api", "reply", "route", "problem_response"]
