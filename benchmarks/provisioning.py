"""Provisioning over SCIM at scale (issue 17), beside bare HTTP POSTs to the same server.

On a fresh, migrated database (PostgreSQL unless ``--db sqlite``) it sets up, not
measured: a vendor whose provisioning goes over SCIM to a real SCIM 2.0 server
(``scim2-server``, python-scim, in a process of its own on 127.0.0.1 with a bearer
token), a product with a pool and a subscription of ``--n`` seats, an organisation with
``--n`` people, and an organisation SCIM group holding all of them (as a member
company's IdP leaves it). ``portal worker`` processes (``--workers``, on the run's own
Redis queue, no schedule) are started and ready before the clock.

Measured: the group is mapped to the product (``scim.services.mapping_create``: the
"bulk-style" group mapping of SPEC 8.4, which assigns a seat to every member and writes
each change's outbox row in the same transaction) and committed; the workers deliver the
outbox over SCIM (per person: find by ``userName``, by ``externalId``, create); the clock
stops when the vendor's server answers ``totalResults`` = ``--n`` (polled every 0.2 s).
Beside it, in the same run: the same number of bare ``POST /Users`` to a fresh server of
the same kind from this one process (one keep-alive connection), one after another.

    .venv/bin/python -m benchmarks.provisioning            # or: make bench-provisioning
    .venv/bin/python -m benchmarks.provisioning --n 500    # a quick run
"""

from __future__ import annotations

import argparse
import contextlib
import os
import secrets
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import httpx2
import sqlalchemy as sa

from benchmarks import common

VENDOR = "bench-scim"
SKU = "bench-scim-app"


@contextlib.contextmanager
def scim_server(token: str, log: Path) -> Iterator[str]:
    """A vendor's SCIM service: ``scim2-server`` in a process of its own; its base URL."""
    port = common.free_port()
    command = [
        str(Path(sys.executable).parent / "scim2-server"),
        "--hostname",
        "127.0.0.1",
        "--port",
        str(port),
        "--bearer-token",
        token,
    ]
    with log.open("ab") as out:
        process = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}/v2"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                if httpx2.get(f"{base}/ServiceProviderConfig", timeout=1).status_code == 200:
                    break
            except httpx2.TransportError:
                pass
            if process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"scim2-server did not start; see {log}")
            time.sleep(0.2)
        yield base
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


@contextlib.contextmanager
def workers(env: dict[str, str], count: int, log: Path) -> Iterator[None]:
    """``portal worker`` processes on the run's own queue (no schedule), ready."""
    processes = []
    full_env = {**os.environ, **env, "PYTHONUNBUFFERED": "1"}
    try:
        for n in range(count):
            path = log.with_name(f"{log.stem}-{n}.log")
            with path.open("ab") as out:
                process = subprocess.Popen(
                    [
                        str(Path(sys.executable).parent / "portal"),
                        "worker",
                        "--concurrency=1",
                        "--no-schedule",
                    ],
                    cwd=common.ROOT,
                    env=full_env,
                    stdout=out,
                    stderr=subprocess.STDOUT,
                )
            processes.append(process)
            deadline = time.monotonic() + 120
            while b"[tasks]" not in path.read_bytes():
                if process.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"portal worker did not start; see {path}")
                time.sleep(0.2)
        time.sleep(3)  # the banner comes just before a worker connects and consumes
        yield
    finally:
        for process in processes:
            process.send_signal(signal.SIGTERM)
        for process in processes:
            try:
                process.wait(timeout=60)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


def held(base: str, token: str) -> int:
    answer = httpx2.get(
        f"{base}/Users",
        params={"count": 0},
        headers={"Authorization": f"Bearer {token}"},
        timeout=30,
    )
    return int(answer.json()["totalResults"])


def setup(app, n: int, base: str, token: str) -> dict[str, int]:
    """The vendor (SCIM to ``base``), product, pool, subscription of ``n`` seats, ``n``
    people in one SCIM group of their organisation. Returns the ids the run needs."""
    import datetime as dt

    from portal.catalogue.models import Product
    from portal.catalogue.services import pool_create, price_create, product_create, vendor_create
    from portal.crypto import encrypt_secret
    from portal.db import bind_scope, db
    from portal.identity.models import User
    from portal.kernel.actor import Actor, Role
    from portal.kernel.clock import now_utc
    from portal.kernel.scope import Scope
    from portal.provisioning.models import VendorProvisioning
    from portal.scim.models import ScimGroup, ScimGroupMember
    from portal.seats.subscriptions import subscription_create
    from portal.tenancy.services import organisation_create

    system = Actor.system("bench")
    today = now_utc().date()
    with app.app_context():
        session = db.session
        bind_scope(session, Scope.council())
        vendor = vendor_create(
            session, actor=system, data={"slug": VENDOR, "name": "Bench SCIM", "status": "active"}
        )
        product = product_create(
            session,
            actor=system,
            data={"sku": SKU, "vendor": VENDOR, "name": "Bench SCIM app", "meters": []},
        )
        pool_create(
            session,
            actor=system,
            data={
                "product": SKU,
                "capacity": n,
                "starts_on": (today - dt.timedelta(days=30)).isoformat(),
                "ends_on": (today + dt.timedelta(days=335)).isoformat(),
                "unit_cost": {"amount": 500, "currency": "EUR"},
            },
        )
        price_create(
            session,
            actor=system,
            data={"product": SKU, "currency": "EUR", "model": "seat", "unit_amount": 1000},
        )
        organisation = organisation_create(
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
        subscription_create(
            session,
            actor=system,
            organisation=organisation,
            product=session.get(Product, product.id),
            quantity=n,
        )
        session.add(
            VendorProvisioning(
                vendor_id=vendor.id,
                scim_base_url=base,
                scim_token_sealed=encrypt_secret(token),
            )
        )
        users = [
            User(
                email=f"person-{i:06d}@bench-org.example",
                name=f"Person {i}",
                role=Role.MEMBER,
                organisation_id=organisation.id,
                is_active=True,
            )
            for i in range(n)
        ]
        session.add_all(users)
        group = ScimGroup(organisation_id=organisation.id, display_name="Bench app users")
        session.add(group)
        session.flush()
        session.add_all(
            ScimGroupMember(organisation_id=organisation.id, group_id=group.id, user_id=u.id)
            for u in users
        )
        session.commit()
        ids = {
            "organisation": organisation.id,
            "group": group.id,
            "product": product.id,
            "vendor": vendor.id,
        }
        session.remove()
    return ids


def portal_run(
    app, ids: dict[str, int], n: int, base: str, token: str, *, analyze: bool
) -> dict[str, float]:
    """Map the group to the product (commit), then wait until the vendor holds ``n``."""
    from portal.catalogue.models import Product
    from portal.db import bind_scope, db
    from portal.kernel.actor import Actor
    from portal.kernel.scope import Scope
    from portal.scim.models import ScimGroup
    from portal.scim.services import mapping_create
    from portal.tenancy.models import Organisation

    with app.app_context():
        session = db.session
        bind_scope(session, Scope.council())
        organisation = session.get(Organisation, ids["organisation"])
        group = session.get(ScimGroup, ids["group"])
        product = session.get(Product, ids["product"])
        t0 = time.perf_counter()
        _, report = mapping_create(
            session,
            actor=Actor.system("bench: scim group mapping"),
            organisation=organisation,
            group=group,
            product=product,
        )
        session.commit()
        if analyze:
            # What autovacuum's analyze does after a bulk change (this machine's PostgreSQL
            # runs with autovacuum off). Off by default: before issue 17's fix the engine's
            # "first pending delivery of each sequence" query needed it (without
            # statistics it was planned as a quadratic anti-join, over a minute a call with
            # 10,000 pending); now its plan does not depend on statistics. Inside the clock.
            session.execute(sa.text("ANALYZE provisioning_deliveries"))
            session.commit()
        committed = time.perf_counter()
        session.remove()
    assigned = len(report.assigned)
    last = -1
    deadline = committed + 6 * 3600
    while True:
        count = held(base, token)
        if count >= n:
            break
        if count != last:
            last = count
            print(
                f"    {count:,} of {n:,} at the vendor after {time.perf_counter() - t0:.0f} s",
                flush=True,
            )
        if time.perf_counter() > deadline:
            raise RuntimeError("the vendor did not receive everyone in six hours")
        time.sleep(0.2)
    done = time.perf_counter()
    return {
        "assigned": assigned,
        "mapping": committed - t0,
        "delivery": done - committed,
        "total": done - t0,
    }


def bare_run(n: int, base: str, token: str) -> float:
    """``n`` bare ``POST /Users`` from this process, one after another, one connection."""
    with httpx2.Client(
        base_url=base, headers={"Authorization": f"Bearer {token}"}, timeout=30
    ) as client:
        t0 = time.perf_counter()
        for i in range(n):
            answer = client.post(
                "/Users",
                json={
                    "schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"],
                    "userName": f"bare-{i:06d}@bench-org.example",
                    "externalId": str(i),
                    "active": True,
                },
            )
            if answer.status_code != 201:
                raise RuntimeError(f"bare POST answered {answer.status_code}: {answer.text}")
        seconds = time.perf_counter() - t0
    if held(base, token) != n:
        raise RuntimeError("the bare run's server does not hold everyone")
    return seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=10_000, help="seat assignments (10,000)")
    parser.add_argument("--db", choices=common.DATABASES, default="postgresql")
    parser.add_argument("--workers", type=int, default=2, help="portal worker processes (2)")
    parser.add_argument("--postgres-url", default=common.DEFAULT_POSTGRES)
    analyze = parser.add_mutually_exclusive_group()
    analyze.add_argument(
        "--analyze",
        dest="analyze",
        action="store_true",
        help="ANALYZE the outbox after the mapping's commit, inside the clock (see portal_run)",
    )
    analyze.add_argument(
        "--no-analyze",
        dest="analyze",
        action="store_false",
        help="do not ANALYZE the outbox (the default: the engine no longer needs it)",
    )
    parser.add_argument("--bare-only", action="store_true", help="only the bare POSTs")
    args = parser.parse_args()
    if not 1 <= args.n <= 1_000_000 or not 1 <= args.workers <= 32:
        parser.error("--n must be 1..1,000,000 and --workers 1..32")

    print(f"Provisioning over SCIM: {args.n:,} seat assignments through a SCIM group mapping")
    print(f"  {common.machine()}")
    if args.bare_only:
        with tempfile.TemporaryDirectory(prefix="portal-bench-prov-") as tmp_name:
            token = secrets.token_urlsafe(24)
            with scim_server(token, Path(tmp_name) / "bare.log") as bare_base:
                bare = bare_run(args.n, bare_base, token)
        print(
            f"  bare: {args.n:,} POST /Users in {bare:.1f} s ({bare * 1000 / args.n:.2f} ms each)"
        )
        return
    print(
        f"  database {args.db}; {args.workers} portal worker(s), Redis queue; "
        f"ANALYZE after the commit: {'yes' if args.analyze else 'no'}",
        flush=True,
    )
    with (
        tempfile.TemporaryDirectory(prefix="portal-bench-prov-") as tmp_name,
        common.fresh_database(args.db, args.postgres_url) as db,
    ):
        tmp = Path(tmp_name)
        env = common.portal_env(db, str(tmp / "instance"))
        env["PORTAL_JOBS_BROKER_URL"] = env["PORTAL_REDIS_URL"]
        env["PORTAL_JOBS_QUEUE"] = f"bench-provisioning-{os.getpid()}"
        app = common.migrated_app(env)
        token = secrets.token_urlsafe(24)
        with scim_server(token, tmp / "vendor.log") as base:
            t0 = time.perf_counter()
            ids = setup(app, args.n, base, token)
            print(
                f"  set up {args.n:,} people in one SCIM group in {time.perf_counter() - t0:.0f} s",
                flush=True,
            )
            with workers(env, args.workers, tmp / "worker.log"):
                portal = portal_run(app, ids, args.n, base, token, analyze=args.analyze)
        with scim_server(token, tmp / "bare.log") as bare_base:
            bare = bare_run(args.n, bare_base, token)
    ratio = portal["total"] / bare if bare else float("inf")
    print()
    print(
        common.table(
            ["run", "seconds", "per person (ms)"],
            [
                [
                    "portal: group mapped, seats assigned, outbox written (commit)",
                    f"{portal['mapping']:.1f}",
                    f"{portal['mapping'] * 1000 / args.n:.2f}",
                ],
                [
                    "portal: outbox delivered over SCIM (until the vendor holds all)",
                    f"{portal['delivery']:.1f}",
                    f"{portal['delivery'] * 1000 / args.n:.2f}",
                ],
                [
                    "portal: total",
                    f"{portal['total']:.1f}",
                    f"{portal['total'] * 1000 / args.n:.2f}",
                ],
                [
                    "bare: POST /Users one after another, one process",
                    f"{bare:.1f}",
                    f"{bare * 1000 / args.n:.2f}",
                ],
            ],
        )
    )
    print(f"\n  seats assigned: {portal['assigned']:,}; portal ÷ bare = {ratio:.1f}")
    print(f"  load average at the end: {', '.join(f'{x:.2f}' for x in os.getloadavg())}")


if __name__ == "__main__":
    main()
