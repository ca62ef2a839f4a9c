"""Purchase orders under real concurrency (threads, each with its own connection).

On PostgreSQL these prove the row lock on the order (a move is checked against the state
under it) and the locked number counter shared with invoices' mechanism
(:func:`portal.billing.numbering.next_number`); on SQLite, that ``BEGIN IMMEDIATE`` makes
the writers queue. Nothing is mocked.
"""

from __future__ import annotations

import threading

import sqlalchemy as sa

from portal.catalogue.models import LicencePool
from portal.db import bind_scope, db, is_postgres
from portal.kernel.clock import now_utc
from portal.kernel.errors import InvalidState
from portal.kernel.scope import Scope
from portal.procurement import purchase_orders as service
from portal.procurement.models import PurchaseOrder
from tests.procurement.po_support import draft, to_state


def _in_threads(app, jobs: list, action, workers: int) -> list[BaseException]:
    """Run ``action(job)`` for each job from ``workers`` threads released together."""
    errors: list[BaseException] = []
    lock = threading.Lock()
    queue = list(jobs)
    barrier = threading.Barrier(workers)

    def worker() -> None:
        barrier.wait()
        while True:
            with lock:
                if not queue:
                    return
                job = queue.pop()
            with app.app_context():
                bind_scope(db.session, Scope.council())  # a page's scope for council staff
                try:
                    action(job)
                except BaseException as error:  # reported below, with the others
                    db.session.rollback()
                    with lock:
                        errors.append(error)
                finally:
                    db.session.remove()

    threads = [threading.Thread(target=worker) for _ in range(workers)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return errors


def _workers(app, postgres: int, sqlite: int) -> int:
    with app.app_context():
        return postgres if is_postgres(db.session) else sqlite


def test_fifty_concurrent_approvals_give_fifty_gapless_numbers(app, people, supplier):
    line = {"product_id": supplier["cad"].id, "seats": 1, "unit_cost": 100}
    ids = [draft(app, people["admin"], supplier["vendor_id"], [line]) for _ in range(50)]

    def approve(po_id: int) -> None:
        po = db.session.get(PurchaseOrder, po_id)
        service.approve(db.session, people["admin"], po)
        db.session.commit()

    # Ten at once on PostgreSQL (within the connection pool: threads wait on the counter's
    # row lock, which is what is tested); SQLite has one writer at a time.
    errors = _in_threads(app, ids, approve, workers=_workers(app, 10, 4))
    assert errors == []
    year = now_utc().year
    with app.app_context():
        rows = db.session.execute(sa.select(PurchaseOrder.number, PurchaseOrder.state)).all()
    assert sorted(number for number, _ in rows) == [f"PO-{year}-{n:06d}" for n in range(1, 51)]
    assert {state for _, state in rows} == {"approved"}


def test_receiving_at_once_from_several_threads_fills_the_pools_once(app, people, supplier):
    lines = [
        {"product_id": supplier["cad"].id, "seats": 7, "unit_cost": 100},
        {"product_id": supplier["mail"].id, "seats": 3, "unit_cost": 50},
    ]
    po_id = draft(app, people["admin"], supplier["vendor_id"], lines)
    to_state(app, po_id, "confirmed", admin=people["admin"], finance=people["finance"])

    def receive(_: int) -> None:
        po = db.session.get(PurchaseOrder, po_id)
        service.receive(db.session, people["admin"], po)
        db.session.commit()

    workers = _workers(app, 6, 3)
    errors = _in_threads(app, list(range(workers)), receive, workers=workers)
    assert len(errors) == workers - 1
    assert all(isinstance(e, InvalidState) and e.code == "invalid_transition" for e in errors), (
        errors
    )
    with app.app_context():
        number = db.session.get(PurchaseOrder, po_id).number
        made = db.session.execute(
            sa.select(LicencePool.product_id, LicencePool.capacity).where(
                LicencePool.reference == number
            )
        ).all()
    assert sorted(made) == sorted([(supplier["cad"].id, 7), (supplier["mail"].id, 3)])


def test_an_admin_and_finance_approving_at_once_number_it_once(app, people, supplier):
    line = {"product_id": supplier["cad"].id, "seats": 100, "unit_cost": 1000}  # above
    ids = [draft(app, people["admin"], supplier["vendor_id"], [line]) for _ in range(5)]
    jobs = [(po_id, who) for po_id in ids for who in ("admin", "finance")]

    def approve(job: tuple[int, str]) -> None:
        po = db.session.get(PurchaseOrder, job[0])
        service.approve(db.session, people[job[1]], po)
        db.session.commit()

    errors = _in_threads(app, jobs, approve, workers=_workers(app, 6, 3))
    assert errors == []
    year = now_utc().year
    with app.app_context():
        rows = db.session.execute(sa.select(PurchaseOrder.number, PurchaseOrder.state)).all()
    assert sorted(number for number, _ in rows) == [f"PO-{year}-{n:06d}" for n in range(1, 6)]
    assert {state for _, state in rows} == {"approved"}
