"""Finance operations built on the core invoice services.

* :func:`invoice_run_start` records a run of a month that has begun, for the
  background job or the API to execute.
* :func:`drafts_finalize` finalises every draft of a month in one transaction:
  all of them get numbers, PDFs and mail, or (on any failure) none does.
* :func:`invoice_mark_uncollectible` writes an open invoice off; a payment that
  arrives later still settles it (:func:`portal.billing.services.payment_record`).
"""

from __future__ import annotations

import sqlalchemy as sa
from sqlalchemy.orm import Session

from portal.audit.services import audit_record
from portal.billing.jobs import invoice_run_create
from portal.billing.models import Invoice, InvoiceRun, InvoiceStatus
from portal.billing.services import _lock, _require_finance, invoice_finalize
from portal.kernel.actor import Actor
from portal.kernel.clock import now_utc
from portal.kernel.errors import InvalidState, ValidationFailed
from portal.kernel.periods import period_bounds


def period_check(period: str | None) -> str:
    """``period`` if it is a month written ``YYYY-MM`` (``2026-5`` is refused, not guessed).

    Stripped of surrounding blanks, then checked by the one month parser
    (:func:`portal.kernel.periods.period_bounds`: years 2000 to 9998).
    """
    period = (period or "").strip()
    period_bounds(period)
    return period


def invoice_run_start(
    session: Session, *, actor: Actor, period: str, finalize: bool = False
) -> InvoiceRun:
    """Record a run of ``period`` (a month that has begun) to be executed next."""
    _require_finance(actor)
    period = period_check(period)
    start, _ = period_bounds(period)
    if start > now_utc():
        raise ValidationFailed(
            f"{period} has not started; invoice the current month or an earlier one.",
            errors={"period": ["Choose the current month or an earlier one."]},
        )
    return invoice_run_create(session, actor=actor, period=period, finalize=finalize)


def drafts_finalize(session: Session, *, actor: Actor, period: str) -> list[Invoice]:
    """Finalise every draft of ``period``, in id order; returns the invoices finalised.

    The month's drafts are locked first, before any number is taken, so a
    finalisation of one of them running at the same time either finishes first
    (and its invoice is skipped here) or waits: the locks are always taken in
    the order invoice, then number counter, and nobody deadlocks.
    """
    _require_finance(actor)
    period_bounds(period)
    drafts = list(
        session.scalars(
            sa.select(Invoice)
            .where(Invoice.period == period, Invoice.status == InvoiceStatus.DRAFT)
            .order_by(Invoice.id)
            .with_for_update(of=Invoice)
        ).unique()
    )
    finalised = []
    for invoice in drafts:
        session.refresh(invoice)
        if invoice.status != InvoiceStatus.DRAFT:
            continue
        finalised.append(invoice_finalize(session, actor=actor, invoice=invoice))
    return finalised


def invoice_mark_uncollectible(
    session: Session, *, actor: Actor, invoice: Invoice, reason: str
) -> Invoice:
    """Write off an open invoice as uncollectible (number and PDF stay; a payment still counts)."""
    _require_finance(actor)
    _lock(session, invoice)
    if invoice.status != InvoiceStatus.OPEN:
        raise InvalidState(
            f"Only an open invoice can be written off; this one is {invoice.status}.",
            code="not_collectible",
        )
    reason = (reason or "").strip()
    if not reason or len(reason) > 1000:
        raise ValidationFailed(
            "Say why the invoice cannot be collected.",
            errors={"reason": ["Give a reason (at most 1,000 characters)."]},
        )
    invoice.status = InvoiceStatus.UNCOLLECTIBLE
    session.flush()
    audit_record(
        session,
        actor=actor,
        action="invoice.uncollectible",
        target_type="invoice",
        target_id=invoice.id,
        target_label=invoice.number,
        organisation_id=invoice.organisation_id,
        before={"status": "open"},
        after={"status": "uncollectible", "reason": reason[:500], "due": invoice.amount_due},
    )
    return invoice
