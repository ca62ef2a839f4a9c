"""Invariants 4 and 5 under real concurrency (threads, each with its own connection).

On PostgreSQL these prove the unique (organisation, period, currency)
constraint, the row locks on invoices and the locked number counter; on SQLite
they prove that ``BEGIN IMMEDIATE`` makes the writers queue. Nothing is mocked:
finalising renders and stores each PDF and queues its mail, as in production.
"""

from __future__ import annotations

import threading
from collections import Counter

import sqlalchemy as sa

from portal.billing import lifecycle
from portal.billing.jobs import invoice_run
from portal.billing.models import Invoice, InvoiceRun
from portal.db import bind_scope, db, is_postgres
from portal.jobs.models import Job
from portal.kernel.clock import now_utc
from portal.kernel.scope import Scope
from tests.billing.conftest import last_month
from tests.billing.factories import subscribe
from tests.conftest import SYSTEM


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
                bind_scope(db.session, Scope.council())  # a job's or the CLI's scope (a thread)
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


def _organisations(app, make_org, make_product, n: int) -> list[int]:
    product = make_product(10 * n, sku="cad-suite", vendor="autodraft", price=3000)
    _, first = last_month()
    ids = []
    for i in range(n):
        org = make_org(f"member-{i:02d}")
        subscribe(app, org.id, product.id, 1 + i % 5, first)
        ids.append(org.id)
    return ids


def test_two_runs_of_a_month_at_once_give_one_invoice_per_organisation(
    app, make_org, make_product, monkeypatch
):
    from portal.billing import jobs

    monkeypatch.setattr(jobs, "BATCH", 5)  # each run writes three batches, interleaved
    orgs = _organisations(app, make_org, make_product, 12)
    period, _ = last_month()

    def run(_: int) -> None:
        invoice_run(db.session, actor=SYSTEM, period=period)

    errors = _in_threads(app, [1, 2], run, workers=2)
    assert errors == []
    with app.app_context():
        per_org = Counter(db.session.scalars(sa.select(Invoice.organisation_id)))
        assert per_org == Counter(dict.fromkeys(orgs, 1))
        runs = db.session.scalars(sa.select(InvoiceRun)).all()
        assert [r.status for r in runs] == ["done", "done"]
        # between them the two runs created each draft once; the rest they refreshed
        assert sum(r.invoices_created for r in runs) == 12
        assert all(r.organisations_done == 12 for r in runs)


def test_fifty_concurrent_finalisations_give_fifty_gapless_numbers(app, make_org, make_product):
    orgs = _organisations(app, make_org, make_product, 50)
    period, _ = last_month()
    with app.app_context():
        run = invoice_run(db.session, actor=SYSTEM, period=period)
        assert run.invoices_created == 50
        drafts = list(db.session.scalars(sa.select(Invoice.id).where(Invoice.status == "draft")))
    assert len(drafts) == 50

    def finalise(invoice_id: int) -> None:
        invoice = db.session.get(Invoice, invoice_id)
        lifecycle.invoice_finalize(db.session, actor=SYSTEM, invoice=invoice)
        db.session.commit()

    # Ten at once: within the connection pool (5 + 10 overflow), so threads wait on the
    # counter lock — what is tested — and never on the pool. SQLite has one writer at a
    # time and a finalisation holds the write lock while it renders its PDF: six threads
    # keep the last one's wait well under the 30 s busy timeout on a busy machine.
    with app.app_context():
        workers = 10 if is_postgres(db.session) else 6
    errors = _in_threads(app, drafts, finalise, workers=workers)
    assert errors == []
    year = now_utc().year
    with app.app_context():
        rows = db.session.execute(
            sa.select(Invoice.number, Invoice.status, Invoice.organisation_id)
        ).all()
        numbers = sorted(number for number, _, _ in rows)
        assert numbers == [f"INV-{year}-{n:06d}" for n in range(1, 51)]
        assert {status for _, status, _ in rows} == {"open"}
        assert sorted(org for _, _, org in rows) == sorted(orgs)
        # Each invoice's PDF and mail are one job's work (billing.invoice_document), enqueued
        # with its finalisation: rendering no longer holds the write lock.
        documents = db.session.scalars(
            sa.select(Job.arguments).where(Job.name == "billing.invoice_document")
        ).all()
        assert sorted(a["invoice_id"] for a in documents) == sorted(drafts)


def test_finalise_all_and_single_finalisations_racing_never_deadlock(app, make_org, make_product):
    """The month's drafts are locked before any number is taken, so the racers queue."""
    from portal.billing.operations import drafts_finalize

    _organisations(app, make_org, make_product, 10)
    period, _ = last_month()
    with app.app_context():
        invoice_run(db.session, actor=SYSTEM, period=period)
        drafts = list(db.session.scalars(sa.select(Invoice.id).order_by(Invoice.id.desc())))

    def act(job) -> None:
        if job == "all":
            drafts_finalize(db.session, actor=SYSTEM, period=period)
        else:
            invoice = db.session.get(Invoice, job)
            if invoice.status == "draft":
                try:
                    lifecycle.invoice_finalize(db.session, actor=SYSTEM, invoice=invoice)
                except Exception as error:  # finalised by the other side first
                    if getattr(error, "code", None) != "not_draft":
                        raise
                    db.session.rollback()
                    return
        db.session.commit()

    errors = _in_threads(app, ["all", *drafts[:5]], act, workers=6)
    assert errors == []
    year = now_utc().year
    with app.app_context():
        numbers = sorted(db.session.scalars(sa.select(Invoice.number)))
        assert numbers == [f"INV-{year}-{n:06d}" for n in range(1, 11)]
