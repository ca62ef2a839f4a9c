"""Seat assignment and release through the API, beside a bare WSGI baseline (issue 3).

For each database (SQLite and PostgreSQL, in one run) it builds a fresh, migrated
database with a council token, an organisation, a product with a pool of a
million seats, one subscription and ``--users`` people, serves the portal with
gunicorn (``wsgi:app``, production settings, the project's ``gunicorn.conf.py``)
and drives it from ``--clients`` processes on keep-alive connections, each
assigning (``POST /api/v1/subscriptions/{id}/seats``) and releasing
(``DELETE /api/v1/subscriptions/{id}/seats/{email}``) seats of its own people
in turn. Beside it, ``benchmarks/bare_app.py`` served by the same gunicorn
settings does one INSERT (assign) and one DELETE (release) of a row per request
against the same database. Both servers run at once and are loaded in turn,
bare then portal, for ``--rounds`` rounds (a slow spell of a shared machine
falls on both rather than on one). Prints operations per second over all
rounds, p50 and p95 latency and the ratio portal/bare.

    .venv/bin/python -m benchmarks.seats_api            # or: make bench-seats
    .venv/bin/python -m benchmarks.seats_api --quick    # a smoke run
"""

from __future__ import annotations

import argparse
import http.client
import tempfile
import time
from pathlib import Path
from urllib.parse import quote

from benchmarks import common

PORTAL = "portal"
BARE = "bare"
OPS = ("assign", "release")


def setup(db: common.Database, env: dict[str, str], users: int) -> tuple[str, int, list[str]]:
    """Fill the database; return the council token, the subscription id and the emails."""
    import datetime as dt

    from portal.api.services import token_create
    from portal.catalogue.services import pool_create, price_create, product_create, vendor_create
    from portal.db import db as portal_db
    from portal.identity.accounts import user_create
    from portal.kernel.actor import Actor
    from portal.kernel.clock import now_utc
    from portal.seats.services import subscription_create
    from portal.tenancy.services import organisation_create

    app = common.migrated_app(env)
    system = Actor.system("benchmark")
    today = now_utc().date()
    with app.app_context():
        session = portal_db.session
        vendor_create(session, actor=system, data={"slug": "benchsoft", "name": "Benchsoft"})
        product = product_create(
            session,
            actor=system,
            data={"sku": "bench-suite", "vendor": "benchsoft", "name": "Bench Suite"},
        )
        pool_create(
            session,
            actor=system,
            data={
                "product": "bench-suite",
                "capacity": 1_000_000,
                "starts_on": (today - dt.timedelta(days=30)).isoformat(),
                "ends_on": (today + dt.timedelta(days=365)).isoformat(),
                "unit_cost": {"amount": 500, "currency": "EUR"},
            },
        )
        # A product is subscribable only with a seat price in the organisation's currency.
        price_create(
            session,
            actor=system,
            data={"product": "bench-suite", "currency": "EUR", "model": "seat", "unit_amount": 900},
        )
        org = organisation_create(
            session,
            actor=system,
            data={
                "slug": "bench-org",
                "name": "Bench Org",
                "country": "DE",
                "currency": "EUR",
                "billing_email": "billing@bench-org.example",
            },
        )
        emails = [f"person-{i:05d}@bench-org.example" for i in range(users)]
        for email in emails:  # no passwords: no Argon2 hashing, no mail on assignment
            user_create(session, actor=system, email=email, role="member", organisation=org)
        outcome = subscription_create(
            session, actor=system, organisation=org, product=product, quantity=users
        )
        _, token = token_create(session, actor=system, scope="council", name="benchmark")
        subscription_id = outcome.subscription.id
        session.commit()
        portal_db.engine.dispose()
    with db.connect() as conn:
        bigid = "INTEGER PRIMARY KEY" if db.kind == "sqlite" else "BIGSERIAL PRIMARY KEY"
        conn.execute(
            f"CREATE TABLE bench_seats (id {bigid}, subscription_id BIGINT NOT NULL, "
            "user_email VARCHAR(254) NOT NULL, assigned_at TIMESTAMP NOT NULL)"
        )
        conn.execute("CREATE INDEX ix_bench_seats ON bench_seats (subscription_id, user_email)")
        if db.kind == "postgresql":
            conn.commit()
    return token, subscription_id, emails


def _client(job: tuple, start: float, t_warm: float, t_end: float):
    """One load process: assign then release each of its people in turn until t_end."""
    port, server, token, subscription_id, emails = job
    if server == PORTAL:
        assign_path = f"/api/v1/subscriptions/{subscription_id}/seats"
        release_path = f"/api/v1/subscriptions/{subscription_id}/seats/{{}}"
    else:
        assign_path = f"/seats/{subscription_id}"
        release_path = f"/seats/{subscription_id}/{{}}"
    headers = common.json_headers(token if server == PORTAL else None)
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    latencies: dict[str, list[float]] = {op: [] for op in OPS}
    errors: dict[str, int] = {}
    time.sleep(max(0.0, start - time.time()))
    i = sent = 0
    while True:
        email = emails[i % len(emails)]
        i += 1
        for op, method, path, payload, ok in (
            ("assign", "POST", assign_path, common.body({"user_email": email}), 201),
            ("release", "DELETE", release_path.format(quote(email, safe="@")), None, 200),
        ):
            began = time.time()
            if began >= t_end and op == "assign":
                conn.close()
                return latencies, errors, sent
            t0 = time.perf_counter()
            status, _ = common.request(conn, method, path, payload, headers)
            elapsed = time.perf_counter() - t0
            sent += 1
            if began >= t_warm and began < t_end:
                latencies[op].append(elapsed)
                if status != ok:
                    key = f"{op} {status}"
                    errors[key] = errors.get(key, 0) + 1


def measure(
    db: common.Database, env: dict[str, str], args: argparse.Namespace, log: Path
) -> dict[str, common.LoadResult]:
    token, subscription_id, emails = setup(db, env, args.users)
    shares = [emails[i :: args.clients] for i in range(args.clients)]
    runs: dict[str, list[common.LoadResult]] = {BARE: [], PORTAL: []}
    env_of = {BARE: {**env, "BARE_DATABASE_URL": db.url}, PORTAL: env}
    wsgi_of = {BARE: "benchmarks.bare_app:app", PORTAL: "wsgi:app"}
    # Both servers up at once, loaded in turn (bare, portal) for --rounds rounds: a slow
    # spell of the shared machine falls on both rather than on one.
    with (
        common.gunicorn(wsgi_of[BARE], env_of[BARE], log=log) as bare,
        common.gunicorn(wsgi_of[PORTAL], env_of[PORTAL], log=log) as portal,
    ):
        for _ in range(args.rounds):
            for server, gunicorn in ((BARE, bare), (PORTAL, portal)):
                jobs = [(gunicorn.port, server, token, subscription_id, share) for share in shares]
                runs[server].append(
                    common.run_clients(
                        _client,
                        jobs,
                        duration=args.duration,
                        warmup=args.warmup,
                        cpu=common.ServerCPU(gunicorn, db),
                    )
                )
    results = {server: common.LoadResult.combined(runs[server]) for server in (BARE, PORTAL)}
    for server in (BARE, PORTAL):
        r = results[server]
        print(
            f"  {db.kind:<10} {server:<6} {r.rate():8.0f} ops/s "
            f"(assign p50 {r.p('assign', 0.5):.1f} ms, release p50 {r.p('release', 0.5):.1f} ms, "
            f"server CPU {r.cpu_ms_per_request:.2f} ms/op"
            + (
                f", of which PostgreSQL's {r.database_cpu_ms_per_request:.2f})"
                if db.kind == "postgresql"
                else ")"
            )
            + (f"  errors: {r.errors}" if r.errors else ""),
            flush=True,
        )
    return results


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--users", type=int, default=2000, help="people in the organisation")
    parser.add_argument("--clients", type=int, default=4, help="load processes")
    parser.add_argument("--duration", type=float, default=15, help="seconds measured per server")
    parser.add_argument("--warmup", type=float, default=3, help="seconds before measuring")
    parser.add_argument(
        "--rounds", type=int, default=3, help="rounds of the bare server then the portal"
    )
    parser.add_argument("--databases", default=",".join(common.DATABASES))
    parser.add_argument("--postgres-url", default=common.DEFAULT_POSTGRES)
    parser.add_argument("--quick", action="store_true", help="a short smoke run")
    args = parser.parse_args(argv)
    if args.quick:
        args.users, args.duration, args.warmup, args.rounds = 200, 3, 1, 1
    kinds = [k.strip() for k in args.databases.split(",") if k.strip()]

    print(f"Machine: {common.machine()}")
    if "postgresql" in kinds:
        print(f"PostgreSQL {common.postgres_version(args.postgres_url)}")
    print(
        f"gunicorn: {common.gunicorn_settings()}; {args.clients} client processes, "
        f"{args.users:,} people, {args.rounds} rounds of {args.duration:g} s measured per "
        f"server after {args.warmup:g} s warm-up"
    )
    rows, ratios = [], []
    with tempfile.TemporaryDirectory(prefix="portal-bench-") as tmp:
        log = Path(tmp) / "gunicorn.log"
        for kind in kinds:
            with common.fresh_database(kind, args.postgres_url) as db:
                env = common.portal_env(db, str(Path(tmp) / f"instance-{kind}"))
                results = measure(db, env, args, log)
            for server in (PORTAL, BARE):
                r = results[server]
                for op in OPS:
                    errors = sum(n for k, n in r.errors.items() if k.startswith(op))
                    rows.append((kind, op, server, r.rate(op), r.p(op, 0.5), r.p(op, 0.95), errors))
            portal, bare = results[PORTAL], results[BARE]
            for total_op in (*OPS, None):
                ratios.append(
                    (
                        kind,
                        total_op or "assign + release",
                        portal.rate(total_op),
                        bare.rate(total_op),
                        portal.rate(total_op) / bare.rate(total_op)
                        if bare.rate(total_op)
                        else float("nan"),
                        "" if total_op else portal.cpu_ms_per_request,
                        "" if total_op else bare.cpu_ms_per_request,
                    )
                )
    print()
    print(
        common.table(
            ("database", "operation", "server", "ops/s", "p50 ms", "p95 ms", "errors"), rows
        )
    )
    print()
    print(
        common.table(
            (
                "database",
                "operation",
                "portal ops/s",
                "bare ops/s",
                "ratio portal/bare",
                "portal CPU ms/op",
                "bare CPU ms/op",
            ),
            ratios,
        )
    )
    failed = any(r[-1] for r in rows)
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
