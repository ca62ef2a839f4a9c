"""The month's invoice run and the finance CSV export, beside bare baselines (issue 6).

On a fresh, migrated PostgreSQL database it sets up ``--orgs`` organisations
(four in five in EUR, the rest in GBP; the council's default tax, their own
rate, or reverse charge), eight products with a seat price and two metered
prices each in both currencies (flat, graduated and volume tiers), five
subscriptions per organisation (with quantity changes during the month, and
one subscription starting mid-month) and ``--events`` usage events in the
previous month, inserted by one ``INSERT … SELECT`` (setup, not measured).
Then, in the same run:

a. the run of the previous month started the way users start it (issue 13): a
   council token's ``POST /api/v1/invoice-runs`` to the portal served by gunicorn,
   which records the run and queues its job; a ``portal worker`` (Celery on Redis,
   its own queue, started before the clock) drafts every organisation's invoice;
   the benchmark polls ``GET /api/v1/invoice-runs/{id}`` (every 20 ms at first,
   backing off to every 200 ms; the worker has run the month before first, not
   measured, as a long-running one has). Measured: from the POST to the answer
   that says ``done`` (submit to done). Beside it, the
   bare SQL doing the same work: one ``GROUP BY`` aggregating the month's usage
   per organisation × product × meter, and an ``executemany`` inserting as many
   invoice lines as the portal wrote into ``bare_invoice_lines`` (``LIKE
   invoice_lines INCLUDING ALL``), in one transaction (after a warm-up, the median
   of three runs around the portal's);
a2. the same run again through the queue (every draft refreshed), beside the same
   baseline;
a3. the run's own code called in this process (``invoice_run``, every draft
   refreshed), no HTTP, no queue: what the queue adds is a2 minus a3;
c. the month finalised (numbers given by one UPDATE: ``invoice_finalize``
   renders each PDF with WeasyPrint, which is not what is measured here), then
   the finance CSV export (``export_rows`` + ``write_csv`` into an
   ``io.StringIO``) beside a plain ``csv.writer`` writing the rows of one plain
   SELECT of the same columns (median of several alternating runs).

    .venv/bin/python -m benchmarks.billing              # or: make bench-billing
    .venv/bin/python -m benchmarks.billing --quick      # a smoke run
    .venv/bin/python -m benchmarks.billing --orgs 200 --events 200000
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import dataclasses
import datetime as dt
import http.client
import io
import json
import logging
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from benchmarks import common
from portal.billing.drafting import LINE_COLUMNS  # the invoice lines' columns
from portal.kernel.clock import now_utc

CURRENCIES = ("EUR", "GBP")
SUBSCRIPTIONS = 5  # per organisation
# sku -> (seat price per month, ((meter key, aggregation, pricing), ...)); pricing is
# ("flat", unit amount) or ("graduated" | "volume", ((up_to, unit, flat), ...)).
GRADUATED = ("graduated", ((10_000, 3, 0), (20_000, 2, 500), (None, 1, 0)))
VOLUME = ("volume", ((5_000, 4, 0), (15_000, 3, 1_000), (None, 2, 2_000)))
PRODUCTS: dict[str, tuple[int, tuple[tuple[str, str, tuple], ...]]] = {
    "bench-cad": (3000, (("api_calls", "sum", ("flat", 2)), ("storage_gb", "max", ("flat", 50)))),
    "bench-docs": (1200, (("pages", "sum", GRADUATED), ("sessions", "count", ("flat", 1)))),
    "bench-chat": (800, (("messages", "count", VOLUME), ("storage_gb", "max", ("flat", 40)))),
    "bench-gis": (4500, (("tiles", "sum", GRADUATED), ("api_calls", "sum", ("flat", 1)))),
    "bench-crm": (2500, (("contacts", "max", ("flat", 3)), ("emails", "sum", VOLUME))),
    "bench-erp": (6000, (("postings", "sum", ("flat", 1)), ("reports", "count", GRADUATED))),
    "bench-hr": (900, (("payslips", "count", ("flat", 25)), ("storage_gb", "max", VOLUME))),
    "bench-lms": (400, (("learners", "max", ("flat", 5)), ("minutes", "sum", GRADUATED))),
}


# ------------------------------------------------------------------ setup


@dataclass
class World:
    period: str
    start: dt.datetime
    end: dt.datetime
    orgs: int
    subscriptions: int
    events: int


def _price_data(sku: str, currency: str, meter: str | None, pricing: tuple | int) -> dict:
    if meter is None:
        return {"product": sku, "currency": currency, "model": "seat", "unit_amount": pricing}
    data: dict[str, Any] = {"product": sku, "currency": currency, "model": "metered"}
    data["meter"] = meter
    kind, detail = pricing  # type: ignore[misc]
    if kind == "flat":
        data["unit_amount"] = detail
    else:
        data["tier_mode"] = kind
        data["tiers"] = [{"up_to": u, "unit_amount": a, "flat_amount": f} for u, a, f in detail]
    return data


def setup(db: common.Database, env: dict[str, str], orgs: int, events: int) -> World:
    """Catalogue and organisations through the portal's services; subscriptions, their
    quantity history and the events as rows (they have no rules to go through here)."""
    import sqlalchemy as sa

    from portal.catalogue.services import pool_create, price_create, product_create, vendor_create
    from portal.db import db as portal_db
    from portal.kernel.actor import Actor
    from portal.kernel.periods import period_bounds, period_of
    from portal.seats.models import Subscription, SubscriptionChange
    from portal.tenancy.services import organisation_create

    app = common.migrated_app(env)
    system = Actor.system("benchmark")
    first_this = now_utc().replace(day=1, hour=0, minute=0, second=0, microsecond=0)
    period = period_of(first_this - dt.timedelta(days=1))
    start, end = period_bounds(period)
    with app.app_context():
        session = portal_db.session
        vendor_create(session, actor=system, data={"slug": "benchsoft", "name": "Bench"})
        product_ids: list[int] = []
        meter_ids: dict[int, list[int]] = {}
        for sku, (seat_amount, meters) in PRODUCTS.items():
            product = product_create(
                session,
                actor=system,
                data={
                    "sku": sku,
                    "vendor": "benchsoft",
                    "name": sku.replace("-", " ").title(),
                    "meters": [
                        {
                            "key": key,
                            "name": key.replace("_", " "),
                            "unit": "unit",
                            "aggregation": aggregation,
                        }
                        for key, aggregation, _ in meters
                    ],
                },
            )
            pool_create(
                session,
                actor=system,
                data={
                    "product": sku,
                    "capacity": 1_000_000,
                    "starts_on": (start - dt.timedelta(days=90)).date().isoformat(),
                    "ends_on": (end + dt.timedelta(days=365)).date().isoformat(),
                    "unit_cost": {"amount": seat_amount // 2, "currency": "EUR"},
                },
            )
            for currency in CURRENCIES:
                price_create(
                    session, actor=system, data=_price_data(sku, currency, None, seat_amount)
                )
                for key, _, pricing in meters:
                    price_create(
                        session, actor=system, data=_price_data(sku, currency, key, pricing)
                    )
            by_key = {m.key: m.id for m in product.meters}
            product_ids.append(product.id)
            meter_ids[product.id] = [by_key[key] for key, _, _ in meters]
        org_ids = []
        for n in range(orgs):
            slug = f"bench-org-{n:04d}"
            data: dict[str, Any] = {
                "slug": slug,
                "name": f"Bench Org {n}" if n % 50 else f"=Bench Org {n}",  # a formula-like name
                "country": "DE",
                "currency": CURRENCIES[1] if n % 5 == 4 else CURRENCIES[0],
                "billing_email": f"billing@{slug}.example",
            }
            if n % 3 == 1:
                data["tax_rate_bp"] = 1900
            elif n % 3 == 2 and n % 2:
                data["reverse_charge"] = True
            org_ids.append(organisation_create(session, actor=system, data=data).id)
        session.commit()
        # Five subscriptions each: four since before the month, one from the 15th;
        # the second grows on the 10th, the third shrinks on the 20th (mid-day).
        subscriptions, targets = [], []
        for n, org_id in enumerate(org_ids):
            for k in range(SUBSCRIPTIONS):
                product_id = product_ids[(n + k) % len(product_ids)]
                quantity = 5 + (n * 7 + k) % 20
                starts = start - dt.timedelta(days=40) if k < 4 else start + dt.timedelta(days=14)
                subscriptions.append(
                    {
                        "organisation_id": org_id,
                        "product_id": product_id,
                        "quantity": quantity + (3 if k == 1 else -2 if k == 2 else 0),
                        "requested_quantity": quantity + (3 if k == 1 else -2 if k == 2 else 0),
                        "status": "active",
                        "starts_on": starts.date(),
                    }
                )
                targets.extend((org_id, product_id, m) for m in meter_ids[product_id])
        session.execute(sa.insert(Subscription), subscriptions)
        rows = session.execute(
            sa.select(
                Subscription.id,
                Subscription.organisation_id,
                Subscription.starts_on,
                Subscription.quantity,
            ).order_by(Subscription.id)
        ).all()
        changes = []
        for i, (sub_id, org_id, starts_on, granted) in enumerate(rows):
            k = i % SUBSCRIPTIONS
            quantity = granted - (3 if k == 1 else -2 if k == 2 else 0)
            at = dt.datetime.combine(starts_on, dt.time(), tzinfo=dt.UTC)
            changes.append((org_id, sub_id, quantity, at, "create"))
            if k == 1:
                changes.append(
                    (org_id, sub_id, quantity + 3, start + dt.timedelta(days=9, hours=15), "resize")
                )
            if k == 2:
                changes.append(
                    (
                        org_id,
                        sub_id,
                        quantity - 2,
                        start + dt.timedelta(days=19, hours=12),
                        "resize",
                    )
                )
        session.execute(
            sa.insert(SubscriptionChange),
            [
                {
                    "organisation_id": o,
                    "subscription_id": s,
                    "quantity": q,
                    "effective_at": a,
                    "reason": r,
                }
                for o, s, q, a, r in changes
            ],
        )
        session.commit()
        portal_db.session.remove()
        portal_db.engine.dispose()
    with db.connect() as conn:
        conn.execute(
            "CREATE TEMP TABLE bench_targets "
            "(idx int PRIMARY KEY, organisation_id bigint, product_id bigint, meter_id bigint)"
        )
        with conn.cursor() as cursor, cursor.copy("COPY bench_targets FROM STDIN") as copy:
            for idx, target in enumerate(targets):
                copy.write_row((idx, *target))
        conn.execute("SELECT setseed(0.6)")
        conn.execute(
            "INSERT INTO usage_events (organisation_id, product_id, meter_id, idempotency_key, "
            "quantity_micros, occurred_at, received_at) "
            "SELECT t.organisation_id, t.product_id, t.meter_id, 'bench-' || s.g, s.q, s.at, "
            "s.at + interval '5 minutes' FROM ("
            "  SELECT g, floor(random() * %(targets)s)::int AS idx,"
            "  (floor(random() * 500) * 1000000 + floor(random() * 4) * 250000)::bigint AS q,"
            "  %(start)s::timestamptz + random() * (%(end)s::timestamptz - %(start)s::timestamptz)"
            "  - interval '6 minutes' AS at"  # within the month, received before its end
            "  FROM generate_series(1, %(events)s) g"
            ") s JOIN bench_targets t ON t.idx = s.idx",
            {"targets": len(targets), "start": start, "end": end, "events": events},
        )
        conn.execute(
            "UPDATE usage_events SET occurred_at = %(start)s WHERE occurred_at < %(start)s",
            {"start": start},
        )
        conn.execute("CREATE TABLE bare_invoice_lines (LIKE invoice_lines INCLUDING ALL)")
        conn.commit()
        conn.autocommit = True
        conn.execute("VACUUM ANALYZE")
    return World(period, start, end, len(org_ids), len(subscriptions), events)


# ------------------------------------------------------------------ a.: the invoice run


def portal_run(env: dict[str, str], world: World) -> dict[str, Any]:
    """``invoice_run`` of the month through the portal's code, in this process."""
    from portal import create_app
    from portal.billing.jobs import invoice_run
    from portal.db import db as portal_db
    from portal.kernel.actor import Actor

    app = create_app()
    with app.app_context():
        session = portal_db.session
        t0 = time.perf_counter()
        run = invoice_run(session, actor=Actor.system("benchmark"), period=world.period)
        seconds = time.perf_counter() - t0
        out = {
            "seconds": seconds,
            "status": run.status,
            "error": run.error,
            "created": run.invoices_created,
            "refreshed": run.invoices_refreshed,
            "done": run.organisations_done,
        }
        portal_db.session.remove()
        portal_db.engine.dispose()
    return out


def council_token(env: dict[str, str]) -> str:
    """A council API token (setup, not measured): what a council's own script would use."""
    from portal import create_app
    from portal.api.services import token_create
    from portal.db import db as portal_db
    from portal.kernel.actor import Actor

    app = create_app()
    with app.app_context():
        _, token = token_create(
            portal_db.session, actor=Actor.system("benchmark"), scope="council", name="bench"
        )
        portal_db.session.commit()
        portal_db.session.remove()
        portal_db.engine.dispose()
    return token


@contextlib.contextmanager
def worker(env: dict[str, str], log: Path) -> Iterator[subprocess.Popen]:
    """``portal worker`` (one job at a time, no schedule) on the run's own queue, ready."""
    command = [
        str(Path(sys.executable).parent / "portal"),
        "worker",
        "--concurrency=1",
        "--no-schedule",
    ]
    full_env = {**os.environ, **env, "PYTHONUNBUFFERED": "1"}
    with log.open("ab") as out:
        process = subprocess.Popen(
            command, cwd=common.ROOT, env=full_env, stdout=out, stderr=subprocess.STDOUT
        )
    try:
        deadline = time.monotonic() + 120
        while b"[tasks]" not in log.read_bytes():  # Celery's banner, printed as it starts
            if process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"portal worker did not start; see {log}")
            time.sleep(0.2)
        time.sleep(3)  # the banner comes just before the worker connects and consumes
        yield process
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=60)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def queued_run(port: int, token: str, world: World, *, poll: float = 0.02) -> dict[str, Any]:
    """Start the month's run through the API and poll it until it ends: submit to done.

    The polls start ``poll`` apart and back off to 0.2 s: each is an API request the
    server answers on the same two cores as the worker, so polling every 20 ms through a
    run of several seconds would take a share of the CPU the run is measured on.
    """
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    headers = common.json_headers(token)
    t0 = time.perf_counter()
    status, answer = common.request(
        conn, "POST", "/api/v1/invoice-runs", common.body({"period": world.period}), headers
    )
    assert status == 201, (status, answer)
    accepted = time.perf_counter() - t0
    run = json.loads(answer)
    while run["status"] not in ("done", "failed"):
        time.sleep(poll)
        poll = min(0.2, poll * 1.5)
        status, answer = common.request(
            conn, "GET", f"/api/v1/invoice-runs/{run['id']}", None, headers
        )
        assert status == 200, (status, answer)
        run = json.loads(answer)
    seconds = time.perf_counter() - t0
    conn.close()
    return {
        "seconds": seconds,
        "accepted": accepted,
        "status": run["status"],
        "error": run["error"],
        "created": run["invoices_created"],
        "refreshed": run["invoices_refreshed"],
        "done": run["organisations_done"],
    }


def invoice_counts(db: common.Database, period: str) -> tuple[int, int]:
    """Invoices of the period and their lines."""
    with db.connect() as conn:
        row = conn.execute(
            "SELECT count(DISTINCT i.id), count(l.id) FROM invoices i "
            "JOIN invoice_lines l ON l.invoice_id = i.id WHERE i.period = %s",
            (period,),
        ).fetchone()
    return int(row[0]), int(row[1])


def bare_run(db: common.Database, world: World, lines: int) -> float:
    """One GROUP BY of the month's usage and ``lines`` invoice lines inserted, one commit."""
    import json

    with db.connect() as conn:
        conn.execute("TRUNCATE bare_invoice_lines")
        conn.commit()
        t0 = time.perf_counter()
        aggregates = conn.execute(
            "SELECT organisation_id, product_id, meter_id, sum(quantity_micros), "
            "max(quantity_micros), count(*) FROM usage_events "
            "WHERE occurred_at >= %s AND occurred_at < %s AND received_at <= %s "
            "GROUP BY organisation_id, product_id, meter_id",
            (world.start, world.end, now_utc()),
        ).fetchall()
        positions: dict[int, int] = {}
        rows = []
        for i in range(lines):
            org_id, product_id, meter_id, total, _, count = aggregates[i % len(aggregates)]
            position = positions[org_id] = positions.get(org_id, -1) + 1
            line = {
                "organisation_id": org_id,
                "invoice_id": org_id,  # the scratch table has no invoices: one per organisation
                "position": position,
                "kind": "metered" if i < len(aggregates) else "seat",
                "product_id": product_id,
                "product_sku": "bench-sku",
                "description": f"Product {product_id}: meter {meter_id} ({count} events)",
                "quantity": str(total / 1_000_000),
                "unit_amount": 2,
                "amount": int(total) // 500_000,
                "source": json.dumps({"meter": meter_id, "events": count}),
            }
            # A column the portal's lines gained since (council pricing's) is NULL here.
            rows.append(tuple(line.get(column) for column in LINE_COLUMNS))
        sql = (
            f"INSERT INTO bare_invoice_lines ({', '.join(LINE_COLUMNS)}) "
            f"VALUES ({', '.join('%s' for _ in LINE_COLUMNS)})"
        )
        with conn.cursor() as cursor:
            cursor.executemany(sql, rows)
        conn.commit()
        seconds = time.perf_counter() - t0
        count = conn.execute("SELECT count(*) FROM bare_invoice_lines").fetchone()[0]
    assert count == lines, (count, lines)
    return seconds


# ------------------------------------------------------------------ c.: the export


def finalise(db: common.Database, period: str) -> int:
    """Give every draft of the month a number and make it open (one UPDATE: setup)."""
    with db.connect() as conn:
        cursor = conn.execute(
            "UPDATE invoices SET status = 'open', number = n.number, payment_reference = n.number, "
            "finalised_at = now(), due_on = current_date + 30 FROM ("
            "  SELECT id, 'INV-BENCH-' || lpad(row_number() OVER (ORDER BY id)::text, 6, '0') "
            "  AS number FROM invoices WHERE period = %s AND status = 'draft'"
            ") n WHERE invoices.id = n.id",
            (period,),
        )
        finalised = cursor.rowcount
        # The month's billed totals per product, as finalising keeps them (migration 0034).
        conn.execute(
            "INSERT INTO invoice_product_totals AS t (period, product_id, currency, amount, "
            "lines) SELECT i.period, l.product_id, i.currency, sum(l.amount), count(*) "
            "FROM invoice_lines l JOIN invoices i ON i.id = l.invoice_id "
            "WHERE i.period = %s AND i.status = 'open' AND l.product_id IS NOT NULL "
            "GROUP BY 1, 2, 3 ON CONFLICT (period, product_id, currency) DO UPDATE SET "
            "amount = t.amount + excluded.amount, lines = t.lines + excluded.lines",
            (period,),
        )
        conn.commit()
        return finalised


BARE_EXPORT = (
    "SELECT o.slug, o.name, i.number, i.status, i.period, i.currency, l.position, l.kind, "
    "l.product_sku, l.description, l.quantity, l.unit_amount, l.amount, i.tax, i.total "
    "FROM invoice_lines l JOIN invoices i ON i.id = l.invoice_id "
    "JOIN organisations o ON o.id = i.organisation_id "
    "WHERE i.period = %s AND i.status <> 'draft' ORDER BY i.number, l.position"
)


def exports(db: common.Database, env: dict[str, str], period: str, runs: int) -> dict[str, Any]:
    """The portal's CSV export and a plain csv.writer over one SELECT, alternating."""
    from portal import create_app
    from portal.billing.exports import COLUMNS, export_rows, write_csv
    from portal.db import db as portal_db
    from portal.kernel.scope import Scope

    app = create_app()
    portal_times, bare_times = [], []
    portal_rows = bare_rows = 0
    with app.app_context():
        conn = db.connect()
        for i in range(runs + 1):  # the first round warms both up and is not counted
            t0 = time.perf_counter()
            out = io.StringIO()
            rows = export_rows(portal_db.session, scope=Scope.council(), period=period)
            portal_rows = write_csv(rows, out)
            portal_db.session.rollback()
            t1 = time.perf_counter()
            bare_out = io.StringIO()
            rows = conn.execute(BARE_EXPORT, (period,)).fetchall()
            conn.rollback()
            writer = csv.writer(bare_out)
            writer.writerow(COLUMNS)
            writer.writerows(rows)
            bare_rows = len(rows)
            t2 = time.perf_counter()
            if i:
                portal_times.append(t1 - t0)
                bare_times.append(t2 - t1)
        conn.close()
        portal_db.session.remove()
        portal_db.engine.dispose()
    return {
        "portal": statistics.median(portal_times),
        "bare": statistics.median(bare_times),
        "rows": (portal_rows, bare_rows),
        "bytes": (len(out.getvalue()), len(bare_out.getvalue())),
    }


# ------------------------------------------------------------------ run


def measure(args: argparse.Namespace, tmp: Path) -> tuple[str, bool]:
    with common.fresh_database("postgresql", args.postgres_url) as db:
        env = common.portal_env(db, str(tmp / "instance"))
        # The jobs go through Redis (as in production) on a queue of this run's own.
        env["PORTAL_JOBS_BROKER_URL"] = env["PORTAL_REDIS_URL"]
        env["PORTAL_JOBS_QUEUE"] = f"bench-billing-{os.getpid()}"
        t0 = time.perf_counter()
        world = setup(db, env, args.orgs, args.events)
        token = council_token(env)
        print(
            f"  set up {world.orgs:,} organisations, {world.subscriptions:,} subscriptions, "
            f"{world.events:,} events in {world.period} in {time.perf_counter() - t0:.0f} s",
            flush=True,
        )
        # The bare run once to warm the cache (not counted), then around the portal's.
        with db.connect() as conn:
            groups = conn.execute(
                "SELECT count(*) FROM (SELECT DISTINCT organisation_id, product_id, meter_id "
                "FROM usage_events) g"
            ).fetchone()[0]
        bare_run(db, world, groups)
        with (
            common.gunicorn("wsgi:app", env, log=tmp / "gunicorn.log") as server,
            worker(env, tmp / "worker.log"),
        ):
            # A long-running worker has run jobs before: warm this one (imports, statement
            # caches) with a run of the month before, which has no usage (not measured).
            year, month = map(int, world.period.split("-"))
            earlier = f"{year - (month == 1)}-{(month - 2) % 12 + 1:02d}"
            warm = queued_run(server.port, token, dataclasses.replace(world, period=earlier))
            print(f"  warm-up run of {earlier}: {warm['seconds']:.2f} s, {warm['status']}")
            first = queued_run(server.port, token, world)
            invoices, lines = invoice_counts(db, world.period)
            print(
                f"  portal invoice run through the queue: {first['seconds']:.2f} s submit to "
                f"done (accepted in {first['accepted'] * 1000:.0f} ms), {first['created']:,} "
                f"created, status {first['status']}, {invoices:,} invoices with {lines:,} lines",
                flush=True,
            )
            bare = [bare_run(db, world, lines) for _ in range(2)]
            second = queued_run(server.port, token, world)
            print(
                f"  portal invoice run again through the queue: {second['seconds']:.2f} s, "
                f"{second['refreshed']:,} refreshed, status {second['status']}",
                flush=True,
            )
        bare.append(bare_run(db, world, lines))
        inline = portal_run(env, world)
        print(
            f"  portal invoice run again in this process (no HTTP, no queue): "
            f"{inline['seconds']:.2f} s, {inline['refreshed']:,} refreshed, "
            f"status {inline['status']}",
            flush=True,
        )
        bare_seconds = statistics.median(bare)
        print(
            f"  bare GROUP BY + {lines:,} lines: " + ", ".join(f"{s:.2f}" for s in bare) + " s",
            flush=True,
        )
        finalised = finalise(db, world.period)
        export = exports(db, env, world.period, args.export_runs)
        print(
            f"  finalised {finalised:,}; export {export['rows'][0]:,} rows in "
            f"{export['portal'] * 1000:.0f} ms (bare {export['bare'] * 1000:.0f} ms)",
            flush=True,
        )
    rows = []
    ok = True
    complete = (
        first["status"] == "done"
        and first["created"] == invoices == world.orgs
        and second["status"] == "done"
        and second["refreshed"] == world.orgs
        and inline["status"] == "done"
    )
    ratio = first["seconds"] / bare_seconds
    met = complete and ratio <= 3
    ok = ok and met
    rows.append(
        (
            f"a. invoice run through the queue (API → worker → done), {world.orgs:,} orgs × "
            f"{SUBSCRIPTIONS} subscriptions × {world.events:,} events ({lines:,} lines): s",
            first["seconds"],
            bare_seconds,
            f"{ratio:.2f}",
            "≤ 3",
            "yes" if met else "NO",
        )
    )
    rows.append(
        (
            "a. invoices per second",
            invoices / first["seconds"],
            invoices / bare_seconds,
            f"{bare_seconds / first['seconds']:.2f}",
            "",
            "",
        )
    )
    rows.append(
        (
            "a2. the same run again through the queue (every draft refreshed): s",
            second["seconds"],
            bare_seconds,
            f"{second['seconds'] / bare_seconds:.2f}",
            "",
            "",
        )
    )
    rows.append(
        (
            "a3. the run again called in-process (no HTTP, no queue): s",
            inline["seconds"],
            bare_seconds,
            f"{inline['seconds'] / bare_seconds:.2f}",
            "",
            "",
        )
    )
    portal_rate = export["rows"][0] / export["portal"]
    bare_rate = export["rows"][1] / export["bare"]
    met = export["rows"][0] == export["rows"][1] and portal_rate / bare_rate >= 0.7
    ok = ok and met
    rows.append(
        (
            f"c. CSV export of the month ({export['rows'][0]:,} rows): rows/s",
            portal_rate,
            bare_rate,
            f"{portal_rate / bare_rate:.2f}",
            "≥ 0.7",
            "yes" if met else "NO",
        )
    )
    text = common.table(("measure", "portal", "bare", "ratio", "target", "met"), rows)
    return text, ok


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--orgs", type=int, default=1000)
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--export-runs", type=int, default=7)
    parser.add_argument("--postgres-url", default=common.DEFAULT_POSTGRES)
    parser.add_argument(
        "--quick", action="store_true", help="a smoke run: 100 organisations, 100,000 events"
    )
    args = parser.parse_args(argv)
    if args.quick:
        args.orgs, args.events, args.export_runs = 100, 100_000, 3
    logging.getLogger("alembic").setLevel(logging.WARNING)
    print(f"Machine: {common.machine()}")
    print(f"PostgreSQL {common.postgres_version(args.postgres_url)}")
    with tempfile.TemporaryDirectory(prefix="portal-bench-") as tmp:
        text, ok = measure(args, Path(tmp))
    print()
    print(text)
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
