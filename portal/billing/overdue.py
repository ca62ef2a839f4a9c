"""Overdue invoices, and the council's rule that they hold back new subscriptions.

An open invoice is *past due* the day after its due date, and *overdue* once
the council's grace period (``overdue_grace_days``) has passed as well. With
``suspend_subscriptions_when_overdue`` on, an organisation with an overdue
invoice cannot take new subscriptions (:func:`subscriptions_allowed`); its
existing subscriptions and seats are never touched: a person decides that.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from sqlalchemy import orm
from sqlalchemy.orm import Session

from portal.billing.models import Invoice, InvoiceStatus
from portal.kernel.errors import InvalidState
from portal.kernel.i18n import _ln
from portal.kernel.scope import Scope
from portal.pagination import Page, paginate
from portal.settings.services import settings_get
from portal.signals import subscription_opening
from portal.tenancy.models import Organisation


@dataclass(frozen=True)
class PastDue:
    """An open invoice past its due date; ``overdue`` once the grace period is over too."""

    invoice: Invoice
    days_late: int
    overdue: bool


def past_due_invoices(session: Session, *, scope: Scope, today: dt.date) -> list[PastDue]:
    """Open invoices in ``scope`` whose due date has passed, oldest due first."""
    grace = settings_get(session).overdue_grace_days
    query = (
        sa.select(Invoice)
        .where(
            Invoice.status == InvoiceStatus.OPEN,
            Invoice.due_on < today,
            scope.filter(Invoice.organisation_id),
        )
        .order_by(Invoice.due_on, Invoice.id)
    )
    out = []
    for invoice in session.scalars(query).unique():
        assert invoice.due_on is not None
        late = (today - invoice.due_on).days
        out.append(PastDue(invoice=invoice, days_late=late, overdue=late > grace))
    return out


@dataclass(frozen=True)
class PastDuePage:
    """One page of past-due invoices, and how many there are, and how many overdue."""

    rows: list[PastDue]
    page: Page[Invoice]
    overdue: int


def past_due_page(
    session: Session, *, scope: Scope, today: dt.date, page: int, per_page: int = 50
) -> PastDuePage:
    """One page of :func:`past_due_invoices` (oldest due first), counted by the database: a
    council's month has an invoice per organisation (10,000 at scale), so the page lists
    ``per_page`` and the totals are counted (``ix_invoices_open_due``). The invoices' lines
    are not read."""
    grace = settings_get(session).overdue_grace_days
    due = (
        Invoice.status == InvoiceStatus.OPEN,
        Invoice.due_on < today,
        scope.filter(Invoice.organisation_id),
    )
    query = (
        sa.select(Invoice)
        .where(*due)
        .order_by(Invoice.due_on, Invoice.id)
        .options(orm.lazyload(Invoice.lines))
    )
    listed = paginate(session, query, page=page, per_page=per_page)
    overdue = session.scalar(
        sa.select(sa.func.count())
        .select_from(Invoice)
        .where(*due, Invoice.due_on < today - dt.timedelta(days=grace))
    )
    rows = []
    for invoice in listed.items:
        assert invoice.due_on is not None
        late = (today - invoice.due_on).days
        rows.append(PastDue(invoice=invoice, days_late=late, overdue=late > grace))
    return PastDuePage(rows=rows, page=listed, overdue=int(overdue or 0))


def overdue_invoices(session: Session, *, scope: Scope, today: dt.date) -> list[Invoice]:
    """Open invoices in ``scope`` past their due date and the council's grace days."""
    return [p.invoice for p in past_due_invoices(session, scope=scope, today=today) if p.overdue]


def subscriptions_allowed(session: Session, *, organisation: Organisation, today: dt.date) -> None:
    """Refuse (``overdue_invoices``) when the council holds back subscriptions of late payers."""
    settings = settings_get(session)
    if not settings.suspend_subscriptions_when_overdue:
        return
    cutoff = today - dt.timedelta(days=settings.overdue_grace_days)
    overdue = session.scalars(
        sa.select(Invoice.number)
        .where(
            Invoice.organisation_id == organisation.id,
            Invoice.status == InvoiceStatus.OPEN,
            Invoice.due_on < cutoff,
        )
        .order_by(Invoice.due_on)
    ).all()
    if overdue:
        numbers = ", ".join(n or "" for n in overdue[:3]) + (" …" if len(overdue) > 3 else "")
        raise InvalidState(
            _ln(
                "%(organisation)s has %(num)d overdue invoice (%(numbers)s); "
                "new subscriptions wait until it is paid.",
                "%(organisation)s has %(num)d overdue invoices (%(numbers)s); "
                "new subscriptions wait until they are paid.",
                len(overdue),
                organisation=organisation.name,
                numbers=numbers,
            ),
            code="overdue_invoices",
            extra={"overdue_invoices": list(overdue)},
        )


@subscription_opening.connect
def _refuse_when_overdue(organisation: Organisation, **kwargs: Any) -> None:
    """Seats asks before an organisation subscribes: :func:`subscriptions_allowed` may refuse."""
    subscriptions_allowed(kwargs["session"], organisation=organisation, today=kwargs["today"])
