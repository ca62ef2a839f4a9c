"""The invoice run: a job over every billable organisation, committing one at a time.

Unlike services, a job owns its transactions: it commits after each
organisation so progress is visible (the finance page, the CLI's progress bar)
and one organisation's problem does not undo the others'. Two runs of the same
month at once still give one invoice per organisation: each organisation's
draft is created under the unique (organisation, period, currency) constraint
and refreshed under a row lock.
"""

from __future__ import annotations

from collections.abc import Callable

import sqlalchemy as sa
from sqlalchemy.orm import Session

from portal.audit.services import Actor, audit_record
from portal.billing.models import Invoice, InvoiceRun
from portal.billing.services import (
    Billed,
    DraftInputs,
    _require_finance,
    draft_inputs,
    draft_write,
    invoice_finalize,
)
from portal.db import now_utc
from portal.errors import DomainError
from portal.metering.selectors import period_bounds
from portal.tenancy.models import Organisation


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
    _require_finance(actor)
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
) -> InvoiceRun:
    """Draft (and with ``finalize``, finalise) each organisation's invoice, committing each.

    What every organisation's draft is computed from (prices, meters, products,
    settings, subscriptions and their quantity histories, the month's usage
    aggregated in one grouped query) is loaded once, with one cut-off for usage
    (the run's start); each organisation's draft is then written, with the run's
    progress, in its own transaction.
    """
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
            )
            .where(Organisation.status != "pending")
            .order_by(Organisation.id)
        )
    ]
    inputs: DraftInputs | None = None
    failure: DomainError | None = None
    try:
        inputs = draft_inputs(session, period=period, now=now_utc())
    except DomainError as error:  # e.g. a month that has not started: every organisation fails
        failure = error
    session.commit()
    counts = {"created": 0, "refreshed": 0, "finalised": 0}
    errors: list[str] = []
    runs = InvoiceRun.__table__
    progress = sa.update(runs).where(runs.c.id == sa.bindparam("run_id"))
    for done, organisation in enumerate(organisations, start=1):
        try:
            if inputs is None:
                assert failure is not None
                raise failure
            invoice_id, outcome = draft_write(
                session, actor=actor, organisation=organisation, inputs=inputs
            )
            if finalize and invoice_id is not None and outcome in ("created", "refreshed"):
                invoice = session.get(Invoice, invoice_id)
                assert invoice is not None
                invoice_finalize(session, actor=actor, invoice=invoice)
                counts["finalised"] += 1
            if outcome in counts:
                counts[outcome] += 1
        except DomainError as error:
            session.rollback()
            errors.append(f"organisation {organisation.id}: {error.detail}")
        # The progress is committed with the organisation's draft (or after its rollback).
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
    run.status = "failed" if errors else "done"
    run.error = "\n".join(errors)[:10_000] or None
    run.finished_at = now_utc()
    session.commit()
    return run


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
