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

* **registered checks** (:func:`portal.observability.register_readiness_check`:
  the job queue's broker registers one): failing, a critical one → 503, any
  other → ``degraded``.

Neither needs authentication: the bodies say only ok / degraded / failing per
check, never an address, a host name or an error message. Both are exempt from
CSRF (they are GETs anyway) and from rate limits.

``GET /metrics`` answers the Prometheus text format (the metrics are described
in :mod:`portal.observability`), plus ``portal_jobs{state}`` and
``portal_jobs_oldest_age_seconds{state}`` read from the ``jobs`` table at each
scrape (nothing while the table does not exist). It answers only a request with
``Authorization: Bearer <PORTAL_METRICS_TOKEN>`` or from an address in
``PORTAL_METRICS_ALLOW`` (default loopback; the socket peer, or the client a
trusted proxy forwarded for); anyone else gets the portal's ordinary 404, as
for a path that does not exist. Exempt from CSRF and rate limits like the probes.
"""

from __future__ import annotations

import datetime as dt
import hmac
import ipaddress
import logging
import os
from collections.abc import Iterator

import redis
import sqlalchemy as sa
from flask import Blueprint, Flask, Response, abort, current_app, request
from flask.typing import ResponseReturnValue
from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, CollectorRegistry, generate_latest
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.multiprocess import MultiProcessCollector
from prometheus_client.registry import Collector

from portal.db import (
    READ_ONLY,
    RETRY_AFTER_SECONDS,
    UTCDateTime,
    database_role_isolates,
    db,
)
from portal.extensions import csrf, limiter
from portal.kernel.clock import now_utc
from portal.observability import readiness_checks, register_readiness_check
from portal.ratelimit import limits_degraded

log = logging.getLogger(__name__)

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
    critical_failed = checks["database"] != "ok"
    for name, (check, critical) in readiness_checks(current_app).items():
        if _answers(name, check):
            checks[name] = "ok"
        elif critical:
            checks[name] = "failing"
            critical_failed = True
        else:
            checks[name] = "degraded"
    headers = {"Cache-Control": "no-store"}
    if critical_failed:
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
            # A read: on SQLite no write lock, so a request writing meanwhile never fails it.
            with db.engine.connect().execution_options(**{READ_ONLY: True}) as connection:
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


def _answers(name: str, check: object) -> bool:
    """Run a registered check: True only if it says so (an exception is a failure)."""
    try:
        return bool(check())  # type: ignore[operator]
    except Exception:  # the body says "failing"; the operators get the reason in the log
        log.debug("Readiness check %s raised", name, exc_info=True)
        return False


def _limits_degraded() -> bool:
    """Whether the rate limits count in this process only (Redis failed them lately)."""
    return limits_degraded()


# ---------------------------------------------------------------- /metrics


@bp.get("/metrics")
def metrics() -> ResponseReturnValue:
    """Prometheus metrics, for a scraper with the token or at an allowed address (else 404)."""
    if not _may_read_metrics():
        abort(404)
    body = generate_latest(_process_registry()) + generate_latest(_scrape_registry())
    return Response(
        body, headers={"Content-Type": CONTENT_TYPE_LATEST, "Cache-Control": "no-store"}
    )


def _may_read_metrics() -> bool:
    """The bearer token matches ``PORTAL_METRICS_TOKEN``, or the client's address is allowed."""
    token = current_app.config.get("PORTAL_METRICS_TOKEN")
    scheme, _, given = request.headers.get("Authorization", "").partition(" ")
    if (
        token
        and scheme.lower() == "bearer"
        and hmac.compare_digest(given.strip().encode(), token.encode())
    ):
        return True
    try:
        address = ipaddress.ip_address(request.remote_addr or "")
    except ValueError:
        return False
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    allowed = current_app.config.get("PORTAL_METRICS_ALLOW", ())
    return any(address in network for network in allowed)


def _process_registry() -> CollectorRegistry:
    """This process's metrics, or every process's with ``PROMETHEUS_MULTIPROC_DIR``."""
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        registry = CollectorRegistry()
        MultiProcessCollector(registry)
        return registry
    return REGISTRY


def _scrape_registry() -> CollectorRegistry:
    """What is read from the database at each scrape (the same whichever process answers)."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(JobsCollector(db.engine))
    return registry


#: The jobs table as the collector reads it (no model import: the jobs package is above us).
_jobs = sa.table(
    "jobs",
    sa.column("state", sa.String()),
    sa.column("enqueued_at", UTCDateTime()),
    sa.column("started_at", UTCDateTime()),
)
#: The states whose oldest job's age is reported (how long the oldest has waited or run).
AGED_STATES = {"queued": "enqueued_at", "running": "started_at"}


class JobsCollector(Collector):
    """``portal_jobs{state}`` and ``portal_jobs_oldest_age_seconds{state}`` from the jobs table.

    Reports nothing when the table does not exist (yet) or cannot be read.
    """

    def __init__(self, engine: sa.Engine) -> None:
        self.engine = engine

    def collect(self) -> Iterator[Metric]:
        rows = self._rows()
        if rows is None:
            return
        count = GaugeMetricFamily(
            "portal_jobs", "Jobs recorded in the jobs table, by state.", labels=["state"]
        )
        age = GaugeMetricFamily(
            "portal_jobs_oldest_age_seconds",
            "Seconds since the oldest queued job was enqueued, or the oldest running one started.",
            labels=["state"],
        )
        now = now_utc()
        seen = set()
        for state, number, first_enqueued, first_started in rows:
            seen.add(state)
            count.add_metric([state], number)
            oldest = {"queued": first_enqueued, "running": first_started}.get(state)
            if oldest is not None:
                age.add_metric([state], max(0.0, (now - oldest).total_seconds()))
        for state in AGED_STATES:
            if state not in seen:
                count.add_metric([state], 0)
                age.add_metric([state], 0)
        yield count
        yield age

    def _rows(self) -> list[tuple[str, int, dt.datetime | None, dt.datetime | None]] | None:
        try:
            with self.engine.connect().execution_options(**{READ_ONLY: True}) as connection:
                if not sa.inspect(connection).has_table("jobs"):
                    return None
                statement = sa.select(
                    _jobs.c.state,
                    sa.func.count(),
                    sa.func.min(_jobs.c.enqueued_at),
                    sa.func.min(_jobs.c.started_at),
                ).group_by(_jobs.c.state)
                return [(row[0], row[1], row[2], row[3]) for row in connection.execute(statement)]
        except sa.exc.SQLAlchemyError:
            # Database down or a table of another shape: the scrape still answers.
            log.debug("Could not read the jobs table for the metrics", exc_info=True)
            return None


def init_app(app: Flask) -> None:
    """Register the probes and ``/metrics``, outside CSRF and rate limits."""
    csrf.exempt(bp)
    limiter.exempt(bp)
    app.register_blueprint(bp)
    if app.config.get("PORTAL_ENV") == "production":
        # Tenant isolation in the database holds only for a role that cannot bypass it.
        register_readiness_check(app, "database_role", _database_role_isolates, critical=True)


_role_checked: dict[str, bool] = {}


def _database_role_isolates() -> bool:
    """:func:`portal.db.database_role_isolates`, asked until it is once true for the URL."""
    url = str(db.engine.url)
    if not _role_checked.get(url):
        _role_checked[url] = database_role_isolates(db.engine)
    return _role_checked[url]
