"""Finance operations built on the drafting engine and the invoice lifecycle.

* :func:`invoice_run_start` records a run of a month that has begun and
  enqueues its job (``billing.invoice_run``), which a worker executes.
* :func:`drafts_finalize` finalises every draft of a month in one transaction:
  all of them get numbers, PDFs and mail, or (on any failure) none does;
  :func:`drafts_finalize_preview` says beforehand what that would do (the confirm step).
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field

import sqlalchemy as sa
from sqlalchemy.orm import Session

from portal.billing.access import FINANCE_ONLY
from portal.billing.jobs import invoice_run_create
from portal.billing.lifecycle import invoice_finalize
from portal.billing.models import (
    DocumentCounter,
    Invoice,
    InvoiceRun,
    InvoiceRunStatus,
    InvoiceStatus,
)
from portal.jobs.queue import enqueue
from portal.kernel import policy
from portal.kernel.actor import Actor
from portal.kernel.clock import now_utc
from portal.kernel.errors import DomainError, ValidationFailed
from portal.kernel.i18n import _l
from portal.kernel.periods import period_bounds
from portal.kernel.policy import Action
from portal.kernel.scope import Scope
from portal.settings.services import settings_get
from portal.tenancy.models import BillingProvider, Organisation


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
    policy.require(actor, Action.INVOICE_RUN, message=FINANCE_ONLY)
    period = period_check(period)
    start, _ = period_bounds(period)
    if start > now_utc():
        raise ValidationFailed(
            _l(
                "%(period)s has not started; invoice the current month or an earlier one.",
                period=period,
            ),
            errors={"period": [_l("Choose the current month or an earlier one.")]},
        )
    run = invoice_run_create(session, actor=actor, period=period, finalize=finalize)
    # Executed by a worker once this transaction commits (portal.jobs; the run to poll).
    run.status = InvoiceRunStatus.QUEUED
    run.job_id = enqueue(session, "billing.invoice_run", {"run_id": run.id}, actor=actor).id
    return run


@dataclass
class FinalisePreview:
    """What "Finalise all drafts" of a month would do, were it confirmed now.

    ``numbers`` is the range the drafts would take (in id order, the order
    :func:`drafts_finalize` takes them), e.g. ``("INV-2026-000042", "INV-2026-000044")``;
    another finalisation in between shifts it, never leaves a gap.
    """

    period: str
    drafts: int = 0  # invoices to finalise; as many PDFs stored
    organisations: int = 0
    totals: dict[str, int] = field(default_factory=dict)  # currency -> total, minor units
    numbers: tuple[str, str] | None = None  # first and last number to be given
    mails: int = 0  # one "invoice issued" mail per invoice, to its billing contact
    recipients: list[str] = field(default_factory=list)  # their addresses, each once
    card_charges: int = 0  # invoices of Stripe-billed organisations charged to their card

    @property
    def empty(self) -> bool:
        return self.drafts == 0


def drafts_finalize_preview(
    session: Session, *, scope: Scope, period: str, now: dt.datetime | None = None
) -> FinalisePreview:
    """What finalising every draft of ``period`` in ``scope`` would do (nothing is changed).

    For the confirm step of "Finalise all drafts": how many invoices, which numbers,
    how many mails (and to whom), how many card charges. Two queries, no lock.
    """
    period = period_check(period)
    rows = session.execute(
        sa.select(
            Invoice.currency,
            Invoice.total,
            Invoice.organisation_id,
            Organisation.billing_email,
            Organisation.billing_provider,
        )
        .join(Organisation, Organisation.id == Invoice.organisation_id)
        .where(
            Invoice.period == period,
            Invoice.status == InvoiceStatus.DRAFT,
            scope.filter(Invoice.organisation_id),
        )
        .order_by(Invoice.id)
    ).all()
    preview = FinalisePreview(period=period, drafts=len(rows), mails=len(rows))
    if not rows:
        return preview
    totals: dict[str, int] = {}
    for currency, total, *_rest in rows:
        totals[currency] = totals.get(currency, 0) + total
    preview.totals = dict(sorted(totals.items()))
    preview.organisations = len({row.organisation_id for row in rows})
    preview.recipients = sorted({row.billing_email for row in rows})
    preview.card_charges = sum(
        1 for row in rows if row.billing_provider == BillingProvider.STRIPE and row.total > 0
    )
    prefix = settings_get(session).invoice_prefix
    year = (now or now_utc()).year
    last = session.scalar(
        sa.select(DocumentCounter.last_value).where(
            DocumentCounter.prefix == prefix, DocumentCounter.year == year
        )
    )
    first = (last or 0) + 1
    preview.numbers = (
        f"{prefix}-{year:04d}-{first:06d}",
        f"{prefix}-{year:04d}-{first + len(rows) - 1:06d}",
    )
    return preview


def drafts_finalize(session: Session, *, actor: Actor, period: str) -> list[Invoice]:
    """Finalise every draft of ``period``, in id order; returns the invoices finalised.

    All or none: a domain error says "Nothing was finalised: ..." and the caller
    rolls the transaction back.

    The month's drafts are locked first, before any number is taken, so a
    finalisation of one of them running at the same time either finishes first
    (and its invoice is skipped here) or waits: the locks are always taken in
    the order invoice, then number counter, and nobody deadlocks.
    """
    try:
        policy.require(actor, Action.INVOICE_FINALIZE, message=FINANCE_ONLY)
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
    except DomainError as error:  # all or none: the caller rolls every finalisation back
        # One message for the month (its reason included): no field of a form to point at.
        raise type(error)(
            _l("Nothing was finalised: %(reason)s", reason=error._detail),
            code=error.code,
            extra=error.extra,
        ) from error
    return finalised
