"""Invariants 1 and 2 under real concurrency: parallel connections and two processes.

On PostgreSQL these prove the row locks (``SELECT … FOR UPDATE``); on SQLite
they prove that ``BEGIN IMMEDIATE`` makes writers queue. Nothing is mocked:
each thread has its own connection and transaction.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
from collections import Counter
from pathlib import Path

import sqlalchemy as sa

from portal.catalogue.models import Product
from portal.db import bind_scope, db
from portal.identity.accounts import user_create
from portal.kernel.actor import Role
from portal.kernel.errors import DomainError
from portal.kernel.scope import Scope
from portal.seats import services
from portal.seats.models import SeatAssignment, Subscription
from portal.tenancy.models import Organisation
from tests.conftest import SYSTEM

ROOT = Path(__file__).resolve().parents[2]


def _people(app, org, n: int) -> list[str]:
    """``n`` accounts without passwords (fast: no hashing)."""
    with app.app_context():
        organisation = db.session.get(Organisation, org.id)
        emails = [f"p{i}@{org.slug}.example" for i in range(n)]
        for email in emails:
            user_create(
                db.session, actor=SYSTEM, email=email, role=Role.MEMBER, organisation=organisation
            )
        db.session.commit()
    return emails


def _subscription(app, org, product, quantity: int) -> int:
    with app.app_context():
        outcome = services.subscription_create(
            db.session,
            actor=SYSTEM,
            organisation=db.session.get(Organisation, org.id),
            product=db.session.get(Product, product.id),
            quantity=quantity,
        )
        db.session.commit()
        return outcome.subscription.id


def _race(app, jobs, action, workers: int = 16) -> tuple[int, Counter]:
    """Run ``action(job)`` for every job from ``workers`` threads started together."""
    ok = 0
    refused: Counter = Counter()
    lock = threading.Lock()
    queue = list(jobs)
    barrier = threading.Barrier(workers)

    def worker() -> None:
        nonlocal ok
        barrier.wait()
        while True:
            with lock:
                if not queue:
                    return
                job = queue.pop()
            with app.app_context():
                bind_scope(db.session, Scope.council())  # the system actor's scope (a thread)
                try:
                    action(job)
                    db.session.commit()
                    with lock:
                        ok += 1
                except DomainError as error:
                    db.session.rollback()
                    with lock:
                        refused[error.code] += 1
                finally:
                    db.session.remove()

    threads = [threading.Thread(target=worker) for _ in range(workers)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return ok, refused


def _active_seats(app, subscription_id: int) -> int:
    with app.app_context():
        return db.session.scalar(
            sa.select(sa.func.count())
            .select_from(SeatAssignment)
            .where(
                SeatAssignment.subscription_id == subscription_id,
                SeatAssignment.released_at.is_(None),
            )
        )


def test_200_concurrent_assignments_on_50_seats_give_exactly_50(app, make_org, make_product):
    org, product = make_org(), make_product(60)
    emails = _people(app, org, 200)
    sub_id = _subscription(app, org, product, 50)

    def assign(email: str) -> None:
        sub = db.session.get(Subscription, sub_id)
        services.seat_assign(db.session, actor=SYSTEM, subscription=sub, user_email=email)

    ok, refused = _race(app, emails, assign)
    assert ok == 50
    assert refused == Counter({"no_free_seat": 150})
    assert _active_seats(app, sub_id) == 50


def test_the_same_person_racing_for_a_seat_gets_one(app, make_org, make_product):
    org, product = make_org(), make_product(60)
    [email] = _people(app, org, 1)
    sub_id = _subscription(app, org, product, 50)

    def assign(_: int) -> None:
        sub = db.session.get(Subscription, sub_id)
        services.seat_assign(db.session, actor=SYSTEM, subscription=sub, user_email=email)

    ok, refused = _race(app, range(30), assign, workers=10)
    assert ok == 1
    assert refused == Counter({"already_assigned": 29})
    assert _active_seats(app, sub_id) == 1


def test_subscriptions_racing_for_the_last_seats_never_exceed_capacity(app, make_org, make_product):
    product = make_product(10)
    orgs = [make_org() for _ in range(24)]

    def subscribe(org) -> None:
        services.subscription_create(
            db.session,
            actor=SYSTEM,
            organisation=db.session.get(Organisation, org.id),
            product=db.session.get(Product, product.id),
            quantity=3,
        )

    ok, refused = _race(app, orgs, subscribe, workers=12)
    assert ok == 3  # 3 × 3 = 9 seats fit in 10; the fourth would need 12
    assert refused == Counter({"pool_exhausted": 21})
    with app.app_context():
        reserved = db.session.scalar(
            sa.select(sa.func.sum(Subscription.quantity)).where(
                Subscription.product_id == product.id, Subscription.status != "cancelled"
            )
        )
    assert reserved == 9


def _worker(mode: str, payload: dict) -> subprocess.Popen:
    env = {**os.environ, "PORTAL_ENV": "test", "PYTHONPATH": str(ROOT)}
    return subprocess.Popen(
        [sys.executable, "-m", "tests.seats.race_worker", mode, json.dumps(payload)],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def _results(processes) -> list[dict]:
    out = []
    for process in processes:
        stdout, stderr = process.communicate(timeout=120)
        assert process.returncode == 0, stderr
        out.append(json.loads(stdout.strip().splitlines()[-1]))
    return out


def test_two_processes_assigning_seats_never_exceed_the_quantity(app, make_org, make_product):
    org, product = make_org(), make_product(40)
    emails = _people(app, org, 80)
    sub_id = _subscription(app, org, product, 30)
    url = app.config["SQLALCHEMY_DATABASE_URI"]
    halves = [emails[:40], emails[40:]]
    processes = [
        _worker("seats", {"database_url": url, "subscription_id": sub_id, "jobs": half})
        for half in halves
    ]
    results = _results(processes)
    assert sum(r["ok"] for r in results) == 30
    assert sum(r["refused"].get("no_free_seat", 0) for r in results) == 50
    assert _active_seats(app, sub_id) == 30


def test_two_processes_subscribing_never_exceed_capacity(app, make_org, make_product):
    product = make_product(7)
    orgs = [make_org() for _ in range(16)]
    url = app.config["SQLALCHEMY_DATABASE_URI"]
    processes = [
        _worker(
            "subscribe",
            {
                "database_url": url,
                "product_id": product.id,
                "quantity": 2,
                "jobs": [o.id for o in half],
            },
        )
        for half in (orgs[:8], orgs[8:])
    ]
    results = _results(processes)
    assert sum(r["ok"] for r in results) == 3
    with app.app_context():
        reserved = db.session.scalar(
            sa.select(sa.func.sum(Subscription.quantity)).where(
                Subscription.product_id == product.id
            )
        )
    assert reserved == 6
