"""Domain errors: a rule refused the operation, and nothing was changed.

Each carries a stable ``code`` (``slug_taken``, ``invalid_transition``, …) and
an HTTP status; :mod:`portal.errors` turns them into a page or an RFC 9457
problem+json body.
"""

from __future__ import annotations

from typing import Any


class DomainError(Exception):
    """A rule of the domain refused the operation; nothing was changed."""

    status = 400
    code = "bad_request"
    title = "Bad request"

    def __init__(
        self,
        detail: str,
        *,
        code: str | None = None,
        errors: dict[str, list[str]] | None = None,
        extra: dict[str, Any] | None = None,
    ) -> None:
        super().__init__(detail)
        self.detail = detail
        if code:
            self.code = code
        self.errors = errors or {}
        self.extra = extra or {}


class ValidationFailed(DomainError):
    """Input did not pass validation; ``errors`` maps field names to messages."""

    status = 422
    code = "validation_failed"
    title = "Validation failed"


class NotFound(DomainError):
    """The thing does not exist, or is not visible to the one asking."""

    status = 404
    code = "not_found"
    title = "Not found"


class PermissionDenied(DomainError):
    """The actor may not do this."""

    status = 403
    code = "forbidden"
    title = "Forbidden"


class Conflict(DomainError):
    """The operation clashes with the current state (a taken slug, an exhausted pool)."""

    status = 409
    code = "conflict"
    title = "Conflict"


class InvalidState(Conflict):
    """A state transition that is not allowed from the current state."""

    code = "invalid_state"
    title = "Not allowed in this state"
