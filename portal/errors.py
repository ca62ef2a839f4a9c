"""One error vocabulary for the whole portal.

Services raise :class:`DomainError` subclasses carrying a stable ``code``
(``pool_exhausted``, ``no_free_seat``, ``slug_taken`` …). The handlers registered
here turn them, and HTTP errors, into an HTML page in the layout or an RFC 9457
problem+json body, by what the client asked for.
"""

from __future__ import annotations

from typing import Any

from flask import Flask, Response, current_app, jsonify, render_template, request
from flask_wtf.csrf import CSRFError
from werkzeug.exceptions import HTTPException

PROBLEM_BASE = "https://portal.example/problems/"


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


def wants_json() -> bool:
    """Whether the current request expects JSON rather than an HTML page."""
    if request.path.startswith(("/api/", "/scim/")):
        return True
    best = request.accept_mimetypes.best_match(["text/html", "application/json"])
    return (
        best == "application/json"
        and request.accept_mimetypes[best] > request.accept_mimetypes["text/html"]
    )


def problem(
    status: int,
    title: str,
    detail: str,
    *,
    code: str | None = None,
    errors: dict[str, list[str]] | None = None,
    extra: dict[str, Any] | None = None,
) -> Response:
    """An RFC 9457 ``application/problem+json`` response."""
    body: dict[str, Any] = {
        "type": PROBLEM_BASE + (code or str(status)),
        "title": title,
        "status": status,
        "detail": detail,
    }
    if code:
        body["code"] = code
    if errors:
        body["errors"] = errors
    if extra:
        body.update(extra)
    response = jsonify(body)
    response.status_code = status
    response.mimetype = "application/problem+json"
    return response


# Protocols with error bodies of their own (SCIM: RFC 7644 §3.12), by path prefix.
_renderers: dict[str, Any] = {}


def register_error_renderer(prefix: str, render: Any) -> None:
    """Answer errors under ``prefix`` with ``render(status, title, detail, code)``."""
    _renderers[prefix] = render


def _renderer() -> Any:
    for prefix, render in _renderers.items():
        if request.path.startswith(prefix):
            return render
    return None


def _rollback() -> None:
    from portal.db import db

    db.session.rollback()


def register_error_handlers(app: Flask) -> None:
    """Answer domain and HTTP errors as problem+json or as a page in the layout."""

    @app.errorhandler(DomainError)
    def handle_domain_error(error: DomainError):
        _rollback()
        if render := _renderer():
            return render(error.status, error.title, error.detail, error)
        if wants_json():
            return problem(
                error.status,
                error.title,
                error.detail,
                code=error.code,
                errors=error.errors,
                extra=error.extra,
            )
        return (
            render_template(
                "errors/error.html",
                status=error.status,
                title=error.title,
                detail=error.detail,
                code=error.code,
            ),
            error.status,
        )

    @app.errorhandler(HTTPException)
    def handle_http_error(error: HTTPException):
        if (error.code or 500) >= 500:
            _rollback()
        status = error.code or 500
        detail = error.description or ""
        if isinstance(error, CSRFError):
            detail = (
                "This form has expired or was opened in another session, so nothing was saved. "
                f"Go back, reload the page and try again. ({detail})"
            )
        headers = error.get_response().headers
        if render := _renderer():
            return render(status, error.name, detail, None)
        if wants_json():
            response = problem(status, error.name, detail)
        else:
            response = current_app.make_response(
                (
                    render_template(
                        "errors/error.html",
                        status=status,
                        title=error.name,
                        detail=detail,
                        code=None,
                    ),
                    status,
                )
            )
        retry_after = headers.get("Retry-After")
        if retry_after:
            response.headers["Retry-After"] = retry_after
        return response

    @app.errorhandler(Exception)
    def handle_unexpected(error: Exception):
        _rollback()
        current_app.logger.exception("Unhandled error")
        detail = "Something went wrong on our side. The error has been logged."
        if render := _renderer():
            return render(500, "Internal Server Error", detail, None)
        if wants_json():
            return problem(500, "Internal Server Error", detail)
        return render_template(
            "errors/error.html", status=500, title="Internal Server Error", detail=detail, code=None
        ), 500
