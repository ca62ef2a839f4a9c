"""Schemas shared by every API resource: problem details, list queries, path parameters."""

from __future__ import annotations

from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, StringConstraints


class Problem(BaseModel):
    """An RFC 9457 problem details body (``application/problem+json``)."""

    model_config = ConfigDict(
        json_schema_extra={
            "example": {
                "type": "https://portal.example/problems/validation_failed",
                "title": "Validation failed",
                "status": 422,
                "detail": "Some fields need attention.",
                "code": "validation_failed",
                "errors": {"slug": ["This field is required."]},
            }
        }
    )

    type: str = Field(description="A URI naming the kind of problem.")
    title: str
    status: int
    detail: str
    code: str | None = Field(
        default=None, description="A stable code (`pool_exhausted`, `no_free_seat` …)."
    )
    errors: dict[str, list[str]] | None = Field(
        default=None, description="Messages per field, for validation problems."
    )


class ListQuery(BaseModel):
    """Cursor pagination: pass back ``next_cursor`` as ``cursor`` until it is null."""

    limit: int = Field(default=50, ge=1, le=200, description="Items per page (at most 200).")
    cursor: str | None = Field(
        default=None,
        max_length=200,
        description="The `next_cursor` of the previous page; omit for the first page.",
    )


class IdempotencyHeader(BaseModel):
    """The optional ``Idempotency-Key`` of a creating POST."""

    model_config = ConfigDict(populate_by_name=False)

    idempotency_key: Annotated[str, StringConstraints(min_length=1, max_length=255)] | None = Field(
        default=None,
        alias="Idempotency-Key",
        description=(
            "Any unique string (a UUID, say). Sending the same key and body again returns "
            "the first response; the same key with another body is refused with 409."
        ),
    )


class SlugPath(BaseModel):
    """A resource named by its slug."""

    slug: Annotated[str, StringConstraints(min_length=1, max_length=63)]
