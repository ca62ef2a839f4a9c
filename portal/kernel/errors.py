"""Domain errors: a rule refused the operation, and nothing was changed.

Each carries a stable ``code`` (``slug_taken``, ``invalid_transition``, …) and
an HTTP status; :mod:`portal.errors` turns them into a page or an RFC 9457
problem+json body.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from portal.kernel.i18n import _l

if TYPE_CHECKING:
    from flask_babel.speaklater import LazyString


class DomainError(Exception):
    """A rule of the domain refused the operation; nothing was changed."""

    status = 400
    code = "bad_request"
    title = _l("Bad request")

    def __init__(
        self,
        detail: str | LazyString,
        *,
        code: str | None = None,
        errors: dict[str, list[Any]] | None = None,
        extra: dict[str, Any] | None = None,
    ) -> None:
        super().__init__(detail)
        self._detail = detail
        if code:
            self.code = code
        self._errors = errors or {}
        self.extra = extra or {}

    # Messages may be lazy (``_l("…")``): they are read in the language of whoever reads
    # them (a page, an API client asking in Russian), always as plain text.

    @property
    def detail(self) -> str:
        """What went wrong, as a sentence in the reader's language."""
        return str(self._detail)

    @property
    def errors(self) -> dict[str, list[str]]:
        """Each field's messages, in the reader's language."""
        return {field: [str(m) for m in messages] for field, messages in self._errors.items()}

    def __str__(self) -> str:
        return self.detail


class ValidationFailed(DomainError):
    """Input did not pass validation; ``errors`` maps field names to messages."""

    status = 422
    code = "validation_failed"
    title = _l("Validation failed")


class NotFound(DomainError):
    """The thing does not exist, or is not visible to the one asking."""

    status = 404
    code = "not_found"
    title = _l("Not found")


class PermissionDenied(DomainError):
    """The actor may not do this."""

    status = 403
    code = "forbidden"
    title = _l("Forbidden")


class Conflict(DomainError):
    """The operation clashes with the current state (a taken slug, an exhausted pool)."""

    status = 409
    code = "conflict"
    title = _l("Conflict")


class InvalidState(Conflict):
    """A state transition that is not allowed from the current state."""

    code = "invalid_state"
    title = _l("Not allowed in this state")
