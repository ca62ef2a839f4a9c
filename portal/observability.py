"""Request ids, JSON logs, Prometheus metrics and the readiness checks others register.

**Request ids.** Every request gets an id: the incoming ``X-Request-Id`` header
when it is well formed (:data:`REQUEST_ID_PATTERN`: 1 to 64 letters, digits and
``._:-``, starting with a letter or digit), otherwise a new random one. It is
returned in the response's ``X-Request-Id`` header, written on every log line of
the request, and kept in a context variable: :func:`current_request_id` reads
it, and :func:`request_id_context` sets it for a block of code — a job started
by a request stores the id and runs inside ``request_id_context(stored)``, so
the job's log lines carry the id of the request that started it.

**Logs.** ``PORTAL_LOG_FORMAT`` is ``json`` (the default in production: one JSON
object per line with ``timestamp`` (UTC, ISO 8601), ``level``, ``logger``,
``message``, ``request_id`` and, on the one line each request writes (logger
``portal.request``), ``method``, ``path``, ``endpoint``, ``status``,
``duration_ms`` and ``actor``) or ``text`` (the default in development). The
line never holds a query string, a body, a header or a cookie, and a path whose
route takes a token (invitations, password resets) is written as its route
(``/invitations/<token>``). :func:`log_context` adds fields of one's own (a job's
name and id) to every line written inside it. In the test environment logging
is left to pytest unless ``PORTAL_LOG_FORMAT`` is set.

**Metrics** (``prometheus_client``; served by :mod:`portal.health` at ``/metrics``):

* ``portal_http_request_duration_seconds{endpoint,method,status}``: a histogram
  of every request, by Flask endpoint name (never the raw path: unknown paths are
  ``unmatched``), including the entitlement checks the API's fast path answers.
* ``portal_usage_events_accepted_total``, ``portal_usage_events_duplicates_total``,
  ``portal_usage_events_rejected_total{code}``: usage events, counted where the
  metering ingest returns its result (API batches and CSV uploads alike).
* ``portal_invoice_run_duration_seconds{status}``: each invoice run's execution.
* ``portal_login_failures_total{reason}``: refused sign-ins (:data:`LOGIN_FAILURE_REASONS`).

With several processes (gunicorn workers) set ``PROMETHEUS_MULTIPROC_DIR`` to an
empty, writable folder in the environment *before* the server starts:
``prometheus_client`` then keeps each process's values in files there, and
``/metrics`` adds them up, whichever worker answers (``gunicorn.conf.py`` empties
the folder at start and marks exited workers).

**Readiness checks** (:func:`register_readiness_check`): a part of the portal
that needs a server of its own (the job queue's broker) registers a check here;
``/readyz`` runs it beside the database and Redis.
"""

from __future__ import annotations

import contextlib
import contextvars
import datetime as dt
import json
import logging
import re
import secrets
import sys
import time
from collections.abc import Callable, Iterable, Iterator
from typing import Any

from flask import Flask, g, request
from flask.logging import default_handler
from prometheus_client import Counter, Histogram

# ---------------------------------------------------------------- request ids

#: The response header (and the accepted request header) carrying the request id.
REQUEST_ID_HEADER = "X-Request-Id"
#: An incoming id is kept only if it matches: bounded, and safe in a log or a header.
#: (At most :data:`REQUEST_ID_MAX_LENGTH`, the length the jobs table stores.)
REQUEST_ID_MAX_LENGTH = 64
REQUEST_ID_PATTERN = re.compile(rf"[A-Za-z0-9][A-Za-z0-9._:-]{{0,{REQUEST_ID_MAX_LENGTH - 1}}}")

#: WSGI environ keys: the request id, and what Flask (or the fast path) reports back.
ENVIRON_REQUEST_ID = "portal.request_id"
ENVIRON_ENDPOINT = "portal.endpoint"
ENVIRON_LOG_PATH = "portal.log_path"
ENVIRON_ACTOR = "portal.actor"

_request_id: contextvars.ContextVar[str | None] = contextvars.ContextVar(
    "portal_request_id", default=None
)
_log_fields: contextvars.ContextVar[dict[str, Any] | None] = contextvars.ContextVar(
    "portal_log_fields", default=None
)


def new_request_id() -> str:
    """A fresh random request id (32 hex digits)."""
    return secrets.token_hex(16)


def clean_request_id(value: str | None) -> str | None:
    """``value`` if it is a well-formed request id, else None."""
    if value and REQUEST_ID_PATTERN.fullmatch(value):
        return value
    return None


def current_request_id() -> str | None:
    """The id of the request (or the job started by one) this code runs for, if any."""
    return _request_id.get()


@contextlib.contextmanager
def request_id_context(value: str | None) -> Iterator[str | None]:
    """Run a block with ``value`` as the current request id (None: no id), then restore."""
    token = _request_id.set(clean_request_id(value))
    try:
        yield _request_id.get()
    finally:
        _request_id.reset(token)


@contextlib.contextmanager
def log_context(**fields: Any) -> Iterator[None]:
    """Add ``fields`` (e.g. ``job="invoice_run", job_id=7``) to every log line of a block."""
    merged = {**(_log_fields.get() or {}), **fields}
    token = _log_fields.set(merged)
    try:
        yield
    finally:
        _log_fields.reset(token)


# ---------------------------------------------------------------- metrics

#: Request latency buckets in seconds (entitlement checks take milliseconds, pages up to seconds).
REQUEST_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
#: Invoice run buckets in seconds (a demo month is under a second; a council's, minutes).
INVOICE_RUN_BUCKETS = (0.1, 0.5, 1.0, 5.0, 15.0, 60.0, 300.0, 900.0, 1800.0, 3600.0)
#: The methods labelled as themselves; any other is ``other`` (bounded label values).
METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
#: Why a sign-in was refused (``portal_login_failures_total{reason}``).
LOGIN_FAILURE_REASONS = (
    "bad_password",  # unknown email or wrong password (one reason: the page says no more)
    "account_unavailable",  # right password, but the account or its organisation may not sign in
    "sso_required",  # a password for a domain whose organisation enforces single sign-on
    "rate_limited",  # too many failures for the email or the address (429)
    "second_factor",  # a wrong or reused one-time code, recovery code or passkey
)
#: Endpoints whose 429 counts as a refused sign-in (``rate_limited``).
SIGN_IN_ENDPOINTS: set[str] = {"auth.login", "auth.second_factor", "passkeys.sign_in"}

REQUEST_SECONDS = Histogram(
    "portal_http_request_duration_seconds",
    "Time to answer a request, by Flask endpoint (unmatched: no route), method and status.",
    ["endpoint", "method", "status"],
    buckets=REQUEST_BUCKETS,
)
USAGE_ACCEPTED = Counter("portal_usage_events_accepted", "Usage events stored (counted once each).")
USAGE_DUPLICATES = Counter(
    "portal_usage_events_duplicates",
    "Valid usage events already stored under their idempotency key (not counted again).",
)
USAGE_REJECTED = Counter(
    "portal_usage_events_rejected",
    "Usage events refused, by code (invalid, no_subscription, not_organisation_person).",
    ["code"],
)
INVOICE_RUN_SECONDS = Histogram(
    "portal_invoice_run_duration_seconds",
    "Time an invoice run took to execute, by the status it ended in (done, failed).",
    ["status"],
    buckets=INVOICE_RUN_BUCKETS,
)
LOGIN_FAILURES = Counter("portal_login_failures", "Refused sign-ins, by reason.", ["reason"])
for _reason in LOGIN_FAILURE_REASONS:  # every reason is reported from the start (0)
    LOGIN_FAILURES.labels(reason=_reason)
for _code in ("invalid", "no_subscription", "not_organisation_person"):
    USAGE_REJECTED.labels(code=_code)


def usage_events_counted(*, accepted: int, duplicates: int, rejected: Iterable[str]) -> None:
    """Count one ingested batch: stored, duplicate and refused events (by code)."""
    if accepted:
        USAGE_ACCEPTED.inc(accepted)
    if duplicates:
        USAGE_DUPLICATES.inc(duplicates)
    for code in rejected:
        USAGE_REJECTED.labels(code=code).inc()


def invoice_run_finished(seconds: float, status: str) -> None:
    """Record how long an invoice run executed and how it ended (``done`` or ``failed``)."""
    INVOICE_RUN_SECONDS.labels(status=str(status)).observe(max(0.0, seconds))


def login_failed(reason: str) -> None:
    """Count a refused sign-in; ``reason`` is one of :data:`LOGIN_FAILURE_REASONS`."""
    LOGIN_FAILURES.labels(reason=reason if reason in LOGIN_FAILURE_REASONS else "other").inc()


def _observe_request(endpoint: str, method: str, status: int, seconds: float) -> None:
    REQUEST_SECONDS.labels(
        endpoint=endpoint,
        method=method if method in METHODS else "other",
        status=str(status),
    ).observe(seconds)
    if status == 429 and endpoint in SIGN_IN_ENDPOINTS:
        login_failed("rate_limited")


# ---------------------------------------------------------------- readiness checks

#: A readiness check: True when its server answers in time (it must bound its own wait,
#: a second or two); an exception counts as False.
ReadinessCheck = Callable[[], bool]


def register_readiness_check(
    app: Flask, name: str, check: ReadinessCheck, *, critical: bool = False
) -> None:
    """Have ``/readyz`` run ``check`` (inside the app context) as ``name``.

    Failing, a ``critical`` check makes ``/readyz`` answer 503 (take the instance
    out of rotation); any other makes it ``degraded`` (200, worth an alert). A
    second registration under the same name replaces the first.
    """
    app.extensions.setdefault("portal_readiness", {})[name] = (check, critical)


def readiness_checks(app: Flask) -> dict[str, tuple[ReadinessCheck, bool]]:
    """The registered checks by name: (check, critical)."""
    return dict(app.extensions.get("portal_readiness", {}))


# ---------------------------------------------------------------- logging

LOG_FORMATS = ("json", "text")
#: Extra fields a log record may carry, written in this order (the request line's).
RECORD_FIELDS = ("method", "path", "endpoint", "status", "duration_ms", "actor")
_STANDARD = frozenset(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {
    "message",
    "asctime",
    "request_id",
    "taskName",
}


class _Context(logging.Filter):
    """Give every record the current request id (``request_id``, None outside requests)."""

    def filter(self, record: logging.LogRecord) -> bool:
        if getattr(record, "request_id", None) is None:
            record.request_id = current_request_id()
        return True


class JsonFormatter(logging.Formatter):
    """One JSON object per line: timestamp, level, logger, message, request id, fields."""

    def format(self, record: logging.LogRecord) -> str:
        moment = dt.datetime.fromtimestamp(record.created, dt.UTC)
        out: dict[str, Any] = {
            "timestamp": moment.isoformat(timespec="milliseconds").replace("+00:00", "Z"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        request_id = getattr(record, "request_id", None) or current_request_id()
        if request_id:
            out["request_id"] = request_id
        for name in RECORD_FIELDS:
            value = getattr(record, name, None)
            if value is not None:
                out[name] = value
        for name, value in (_log_fields.get() or {}).items():
            out.setdefault(name, value)
        for name, value in vars(record).items():  # extra={...} of the caller
            if name in _STANDARD or name in out or name.startswith("_") or value is None:
                continue
            if name not in RECORD_FIELDS:
                out[name] = value
        if record.exc_info:
            out["exception"] = self.formatException(record.exc_info)
        if record.stack_info:
            out["stack"] = self.formatStack(record.stack_info)
        return json.dumps(out, ensure_ascii=False, default=str)


class TextFormatter(logging.Formatter):
    """``2026-12-01 10:00:00,123 INFO portal.request [id]: GET /org 200 12.3 ms``."""

    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)s %(name)s [%(request_id)s]: %(message)s")

    def format(self, record: logging.LogRecord) -> str:
        if getattr(record, "request_id", None) is None:
            record.request_id = current_request_id() or "-"
        return super().format(record)


class _StderrHandler(logging.StreamHandler):
    """Writes to whatever ``sys.stderr`` is at the time (so captured output sees it)."""

    name = "portal-observability"

    @property
    def stream(self) -> Any:
        return sys.stderr

    @stream.setter
    def stream(self, value: Any) -> None:  # StreamHandler.__init__ assigns it; ignored
        pass


def configure_logging(log_format: str, level: str | int = "INFO") -> logging.Handler:
    """Send every logger's records to stderr in ``log_format``; returns the handler.

    Replaces the handler an earlier call installed (one app per process normally;
    tests build many), and leaves other handlers alone.
    """
    if log_format not in LOG_FORMATS:
        raise ValueError(f"log format must be one of {LOG_FORMATS}, not {log_format!r}")
    root = logging.getLogger()
    for handler in list(root.handlers):
        if isinstance(handler, _StderrHandler):
            root.removeHandler(handler)
    handler = _StderrHandler()
    handler.setFormatter(JsonFormatter() if log_format == "json" else TextFormatter())
    handler.addFilter(_Context())
    root.addHandler(handler)
    root.setLevel(level)
    return handler


# ---------------------------------------------------------------- the request hooks

request_log = logging.getLogger("portal.request")

#: View arguments whose values are secrets: a path with one is logged as its route.
_SECRET_ARGS = re.compile(r"token|secret|password|key|code", re.IGNORECASE)
_MAX_LOGGED_PATH = 256


def _note_request(_error: BaseException | None = None) -> None:
    """Teardown: tell the middleware the endpoint, a path safe to log, and the actor."""
    environ = request.environ
    environ[ENVIRON_ENDPOINT] = request.endpoint or "unmatched"
    rule = request.url_rule
    if rule is not None and any(_SECRET_ARGS.search(name) for name in rule.arguments):
        environ[ENVIRON_LOG_PATH] = rule.rule
    actor = g.get("actor")
    label = getattr(actor, "label", None)
    if isinstance(label, str):
        environ[ENVIRON_ACTOR] = label


WSGIApp = Callable[[dict[str, Any], Callable[..., Any]], Iterable[bytes]]


def observe_request(
    environ: dict[str, Any], start_response: Callable[..., Any], app: WSGIApp
) -> Iterable[bytes]:
    """Answer with ``app`` under a request id, timed and logged (once per request).

    A request already observed (by an outer caller) goes straight to ``app``.
    """
    if ENVIRON_REQUEST_ID in environ:
        return app(environ, start_response)
    request_id = clean_request_id(environ.get("HTTP_X_REQUEST_ID")) or new_request_id()
    environ[ENVIRON_REQUEST_ID] = request_id
    started = time.perf_counter()
    answered: list[str] = []

    def observed_start(status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> Any:
        answered[:] = [status]
        headers = [(k, v) for k, v in headers if k.lower() != "x-request-id"]
        headers.append((REQUEST_ID_HEADER, request_id))
        return start_response(status, headers, exc_info)

    token = _request_id.set(request_id)
    try:
        try:
            result = app(environ, observed_start)
        except BaseException:
            _finish(environ, 500, started)
            raise
        _finish(environ, int(answered[0].split(" ", 1)[0]) if answered else 500, started)
        return result
    finally:
        _request_id.reset(token)


class RequestObserver:
    """WSGI middleware around Flask: request id, latency histogram, the request's log line.

    The API's fast path (outside it) calls :func:`observe_request` itself, so
    entitlement checks answered without Flask are timed, logged and given an id
    like every other request.
    """

    def __init__(self, wsgi_app: WSGIApp) -> None:
        self.wsgi_app = wsgi_app

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Any:
        return observe_request(environ, start_response, self.wsgi_app)


def _finish(environ: dict[str, Any], status: int, started: float) -> None:
    seconds = time.perf_counter() - started
    endpoint = environ.get(ENVIRON_ENDPOINT) or "unmatched"
    method = environ.get("REQUEST_METHOD", "")
    try:
        _observe_request(endpoint, method, status, seconds)
    except Exception:  # a metric must never fail a request
        logging.getLogger(__name__).exception("Could not record the request's metrics")
    path = environ.get(ENVIRON_LOG_PATH) or environ.get("PATH_INFO", "")
    path = path[:_MAX_LOGGED_PATH]
    duration_ms = round(seconds * 1000, 1)
    request_log.info(
        "%s %s %s %.1f ms",
        method,
        path,
        status,
        duration_ms,
        extra={
            "request_id": environ.get(ENVIRON_REQUEST_ID),
            "method": method,
            "path": path,
            "endpoint": endpoint,
            "status": status,
            "duration_ms": duration_ms,
            "actor": environ.get(ENVIRON_ACTOR),
        },
    )


def init_app(app: Flask) -> None:
    """Logging as configured, the teardown hook, and the middleware around Flask.

    Called before the API's fast path wraps the app (it observes its own answers).
    """
    log_format = app.config.get("PORTAL_LOG_FORMAT")
    if log_format:
        configure_logging(log_format, app.config.get("PORTAL_LOG_LEVEL") or "INFO")
        app.logger.removeHandler(default_handler)  # the root handler writes its records
    app.teardown_request(_note_request)
    app.wsgi_app = RequestObserver(app.wsgi_app)  # type: ignore[method-assign]
