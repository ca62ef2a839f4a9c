"""Usage pages at volume: /org, /org/usage and /org/idle-seats for an organisation with many events.

The pages read the rollups kept at ingest (usage_daily, usage_daily_people), not the
month's events (issue 13). The run loads a few events, times each page, loads many
more, and times them again: a page should cost the same. Beside them, in the same run
on the same database, the bare SQL the pages used to send over the month's events
(aggregates, people with usage, each holder's last use) and the bare SQL they send
over the rollups now.

    python -m benchmarks.pages [--events 200000] [--people 200] [--databases postgresql]
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import json
import re
import statistics
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from benchmarks import common
from portal.kernel.clock import now_utc

PAGES = ("/org", "/org/usage", "/org/idle-seats")
PASSWORD = "bench-password-123"  # noqa: S105 (a benchmark's own throwaway account)
SLUG = "bench-pages"


def setup(env: dict[str, str], people: int) -> tuple[Any, int, list[str], dict[str, Any]]:
    """An organisation subscribed to a product with sum/max/count/unique meters, an admin
    with a password, ``people`` members holding seats; the app."""
    from portal.catalogue.services import pool_create, price_create, product_create, vendor_create
    from portal.db import db as portal_db
    from portal.identity.accounts import user_create
    from portal.kernel.actor import Actor
    from portal.seats.services import seat_assign, subscription_create
    from portal.tenancy.services import organisation_create

    app = common.migrated_app(env)
    system = Actor.system("benchmark")
    today = now_utc().date()
    with app.app_context():
        session = portal_db.session
        vendor_create(session, actor=system, data={"slug": "benchsoft", "name": "Bench"})
        product = product_create(
            session,
            actor=system,
            data={
                "sku": "bench-suite",
                "vendor": "benchsoft",
                "name": "Bench suite",
                "meters": [
                    {"key": k, "name": k, "unit": "unit", "aggregation": a, "property": prop}
                    for k, a, prop in (
                        ("api_calls", "sum", None),
                        ("storage_gb", "max", None),
                        ("sessions", "count", None),
                        ("active_users", "unique_count", "user_email"),
                    )
                ],
            },
        )
        pool_create(
            session,
            actor=system,
            data={
                "product": "bench-suite",
                "capacity": 100_000,
                "starts_on": (today - dt.timedelta(days=60)).isoformat(),
                "ends_on": (today + dt.timedelta(days=365)).isoformat(),
                "unit_cost": {"amount": 500, "currency": "EUR"},
            },
        )
        # A seat price in the organisation's currency: nobody subscribes without one (issue 14).
        price_create(
            session,
            actor=system,
            data={"product": "bench-suite", "currency": "EUR", "model": "seat", "unit_amount": 900},
        )
        org = organisation_create(
            session,
            actor=system,
            data={
                "slug": SLUG,
                "name": "Bench Pages",
                "country": "DE",
                "currency": "EUR",
                "billing_email": f"billing@{SLUG}.example",
            },
        )
        admin = user_create(
            session,
            actor=system,
            email=f"admin@{SLUG}.example",
            role="org_admin",
            organisation=org,
            password=PASSWORD,
        )
        subscription = subscription_create(
            session,
            actor=system,
            organisation=org,
            product=product,
            quantity=people,
            starts_on=today - dt.timedelta(days=60),
        ).subscription
        emails = [f"person-{i:04d}@{SLUG}.example" for i in range(people)]
        for email in emails:
            user_create(session, actor=system, email=email, role="member", organisation=org)
            seat_assign(session, actor=system, subscription=subscription, user_email=email)
        session.commit()
        ids = {"org": org.id, "subscription": subscription.id, "admin": admin.email}
    return app, ids["subscription"], emails, ids


def load_events(app: Any, emails: list[str], count: int, start: int) -> None:
    """``count`` events through the portal's ingestion (batches of 10,000), spread over
    the month so far; every second person uses the product (the rest are idle)."""
    from portal.db import db as portal_db
    from portal.kernel.actor import Actor, Role
    from portal.metering.ingest import usage_ingest

    actor = Actor.api_token("benchmark", role=Role.COUNCIL_ADMIN)
    now = now_utc()
    month_start = now.replace(day=1, hour=0, minute=0, second=0, microsecond=0)
    span = max(int((now - month_start).total_seconds()) - 600, 3600)
    meters = ("api_calls", "storage_gb", "sessions", "active_users")
    users = emails[::2]
    done = 0
    with app.app_context():
        while done < count:
            batch = []
            for i in range(start + done, start + min(count, done + 10_000)):
                batch.append(
                    {
                        "idempotency_key": f"ev-{i}",
                        "organisation": SLUG,
                        "product": "bench-suite",
                        "meter": meters[i % 4],
                        "quantity": str(1 + i % 7),
                        "occurred_at": (
                            now - dt.timedelta(seconds=600 + (i * 7919) % span)
                        ).isoformat(),
                        "user_email": users[i % len(users)],
                    }
                )
            result = usage_ingest(
                portal_db.session,
                actor=actor,
                body=json.dumps({"events": batch}).encode(),
                vendor_id=None,
                max_age_days=40,
            )
            assert not result.rejected, result.rejected[:1]
            portal_db.session.commit()
            done += len(batch)
        portal_db.engine.dispose()


def signed_in_client(app: Any, email: str) -> Any:
    client = app.test_client()
    client.environ_base["wsgi.url_scheme"] = "https"
    page = client.get("/login", base_url="https://localhost").get_data(as_text=True)
    token = re.search(r'name="csrf_token"[^>]*value="([^"]+)"', page)
    assert token, "no CSRF token on /login"
    response = client.post(
        "/login",
        data={"email": email, "password": PASSWORD, "csrf_token": token.group(1)},
        base_url="https://localhost",
        headers={"Referer": "https://localhost/login"},  # Flask-WTF's check over HTTPS
    )
    assert response.status_code == 302, response.status_code
    return client


def time_pages(client: Any, runs: int) -> dict[str, tuple[float, float]]:
    out = {}
    for path in PAGES:
        client.get(path, base_url="https://localhost")  # warm
        times = []
        for _ in range(runs):
            t0 = time.perf_counter()
            response = client.get(path, base_url="https://localhost")
            times.append((time.perf_counter() - t0) * 1000)
            assert response.status_code == 200, (path, response.status_code)
        out[path] = (statistics.median(times), common.percentile(times, 0.95))
    return out


_SEAT_HOLDERS = (
    "FROM seat_assignments s JOIN users u ON u.id = s.user_id "
    "WHERE s.organisation_id = :org AND s.released_at IS NULL"
)


def _bare_sql(kind: str) -> dict[str, list[str]]:
    """What the pages read, as bare SQL: over the month's events (before issue 13), over
    the rollups with a per-seat last use and seats in Python (before the index probes),
    and over the rollups with one index probe per seat (now)."""
    return {
        "events (before)": [
            "SELECT product_id, meter_id, sum(quantity_micros), max(quantity_micros), count(*), "
            "count(DISTINCT user_email) FROM usage_events WHERE organisation_id = :org "
            "AND occurred_at >= :start AND occurred_at < :end GROUP BY product_id, meter_id",
            "SELECT DISTINCT product_id, user_email FROM usage_events WHERE organisation_id = :org "
            "AND occurred_at >= :start AND occurred_at < :end AND user_email IS NOT NULL",
            "SELECT s.id, (SELECT max(e.occurred_at) FROM usage_events e WHERE "
            "e.organisation_id = s.organisation_id AND e.product_id = s.product_id "
            "AND e.user_email = u.email) " + _SEAT_HOLDERS,
        ],
        "rollups, per-seat max (before)": [
            "SELECT product_id, meter_id, sum(quantity_micros), max(max_micros), sum(events) "
            "FROM usage_daily WHERE organisation_id = :org AND day >= :first AND day < :stop "
            "GROUP BY product_id, meter_id",
            "SELECT DISTINCT product_id, user_email FROM usage_daily_people WHERE "
            "organisation_id = :org AND day >= :first AND day < :stop",
            "SELECT s.id, s.subscription_id, s.assigned_at, s.released_at, u.email, "
            "(SELECT max(p.last_occurred_at) FROM usage_daily_people p WHERE "
            "p.organisation_id = s.organisation_id AND p.product_id = s.product_id "
            "AND p.user_email = u.email) " + _SEAT_HOLDERS,
        ],
        "rollups, index probes (now)": [
            "SELECT product_id, meter_id, sum(quantity_micros), max(max_micros), sum(events) "
            "FROM usage_daily WHERE organisation_id = :org AND day >= :first AND day < :stop "
            "GROUP BY product_id, meter_id",
            "SELECT s.subscription_id, count(*), count(DISTINCT CASE WHEN EXISTS (SELECT 1 "
            "FROM usage_daily_people p WHERE p.organisation_id = s.organisation_id "
            "AND p.product_id = s.product_id AND p.user_email = u.email AND p.day >= :first "
            "AND p.day < :stop) THEN u.email END) " + _SEAT_HOLDERS + " GROUP BY 1",
            "SELECT count(*) " + _SEAT_HOLDERS + " AND s.assigned_at <= :since AND NOT EXISTS "
            "(SELECT 1 FROM usage_daily_people p WHERE p.organisation_id = s.organisation_id "
            "AND p.product_id = s.product_id AND p.user_email = u.email "
            "AND p.day >= :since_day AND p.last_occurred_at >= :since)",
        ],
    }


def time_bare(
    app: Any, kind: str, org_id: int, runs: int, *, events_sql: bool = True
) -> dict[str, tuple[float, float]]:
    import sqlalchemy as sa

    from portal.db import db as portal_db

    now = now_utc()
    start = now.replace(day=1, hour=0, minute=0, second=0, microsecond=0)
    end = (start + dt.timedelta(days=32)).replace(day=1)
    params = {
        "org": org_id,
        "start": start,
        "end": end,
        "first": start.date(),
        "stop": end.date(),
        "since": now - dt.timedelta(days=30),
        "since_day": (now - dt.timedelta(days=30)).date(),
    }
    out = {}
    with app.app_context():
        engine = portal_db.engine
        for name, statements in _bare_sql(kind).items():
            if name.startswith("events") and not events_sql:
                continue
            times = []
            # The events' SQL takes seconds at volume: a few runs of it say enough.
            repeat = min(runs, 3) if name.startswith("events") else runs
            with engine.connect() as conn:
                for _ in range(repeat + 1):
                    t0 = time.perf_counter()
                    for statement in statements:
                        conn.execute(sa.text(statement), params).all()
                    times.append((time.perf_counter() - t0) * 1000)
            times = times[1:]
            out[name] = (statistics.median(times), common.percentile(times, 0.95))
        engine.dispose()
    return out


def _analyze(app: Any) -> None:
    import sqlalchemy as sa

    from portal.db import db as portal_db

    with app.app_context(), portal_db.engine.connect() as conn:
        conn.execution_options(isolation_level="AUTOCOMMIT").execute(sa.text("ANALYZE"))
        portal_db.engine.dispose()


@contextlib.contextmanager
def _database(kind: str, args: argparse.Namespace) -> Iterator[common.Database]:
    """A fresh database, dropped afterwards; with ``--keep NAME`` a PostgreSQL database of
    that name (dropped first) that stays for profiling the pages afterwards."""
    if not args.keep or kind != "postgresql":
        with common.fresh_database(kind, args.postgres_url) as db:
            yield db
        return
    import psycopg

    server = "postgresql://" + args.postgres_url.split("://", 1)[1]
    with psycopg.connect(server, autocommit=True) as admin:
        admin.execute(f'DROP DATABASE IF EXISTS "{args.keep}" WITH (FORCE)')
        admin.execute(f'CREATE DATABASE "{args.keep}"')
    base = server.rpartition("/")[0].split("://", 1)[1]
    yield common.Database("postgresql", f"postgresql+psycopg://{base}/{args.keep}")


def measure(kind: str, args: argparse.Namespace, tmp: Path) -> list[tuple]:
    rows: list[tuple] = []
    with _database(kind, args) as db:
        env = common.portal_env(db, str(tmp / f"instance-{kind}"))
        app, _, emails, ids = setup(env, args.people)
        client = signed_in_client(app, ids["admin"])
        loaded = 0
        for target in (args.events // 100, args.events):
            t0 = time.perf_counter()
            load_events(app, emails, target - loaded, loaded)
            seconds = time.perf_counter() - t0
            loaded = target
            print(f"  {kind}: {loaded:,} events loaded ({seconds:.0f} s)", flush=True)
            if kind == "postgresql":  # as autovacuum would after a bulk load: real plans
                _analyze(app)
            for path, (p50, p95) in time_pages(client, args.runs).items():
                rows.append((kind, f"{loaded:,}", path, p50, p95))
            # The events' per-seat last use reads every event of the organisation for each
            # seat (no index on the person): hours at 600,000 events and 5,100 seats.
            events_sql = loaded * args.people <= args.events_sql_max
            bare = time_bare(app, kind, ids["org"], args.runs, events_sql=events_sql)
            for name, (p50, p95) in bare.items():
                rows.append((kind, f"{loaded:,}", f"bare SQL: {name}", p50, p95))
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--events", type=int, default=200_000, help="events this month")
    parser.add_argument("--people", type=int, default=200, help="seat holders")
    parser.add_argument("--runs", type=int, default=20, help="reads per page")
    parser.add_argument("--databases", default="postgresql")
    parser.add_argument("--postgres-url", default=common.DEFAULT_POSTGRES)
    parser.add_argument(
        "--events-sql-max",
        type=int,
        default=100_000 * 100,
        help="time the events' bare SQL only while events x seat holders is at most this",
    )
    parser.add_argument("--keep", default="", help="PostgreSQL database to load and keep")
    parser.add_argument("--quick", action="store_true", help="a short smoke run")
    args = parser.parse_args(argv)
    if args.quick:
        args.events, args.people, args.runs = 20_000, 50, 5
    kinds = [k.strip() for k in args.databases.split(",") if k.strip()]
    print(f"Machine: {common.machine()}")
    if "postgresql" in kinds:
        print(f"PostgreSQL {common.postgres_version(args.postgres_url)}")
    print(
        f"{args.people} seat holders, {args.runs} reads per page (in-process test client), "
        f"events spread over the month so far"
    )
    rows = []
    with tempfile.TemporaryDirectory(prefix="portal-bench-") as tmp:
        for kind in kinds:
            rows.extend(measure(kind, args, Path(tmp)))
    print(common.table(["database", "events", "page / query", "p50 ms", "p95 ms"], rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
