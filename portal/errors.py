"""One error vocabulary for the whole portal.

Services raise :class:`DomainError` subclasses carrying a stable ``code``
(``pool_exhausted``, ``no_free_seat``, ``slug_taken`` …). The handlers registered
here turn them, and HTTP errors, into an HTML page in the layout or an RFC 9457
problem+json body, by what the client asked for.
"""

from __future__ import annotations

import contextlib
from typing import Any

from flask import Flask, Response, current_app, jsonify, render_template, request
from flask_wtf.csrf import CSRFError
from werkzeug.exceptions import HTTPException

from portal.db import (
    RETRY_AFTER_SECONDS,
    db_session,
    is_database_busy,
    is_database_unavailable,
    outage,
    remove_session,
)
from portal.i18n import in_language, language, supported
from portal.kernel.errors import (
    Conflict,
    DomainError,
    InvalidState,
    NotFound,
    PermissionDenied,
    ValidationFailed,
)
from portal.kernel.i18n import LANGUAGES, _l

__all__ = [
    "Conflict",
    "DomainError",
    "InvalidState",
    "NotFound",
    "PermissionDenied",
    "ValidationFailed",
]

PROBLEM_BASE = "https://portal.example/problems/"


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
    """An RFC 9457 ``application/problem+json`` response.

    ``title`` and ``detail`` are in the request's language: English unless the client's
    ``Accept-Language`` asks for Russian (``Content-Language`` says which); ``code`` and
    ``type`` never change (portal.i18n).
    """
    body: dict[str, Any] = {
        "type": PROBLEM_BASE + (code or str(status)),
        "title": str(title),
        "status": status,
        "detail": str(detail),
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
    response.headers["Content-Language"] = language()
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

    try:
        db_session().rollback()
    except Exception as exc:  # the connection died under the transaction
        if not is_database_unavailable(exc):
            raise
        db_session().invalidate()


DATABASE_UNAVAILABLE_DETAIL = _l(
    "The database is not answering just now (a restart or a lost connection). "
    "Try again in a few seconds."
)

# HTTP errors' titles, in the reader's language (werkzeug names them in English only).
HTTP_TITLES = {
    400: _l("Bad Request"),
    401: _l("Unauthorized"),
    403: _l("Forbidden"),
    404: _l("Not Found"),
    405: _l("Method Not Allowed"),
    406: _l("Not Acceptable"),
    409: _l("Conflict"),
    410: _l("Gone"),
    413: _l("Request Entity Too Large"),
    415: _l("Unsupported Media Type"),
    422: _l("Unprocessable Entity"),
    429: _l("Too Many Requests"),
    500: _l("Internal Server Error"),
    501: _l("Not Implemented"),
    502: _l("Bad Gateway"),
    503: _l("Service Unavailable"),
}

# werkzeug's own explanations, when an error carries no other (same English, translated).
HTTP_DESCRIPTIONS = {
    400: _l("The browser (or proxy) sent a request that this server could not understand."),
    401: _l(
        "The server could not verify that you are authorized to access the URL requested. "
        "You either supplied the wrong credentials (e.g. a bad password), or your browser "
        "doesn't understand how to supply the credentials required."
    ),
    403: _l(
        "You don't have the permission to access the requested resource. "
        "It is either read-protected or not readable by the server."
    ),
    404: _l(
        "The requested URL was not found on the server. "
        "If you entered the URL manually please check your spelling and try again."
    ),
    405: _l("The method is not allowed for the requested URL."),
    409: _l(
        "A conflict happened while processing the request. "
        "The resource might have been modified while the request was being processed."
    ),
    413: _l("The data value transmitted exceeds the capacity limit."),
    415: _l("The server does not support the media type transmitted in the request."),
    429: _l("This user has exceeded an allotted request count. Try again later."),
    500: _l(
        "The server encountered an internal error and was unable to complete your request. "
        "Either the server is overloaded or there is an error in the application."
    ),
}

UNEXPECTED_DETAIL = _l("Something went wrong on our side. The error has been logged.")


def http_title(error: HTTPException) -> Any:
    """The error's title in the reader's language (werkzeug's English name if not listed)."""
    return HTTP_TITLES.get(error.code or 500, error.name)


def http_detail(error: HTTPException) -> Any:
    """The error's explanation: its own, or werkzeug's default one in the reader's language."""
    detail = error.description or ""
    default = type(error).description
    if detail and detail == default and (error.code or 500) in HTTP_DESCRIPTIONS:
        return HTTP_DESCRIPTIONS[error.code or 500]
    return detail


def _language_without_database() -> str:
    """The reader's language when the signed-in person cannot be read: cookie, then browser."""
    from portal.i18n import LANGUAGE_COOKIE

    browser = request.accept_languages.best_match(LANGUAGES, default=LANGUAGES[0])
    if request.path.startswith(("/api/", "/scim/")):
        return browser  # machines: English unless the request asks (portal.i18n)
    return supported(request.cookies.get(LANGUAGE_COOKIE)) or browser


BUSY_RETRY_AFTER_SECONDS = 1


def _database_busy(error: BaseException) -> Response:
    """503 with ``Retry-After: 1`` when another transaction held what this one needed.

    The request's transaction was rolled back whole, so nothing changed and the same
    request may be sent again (SQLite's single writer under load; PostgreSQL's lock,
    serialization and deadlock failures). Logged as a warning, without a traceback.
    """
    current_app.logger.warning("Database busy, answered 503: %s", error.__class__.__name__)
    title = HTTP_TITLES[503]
    detail = _l("The portal is busy with other changes and saved nothing. Try again in a moment.")
    if render := _renderer():
        response = current_app.make_response(render(503, title, detail, None))
    elif wants_json():
        response = problem(503, title, detail, code="database_busy")
    else:
        response = _page(503, title, detail, None)
    response.headers["Retry-After"] = str(BUSY_RETRY_AFTER_SECONDS)
    return response


def database_unavailable(error: BaseException) -> Response:
    """503 with ``Retry-After`` for a database that cannot be reached.

    The session is invalidated (its connection is dropped, not returned to the
    pool to be reset), the outage is noted once (``portal.db.outage``: one log
    line, no traceback), and the answer is problem+json, a SCIM error or a page
    by the client. The page is rendered without the context processors, which
    read the signed-in person from the database.
    """

    with contextlib.suppress(Exception):  # the connection is gone already
        db_session().invalidate()
    outage.failed(error)
    title = HTTP_TITLES[503]
    detail = DATABASE_UNAVAILABLE_DETAIL
    # The person's own choice cannot be read: the cookie's or the browser's language.
    with in_language(_language_without_database()) as chosen:
        if render := _renderer():
            response = render(503, title, detail, None)
        elif wants_json():
            response = problem(503, title, detail, code="database_unavailable")
        else:
            html = current_app.jinja_env.get_template("errors/unavailable.html").render(
                title=title,
                detail=detail,
                retry_after=RETRY_AFTER_SECONDS,
                council_name=current_app.config["PORTAL_COUNCIL_NAME"],
                lang=chosen,
            )
            response = Response(html, status=503, mimetype="text/html")
    response.headers["Retry-After"] = str(RETRY_AFTER_SECONDS)
    return response


def _page(status: int, title: str, detail: str, code: str | None) -> Response:
    """An error page in the layout; the 503 page if the layout cannot reach the database."""

    try:
        html = render_template(
            "errors/error.html", status=status, title=title, detail=detail, code=code
        )
    except Exception as exc:
        if not is_database_unavailable(exc):
            raise
        return database_unavailable(exc)
    return current_app.make_response((html, status))


# Flask-WTF's reasons for refusing a form, in the reader's language.
CSRF_REASONS = {
    "The CSRF token is missing.": _l("The CSRF token is missing."),
    "The CSRF token has expired.": _l("The CSRF token has expired."),
    "The CSRF token is invalid.": _l("The CSRF token is invalid."),
    "The CSRF session token is missing.": _l("The CSRF session token is missing."),
    "The CSRF tokens do not match.": _l("The CSRF tokens do not match."),
    "The referrer header is missing.": _l("The referrer header is missing."),
    "The referrer does not match the host.": _l("The referrer does not match the host."),
}


def _csrf_reason(reason: str) -> Any:
    return CSRF_REASONS.get(reason, reason)


def _pass_on_headers(headers: Any, response: Response) -> Response:
    """Keep the headers an HTTP error carries: ``Retry-After``, and ``Allow`` on a 405."""
    for name in ("Retry-After", "Allow"):
        value = headers.get(name)
        if value:
            response.headers[name] = value
    return response


def register_error_handlers(app: Flask) -> None:
    """Answer domain and HTTP errors as problem+json or as a page in the layout."""

    # A connection lost after the work was done must not turn the answer into a 500.
    app.teardown_appcontext(remove_session)

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
        return _page(error.status, error.title, error.detail, error.code)

    @app.errorhandler(HTTPException)
    def handle_http_error(error: HTTPException):

        original = getattr(error, "original_exception", None)
        if original is not None and is_database_unavailable(original):
            return database_unavailable(original)
        if (error.code or 500) >= 500:
            _rollback()
        status = error.code or 500
        detail = http_detail(error)
        title = http_title(error)
        if isinstance(error, CSRFError):
            detail = _l(
                "This form has expired or was opened in another session, so nothing was saved. "
                "Go back, reload the page and try again. (%(reason)s)",
                reason=_csrf_reason(error.description or ""),
            )
        headers = error.get_response().headers
        if render := _renderer():
            rendered = current_app.make_response(render(status, title, detail, None))
            return _pass_on_headers(headers, rendered)
        if wants_json():
            # A stable code for a rate limit's refusal (portal.ratelimit adds its headers).
            response = problem(
                status, title, detail, code="rate_limited" if status == 429 else None
            )
        else:
            response = _page(status, title, detail, None)
            if response.status_code == 503 and status != 503:
                return response  # the database went away while the page was drawn
        return _pass_on_headers(headers, response)

    @app.errorhandler(Exception)
    def handle_unexpected(error: Exception):

        if is_database_unavailable(error):
            return database_unavailable(error)
        _rollback()
        if is_database_busy(error):
            return _database_busy(error)
        current_app.logger.exception("Unhandled error")
        detail = UNEXPECTED_DETAIL
        title = HTTP_TITLES[500]
        if render := _renderer():
            return render(500, title, detail, None)
        if wants_json():
            return problem(500, title, detail)
        return _page(500, title, detail, None)
