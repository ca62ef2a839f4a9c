"""Pages at scale: every role's main pages and the API's lists on a council-sized database,
beside the same pages on the demo data, in the same run (issue 13).

The scale database (PostgreSQL, ``portal_scale`` unless told) holds the demo council and,
loaded beside it in bulk with COPY (psycopg), at ``--scale 1``: 10,000 organisations,
200,000 people, 1,000,000 seats and 30,000,000 usage events (the month so far and the
two months before), invoices of the two past months, jobs and audit events (the audit
chain kept intact); the rollups (usage_daily, usage_daily_people) are then built in SQL
from the events. One organisation, ``scale-big``, has 1,000 more people (5,100 seats)
and 600,000 events this month: the org-admin pages are read as its admin on the scale
database and as ``acme-gmbh``'s admin on the demo. A database already loaded at the same
scale is reused (``--fresh`` drops it).

The demo database (``portal_scale_demo``) holds ``portal demo`` only. Each page is read
``--runs`` times per database, the two databases in turn page by page, signed in through
the test client (password and, for council staff, the authenticator code); the API lists
with council and organisation tokens. The table gives p50 and p95 on each and the ratio
p95(scale) / p95(demo); the target is at most 2.

    python -m benchmarks.scale [--scale 1] [--runs 30] [--load-only] [--fresh]
    python -m benchmarks.scale --scale 0.01        # a quick check (its own database)
"""

from __future__ import annotations

import argparse
import base64
import datetime as dt
import hashlib
import json
import os
import re
import sys
import tempfile
import time
from collections.abc import Iterator
from typing import Any

from benchmarks import common

DEMO_DB = "portal_scale_demo"
PEOPLE_PER_ORG = 20
PRODUCTS_PER_ORG = 5
IDLE_EVERY = 10  # every tenth person of an organisation uses nothing (idle seats)
MONTHS_BACK = 2  # events this month and in the two months before


def _fixed_env(name: str, postgres_url: str, instance: str) -> dict[str, str]:
    """The portal's environment for a benchmark database kept between runs: the encryption
    key is derived from the database's name, so the demo's second factors decrypt on a rerun."""
    server = "postgresql://" + postgres_url.split("://", 1)[1]
    base = server.rpartition("/")[0].split("://", 1)[1]
    key = base64.urlsafe_b64encode(hashlib.sha256(f"portal-bench-{name}".encode()).digest())
    db = common.Database("postgresql", f"postgresql+psycopg://{base}/{name}")
    env = common.portal_env(db, instance)
    env["PORTAL_ENCRYPTION_KEY"] = key.decode()
    return env


def _server(postgres_url: str) -> str:
    return "postgresql://" + postgres_url.split("://", 1)[1]


def _dsn(postgres_url: str, name: str) -> str:
    return _server(postgres_url).rpartition("/")[0] + "/" + name


def _ensure_database(postgres_url: str, name: str, *, fresh: bool) -> bool:
    """Create the database unless it exists; True when it was created."""
    import psycopg

    with psycopg.connect(_server(postgres_url), autocommit=True) as admin:
        if fresh:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        exists = admin.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,)).fetchone()
        if not exists:
            admin.execute(f'CREATE DATABASE "{name}"')
    return not exists


def _portal(env: dict[str, str], *command: str) -> None:
    """Run ``portal <command>`` on the database of ``env``, with this checkout's code."""
    import subprocess

    full = {**os.environ, **env, "PYTHONPATH": str(common.ROOT)}
    done = subprocess.run(
        [sys.executable, "-c", "from portal.cli import main; main()", *command],
        env=full,
        cwd=common.ROOT,
        capture_output=True,
        text=True,
    )
    if done.returncode:
        raise RuntimeError(f"portal {' '.join(command)} failed: {done.stderr[-3000:]}")


# ------------------------------------------------------------------ bulk load


class Sizes:
    def __init__(self, scale: float) -> None:
        self.scale = scale
        self.organisations = max(10, round(10_000 * scale))
        self.people = self.organisations * PEOPLE_PER_ORG
        self.seats = self.people * PRODUCTS_PER_ORG
        self.events = max(10_000, round(30_000_000 * scale))
        self.big_people = max(20, round(1_000 * scale))
        self.big_events = max(6_000, round(600_000 * scale))

    def describe(self) -> str:
        return (
            f"{self.organisations:,} organisations, {self.people:,} people, {self.seats:,} seats, "
            f"{self.events:,} usage events ({BIG_SLUG}: +{self.big_people:,} people, "
            f"{self.big_events:,} events this month)"
        )


def _copy(conn: Any, table: str, columns: str, lines: Iterator[str] | list[str]) -> int:
    """COPY text lines (tab-separated, ``\\N`` for NULL) into ``table``; the number written."""
    n = 0
    with conn.cursor() as cur, cur.copy(f"COPY {table} ({columns}) FROM STDIN") as copy:
        buffer: list[str] = []
        for line in lines:
            buffer.append(line)
            if len(buffer) >= 50_000:
                copy.write("".join(buffer))
                n += len(buffer)
                buffer = []
        if buffer:
            copy.write("".join(buffer))
            n += len(buffer)
    return n


def _next_id(conn: Any, table: str) -> int:
    row = conn.execute(f"SELECT coalesce(max(id), 0) + 1 FROM {table}").fetchone()
    return int(row[0])


def _set_sequence(conn: Any, table: str) -> None:
    conn.execute(
        f"SELECT setval(pg_get_serial_sequence('{table}', 'id'), "
        f"(SELECT coalesce(max(id), 1) FROM {table}))"
    )


def _ts(moment: dt.datetime) -> str:
    return moment.strftime("%Y-%m-%d %H:%M:%S.%f+00")


#: The bulk catalogue: sku, meters (key, aggregation); two products have no meter.
CATALOGUE = [
    ("scale-cad", [("render_minutes", "sum")]),
    ("scale-pdm", [("storage_gb", "max")]),
    ("scale-bi", [("queries", "count"), ("active_users", "unique_count")]),
    ("scale-etl", [("rows_synced", "sum")]),
    ("scale-mail", []),
    ("scale-lingo", [("characters", "sum")]),
    ("scale-sheets", []),
]
BIG_SLUG = "scale-big"
BIG_ADMIN = f"admin@{BIG_SLUG}.example"
PASSWORD = "scale-bench-password"  # noqa: S105 (a benchmark's throwaway account)


def _catalogue(conn: Any, stamp: str) -> tuple[list[int], dict[int, list[tuple[int, str]]]]:
    """A vendor, the products, their meters and EUR seat prices; (product ids, meters)."""
    vendor = conn.execute(
        "INSERT INTO vendors (slug, name, status, created_at, updated_at) "
        "VALUES ('scale-vendor', 'Scale Vendor', 'active', %s, %s) RETURNING id",
        (stamp, stamp),
    ).fetchone()[0]
    product_ids: list[int] = []
    meters_of: dict[int, list[tuple[int, str]]] = {}
    for n, (sku, meters) in enumerate(CATALOGUE):
        product = conn.execute(
            "INSERT INTO products (vendor_id, sku, name, description, created_at, updated_at) "
            "VALUES (%s, %s, %s, %s, %s, %s) RETURNING id",
            (vendor, sku, sku.replace("-", " ").title(), "Bulk-loaded product.", stamp, stamp),
        ).fetchone()[0]
        product_ids.append(product)
        conn.execute(
            "INSERT INTO prices (product_id, currency, model, unit_amount, created_at, "
            "updated_at) VALUES (%s, 'EUR', 'seat', %s, %s, %s)",
            (product, 1000 + 100 * n, stamp, stamp),
        )
        for key, aggregation in meters:
            meter = conn.execute(
                "INSERT INTO meters (product_id, key, name, unit, aggregation, property) "
                "VALUES (%s, %s, %s, 'unit', %s, %s) RETURNING id",
                (
                    product,
                    key,
                    key.replace("_", " "),
                    aggregation,
                    "user_email" if aggregation == "unique_count" else None,
                ),
            ).fetchone()[0]
            meters_of.setdefault(product, []).append((meter, aggregation))
    return product_ids, meters_of


def bulk_load(dsn: str, sizes: Sizes, *, load_workers: int = 2, log: Any = print) -> None:
    """The bulk council with COPY, beside the demo (its own vendor and products)."""
    import psycopg

    from portal.identity.security import hash_password

    now = dt.datetime.now(dt.UTC)
    month_start = now.replace(day=1, hour=0, minute=0, second=0, microsecond=0)
    first = month_start
    for _ in range(MONTHS_BACK):
        first = (first - dt.timedelta(days=1)).replace(day=1)
    stamp = _ts(first - dt.timedelta(days=30))
    with psycopg.connect(dsn) as conn:
        conn.execute("SET session_replication_role = replica")  # no FK triggers while loading
        conn.execute("SET TIME ZONE 'UTC'")
        conn.execute("SET maintenance_work_mem = '512MB'")
        conn.execute("SET work_mem = '256MB'")
        product_ids, meters_of = _catalogue(conn, stamp)
        sku = dict(zip(product_ids, [c[0] for c in CATALOGUE], strict=True))

        # -- organisations; the first is the big one
        t0 = time.perf_counter()
        org0 = _next_id(conn, "organisations")
        orgs = list(range(org0, org0 + sizes.organisations))
        big_id = org0
        slugs = {o: f"scale-{o:06d}" for o in orgs}
        slugs[big_id] = BIG_SLUG
        _copy(
            conn,
            "organisations",
            "id, slug, name, country, currency, billing_email, status, billing_provider, "
            "reverse_charge, created_at, updated_at, require_second_factor",
            (
                f"{o}\t{slugs[o]}\tScale Organisation {o:06d}\tDE\tEUR\t"
                f"billing@{slugs[o]}.example\tactive\tmanual\tf\t{stamp}\t{stamp}\tf\n"
                for o in orgs
            ),
        )
        # -- people: the first of each organisation is its admin; the big one has more
        user0 = _next_id(conn, "users")
        people: dict[int, list[tuple[int, str]]] = {}
        uid = user0
        user_lines = []
        digest = hash_password(PASSWORD)
        for o in orgs:
            mine = []
            count = PEOPLE_PER_ORG + (sizes.big_people if o == big_id else 0)
            for j in range(count):
                email = f"p{j:05d}@{slugs[o]}.example"
                role, secret = "member", "\\N"
                if j == 0:
                    role = "org_admin"
                    if o == big_id:
                        email, secret = BIG_ADMIN, digest
                user_lines.append(
                    f"{uid}\t{o}\t{email}\tPerson {j} of {o}\t{role}\t{secret}\tt\t"
                    f"{stamp}\t{stamp}\n"
                )
                mine.append((uid, email))
                uid += 1
            people[o] = mine
        _copy(
            conn,
            "users",
            "id, organisation_id, email, name, role, password_hash, is_active, created_at, "
            "updated_at",
            user_lines,
        )
        del user_lines
        log(f"  catalogue, organisations and people: {time.perf_counter() - t0:.0f} s")

        # -- subscriptions and seats
        t0 = time.perf_counter()
        sub0 = _next_id(conn, "subscriptions")
        seat0 = _next_id(conn, "seat_assignments")
        sid, seat_id = sub0, seat0
        sub_lines, seat_lines = [], []
        subscribed: dict[int, list[int]] = {}
        starts = (first - dt.timedelta(days=30)).date().isoformat()
        for n, o in enumerate(orgs):
            chosen = [product_ids[(n + k) % len(product_ids)] for k in range(PRODUCTS_PER_ORG)]
            subscribed[o] = chosen
            quantity = len(people[o]) + 5
            for p in chosen:
                sub_lines.append(
                    f"{sid}\t{o}\t{p}\t{quantity}\t{quantity}\tactive\t{starts}\t{stamp}\t{stamp}\n"
                )
                for u, _ in people[o]:
                    seat_lines.append(f"{seat_id}\t{o}\t{sid}\t{p}\t{u}\t{stamp}\n")
                    seat_id += 1
                sid += 1
        _copy(
            conn,
            "subscriptions",
            "id, organisation_id, product_id, quantity, requested_quantity, status, starts_on, "
            "created_at, updated_at",
            sub_lines,
        )
        _copy(
            conn,
            "seat_assignments",
            "id, organisation_id, subscription_id, product_id, user_id, assigned_at",
            seat_lines,
        )
        del seat_lines, sub_lines
        assigned = conn.execute(
            "SELECT 1 FROM information_schema.columns WHERE table_schema = 'public' "
            "AND table_name = 'subscriptions' AND column_name = 'assigned'"
        ).fetchone()
        if assigned:  # migration 0028: each subscription's count of its active seats
            conn.execute(
                "UPDATE subscriptions s SET assigned = c.n FROM (SELECT subscription_id, "
                "count(*) AS n FROM seat_assignments WHERE released_at IS NULL AND "
                "subscription_id >= %s GROUP BY 1) c WHERE s.id = c.subscription_id",
                (sub0,),
            )
        # Pools large enough for every subscription.
        pool_lines = []
        end = (now + dt.timedelta(days=365)).date().isoformat()
        for p in product_ids:
            pool_lines.append(
                f"{p}\t{sizes.people + sizes.big_people + 100}\t{starts}\t{end}\t100\tEUR\t"
                f"SCALE-{p}\t{stamp}\t{stamp}\n"
            )
        _copy(
            conn,
            "licence_pools",
            "product_id, capacity, starts_on, ends_on, unit_cost_amount, unit_cost_currency, "
            "reference, created_at, updated_at",
            pool_lines,
        )
        conn.commit()
        log(f"  subscriptions, seats and pools: {time.perf_counter() - t0:.0f} s")

        # -- invoices of the two past months, one seat line per subscription
        t0 = time.perf_counter()
        inv0 = _next_id(conn, "invoices")
        line0 = _next_id(conn, "invoice_lines")
        iid, lid = inv0, line0
        inv_lines, line_lines = [], []
        period_start = first
        for _ in range(MONTHS_BACK):
            period = period_start.strftime("%Y-%m")
            issued = _ts(period_start + dt.timedelta(days=33))
            for o in orgs:
                subtotal = 0
                for pos, p in enumerate(subscribed[o], start=1):
                    amount = 1000 * PEOPLE_PER_ORG
                    subtotal += amount
                    line_lines.append(
                        f"{lid}\t{o}\t{iid}\t{pos}\tseat\t{p}\t{sku[p]}\t{sku[p]} seats\t"
                        f"{PEOPLE_PER_ORG}\t1000\t{amount}\t{{}}\n"
                    )
                    lid += 1
                tax = subtotal * 19 // 100
                inv_lines.append(
                    f"{iid}\t{o}\t{period}\tEUR\topen\tSC-{period}-{o:06d}\t{subtotal}\t{tax}\t"
                    f"{subtotal + tax}\t1900\tf\t0\t0\t{issued}\t"
                    f"{(period_start + dt.timedelta(days=60)).date().isoformat()}\t"
                    f"{issued}\t{issued}\n"
                )
                iid += 1
            period_start = (period_start + dt.timedelta(days=32)).replace(day=1)
        _copy(
            conn,
            "invoices",
            "id, organisation_id, period, currency, status, number, subtotal, tax, total, "
            "tax_rate_bp, reverse_charge, amount_paid, amount_credited, finalised_at, due_on, "
            "created_at, updated_at",
            inv_lines,
        )
        _copy(
            conn,
            "invoice_lines",
            "id, organisation_id, invoice_id, position, kind, product_id, product_sku, "
            "description, quantity, unit_amount, amount, source",
            line_lines,
        )
        del inv_lines, line_lines
        # -- jobs: one invoice document per invoice, a few failed
        job_lines = []
        for k in range(iid - inv0):
            state = "failed" if k % 500 == 0 else "succeeded"
            error = "SMTP timeout" if state == "failed" else "\\N"
            job_lines.append(
                f'billing.invoice_document\t{{"invoice_id": {inv0 + k}}}\t{state}\t1\t5\t'
                f"{error}\tscale\t{stamp}\t{stamp}\t{stamp}\t{stamp}\n"
            )
        _copy(
            conn,
            "jobs",
            "name, arguments, state, attempts, max_attempts, last_error, enqueued_by, "
            "enqueued_at, dispatched_at, started_at, finished_at",
            job_lines,
        )
        del job_lines
        conn.commit()
        log(f"  invoices, lines and jobs: {time.perf_counter() - t0:.0f} s")

        # -- audit events (an organisation and its people created), the chain continued
        t0 = time.perf_counter()
        _audit(conn, orgs, people, first)
        conn.commit()
        log(f"  audit events: {time.perf_counter() - t0:.0f} s")

        # -- usage events, their keys and the rollups, generated in SQL (no row through Python)
        t0 = time.perf_counter()
        span = int((now - first).total_seconds()) - 900
        month_span = max(int((now - month_start).total_seconds()) - 900, 60)
        # Partitioned storage (migration 0013): each month's partition made before the load.
        ensure = conn.execute("SELECT to_regproc('public.usage_partition_ensure')").fetchone()[0]
        if ensure:
            month = first
            while month <= now:
                conn.execute("SELECT usage_partition_ensure(%s)", (month.date(),))
                month = (month + dt.timedelta(days=32)).replace(day=1)
        _combos(conn, sizes, orgs, big_id, slugs, subscribed, people, meters_of)
        conn.execute(
            "UPDATE bench_scale_combos SET start_at = %s, seconds = %s WHERE org = %s",
            (month_start, month_span, big_id),
        )
        conn.execute(
            "UPDATE bench_scale_combos SET start_at = %s, seconds = %s WHERE org <> %s",
            (first, span, big_id),
        )
        conn.commit()
        written = _generate_usage(dsn, orgs, big_id, workers=load_workers, log=log)
        log(f"  {written:,} usage events, their keys and rollups: {time.perf_counter() - t0:.0f} s")
        conn.execute("DROP TABLE bench_scale_combos")
        if conn.execute("SELECT to_regclass('public.usage_report_days')").fetchone()[0]:
            # The vendor's usage-reporting health: its batches of 100 events per day.
            conn.execute(
                "INSERT INTO usage_report_days (vendor_id, day, batches, accepted, duplicates, "
                "rejected_invalid, rejected_no_subscription, rejected_not_organisation_person, "
                "last_batch_at) "
                "SELECT p.vendor_id, d.day, (sum(d.events) + 99) / 100, sum(d.events), 0, 0, 0, "
                "0, least(d.day + interval '1 day' - interval '1 minute', now()) "
                "FROM usage_daily d JOIN products p ON p.id = d.product_id "
                "WHERE p.sku LIKE 'scale-%' GROUP BY p.vendor_id, d.day "
                "ON CONFLICT DO NOTHING"
            )
        conn.commit()
        for table in (
            "organisations",
            "users",
            "subscriptions",
            "seat_assignments",
            "invoices",
            "invoice_lines",
            "jobs",
            "audit_events",
        ):
            _set_sequence(conn, table)
        conn.execute("SET session_replication_role = DEFAULT")
        conn.commit()
    with psycopg.connect(dsn, autocommit=True) as conn:
        t0 = time.perf_counter()
        conn.execute("VACUUM ANALYZE")
        log(f"  vacuum analyze: {time.perf_counter() - t0:.0f} s")


def _combos(
    conn: Any,
    sizes: Sizes,
    orgs: list[int],
    big_id: int,
    slugs: dict[int, str],
    subscribed: dict[int, list[int]],
    people: dict[int, list[tuple[int, str]]],
    meters_of: dict[int, list[tuple[int, str]]],
) -> None:
    """``bench_scale_combos``: one row per organisation, product and meter with the number
    of events to generate for it (what ``_generate_usage`` expands in SQL)."""
    conn.execute("DROP TABLE IF EXISTS bench_scale_combos")
    conn.execute(
        "CREATE UNLOGGED TABLE bench_scale_combos (id bigint PRIMARY KEY, org bigint NOT NULL, "
        "product bigint NOT NULL, meter bigint NOT NULL, agg text NOT NULL, n bigint NOT NULL, "
        "n_active bigint NOT NULL, slug text NOT NULL, big boolean NOT NULL, "
        "start_at timestamptz, seconds bigint)"
    )
    bulk_events = sizes.events - sizes.big_events
    per_org = bulk_events // (len(orgs) - 1)
    extra = bulk_events - per_org * (len(orgs) - 1)
    lines: list[str] = []
    for n, o in enumerate(orgs):
        count = sizes.big_events if o == big_id else per_org + (1 if n - 1 < extra else 0)
        # In key order (organisation, product, meter): each insert lands at an index's end.
        combos = sorted((p, m, agg) for p in subscribed[o] for m, agg in meters_of.get(p, []))
        if not combos:
            continue
        active = sum(1 for k in range(len(people[o])) if k % IDLE_EVERY != IDLE_EVERY - 1)
        share = count // len(combos)
        for c, (p, m, agg) in enumerate(combos):
            k = share + (count - share * len(combos) if c == 0 else 0)
            lines.append(
                f"{len(lines) + 1}\t{o}\t{p}\t{m}\t{agg}\t{k}\t{active}\t{slugs[o]}\t"
                f"{'t' if o == big_id else 'f'}\t\\N\t\\N\n"
            )
    _copy(
        conn,
        "bench_scale_combos",
        "id, org, product, meter, agg, n, n_active, slug, big, start_at, seconds",
        lines,
    )


#: One chunk of organisations' events: generated from the row number (the quantities and
#: the second within its slice of the span from a hash of it; the person in turn among the
#: organisation's active people, every IDLE_EVERY-th person never), inserted into the
#: month partitions, their keys into usage_event_keys (counted once), and the chunk's
#: rollups from the rows inserted (a chunk holds whole organisations, so its groups are
#: complete).
_GENERATE = f"""
WITH ev AS (
    INSERT INTO usage_events (organisation_id, product_id, meter_id, idempotency_key,
        quantity_micros, occurred_at, received_at, user_email)
    SELECT c.org, c.product, c.meter,
        's' || lpad(c.org::text, 7, '0') || '-' || lpad(c.product::text, 4, '0') || '-'
            || lpad(c.meter::text, 4, '0') || '-' || lpad(g.i::text, 8, '0'),
        CASE c.agg WHEN 'sum' THEN 1 + g.h %% 400 WHEN 'max' THEN 10 + g.h %% 111 ELSE 1 END
            * 1000000,
        g.at, g.at + interval '30 seconds',
        CASE WHEN c.big AND g.k = 0 THEN '{BIG_ADMIN}'
            ELSE 'p' || lpad(g.k::text, 5, '0') || '@' || c.slug || '.example' END
    FROM (SELECT * FROM bench_scale_combos WHERE org BETWEEN %(lo)s AND %(hi)s ORDER BY id) c
    CROSS JOIN LATERAL (
        SELECT s.i, s.h,
            (s.i %% c.n_active) + (s.i %% c.n_active) / {IDLE_EVERY - 1} AS k,
            c.start_at + (s.i * c.seconds / c.n + s.h %% greatest(c.seconds / c.n, 1))
                * interval '1 second' AS at
        FROM (
            SELECT i, (hashint8(c.id * 100000000 + i) & 2147483647)::bigint AS h
            FROM generate_series(0::bigint, c.n - 1) AS i
        ) s
    ) g
    RETURNING organisation_id, product_id, meter_id, idempotency_key, quantity_micros,
        occurred_at, user_email
), keys AS (
    INSERT INTO usage_event_keys (organisation_id, idempotency_key)
    SELECT organisation_id, idempotency_key FROM ev
), daily AS (
    INSERT INTO usage_daily (organisation_id, product_id, meter_id, day, quantity_micros,
        max_micros, events)
    SELECT organisation_id, product_id, meter_id, (occurred_at AT TIME ZONE 'UTC')::date,
        sum(quantity_micros), max(quantity_micros), count(*)
    FROM ev GROUP BY 1, 2, 3, 4 ORDER BY 1, 2, 3, 4
)
INSERT INTO usage_daily_people (organisation_id, product_id, user_email, meter_id, day,
    last_occurred_at, events)
SELECT organisation_id, product_id, user_email, meter_id,
    (occurred_at AT TIME ZONE 'UTC')::date, max(occurred_at), count(*)
FROM ev WHERE user_email IS NOT NULL GROUP BY 1, 2, 3, 4, 5 ORDER BY 1, 2, 3, 4, 5
"""


def _generate_usage(
    dsn: str, orgs: list[int], big_id: int, *, workers: int, log: Any = print
) -> int:
    """Expand ``bench_scale_combos`` into the events, keys and rollups, by chunks of
    organisations on ``workers`` connections; the number of events."""
    import queue
    import threading

    import psycopg

    chunks: queue.Queue[tuple[int, int]] = queue.Queue()
    chunks.put((big_id, big_id))
    rest = [o for o in orgs if o != big_id]
    size = 200
    for k in range(0, len(rest), size):
        part = rest[k : k + size]
        chunks.put((part[0], part[-1]))
    total = chunks.qsize()
    done: list[int] = []
    errors: list[BaseException] = []
    t0 = time.perf_counter()
    lock = threading.Lock()

    def work() -> None:
        try:
            with psycopg.connect(dsn) as conn:
                conn.execute("SET session_replication_role = replica")
                conn.execute("SET TIME ZONE 'UTC'")
                conn.execute("SET work_mem = '256MB'")
                conn.execute("SET synchronous_commit = off")
                while not errors:
                    try:
                        lo, hi = chunks.get_nowait()
                    except queue.Empty:
                        return
                    conn.execute(_GENERATE, {"lo": lo, "hi": hi})
                    conn.commit()
                    with lock:
                        done.append(hi)
                        if len(done) % 10 == 0 or len(done) == total:
                            log(
                                f"    events: {len(done)} of {total} chunks, "
                                f"{time.perf_counter() - t0:.0f} s"
                            )
        except BaseException as error:  # noqa: BLE001 (reported by the caller)
            errors.append(error)

    threads = [threading.Thread(target=work) for _ in range(max(1, workers))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    if errors:
        raise errors[0]
    with psycopg.connect(dsn) as conn:
        return int(conn.execute("SELECT coalesce(sum(n), 0) FROM bench_scale_combos").fetchone()[0])


def _audit(
    conn: Any, orgs: list[int], people: dict[int, list[tuple[int, str]]], first: dt.datetime
) -> None:
    from portal.audit.chain import event_hash

    head = conn.execute("SELECT seq, hash FROM audit_chain_head WHERE id = 1").fetchone()
    seq, prev = (int(head[0]), head[1]) if head else (0, "0" * 64)
    at = first - dt.timedelta(days=20)
    lines = []
    for o in orgs:
        items = [("organisation.create", "organisation", str(o), f"scale-{o:06d}")]
        items += [("user.create", "user", str(u), email) for u, email in people[o][:5]]
        for action, target_type, target_id, label in items:
            seq += 1
            at += dt.timedelta(milliseconds=7)
            after = {"label": label}
            digest = event_hash(
                seq=seq,
                occurred_at=at,
                actor_user_id=None,
                actor_label="system:scale",
                organisation_id=o,
                action=action,
                target_type=target_type,
                target_id=target_id,
                target_label=label,
                before=None,
                after=after,
                ip=None,
                prev_hash=prev,
            )
            lines.append(
                f"{_ts(at)}\tsystem:scale\t{o}\t{action}\t{target_type}\t{target_id}\t{label}\t"
                f"{json.dumps(after)}\t{seq}\t{prev}\t{digest}\n"
            )
            prev = digest
    _copy(
        conn,
        "audit_events",
        "occurred_at, actor_label, organisation_id, action, target_type, target_id, "
        "target_label, after, seq, prev_hash, hash",
        lines,
    )
    conn.execute(
        "INSERT INTO audit_chain_head (id, seq, hash) VALUES (1, %s, %s) "
        "ON CONFLICT (id) DO UPDATE SET seq = excluded.seq, hash = excluded.hash",
        (seq, prev),
    )


def _loaded(dsn: str, sizes: Sizes) -> bool:
    import psycopg

    with psycopg.connect(dsn) as conn:
        conn.execute(
            "CREATE TABLE IF NOT EXISTS bench_scale_loaded (scale float8 PRIMARY KEY, "
            "summary text NOT NULL, finished_at timestamptz NOT NULL)"
        )
        conn.commit()
        row = conn.execute(
            "SELECT summary FROM bench_scale_loaded WHERE scale = %s", (sizes.scale,)
        ).fetchone()
        return bool(row)


def _mark_loaded(dsn: str, sizes: Sizes) -> None:
    import psycopg

    with psycopg.connect(dsn) as conn:
        conn.execute(
            "INSERT INTO bench_scale_loaded VALUES (%s, %s, now())", (sizes.scale, sizes.describe())
        )
        conn.commit()


def scale_database(args: argparse.Namespace) -> str:
    if args.database:
        return args.database
    return "portal_scale" if args.scale == 1 else f"portal_scale_{args.scale:g}".replace(".", "_")


def prepare(args: argparse.Namespace, instance: str) -> tuple[dict[str, str], dict[str, str]]:
    """Both databases migrated and loaded (the demo, then the bulk council on the scale
    database); their environments (demo, scale)."""
    sizes = Sizes(args.scale)
    name = scale_database(args)
    scale_env = _fixed_env(name, args.postgres_url, instance + "/scale")
    created = _ensure_database(args.postgres_url, name, fresh=args.fresh)
    dsn = _dsn(args.postgres_url, name)
    if not created and _loaded(dsn, sizes):
        print(f"{name}: already loaded ({sizes.describe()})", flush=True)
        _portal(scale_env, "db", "upgrade")
    else:
        if not created:
            print(f"{name}: not (fully) loaded; dropping it and starting over", flush=True)
            _ensure_database(args.postgres_url, name, fresh=True)
        _portal(scale_env, "db", "upgrade")
        _portal(scale_env, "demo")
        _loaded(dsn, sizes)
        print(f"{name}: loading {sizes.describe()}", flush=True)
        t0 = time.perf_counter()
        bulk_load(dsn, sizes, load_workers=args.load_workers, log=lambda s: print(s, flush=True))
        _mark_loaded(dsn, sizes)
        print(f"{name}: loaded in {time.perf_counter() - t0:.0f} s", flush=True)
    demo_env = _fixed_env(DEMO_DB, args.postgres_url, instance + "/demo")
    _ensure_database(args.postgres_url, DEMO_DB, fresh=args.fresh)
    for env in (demo_env, scale_env):
        _portal(env, "db", "upgrade")
        _portal(env, "demo")
    return demo_env, scale_env


# ------------------------------------------------------------------ timing

APP_ROLE_LOGIN = "portal_bench_app"
_CREATE_APP_ROLE = f"""
DO $$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = '{APP_ROLE_LOGIN}') THEN
        CREATE ROLE {APP_ROLE_LOGIN} LOGIN PASSWORD '{APP_ROLE_LOGIN}'
            NOSUPERUSER NOBYPASSRLS NOCREATEDB NOCREATEROLE;
    END IF;
    IF NOT pg_has_role('{APP_ROLE_LOGIN}', 'portal_app', 'MEMBER') THEN
        GRANT portal_app TO {APP_ROLE_LOGIN};
    END IF;
EXCEPTION WHEN duplicate_object OR unique_violation THEN
    NULL;
END
$$
"""


def as_application(env: dict[str, str], postgres_url: str) -> dict[str, str]:
    """``env`` with the portal connecting as a login role of ``portal_app`` (row-level
    security applies, as in production); migrations keep the owner's URL."""
    import psycopg

    with psycopg.connect(_server(postgres_url), autocommit=True) as admin:
        admin.execute(_CREATE_APP_ROLE)
    owner = env["PORTAL_DATABASE_URL"]
    scheme, rest = owner.split("://", 1)
    host_db = rest.split("@", 1)[1]
    return {
        **env,
        "PORTAL_DATABASE_URL": f"{scheme}://{APP_ROLE_LOGIN}:{APP_ROLE_LOGIN}@{host_db}",
        "PORTAL_MIGRATION_DATABASE_URL": owner,
    }


class Site:
    """One portal app (in this process) on one database, its signed-in clients and tokens."""

    def __init__(
        self,
        label: str,
        env: dict[str, str],
        org_slug: str,
        org_admin: str,
        member: str,
        password: str,
    ) -> None:
        import sqlalchemy as sa

        os.environ.update(env)
        from portal import create_app
        from portal.db import db

        self.label, self.org_slug = label, org_slug
        self.app = create_app()
        quiet(self.app)
        self.statements = 0
        self.tracing: list[tuple[float, str, Any]] | None = None
        with self.app.app_context():
            engine = db.engine

            @sa.event.listens_for(engine, "before_cursor_execute")
            def _count(conn: Any, cursor: Any, statement: str, *_: Any) -> None:
                self.statements += 1
                conn.info["bench_t0"] = time.perf_counter()

            @sa.event.listens_for(engine, "after_cursor_execute")
            def _trace(conn: Any, cursor: Any, statement: str, params: Any, *_: Any) -> None:
                if self.tracing is not None:
                    ms = (time.perf_counter() - conn.info.pop("bench_t0", 0.0)) * 1000
                    self.tracing.append((ms, statement, params))

        from portal.demo import COUNCIL_ADMIN, COUNCIL_FINANCE, DEMO_PASSWORD

        self.clients = {
            "council admin": self._sign_in(COUNCIL_ADMIN, DEMO_PASSWORD, totp=True),
            "finance": self._sign_in(COUNCIL_FINANCE, DEMO_PASSWORD, totp=True),
            "org admin": self._sign_in(org_admin, password),
            "member": self._sign_in(member, password),
        }
        self.tokens = self._tokens()

    def _sign_in(self, email: str, password: str, *, totp: bool = False) -> Any:
        import pyotp

        from portal.demo import DEMO_TOTP_SECRET

        client = self.app.test_client()
        base = "https://localhost"

        def csrf(path: str) -> str:
            page = client.get(path, base_url=base).get_data(as_text=True)
            found = re.search(r'name="csrf_token"[^>]*value="([^"]+)"', page)
            assert found, f"no CSRF token on {path}"
            return found.group(1)

        response = client.post(
            "/login",
            data={"email": email, "password": password, "csrf_token": csrf("/login")},
            base_url=base,
            headers={"Referer": f"{base}/login"},
        )
        assert response.status_code == 302, (email, response.status_code)
        if totp:
            response = client.post(
                "/login/second-factor",
                data={
                    "code": pyotp.TOTP(DEMO_TOTP_SECRET).now(),
                    "csrf_token": csrf("/login/second-factor"),
                },
                base_url=base,
                headers={"Referer": f"{base}/login/second-factor"},
            )
            assert response.status_code == 302, (email, "second factor", response.status_code)
        return client

    def _tokens(self) -> dict[str, str]:
        from portal.api.services import token_create
        from portal.db import council_wide, db
        from portal.kernel.actor import Actor
        from portal.tenancy.selectors import organisation_by_slug

        with self.app.app_context(), council_wide(db.session) as session:
            system = Actor.system("benchmark")
            _, council = token_create(session, actor=system, scope="council", name="scale bench")
            org = organisation_by_slug(session, self.org_slug)
            _, own = token_create(
                session, actor=system, scope="organisation", organisation=org, name="scale bench"
            )
            session.commit()
        return {"council": council, "organisation": own}

    def url(self, endpoint: str, **values: Any) -> str:
        from flask import url_for

        with self.app.test_request_context(base_url="https://localhost"):
            return url_for(endpoint, **values)

    def first_id(self, sql: str, **params: Any) -> Any:
        import sqlalchemy as sa

        from portal.db import council_wide, db

        with self.app.app_context(), council_wide(db.session) as session:
            return session.execute(sa.text(sql), params).scalar()

    def get(self, who: str, path: str) -> tuple[float, int, int]:
        """One read: milliseconds, status, SQL statements."""
        before = self.statements
        if who.startswith("api "):
            client = self.clients["member"]
            headers = {"Authorization": f"Bearer {self.tokens[who[4:]]}"}
            t0 = time.perf_counter()
            response = client.get(path, base_url="https://localhost", headers=headers)
        else:
            client = self.clients[who]
            t0 = time.perf_counter()
            response = client.get(path, base_url="https://localhost")
        ms = (time.perf_counter() - t0) * 1000
        response.close()
        return ms, response.status_code, self.statements - before

    def slowest(self, who: str, path: str, n: int = 3) -> list[tuple[float, str, Any]]:
        """The ``n`` slowest statements of one read of ``path``."""
        self.tracing = []
        try:
            self.get(who, path)
            return sorted(self.tracing, key=lambda t: -t[0])[:n]
        finally:
            self.tracing = None


def quiet(app: Any) -> None:
    """No log line per request (the JSON request log) in the benchmark's own output."""
    import logging

    for name in ("portal.request", "portal.jobs", "werkzeug"):
        logging.getLogger(name).setLevel(logging.WARNING)


def pages(site: Site) -> list[tuple[str, str, str]]:
    """(role, name, path) of every page and API list read, on ``site``'s data."""
    from portal.kernel.actor import Role
    from portal.web import NAV

    out: list[tuple[str, str, str]] = []
    roles = {
        "council admin": Role.COUNCIL_ADMIN,
        "finance": Role.FINANCE,
        "org admin": Role.ORG_ADMIN,
        "member": Role.MEMBER,
    }
    for who, role in roles.items():
        for first, second in NAV[role]:
            entries = second if isinstance(second, list) else [(first, second)]
            for endpoint, _label in entries:
                out.append((who, endpoint, site.url(endpoint)))
    slug = site.org_slug
    invoice = site.first_id(
        "SELECT i.id FROM invoices i JOIN organisations o ON o.id = i.organisation_id "
        "WHERE o.slug = :slug ORDER BY i.id DESC LIMIT 1",
        slug=slug,
    )
    subscription = site.first_id(
        "SELECT s.id FROM subscriptions s JOIN organisations o ON o.id = s.organisation_id "
        "WHERE o.slug = :slug AND s.status = 'active' ORDER BY s.id LIMIT 1",
        slug=slug,
    )
    extra = [
        ("council admin", "tenancy.organisation_detail", "/council/organisations/" + slug),
        ("council admin", "people.org_users (council)", f"/council/organisations/{slug}/users"),
        ("finance", "billing.overdue", "/finance/overdue"),
        ("finance", "billing.invoice (detail)", f"/finance/invoices/{invoice}"),
        ("org admin", "seats.subscription (detail)", f"/org/subscriptions/{subscription}"),
        ("org admin", "billing.org_invoice (detail)", f"/org/invoices/{invoice}"),
        ("api council", "GET /api/v1/organisations", "/api/v1/organisations"),
        ("api council", "GET /api/v1/organisations/<slug>", f"/api/v1/organisations/{slug}"),
        ("api council", "GET /api/v1/subscriptions", "/api/v1/subscriptions"),
        ("api council", "GET /api/v1/invoices", "/api/v1/invoices"),
        ("api council", "GET /api/v1/catalogue", "/api/v1/catalogue"),
        ("api organisation", "GET /api/v1/subscriptions", "/api/v1/subscriptions"),
        ("api organisation", "GET /api/v1/invoices", "/api/v1/invoices"),
    ]
    return out + extra


def time_pages(
    demo: Site,
    scale: Site,
    runs: int,
    *,
    trace: bool = False,
    minutes: float = 0.0,
    only: str = "",
) -> list[tuple]:
    """Every page read ``runs`` times on each site, in rounds: a round reads each page
    once on each site, the two in turn (which goes first alternates from round to round),
    so every page has as many reads as the others whenever the run stops (``minutes``,
    when given, ends it after the round that passes it). A row per page."""
    import statistics

    pairs = [
        (who, name, demo_path, scale_path)
        for (who, name, demo_path), (_, _, scale_path) in zip(
            pages(demo), pages(scale), strict=True
        )
        if not only or re.search(only, f"{who} {name}")
    ]
    times: list[dict[str, list[float]]] = [{"demo": [], "scale": []} for _ in pairs]
    statuses: list[set[int]] = [set() for _ in pairs]
    counts: list[dict[str, int]] = [{"demo": 0, "scale": 0} for _ in pairs]
    t0 = time.perf_counter()
    for k, (who, _name, demo_path, scale_path) in enumerate(pairs):  # warm, and the SQL
        for site, path in ((demo, demo_path), (scale, scale_path)):
            _, status, counts[k][site.label] = site.get(who, path)
            statuses[k].add(status)
    print(f"  {len(pairs)} pages warmed: {time.perf_counter() - t0:.0f} s", flush=True)
    done = 0
    try:
        for r in range(runs):
            order = ((demo, 2), (scale, 3)) if r % 2 == 0 else ((scale, 3), (demo, 2))
            for k, pair in enumerate(pairs):
                who = pair[0]
                for site, column in order:
                    ms, status, _ = site.get(who, pair[column])
                    times[k][site.label].append(ms)
                    statuses[k].add(status)
            done = r + 1
            load = ", ".join(f"{x:.1f}" for x in os.getloadavg())
            print(
                f"  round {done} of {runs}: {time.perf_counter() - t0:.0f} s, load {load}",
                flush=True,
            )
            if minutes and time.perf_counter() - t0 > minutes * 60:
                print(f"  stopped after {done} rounds ({minutes:g} minutes)", flush=True)
                break
    except KeyboardInterrupt:
        print(f"  interrupted after {done} complete rounds", flush=True)
    rows = []
    for k, (who, name, _, scale_path) in enumerate(pairs):
        demo_ms, scale_ms = times[k]["demo"][: max(done, 1)], times[k]["scale"][: max(done, 1)]
        if not demo_ms or not scale_ms:
            continue
        d95 = common.percentile(demo_ms, 0.95)
        s95 = common.percentile(scale_ms, 0.95)
        rows.append(
            (
                who,
                name,
                ",".join(str(s) for s in sorted(statuses[k])),
                statistics.median(demo_ms),
                d95,
                counts[k]["demo"],
                statistics.median(scale_ms),
                s95,
                counts[k]["scale"],
                s95 / d95,
            )
        )
        if trace and s95 > 2 * d95:
            print(f"  {who} {name}: demo p95 {d95:.1f} ms, scale p95 {s95:.1f} ms")
            for ms, statement, params in scale.slowest(who, scale_path):
                print(f"      {ms:8.1f} ms  {' '.join(statement.split())[:400]}  {params}")
    print(f"  {done} reads per page and database", flush=True)
    return rows


def run(demo_env: dict[str, str], scale_env: dict[str, str], args: argparse.Namespace) -> int:
    import psycopg

    from portal.identity.security import hash_password

    # The scale database's member signs in with the benchmark's password too.
    with psycopg.connect(_dsn(args.postgres_url, scale_database(args))) as conn:
        conn.execute(
            "UPDATE users SET password_hash = %s WHERE email = %s",
            (hash_password(PASSWORD), f"p00001@{BIG_SLUG}.example"),
        )
        conn.commit()
    from portal.demo import DEMO_PASSWORD

    demo = Site(
        "demo",
        as_application(demo_env, args.postgres_url),
        "acme-gmbh",
        "admin@acme-gmbh.example",
        "jonas@acme-gmbh.example",
        DEMO_PASSWORD,
    )
    scale = Site(
        "scale",
        as_application(scale_env, args.postgres_url),
        BIG_SLUG,
        BIG_ADMIN,
        f"p00001@{BIG_SLUG}.example",
        PASSWORD,
    )
    print(
        f"{args.runs} reads per page and database, the two in turn (in-process test client)",
        flush=True,
    )
    rows = time_pages(
        demo, scale, args.runs, trace=args.trace, minutes=args.minutes, only=args.only
    )
    print(
        common.table(
            [
                "who",
                "page",
                "status",
                "demo p50 ms",
                "demo p95 ms",
                "demo SQL",
                "scale p50 ms",
                "scale p95 ms",
                "scale SQL",
                "p95 ratio",
            ],
            rows,
        )
    )
    missed = [row for row in rows if row[-1] > 2.0]
    print(f"{len(rows) - len(missed)} of {len(rows)} pages within 2x p95 of the demo's")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--scale", type=float, default=1.0, help="1 = 10,000 organisations")
    parser.add_argument("--runs", type=int, default=30, help="reads per page and database")
    parser.add_argument("--database", default="", help="the scale database's name")
    parser.add_argument("--postgres-url", default=common.DEFAULT_POSTGRES)
    parser.add_argument("--fresh", action="store_true", help="drop the scale database first")
    parser.add_argument("--load-only", action="store_true", help="load, do not time")
    parser.add_argument(
        "--load-workers", type=int, default=2, help="connections generating the usage events"
    )
    parser.add_argument(
        "--trace", action="store_true", help="print the slowest SQL of pages past 2x"
    )
    parser.add_argument(
        "--minutes", type=float, default=0.0, help="stop after the round that passes this"
    )
    parser.add_argument("--only", default="", help="only pages whose 'who name' matches")
    args = parser.parse_args(argv)
    print(f"Machine: {common.machine()}", flush=True)
    print(f"PostgreSQL {common.postgres_version(args.postgres_url)}", flush=True)
    instance = tempfile.mkdtemp(prefix="portal-bench-scale-")
    demo_env, scale_env = prepare(args, instance)
    if args.load_only:
        return 0
    return run(demo_env, scale_env, args)


if __name__ == "__main__":
    sys.exit(main())
