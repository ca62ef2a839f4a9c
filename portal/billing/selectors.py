"""Reading invoices, runs, credit notes and payments, always within a scope.

Every selector that returns an organisation's documents takes the
:class:`~portal.kernel.scope.Scope` it reads for: ``Scope.council()`` for council
staff, who see every organisation, ``Scope.organisation(id)`` otherwise. An invoice
of another organisation is simply not found (404), never "forbidden", so its
existence is not revealed.
"""

from __future__ import annotations

import datetime as dt
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import sqlalchemy as sa
from sqlalchemy import orm
from sqlalchemy.orm import Session

from portal.billing.models import (
    CreditNote,
    Invoice,
    InvoiceLine,
    InvoiceRun,
    InvoiceStatus,
    Payment,
)
from portal.kernel.errors import NotFound
from portal.kernel.i18n import _, _l
from portal.kernel.periods import period_bounds, period_of
from portal.kernel.scope import Scope
from portal.pagination import Page, paginate
from portal.tenancy.models import Organisation

STATUSES = tuple(InvoiceStatus)  # in the order of the finance page's filter


def recent_periods(today: dt.date, count: int = 6) -> list[str]:
    """The month of ``today`` and the ``count - 1`` months before it, newest first."""
    day = today.replace(day=1)
    out = []
    for _step in range(count):
        out.append(period_of(day))
        day = (day - dt.timedelta(days=1)).replace(day=1)
    return out


def previous_period(period: str) -> str:
    """The calendar month before ``period``."""
    start, _ = period_bounds(period)
    return period_of(start.date() - dt.timedelta(days=1))


def invoice_in_scope(
    session: Session, *, scope: Scope, invoice_id: int, issued_only: bool = False
) -> Invoice:
    """The invoice ``invoice_id``, if it is in ``scope`` (else :class:`NotFound`).

    ``issued_only`` hides drafts (finance's working copies) from organisations.
    """
    query = sa.select(Invoice).where(
        Invoice.id == invoice_id, scope.filter(Invoice.organisation_id)
    )
    if issued_only:
        query = query.where(Invoice.status != InvoiceStatus.DRAFT)
    invoice = session.scalar(query)
    if invoice is None:
        raise NotFound(_l("No such invoice."))
    return invoice


def invoices_list(
    session: Session,
    *,
    scope: Scope,
    period: str | None = None,
    status: str | None = None,
    issued_only: bool = False,
    after_id: int | None = None,
    limit: int | None = None,
) -> list[Invoice]:
    """Invoices in ``scope`` in id order, filtered by month and status.

    Without their lines (reading ``lines`` raises): a list reads them for all its invoices
    at once with :func:`invoice_lines`.
    """
    query = (
        sa.select(Invoice)
        .where(scope.filter(Invoice.organisation_id))
        .order_by(Invoice.id)
        .options(orm.raiseload(Invoice.lines))
    )
    if issued_only:
        query = query.where(Invoice.status != InvoiceStatus.DRAFT)
    if period:
        period_bounds(period)
        query = query.where(Invoice.period == period)
    if status:
        query = query.where(Invoice.status == status)
    if after_id is not None:
        query = query.where(Invoice.id > after_id)
    if limit is not None:
        query = query.limit(limit)
    return list(session.scalars(query).unique())


def invoice_lines(session: Session, invoice_ids: list[int]) -> dict[int, list[Any]]:
    """The lines of each invoice, in their order, as plain rows with what a list shows of
    them (the attributes of :class:`InvoiceLine` of the same names).

    One statement for a page of invoices and no objects: loading a page's 50 invoices'
    lines as objects (about 240, with their charge's facts in JSON) was about a third of
    ``GET /api/v1/invoices`` at scale (docs/PERFORMANCE.md).
    """
    line = InvoiceLine
    lines: dict[int, list[Any]] = {invoice_id: [] for invoice_id in invoice_ids}
    if not invoice_ids:
        return lines
    for row in session.execute(
        sa.select(
            line.invoice_id,
            line.kind,
            line.product_sku,
            line.description,
            line.quantity,
            line.unit_amount,
            line.amount,
            line.council_quantity,
            line.tier,
        )
        .where(line.invoice_id.in_(invoice_ids))
        .order_by(line.invoice_id, line.position)
    ):
        lines[row.invoice_id].append(row)
    return lines


def organisation_invoices(session: Session, *, organisation_id: int) -> list[Invoice]:
    """An organisation's issued invoices, newest month first (drafts are finance's alone)."""
    return list(
        session.scalars(
            sa.select(Invoice)
            .where(
                Invoice.organisation_id == organisation_id, Invoice.status != InvoiceStatus.DRAFT
            )
            .order_by(Invoice.period.desc(), Invoice.id.desc())
        ).unique()
    )


@dataclass
class MonthOverview:
    """A month's invoices for the finance page: the list, counts per status, totals."""

    period: str
    invoices: list[Invoice]
    counts: dict[str, int]
    totals: dict[str, int]  # total per currency of the listed invoices (every page)
    runs: list[InvoiceRun]
    #: Where ``invoices`` sits among the month's (one page when not paginated).
    page: Page[Invoice] | None = None


def month_overview(
    session: Session,
    *,
    scope: Scope,
    period: str,
    status: str | None = None,
    page: int | None = None,
    per_page: int = 100,
) -> MonthOverview:
    """Everything the finance page shows for ``period`` in ``scope``.

    With ``page``, one page of ``per_page`` invoices (a council has one per organisation a
    month: 10,000 of them are not one page); the counts and totals are the whole month's
    either way, summed by the database in one statement."""
    period_bounds(period)
    # The month's figures in one statement (a council's month is 10,000 invoices): the
    # count of each status, and per currency the invoices and sum of those listed.
    counts: Counter[str] = Counter()
    listed_totals: dict[str, int] = {}
    listed_count = 0
    for invoice_status, currency, number, amount in session.execute(
        sa.select(Invoice.status, Invoice.currency, sa.func.count(), sa.func.sum(Invoice.total))
        .where(Invoice.period == period, scope.filter(Invoice.organisation_id))
        .group_by(Invoice.status, Invoice.currency)
    ).all():
        counts[invoice_status] += int(number)
        if status is None or invoice_status == status:
            listed_totals[currency] = listed_totals.get(currency, 0) + int(amount or 0)
            listed_count += int(number)
    # The page shows each invoice's organisation (from the join it is sorted by), not its
    # lines: at scale an invoice has 15 of them, and reading them all doubled the page.
    query = (
        sa.select(Invoice)
        .join(Organisation, Organisation.id == Invoice.organisation_id)
        .where(Invoice.period == period, scope.filter(Invoice.organisation_id))
        .order_by(Organisation.name, Invoice.currency)
        .options(orm.contains_eager(Invoice.organisation), orm.lazyload(Invoice.lines))
    )
    if status:
        query = query.where(Invoice.status == status)
    listed: Page[Invoice] | None = None
    if page is None:
        invoices = list(session.scalars(query).unique())
    else:
        listed = paginate(session, query, page=page, per_page=per_page, total=listed_count)
        invoices = listed.items
    return MonthOverview(
        period=period,
        invoices=invoices,
        counts={s: counts.get(s, 0) for s in STATUSES},
        totals=dict(sorted(listed_totals.items())),
        runs=runs_of_period(session, period=period, limit=5),
        page=listed,
    )


def runs_of_period(session: Session, *, period: str, limit: int = 5) -> list[InvoiceRun]:
    """The latest runs of a month, newest first."""
    return list(
        session.scalars(
            sa.select(InvoiceRun)
            .where(InvoiceRun.period == period)
            .order_by(InvoiceRun.id.desc())
            .limit(limit)
        )
    )


def run_by_id(session: Session, run_id: int) -> InvoiceRun:
    run = session.get(InvoiceRun, run_id)
    if run is None:
        raise NotFound(_l("No such invoice run."))
    return run


def draft_ids(session: Session, *, period: str) -> list[int]:
    """The ids of a month's drafts, in id order."""
    period_bounds(period)
    return list(
        session.scalars(
            sa.select(Invoice.id)
            .where(Invoice.period == period, Invoice.status == InvoiceStatus.DRAFT)
            .order_by(Invoice.id)
        )
    )


# ---------------------------------------------------------------- one invoice


@dataclass
class Comparison:
    """One product (or kind of line) this period against the previous period."""

    label: str
    current: int
    previous: int

    @property
    def change(self) -> int:
        return self.current - self.previous


@dataclass
class InvoiceDetail:
    """An invoice with what was credited and paid, and last period's invoice to compare."""

    invoice: Invoice
    credit_notes: list[CreditNote]
    payments: list[Payment]
    previous: Invoice | None = None
    comparison: list[Comparison] = field(default_factory=list)


def _compare(current: Invoice, previous: Invoice | None) -> list[Comparison]:
    """Line amounts grouped by product (late usage and adjustments on their own), side by side."""

    def key(line: InvoiceLine) -> str:
        if line.kind == "late_usage":
            return _("Late usage")
        if line.kind == "adjustment":
            return _("Adjustment")
        return line.product_sku or line.kind

    def sums(invoice: Invoice | None) -> dict[str, int]:
        out: dict[str, int] = {}
        for line in invoice.lines if invoice else []:
            out[key(line)] = out.get(key(line), 0) + line.amount
        return out

    now, before = sums(current), sums(previous)
    labels = list(now) + [k for k in before if k not in now]
    rows = [Comparison(label, now.get(label, 0), before.get(label, 0)) for label in labels]
    rows.append(
        Comparison(_("Total before tax"), current.subtotal, previous.subtotal if previous else 0)
    )
    return rows


def invoice_detail(
    session: Session,
    *,
    scope: Scope,
    invoice_id: int,
    compare: bool = False,
    issued_only: bool = False,
) -> InvoiceDetail:
    """One invoice in scope, its credit notes and payments; with ``compare``, last period too."""
    invoice = invoice_in_scope(session, scope=scope, invoice_id=invoice_id, issued_only=issued_only)
    notes = list(
        session.scalars(
            sa.select(CreditNote)
            .where(
                CreditNote.invoice_id == invoice.id,
                CreditNote.organisation_id == invoice.organisation_id,
            )
            .order_by(CreditNote.id)
        ).unique()
    )
    payments = list(
        session.scalars(
            sa.select(Payment)
            .where(
                Payment.invoice_id == invoice.id, Payment.organisation_id == invoice.organisation_id
            )
            .order_by(Payment.id)
        )
    )
    detail = InvoiceDetail(invoice=invoice, credit_notes=notes, payments=payments)
    if compare:
        detail.previous = session.scalar(
            sa.select(Invoice).where(
                Invoice.organisation_id == invoice.organisation_id,
                Invoice.currency == invoice.currency,
                Invoice.period == previous_period(invoice.period),
                Invoice.status != InvoiceStatus.VOID,
            )
        )
        detail.comparison = _compare(invoice, detail.previous)
    return detail
