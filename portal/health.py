"""Liveness and readiness probes: ``GET /healthz`` and ``GET /readyz``.

``/healthz`` says the process serves requests; it touches nothing else, so a
load balancer or orchestrator restarts a process only when the process itself
is stuck. ``/readyz`` says whether this process can do its work:

* **database**: a ``SELECT 1`` (with a two-second statement timeout on
  PostgreSQL; connecting is bounded by ``portal.db.CONNECT_TIMEOUT_SECONDS``).
  Failing → 503 with ``Retry-After``: take the process out of rotation, every
  request would answer 503 anyway.
* **redis** (only where ``PORTAL_REDIS_URL`` is set): a ``PING`` with a
  one-second timeout, and whether the rate limits have fallen back to counting
  in the process (:func:`portal.ratelimit.limits_degraded`). Either → ``degraded``,
  still 200: the portal works without Redis, but limits per process are worth
  an alert, not taking every instance out of rotation at once.

Neither needs authentication: the bodies say only ok / degraded / failing per
check, never an address, a host name or an error message. Both are exempt from
CSRF (they are GETs anyway) and from rate limits.
"""

from __future__ import annotations

import redis
import sqlalchemy as sa
from flask import Blueprint, Flask, current_app
from flask.typing import ResponseReturnValue

from portal.db import RETRY_AFTER_SECONDS, db
from portal.extensions import csrf, limiter
from portal.ratelimit import limits_degraded

bp = Blueprint("health", __name__)

#: Milliseconds the readiness check allows PostgreSQL for ``SELECT 1``.
DATABASE_STATEMENT_TIMEOUT_MS = 2000
#: Seconds the readiness check allows Redis to connect and answer ``PING``.
REDIS_TIMEOUT_SECONDS = 1.0


@bp.get("/healthz")
def healthz() -> ResponseReturnValue:
    """Liveness: the process serves requests (nothing else is checked)."""
    return {"status": "ok"}, 200, {"Cache-Control": "no-store"}


@bp.get("/readyz")
def readyz() -> ResponseReturnValue:
    """Readiness: the database answers (503 if not); Redis where configured (degraded if not)."""
    checks = {"database": _database()}
    if current_app.config.get("PORTAL_REDIS_URL"):
        checks["redis"] = "ok" if _redis_answers() and not _limits_degraded() else "degraded"
    headers = {"Cache-Control": "no-store"}
    if checks["database"] != "ok":
        status, code = "failing", 503
        headers["Retry-After"] = str(RETRY_AFTER_SECONDS)
    elif "degraded" in checks.values():
        status, code = "degraded", 200
    else:
        status, code = "ok", 200
    return {"status": status, "checks": checks}, code, headers


def _database() -> str:
    """``ok`` if the database answers ``SELECT 1`` in time, else ``failing``.

    An unreachable database is noted by ``portal.db`` (one log line per outage);
    the probe itself logs nothing, however often it is asked.
    """
    for attempt in (1, 2):
        try:
            with db.engine.connect() as connection:
                if connection.dialect.name == "postgresql":
                    connection.exec_driver_sql(
                        f"SET LOCAL statement_timeout = {DATABASE_STATEMENT_TIMEOUT_MS}"
                    )
                connection.execute(sa.text("SELECT 1")).scalar_one()
        except sa.exc.DBAPIError as error:
            # A pooled connection the server dropped (a restart) is invalidated with
            # the pool's older ones: ask once more, on a fresh connection.
            if attempt == 1 and error.connection_invalidated:
                continue
            return "failing"
        except sa.exc.SQLAlchemyError:
            return "failing"
        return "ok"
    return "failing"


def _redis_answers() -> bool:
    """Whether Redis answers ``PING`` within :data:`REDIS_TIMEOUT_SECONDS`."""
    url = current_app.config["PORTAL_REDIS_URL"]
    clients = current_app.extensions.setdefault("portal_health_redis", {})
    client = clients.get(url)
    if client is None:
        client = clients[url] = redis.Redis.from_url(
            url,
            socket_connect_timeout=REDIS_TIMEOUT_SECONDS,
            socket_timeout=REDIS_TIMEOUT_SECONDS,
            retry_on_timeout=False,
        )
    try:
        return bool(client.ping())
    except (redis.RedisError, OSError):
        return False


def _limits_degraded() -> bool:
    """Whether the rate limits count in this process only (Redis failed them lately)."""
    return limits_degraded()


def init_app(app: Flask) -> None:
    """Register the probes, outside CSRF and rate limits."""
    csrf.exempt(bp)
    limiter.exempt(bp)
    app.register_blueprint(bp)
