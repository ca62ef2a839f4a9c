"""A lean path for ``GET /api/v1/entitlements/check``, the API's hottest request.

Vendors ask "may this person use this product?" every time someone opens
their software, so the answer must come back in a few milliseconds under load
(issue 5). Through Flask, flask-openapi3 and the ORM a check cost about five
times the CPU of one indexed query served bare (docs/PERFORMANCE.md). This
WSGI middleware answers the common case before Flask sees the request, with
**one** statement that looks up the token and the seat together, and hands
everything else to the full stack unchanged.

It answers only when the result is certain to be what the Flask view would
answer: a ``Bearer`` vendor token that is live (not revoked or expired, its
vendor not suspended) and was used within the last minute (so there is no
time of last use to write), and exactly the three query parameters, each
given once and within the lengths :class:`portal.api.usage.EntitlementQuery`
allows. Anything else (no token, an unknown or council token, a token due a
new time of last use, a missing or doubled parameter, a database error) goes
through Flask, which writes the 401, 403 or 422 problem, notes the token's use
and commits it. Both paths share the seat query (:data:`ENTITLEMENT_SEAT`),
the answer (:func:`entitlement_answer`), the JSON body
(:func:`portal.api.usage.entitlement_body`), the parameters' limits (read from
:class:`~portal.api.usage.EntitlementQuery`) and the app's JSON provider, and
the tests ask both the same questions and compare the answers byte for byte.

**The token's rate limit.** Every answer given here counts in the token's limit,
in the same Redis bucket as Flask's. One round trip to Redis per check cost more
server CPU than the check's own query (docs/PERFORMANCE.md, "After issue 13"), so
a process reserves counts ahead (:class:`Reservations`): a token asking often gets
a few counts added to its bucket in one round trip (``cost=n``) and spends them on
its next checks within :data:`RESERVATION_SECONDS`. Redis refuses a reservation
that does not fit under the limit, and the process then asks for one count at a
time, exactly as before: no more checks are answered than the limit allows.
Counts reserved and not spent in time are forgotten (counted, not used), which can
only make a token reach its limit slightly early, never late; the size of the next
reservation follows what the last one was used for, so a token asking once in a
while reserves one count at a time.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable
from typing import Any
from urllib.parse import parse_qsl

import sqlalchemy as sa
from annotated_types import MaxLen, MinLen
from flask import Flask
from flask.json.provider import DefaultJSONProvider
from pydantic import BaseModel

from portal.api.models import ApiToken
from portal.api.services import LAST_USED_RESOLUTION, TOKEN_START
from portal.api.usage import EntitlementQuery, entitlement_body
from portal.catalogue.models import Vendor
from portal.db import db
from portal.identity.security import token_digest
from portal.inputs import unsafe_query_string
from portal.kernel.clock import now_utc
from portal.metering.selectors import ENTITLEMENT_SEAT, entitlement_answer, entitlement_params
from portal.observability import ENVIRON_ENDPOINT, observe_request
from portal.security import is_production, response_headers

PATH = "/api/v1/entitlements/check"

#: Counts ``cost`` calls of the token with this digest against its limit (all or none);
#: False: let Flask answer. (:func:`portal.ratelimit.fast_path_allows`, handed over by the
#: app factory; called ``token_limit(app, digest, cost=n)``.)
TokenLimit = Callable[..., bool]

#: Counts reserved ahead in a token's limit are spent within this many seconds, or forgotten.
RESERVATION_SECONDS = 1.0
#: The most counts one reservation asks for (one round trip to Redis per this many checks).
MAX_RESERVATION = 32
#: Reservations remembered per process before the lapsed ones are dropped.
_PRUNE_AT = 1024


class Reservations:
    """Counts of the tokens' rate limits reserved ahead by this process (see the module doc).

    ``allow(app, digest)`` answers whether one more check of the token may be answered:
    from a count reserved earlier (no round trip) or by reserving anew through
    ``token_limit``. The size of a reservation doubles while the last one was spent in
    time (up to :data:`MAX_RESERVATION`), falls back to what was spent when counts
    lapsed, and is one whenever a larger one does not fit under the limit.
    """

    def __init__(self, token_limit: TokenLimit, *, clock: Callable[[], float] = time.monotonic):
        self.token_limit = token_limit
        self.clock = clock
        self._lock = threading.Lock()
        # digest -> [counts left, usable until (clock), size of the last reservation]
        self._held: dict[str, list[float]] = {}

    def allow(self, app: Flask, digest: str) -> bool:
        now = self.clock()
        with self._lock:
            held = self._held.get(digest)
            if held is not None and held[0] > 0 and now < held[1]:
                held[0] -= 1
                return True
            size = self._next_size(held, now)
        if size > 1 and self.token_limit(app, digest, cost=size):
            self._keep(digest, size, now)
            return True
        if self.token_limit(app, digest, cost=1):
            self._keep(digest, 1, now)
            return True
        with self._lock:
            self._held.pop(digest, None)  # at the limit: the next reservation starts at one
        return False

    @staticmethod
    def _next_size(held: list[float] | None, now: float) -> int:
        if held is None:
            return 1
        left, until, size = held
        if left <= 0 and now < until:  # spent in time: the token asks often
            return int(min(MAX_RESERVATION, size * 2))
        return int(max(1, size - left))  # what the last one was used for

    def _keep(self, digest: str, size: int, now: float) -> None:
        with self._lock:
            if len(self._held) >= _PRUNE_AT:
                for key in [k for k, v in self._held.items() if v[1] <= now]:
                    del self._held[key]
            held = self._held.get(digest)
            left = held[0] if held is not None and now < held[1] else 0
            # One count is this check's; the rest wait for the token's next checks.
            self._held[digest] = [left + size - 1, now + RESERVATION_SECONDS, size]


def _lengths(model: type[BaseModel]) -> dict[str, tuple[int, int]]:
    """Each field's (min, max) length, as the API's query model declares them."""
    out = {}
    for name, field in model.model_fields.items():
        low = next((m.min_length for m in field.metadata if isinstance(m, MinLen)), 0)
        high = next((m.max_length for m in field.metadata if isinstance(m, MaxLen)), 10_000)
        out[name] = (low, high)
    return out


# The query parameters and their lengths: the view's own model is the one source.
PARAMETERS = _lengths(EntitlementQuery)

_token = ApiToken.__table__
_vendor = Vendor.__table__
_seat = ENTITLEMENT_SEAT.subquery("seat")
# The token, its vendor's status and the seat, in one round trip. The seat
# subquery does not depend on the token: it runs once, on its own indexes.
CHECK = (
    sa.select(
        _token.c.scope,
        _token.c.vendor_id,
        _token.c.revoked_at,
        _token.c.expires_at,
        _token.c.last_used_at,
        _vendor.c.status.label("vendor_status"),
        _seat.c.subscription_id,
        _seat.c.assigned_at,
        _seat.c.vendor_id.label("seat_vendor_id"),
    )
    .select_from(
        _token.outerjoin(_vendor, _vendor.c.id == _token.c.vendor_id).outerjoin(_seat, sa.true())
    )
    .where(_token.c.token_hash == sa.bindparam("token_hash"))
)

StartResponse = Callable[..., Any]
WSGIApp = Callable[[dict[str, Any], StartResponse], Iterable[bytes]]


class _Statement:
    """:data:`CHECK` compiled once for a dialect, run on a plain DB-API connection.

    SQLAlchemy still provides the SQL, the values it binds itself (the LIMIT, the
    status) and each column's conversion of results (``UTCDateTime`` on SQLite);
    what is skipped is its per-execution work, about as much again as the query.
    """

    def __init__(self, dialect: sa.Dialect) -> None:
        compiled = CHECK.compile(dialect=dialect)
        self.sql = compiled.string
        self.defaults = dict(compiled.params)
        self.order = compiled.positiontup if dialect.positional else None
        self.convert = [
            column.type.dialect_impl(dialect).result_processor(dialect, None)
            for column in CHECK.selected_columns
        ]
        self.names = [str(column.key) for column in CHECK.selected_columns]

    def run(self, dbapi_connection: Any, values: dict[str, Any]) -> dict[str, Any] | None:
        params = {**self.defaults, **values}
        cursor = dbapi_connection.cursor()
        try:
            cursor.execute(
                self.sql, tuple(params[name] for name in self.order) if self.order else params
            )
            row = cursor.fetchone()
        finally:
            cursor.close()
        if row is None:
            return None
        return {
            name: convert(value) if convert else value
            for name, convert, value in zip(self.names, self.convert, row, strict=True)
        }


class EntitlementCheckFastPath:
    """WSGI middleware: answer a plain entitlement check in one query, or pass it on."""

    def __init__(self, app: Flask, wsgi_app: WSGIApp, *, token_limit: TokenLimit) -> None:
        self.app = app
        self.wsgi_app = wsgi_app
        self.token_limit = token_limit
        self.reservations = Reservations(token_limit)
        self._engine: sa.Engine | None = None
        self._statement: _Statement | None = None
        self._setting_up = threading.Lock()
        # The Flask view's endpoint: answers given here are measured under its name.
        self.endpoint = app.url_map.bind("").match(PATH, "GET")[0]

    def __call__(self, environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        if environ.get("PATH_INFO") == PATH and environ.get("REQUEST_METHOD") == "GET":
            # Timed, logged and given a request id like Flask's answers (portal.observability).
            return observe_request(environ, start_response, self._check)
        return self.wsgi_app(environ, start_response)

    def _check(self, environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        body = self.answer(environ)
        if body is not None:
            environ[ENVIRON_ENDPOINT] = self.endpoint
            return self._reply(body, environ, start_response)
        return self.wsgi_app(environ, start_response)

    def _reply(
        self, body: dict[str, Any], environ: dict[str, Any], start_response: StartResponse
    ) -> Iterable[bytes]:
        """Flask's JSON response (``app.json.response``), written without a Response object.

        With the security headers Flask's ``after_request`` adds (:mod:`portal.security`).
        """
        provider = self.app.json
        security = response_headers(mimetype="application/json", production=is_production(self.app))
        if not isinstance(provider, DefaultJSONProvider) or self.app.debug:
            response = provider.response(body)
            response.headers.extend(security)
            return response(environ, start_response)  # type: ignore[operator]
        payload = f"{provider.dumps(body, separators=(',', ':'))}\n".encode()
        start_response(
            "200 OK",
            [
                ("Content-Type", provider.mimetype),
                ("Content-Length", str(len(payload))),
                *security,
            ],
        )
        return [payload]

    def _connect(self) -> Any:
        """A pooled DB-API connection that reads without a transaction of its own.

        PostgreSQL: from an engine of this path's own, in autocommit, so a read costs
        no ``BEGIN`` or ``ROLLBACK`` round trip and no switching of the mode back and
        forth. SQLite: the portal's engine, whose connections already run outside a
        transaction until one is begun (``portal.db``).
        """
        if self._engine is None:
            with self._setting_up:  # the first requests of a worker's threads may race here
                if self._engine is None:
                    self._set_up()
        assert self._engine is not None
        return self._engine.raw_connection()

    def _set_up(self) -> None:
        """The engine and the compiled statement, once per process (after gunicorn forks)."""
        with self.app.app_context():
            engine = db.engine
        if engine.dialect.name == "postgresql":
            portal_engine = engine
            engine = sa.create_engine(
                portal_engine.url,
                isolation_level="AUTOCOMMIT",
                pool_reset_on_return=None,
                pool_size=portal_engine.pool.size(),  # type: ignore[attr-defined]
            )
            # Closed with the portal's own (at shutdown, and after each test run).
            sa.event.listen(portal_engine, "engine_disposed", lambda _: engine.dispose())
            # Row-level security: this engine runs one statement only, for vendor tokens, whose
            # requests are council-wide (portal.api.auth.token_scope); its connections are
            # set so once, when made, and serve nothing else.
            sa.event.listen(engine, "connect", _council_wide_connection)
        self._statement = _Statement(engine.dialect)
        self._engine = engine

    def answer(self, environ: dict[str, Any]) -> dict[str, Any] | None:
        """The JSON body of the answer, or None when Flask must answer."""
        scheme, _, credentials = environ.get("HTTP_AUTHORIZATION", "").partition(" ")
        credentials = credentials.strip()
        if (
            scheme.lower() != "bearer"
            or not credentials.startswith(TOKEN_START)
            or len(credentials) > 200
        ):
            return None
        asked = _parameters(environ.get("QUERY_STRING", ""))
        if asked is None:
            return None
        values = {"token_hash": token_digest(credentials), **entitlement_params(**asked)}
        try:
            connection = self._connect()
        except Exception:  # SQLAlchemy's or the driver's own (raw_connection does not wrap)
            return None  # Flask answers, and reports the error its own way (a 503 if down)
        try:
            assert self._statement is not None
            row = self._statement.run(connection, values)
        except Exception:  # a driver error: drop the connection, let Flask answer
            connection.invalidate()
            return None
        finally:
            connection.close()
        if row is None or not _live_vendor_token(row):
            return None
        if not self.reservations.allow(self.app, values["token_hash"]):
            return None  # the token's limit is reached (or Redis in doubt): Flask answers
        return entitlement_body(
            entitlement_answer(
                vendor_id=row["vendor_id"],
                user_email=asked["user_email"],
                subscription_id=row["subscription_id"],
                assigned_at=row["assigned_at"],
                seat_vendor_id=row["seat_vendor_id"],
            )
        )


def _council_wide_connection(dbapi_connection: Any, connection_record: Any) -> None:
    """A new connection of the fast path's own engine: council-wide (vendor tokens' scope)."""
    cursor = dbapi_connection.cursor()
    try:
        cursor.execute(
            "SELECT set_config('portal.scope', 'council', false), "
            "set_config('portal.organisation_id', '', false)"
        )
    finally:
        cursor.close()
    dbapi_connection.commit()  # before SQLAlchemy turns autocommit on; the settings stay


def _parameters(query_string: str) -> dict[str, str] | None:
    """The three parameters if each is there once and of an allowed length, else None.

    A query string with anything but ASCII (percent-encoded UTF-8 is ASCII) goes
    to Flask, whose decoding of raw bytes this does not repeat.
    """
    if not query_string.isascii() or unsafe_query_string(query_string):
        return None  # Flask's input guard (portal.inputs) refuses a control character
    asked: dict[str, str] = {}
    for name, value in parse_qsl(query_string, keep_blank_values=True):
        if name in PARAMETERS:
            if name in asked or "\ufffd" in value:  # doubled, or not valid UTF-8
                return None
            low, high = PARAMETERS[name]
            if not low <= len(value) <= high:
                return None
            asked[name] = value
    return asked if len(asked) == len(PARAMETERS) else None


def _live_vendor_token(row: dict[str, Any]) -> bool:
    """A vendor token the Flask path would accept without writing its time of use."""
    now = now_utc()
    return (
        row["scope"] == "vendor"
        and row["revoked_at"] is None
        and (row["expires_at"] is None or row["expires_at"] > now)
        and row["vendor_status"] is not None
        and row["vendor_status"] != "suspended"
        and row["last_used_at"] is not None
        and now - row["last_used_at"] < LAST_USED_RESOLUTION
    )
