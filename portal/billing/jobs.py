"""The invoice run: a job over every billable organisation, committing batch by batch.

Unlike services, a job owns its transactions: it commits after each batch of
organisations (:data:`BATCH`; one at a time when the run finalises) so progress
is visible (the finance page, the CLI's progress bar) and a crash loses at most
one batch. One organisation whose charges cannot be computed is reported and
skipped; the others in its batch are written. Two runs of the same month at
once still give one invoice per organisation: each draft is created under the
unique (organisation, period, currency) constraint and refreshed under a row
lock, and on PostgreSQL the runs take turns batch by batch (an advisory lock
on the month).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import cast

import sqlalchemy as sa
from flask import current_app
from sqlalchemy.orm import Session

from portal.audit.services import audit_record
from portal.billing.access import FINANCE_ONLY
from portal.billing.drafting import Billed, DraftInputs, draft_inputs, drafts_write
from portal.billing.lifecycle import invoice_finalize
from portal.billing.models import Invoice, InvoiceRun, InvoiceRunStatus
from portal.db import is_postgres
from portal.jobs.queue import job
from portal.kernel import policy
from portal.kernel.actor import Actor
from portal.kernel.clock import now_utc
from portal.kernel.errors import DomainError
from portal.kernel.periods import period_bounds
from portal.kernel.policy import Action
from portal.kernel.scope import Scope
from portal.observability import invoice_run_finished
from portal.tenancy.models import Organisation

# Organisations drafted per transaction: each batch's writes are a few statements
# whatever its size, and the run's progress moves (and is committed) batch by batch.
BATCH = 50


def billable_organisation_ids(session: Session) -> list[int]:
    """Every organisation that can owe money (all but pending applications)."""
    return list(
        session.scalars(
            sa.select(Organisation.id)
            .where(Organisation.status != "pending")
            .order_by(Organisation.id)
        )
    )


def invoice_run_create(
    session: Session, *, actor: Actor, period: str, finalize: bool = False
) -> InvoiceRun:
    """Record a new run of ``period`` (validated) for :func:`invoice_run_execute`."""
    policy.require(actor, Action.INVOICE_RUN, message=FINANCE_ONLY)
    period_bounds(period)
    run = InvoiceRun(
        period=period,
        finalize=finalize,
        started_by=actor.label,
        organisations_total=len(billable_organisation_ids(session)),
    )
    session.add(run)
    session.flush()
    audit_record(
        session,
        actor=actor,
        action="invoice_run.start",
        target_type="invoice_run",
        target_id=run.id,
        target_label=period,
        after={"finalize": finalize},
    )
    return run


def invoice_run_execute(
    session: Session,
    *,
    actor: Actor,
    run_id: int,
    on_progress: Callable[[int, int], None] | None = None,
    batch_size: int | None = None,
) -> InvoiceRun:
    """Draft (and with ``finalize``, finalise) each organisation's invoice, batch by batch.

    What every organisation's draft is computed from (prices, meters, products,
    settings, subscriptions and their quantity histories, the month's usage
    aggregated in one grouped query) is loaded once, with one cut-off for usage
    (the run's start); each batch's drafts are then written, with the run's
    progress, in its own transaction.
    """
    policy.require(actor, Action.INVOICE_RUN, message=FINANCE_ONLY)
    started = time.perf_counter()  # portal_invoice_run_duration_seconds (portal.observability)
    run = session.get(InvoiceRun, run_id)
    assert run is not None
    period, finalize = run.period, run.finalize
    organisations = [
        Billed(*row)
        for row in session.execute(
            sa.select(
                Organisation.id,
                Organisation.slug,
                Organisation.currency,
                Organisation.tax_rate_bp,
                Organisation.reverse_charge,
                Organisation.invoice_language,
            )
            .where(Organisation.status != "pending")
            .order_by(Organisation.id)
        )
    ]
    inputs: DraftInputs | None = None
    failure: DomainError | None = None
    try:
        inputs = draft_inputs(session, period=period, now=now_utc(), scope=Scope.council())
    except DomainError as error:  # e.g. a month that has not started: every organisation fails
        failure = error
    session.commit()
    counts = {"created": 0, "refreshed": 0, "finalised": 0}
    errors: list[str] = []
    runs = cast(sa.Table, InvoiceRun.__table__)
    progress = sa.update(runs).where(runs.c.id == sa.bindparam("run_id"))
    # A finalising run renders and mails each invoice: one organisation per transaction.
    size = 1 if finalize else (batch_size or BATCH)
    done = 0
    replan = is_postgres(session)
    for first in range(0, len(organisations), size):
        batch = organisations[first : first + size]
        try:
            if replan:
                # Each batch's statements are planned for the tables as they are now. The
                # foreign-key checks of the lines' inserts run plans the connection keeps
                # for its lifetime: planned while ``invoices`` was nearly empty (a worker's
                # first run, or the batches before), each check read the whole table, and
                # a run's time grew with the square of its organisations (docs/FINANCE.md).
                session.execute(sa.text("DISCARD PLANS"))
            if inputs is None:
                assert failure is not None
                raise failure
            drafted = drafts_write(session, actor=actor, organisations=batch, inputs=inputs)
            for result in drafted:
                if result.error is not None:
                    errors.append(f"organisation {result.organisation.id}: {result.error.detail}")
                    continue
                if finalize and result.outcome in ("created", "refreshed"):
                    invoice = session.get(Invoice, result.invoice_id)
                    assert invoice is not None
                    invoice_finalize(session, actor=actor, invoice=invoice)
                    counts["finalised"] += 1
                if result.outcome in counts:
                    counts[result.outcome] += 1
        except DomainError as error:
            # Only a finalising run (one organisation a batch) or a month that
            # cannot be billed at all gets here: the batch's writes are undone.
            session.rollback()
            errors.extend(f"organisation {o.id}: {error.detail}" for o in batch)
        done += len(batch)
        # The progress is committed with the batch's drafts (or after their rollback).
        session.execute(
            progress,
            {
                "run_id": run_id,
                "organisations_done": done,
                "invoices_created": counts["created"],
                "invoices_refreshed": counts["refreshed"],
                "invoices_finalised": counts["finalised"],
            },
        )
        session.commit()
        if on_progress:
            on_progress(done, len(organisations))
    run = session.get(InvoiceRun, run_id)
    assert run is not None
    run.status = InvoiceRunStatus.FAILED if errors else InvoiceRunStatus.DONE
    run.error = "\n".join(errors)[:10_000] or None
    run.finished_at = now_utc()
    session.commit()
    invoice_run_finished(time.perf_counter() - started, run.status.value)
    return run


def _run_gave_up(session: Session, *, error: str, run_id: int) -> None:
    """The run's job gave up (its last attempt failed): the run says so, and why."""
    run = session.get(InvoiceRun, run_id)
    if run is not None and run.status in (InvoiceRunStatus.QUEUED, InvoiceRunStatus.RUNNING):
        run.status = InvoiceRunStatus.FAILED
        run.error = f"The run stopped: {error}"[:10_000]
        run.finished_at = now_utc()


@job("billing.invoice_run", max_attempts=3, backoff=(30, 300), on_give_up=_run_gave_up)
def invoice_run_job(session: Session, *, actor: Actor, run_id: int) -> None:
    """The job behind a run started on the finance page or through the API.

    Delivered again after its worker was killed, it runs the month again:
    drafts are refreshed, never duplicated (one invoice per organisation, month
    and currency), and finalised invoices never change. A run that already
    ended is left as it is. In the test environment
    ``PORTAL_TEST_INVOICE_RUN_PAUSE`` (seconds) drafts one organisation at a time
    and pauses after each, so a test can kill the worker mid-run.
    """
    policy.require(actor, Action.INVOICE_RUN, message=FINANCE_ONLY)
    run = session.get(InvoiceRun, run_id, with_for_update=True)
    if run is None or run.status == InvoiceRunStatus.DONE:
        session.rollback()
        return
    run.status = InvoiceRunStatus.RUNNING
    run.error = None
    run.finished_at = None
    session.commit()
    pause = _test_pause()
    invoice_run_execute(
        session,
        actor=actor,
        run_id=run_id,
        batch_size=1 if pause else None,
        on_progress=(lambda done, total: time.sleep(pause)) if pause else None,
    )


def _test_pause() -> float:
    config = current_app.config
    if config.get("PORTAL_ENV") != "test":
        return 0.0
    return float(config.get("PORTAL_TEST_INVOICE_RUN_PAUSE") or 0)


def invoice_run(
    session: Session,
    *,
    actor: Actor,
    period: str,
    finalize: bool = False,
    on_progress: Callable[[int, int], None] | None = None,
) -> InvoiceRun:
    """Create and execute a run (the CLI, the API and tests)."""
    run = invoice_run_create(session, actor=actor, period=period, finalize=finalize)
    session.commit()
    return invoice_run_execute(session, actor=actor, run_id=run.id, on_progress=on_progress)
