"""The mixed soak (issue 13): API clients and page readers together against gunicorn on
PostgreSQL, beside the same API clients alone (the baseline), in the same run.

On the pages-at-scale database (``benchmarks.scale``: at ``--scale 1`` an organisation,
``scale-big``, with 600,000 usage events this month among 30,000,000), eight clients:

* 2 send entitlement checks (``GET /api/v1/entitlements/check``; these two and the usage
  batches with the products' vendor's token),
* 2 send usage batches of ``--batch`` events (``POST /api/v1/usage``),
* 1 assigns and releases seats (``POST`` then ``DELETE /api/v1/subscriptions/{id}/seats``,
  the organisation's token),
* 3 read ``/org``, ``/org/usage`` and ``/org/idle-seats`` in turn, signed in as the
  organisation's admin.

First the five API clients alone for ``--baseline-minutes``, then all eight for
``--minutes``; the table gives p50 and p99 per operation in each phase. Target: the
API's p99 at most 100 ms while the pages are read. Each client is on one keep-alive
connection. By default every client is a closed loop (no think time), so the machine is
as busy as it can be made and the API's p99 is mostly its own queue; ``--rate N`` paces
each API client at N requests a second instead (the page readers stay closed loops), the
latency counted from the moment a request was due, so that the p99 shows what the pages
do to an API that is not saturating the machine by itself.

    python -m benchmarks.soak [--minutes 10] [--baseline-minutes 3] [--scale 1] [--rate 0]
                              [--pools shared|split] [--api-workers 2] [--page-workers 1]

``--pools split`` serves the API and the pages from two gunicorns (the deployment
docs/SCALING.md describes: a proxy sends ``/api/`` to one pool and pages to the other),
so that an API request never waits for a page's Python in the same process.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import http.client
import os
import secrets
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlencode

from benchmarks import common, scale

PAGES = ("/org", "/org/usage", "/org/idle-seats")
SEAT_PEOPLE = 40  # people of their own for the seat client (no seat to start with)
API_OPS = ("entitlement check", "usage batch", "seat assign", "seat release")


def setup(env: dict[str, str], args: argparse.Namespace) -> dict[str, Any]:
    """Tokens, the admin's session cookie, the seat client's people; in this process."""
    import psycopg

    from portal.identity.security import hash_password

    dsn = scale._dsn(args.postgres_url, scale.scale_database(args))
    slug = scale.BIG_SLUG
    with psycopg.connect(dsn) as conn:
        org_id = conn.execute("SELECT id FROM organisations WHERE slug = %s", (slug,)).fetchone()
        assert org_id, f"{slug} is missing: run benchmarks.scale first"
        org_id = org_id[0]
        conn.execute(
            "UPDATE users SET password_hash = %s WHERE email = %s",
            (hash_password(scale.PASSWORD), scale.BIG_ADMIN),
        )
        for i in range(SEAT_PEOPLE):
            conn.execute(
                "INSERT INTO users (organisation_id, email, name, role, is_active, created_at, "
                "updated_at) VALUES (%s, %s, %s, 'member', true, now(), now()) "
                "ON CONFLICT DO NOTHING",
                (org_id, f"soak-{i:03d}@{slug}.example", f"Soak {i}"),
            )
        sub = conn.execute(
            "SELECT s.id, p.sku FROM subscriptions s JOIN products p ON p.id = s.product_id "
            "WHERE s.organisation_id = %s AND s.status = 'active' ORDER BY s.id LIMIT 1",
            (org_id,),
        ).fetchone()
        metered = conn.execute(
            "SELECT p.sku, m.key FROM subscriptions s JOIN products p ON p.id = s.product_id "
            "JOIN meters m ON m.product_id = p.id WHERE s.organisation_id = %s "
            "AND s.status = 'active' AND m.aggregation = 'sum' ORDER BY s.id LIMIT 1",
            (org_id,),
        ).fetchone()
        # Seats held by the seat client's people from an interrupted run are released.
        conn.execute(
            "UPDATE seat_assignments SET released_at = now(), release_reason = 'soak' "
            "WHERE subscription_id = %s AND released_at IS NULL AND user_id IN "
            "(SELECT id FROM users WHERE email LIKE 'soak-%%')",
            (sub[0],),
        )
        # ... and the subscription's counter of assigned seats (migration 0028) kept exact.
        conn.execute(
            "UPDATE subscriptions SET assigned = (SELECT count(*) FROM seat_assignments a "
            "WHERE a.subscription_id = subscriptions.id AND a.released_at IS NULL) WHERE id = %s",
            (sub[0],),
        )
        month = dt.datetime.now(dt.UTC).replace(day=1, hour=0, minute=0, second=0)
        events = conn.execute(
            "SELECT count(*) FROM usage_events WHERE organisation_id = %s AND occurred_at >= %s",
            (org_id, month),
        ).fetchone()[0]
        conn.commit()
    site = scale.Site.__new__(scale.Site)
    os.environ.update(env)
    from portal import create_app

    site.app = create_app()
    scale.quiet(site.app)
    site.org_slug = slug
    client = site._sign_in(scale.BIG_ADMIN, scale.PASSWORD)
    cookie = client.get_cookie(site.app.config["SESSION_COOKIE_NAME"])
    assert cookie is not None, "no session cookie after signing in"
    tokens = site._tokens()
    with site.app.app_context():
        from portal.api.services import token_create
        from portal.catalogue.selectors import vendor_by_slug
        from portal.db import council_wide, db
        from portal.kernel.actor import Actor

        with council_wide(db.session) as session:
            _, tokens["vendor"] = token_create(
                session,
                actor=Actor.system("benchmark"),
                scope="vendor",
                vendor=vendor_by_slug(session, "scale-vendor"),
                name="soak",
            )
            session.commit()
    people = [f"p{j:05d}@{slug}.example" for j in range(1, 200)]
    with site.app.app_context():
        from portal.db import db

        db.engine.dispose()
    return {
        "cookie": f"{cookie.key}={cookie.value}",
        "tokens": tokens,
        "subscription": sub[0],
        "product": sub[1],
        "metered": metered,
        "people": people,
        "seat_people": [f"soak-{i:03d}@{slug}.example" for i in range(SEAT_PEOPLE)],
        "events_this_month": events,
        "slug": slug,
    }


def usage_events(info: dict[str, Any], key: str, first_person: int) -> list[dict[str, Any]]:
    """One usage batch of ``info["batch"]`` events of :func:`setup`'s metered product, 5 s
    old, keys ``{key}-{k}``, each naming the organisation's people in turn from
    ``first_person`` (benchmarks.usage_batch sends the same batches in process)."""
    sku, meter = info["metered"]
    moment = (dt.datetime.now(dt.UTC) - dt.timedelta(seconds=5)).isoformat()
    people = info["people"]
    return [
        {
            "idempotency_key": f"{key}-{k}",
            "organisation": info["slug"],
            "product": sku,
            "meter": meter,
            "quantity": "3",
            "occurred_at": moment,
            "user_email": people[(first_person + k) % len(people)],
        }
        for k in range(info["batch"])
    ]


def _client(job: tuple, start: float, t_warm: float, t_end: float) -> tuple:
    """One closed-loop client of one kind until ``t_end``."""
    kind, port, number, info = job
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
    latencies: dict[str, list[float]] = {}
    errors: dict[str, int] = {}
    sent = 0
    run = secrets.token_hex(4)
    i = 0
    # --rate: an API client sends its n-th request at start + n / rate (page readers stay
    # closed loops); its latency counts from that moment, so time spent waiting behind a
    # slow answer is counted (no coordinated omission).
    rate = info["rate"] if kind != "pages" else 0.0
    time.sleep(max(0.0, start - time.time()))

    def timed(op: str, method: str, path: str, payload: bytes | None, headers: dict, ok: int):
        nonlocal sent
        began = time.time()
        t0 = time.perf_counter()
        if rate:
            due = start + sent / rate
            time.sleep(max(0.0, due - began))
            began, t0 = due, time.perf_counter() - max(0.0, time.time() - due)
        status, _ = common.request(conn, method, path, payload, headers)
        elapsed = time.perf_counter() - t0
        sent += 1
        if t_warm <= began < t_end:
            latencies.setdefault(op, []).append(elapsed)
            if status != ok:
                errors[f"{op} {status}"] = errors.get(f"{op} {status}", 0) + 1

    vendor = common.json_headers(info["tokens"]["vendor"])
    own = common.json_headers(info["tokens"]["organisation"])
    page_headers = {"Cookie": info["cookie"], "Connection": "keep-alive"}
    while time.time() < t_end:
        if kind == "entitlement":
            query = urlencode(
                {
                    "organisation": info["slug"],
                    "user_email": info["people"][i % len(info["people"])],
                    "product": info["product"],
                }
            )
            timed(
                "entitlement check",
                "GET",
                f"/api/v1/entitlements/check?{query}",
                None,
                vendor,
                200,
            )
        elif kind == "usage":
            batch = usage_events(info, f"soak-{run}-{number}-{i}", i)
            timed(
                "usage batch", "POST", "/api/v1/usage", common.body({"events": batch}), vendor, 200
            )
        elif kind == "seats":
            email = info["seat_people"][i % len(info["seat_people"])]
            path = f"/api/v1/subscriptions/{info['subscription']}/seats"
            timed("seat assign", "POST", path, common.body({"user_email": email}), own, 201)
            timed("seat release", "DELETE", f"{path}/{quote(email, safe='@')}", None, own, 200)
        else:  # pages
            path = PAGES[(i + number) % len(PAGES)]
            timed(path, "GET", path, None, page_headers, 200)
        i += 1
    conn.close()
    return latencies, errors, sent


def phase(
    api_port: int, page_port: int, info: dict[str, Any], *, readers: bool, seconds: float
) -> common.LoadResult:
    """The API clients on ``api_port``, the page readers (if any) on ``page_port`` (the same
    server, or the pages' own pool: ``--pools split``)."""
    jobs: list[tuple] = [
        ("entitlement", api_port, 0, info),
        ("entitlement", api_port, 1, info),
        ("usage", api_port, 0, info),
        ("usage", api_port, 1, info),
        ("seats", api_port, 0, info),
    ]
    if readers:
        jobs += [("pages", page_port, n, info) for n in range(3)]
    return common.run_clients(_client, jobs, duration=seconds, warmup=min(20.0, seconds / 5))


@contextlib.contextmanager
def gunicorn(env: dict[str, str], *, log: Path) -> Iterator[common.Server]:
    """The portal under gunicorn (``gunicorn.conf.py``), as :func:`common.gunicorn` serves it
    but given five minutes to boot (a loaded machine imports the app slowly)."""
    port = common.free_port()
    command = [
        str(Path(sys.executable).parent / "gunicorn"),
        "-c",
        str(common.GUNICORN_CONF),
        "--bind",
        f"127.0.0.1:{port}",
        "wsgi:app",
    ]
    full = {**os.environ, **env, "PYTHONUNBUFFERED": "1"}
    with log.open("ab") as out:
        process = subprocess.Popen(
            command, cwd=common.ROOT, env=full, stdout=out, stderr=subprocess.STDOUT
        )
    try:
        common._wait_ready(port, process, log, timeout=300)
        yield common.Server(port, process.pid)
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=60)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--minutes", type=float, default=10, help="the mixed phase")
    parser.add_argument("--baseline-minutes", type=float, default=3, help="API clients alone")
    parser.add_argument("--batch", type=int, default=100, help="events per usage batch")
    parser.add_argument("--scale", type=float, default=1.0, help="the scale database's size")
    parser.add_argument("--database", default="")
    parser.add_argument("--postgres-url", default=common.DEFAULT_POSTGRES)
    parser.add_argument(
        "--pools",
        choices=("shared", "split"),
        default="shared",
        help="shared: one gunicorn serves everything (gunicorn.conf.py); split: the API and "
        "the pages from two gunicorns, as a proxy routing /api/ would (docs/SCALING.md)",
    )
    parser.add_argument(
        "--rate",
        type=float,
        default=0.0,
        help="requests a second of each API client (0: closed loops, as fast as answered)",
    )
    parser.add_argument("--api-workers", type=int, default=2, help="--pools split: API pool")
    parser.add_argument("--page-workers", type=int, default=1, help="--pools split: pages pool")
    args = parser.parse_args(argv)
    print(f"Machine: {common.machine()}", flush=True)
    print(f"PostgreSQL {common.postgres_version(args.postgres_url)}", flush=True)
    print(f"gunicorn: {common.gunicorn_settings()}", flush=True)
    instance = tempfile.mkdtemp(prefix="portal-bench-soak-")
    name = scale.scale_database(args)
    owner_env = scale._fixed_env(name, args.postgres_url, instance)
    if not scale._loaded(scale._dsn(args.postgres_url, name), scale.Sizes(args.scale)):
        print(f"{name} is not loaded: run python -m benchmarks.scale --scale {args.scale:g}")
        return 2
    scale._portal(owner_env, "db", "upgrade")
    env = scale.as_application(owner_env, args.postgres_url)
    env["PORTAL_API_RATE_LIMIT"] = "100000000 per minute"
    env["PYTHONPATH"] = str(common.ROOT)  # gunicorn serves this checkout's code
    info = setup(env, args)
    info["batch"] = args.batch
    info["rate"] = args.rate
    print(
        f"{info['slug']}: {info['events_this_month']:,} usage events this month; "
        f"usage batches of {args.batch}; 5 API clients "
        f"({f'{args.rate:g} requests/s each' if args.rate else 'closed loops'}), "
        "then 5 + 3 page readers (closed loops)",
        flush=True,
    )
    log = Path(instance) / "gunicorn.log"
    with contextlib.ExitStack() as servers:
        if args.pools == "split":
            api = servers.enter_context(
                gunicorn({**env, "WEB_CONCURRENCY": str(args.api_workers)}, log=log)
            )
            pages = servers.enter_context(
                gunicorn({**env, "WEB_CONCURRENCY": str(args.page_workers)}, log=log)
            )
            print(
                f"pools: split, the API on {args.api_workers} worker(s) (port {api.port}), "
                f"the pages on {args.page_workers} (port {pages.port})",
                flush=True,
            )
        else:
            api = pages = servers.enter_context(gunicorn(env, log=log))
            print("pools: shared, one gunicorn serves the API and the pages", flush=True)
        print(f"baseline: API clients alone for {args.baseline_minutes:g} min", flush=True)
        alone = phase(api.port, pages.port, info, readers=False, seconds=args.baseline_minutes * 60)
        print(f"mixed: API clients and page readers for {args.minutes:g} min", flush=True)
        mixed = phase(api.port, pages.port, info, readers=True, seconds=args.minutes * 60)
    rows = []
    for op in (*API_OPS, *PAGES):
        rows.append(
            (
                op,
                len(alone.latencies.get(op, [])),
                alone.p(op, 0.5),
                alone.p(op, 0.99),
                len(mixed.latencies.get(op, [])),
                mixed.p(op, 0.5),
                mixed.p(op, 0.99),
            )
        )
    print(
        common.table(
            [
                "operation",
                "alone n",
                "alone p50 ms",
                "alone p99 ms",
                "mixed n",
                "mixed p50 ms",
                "mixed p99 ms",
            ],
            rows,
        )
    )
    for name_, result in (("alone", alone), ("mixed", mixed)):
        if result.errors:
            print(f"errors ({name_}): {result.errors}")
    worst = max(mixed.p(op, 0.99) for op in API_OPS if mixed.latencies.get(op))
    print(f"API p99 while pages are read: at most {worst:.0f} ms (target 100 ms)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
