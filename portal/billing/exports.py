"""Finance exports of a month's invoices: one row per invoice line (and credit note).

Read with one query, without the ORM, and turned into CSV rows one invoice at a
time as the writer asks for them.
Text cells that a spreadsheet could take for a formula are made safe
(:func:`portal.csvutil.safe_cell`). Each invoice's tax is spread over its lines
by largest remainder, so lines add up to the invoice exactly.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Session

from portal.billing.models import CreditNote, Invoice, InvoiceLine, InvoiceStatus
from portal.csvutil import localised_header, safe_cell
from portal.kernel.i18n import _l
from portal.kernel.periods import period_bounds
from portal.kernel.scope import Scope
from portal.tenancy.models import Organisation

COLUMNS = (
    "organisation",
    "organisation_name",
    "invoice_number",
    "invoice_status",
    "period",
    "currency",
    "line",
    "kind",
    "product",
    "description",
    "quantity",
    "unit_amount",
    "net",
    "tax",
    "gross",
)

#: The CSV's header: :data:`COLUMNS` with the money columns named for what they hold, whole
#: minor units of the row's ``currency`` (``35700`` EUR is €357.00; issue 14). Codes in
#: English (scripts and imports read them); labels for a reader of another language. The
#: JSON keeps :data:`COLUMNS`, like every JSON money field of the API (integers in minor
#: units beside a ``currency``).
MONEY_COLUMNS = ("unit_amount", "net", "tax", "gross")
CSV_COLUMNS = tuple(f"{c}_minor" if c in MONEY_COLUMNS else c for c in COLUMNS)
#: The header a reader in another language than English gets (portal.csvutil).
CSV_LABELS = {
    "organisation": _l("Organisation code"),
    "organisation_name": _l("Organisation"),
    "invoice_number": _l("Invoice number"),
    "invoice_status": _l("Invoice status"),
    "period": _l("Period"),
    "currency": _l("Currency"),
    "line": _l("Line"),
    "kind": _l("Kind"),
    "product": _l("Product"),
    "description": _l("Description"),
    "quantity": _l("Quantity"),
    "unit_amount_minor": _l("Unit price, minor units"),
    "net_minor": _l("Net, minor units"),
    "tax_minor": _l("Tax, minor units"),
    "gross_minor": _l("Gross, minor units"),
}


def _spread(total: int, weights: list[int]) -> list[int]:
    """``total`` split in proportion to ``weights`` (largest remainder; sums exactly)."""
    whole = sum(weights)
    if not whole:
        return [0] * len(weights)
    shares = [total * w // whole for w in weights]
    rests = sorted(range(len(weights)), key=lambda i: (total * weights[i]) % whole, reverse=True)
    for i in rests[: total - sum(shares)]:
        shares[i] += 1
    return shares


def export_rows(session: Session, *, scope: Scope, period: str) -> Iterator[tuple]:
    """Rows of :data:`COLUMNS` for the period's finalised invoices and their credit notes.

    Only the organisations in ``scope``.

    Drafts are left out: finance exports what was issued.
    """
    period_bounds(period)
    query = (
        sa.select(
            Organisation.slug,
            Organisation.name,
            Invoice.id,
            Invoice.number,
            sa.type_coerce(Invoice.status, sa.String),  # the code as stored: no enum to make
            Invoice.currency,
            Invoice.tax,
            InvoiceLine.position,
            InvoiceLine.kind,
            InvoiceLine.product_sku,
            InvoiceLine.description,
            InvoiceLine.quantity,
            InvoiceLine.unit_amount,
            InvoiceLine.amount,
        )
        .join(Invoice, Invoice.id == InvoiceLine.invoice_id)
        .join(Organisation, Organisation.id == Invoice.organisation_id)
        .where(
            Invoice.period == period,
            Invoice.status != InvoiceStatus.DRAFT,
            scope.filter(Invoice.organisation_id),
        )
        .order_by(Invoice.number, InvoiceLine.position)
    )
    # On the session's connection, not through the ORM: plain rows. (No server-side
    # cursor: API reads run in autocommit, where PostgreSQL has none.) Taken from the
    # driver a thousand at a time: row by row, fetching cost a quarter of the export.
    result = session.connection().execute(query)
    lines: list[Any] = []
    for chunk in result.partitions(1000):
        for row in chunk:
            if lines and lines[0][2] != row[2]:
                yield from _invoice_rows(lines, period)
                lines = []
            lines.append(row)
    if lines:
        yield from _invoice_rows(lines, period)
    notes = (
        sa.select(CreditNote, Organisation.slug, Organisation.name, Invoice.number)
        .join(Invoice, Invoice.id == CreditNote.invoice_id)
        .join(Organisation, Organisation.id == CreditNote.organisation_id)
        .where(Invoice.period == period, scope.filter(CreditNote.organisation_id))
        .order_by(CreditNote.number)
    )
    for note, slug, name, invoice_number in session.execute(notes):
        yield (
            slug,
            name,
            note.number,
            "credit_note",
            period,
            note.currency,
            0,
            "credit_note",
            "",
            f"Credit note against {invoice_number}: {note.reason}",
            "1",
            None,
            -note.subtotal,
            -note.tax,
            -note.total,
        )


def _invoice_rows(lines: list[Any], period: str) -> list[tuple]:
    """One invoice's export rows, its tax spread over its lines."""
    taxes = _spread(lines[0][6], [line[13] for line in lines])
    return [
        (
            slug,
            name,
            number,
            status,
            period,
            currency,
            position + 1,
            kind,
            sku or "",
            description,
            quantity,
            unit_amount,
            amount,
            tax,
            amount + tax,
        )
        for (
            slug,
            name,
            _,
            number,
            status,
            currency,
            _,
            position,
            kind,
            sku,
            description,
            quantity,
            unit_amount,
            amount,
        ), tax in zip(lines, taxes, strict=True)
    ]


@dataclass
class CurrencyTotals:
    currency: str
    invoices: int = 0
    net: int = 0
    tax: int = 0
    gross: int = 0


def summary(rows: list[tuple]) -> list[CurrencyTotals]:
    """Totals per currency of export rows (credit notes subtract)."""
    totals: dict[str, CurrencyTotals] = {}
    numbers: dict[str, set[str]] = {}
    for row in rows:
        currency = row[5]
        entry = totals.setdefault(currency, CurrencyTotals(currency))
        entry.net += row[12]
        entry.tax += row[13]
        entry.gross += row[14]
        if row[3] != "credit_note":
            numbers.setdefault(currency, set()).add(row[2])
    for currency, entry in totals.items():
        entry.invoices = len(numbers.get(currency, ()))
    return sorted(totals.values(), key=lambda t: t.currency)


def export_summary(session: Session, *, scope: Scope, period: str) -> list[CurrencyTotals]:
    """:func:`summary` of :func:`export_rows`, summed by the database (the finance page; a
    council's month is 10,000 invoices at scale, which the CSV may list but a page need
    not read). An invoice's spread tax adds up to its tax exactly (largest remainder)
    unless its lines' amounts add up to zero, when nothing is spread."""
    period_bounds(period)
    # An invoice's subtotal is the sum of its lines' amounts: drafting writes both from the
    # same charges (a line per charge), and neither changes once the invoice is final; an
    # organisation without charges gets no invoice (its draft is deleted). So the month's
    # net is summed over its invoices (10,000 at scale), not their lines (100,000).
    totals: dict[str, CurrencyTotals] = {}
    for currency, invoices, net, tax in session.execute(
        sa.select(
            Invoice.currency,
            sa.func.count(),
            sa.func.sum(Invoice.subtotal),
            sa.func.sum(sa.case((Invoice.subtotal != 0, Invoice.tax), else_=0)),
        )
        .where(
            Invoice.period == period,
            Invoice.status != InvoiceStatus.DRAFT,
            scope.filter(Invoice.organisation_id),
        )
        .group_by(Invoice.currency)
    ):
        entry = totals.setdefault(currency, CurrencyTotals(currency))
        entry.invoices = int(invoices)
        entry.net += int(net or 0)
        entry.tax += int(tax or 0)
        entry.gross += int(net or 0) + int(tax or 0)
    for currency, subtotal, tax, total in session.execute(
        sa.select(
            CreditNote.currency,
            sa.func.sum(CreditNote.subtotal),
            sa.func.sum(CreditNote.tax),
            sa.func.sum(CreditNote.total),
        )
        .join(Invoice, Invoice.id == CreditNote.invoice_id)
        .where(Invoice.period == period, scope.filter(CreditNote.organisation_id))
        .group_by(CreditNote.currency)
    ):
        entry = totals.setdefault(currency, CurrencyTotals(currency))
        entry.net -= int(subtotal or 0)
        entry.tax -= int(tax or 0)
        entry.gross -= int(total or 0)
    return sorted(totals.values(), key=lambda t: t.currency)


_FORMULA_FIRST = frozenset("=+-@\t\r")  # what safe_cell guards against, as first characters


def _safe_rows(rows: Iterator[tuple], counter: list[int]) -> Iterator[tuple]:
    """The rows with their text cells made safe (as :func:`safe_cell`), counted.

    The text cells are the organisation's slug and name, the number, the SKU and
    the description (columns 0, 1, 2, 8 and 9, always strings); a row is copied
    only when one of them starts like a formula.
    """
    first = _FORMULA_FIRST
    count = 0
    for row in rows:
        count += 1
        if (
            row[1][:1] in first
            or row[9][:1] in first
            or row[0][:1] in first
            or row[2][:1] in first
            or row[8][:1] in first
        ):
            cells = list(row)
            for i in (0, 1, 2, 8, 9):
                cells[i] = safe_cell(cells[i])
            yield tuple(cells)
        else:
            yield row
    counter[0] = count


def write_csv(rows: Iterator[tuple], out: io.TextIOBase | Any) -> int:
    """Write a header and the rows as CSV; returns the number of rows.

    Rows go to ``csv.writer.writerows`` in one call; only a row with a cell that
    could be taken for a formula is copied to be made safe.
    """
    writer = csv.writer(out)
    writer.writerow(localised_header(CSV_COLUMNS, CSV_LABELS))
    counter = [0]
    writer.writerows(_safe_rows(rows, counter))
    return counter[0]


def write_json(rows: Iterator[tuple], out: io.TextIOBase | Any) -> int:
    """Write ``{"lines": [...], "summary": [...]}``; returns the number of rows."""
    materialised = list(rows)
    json.dump(
        {
            "lines": [dict(zip(COLUMNS, row, strict=True)) for row in materialised],
            "summary": [t.__dict__ for t in summary(materialised)],
        },
        out,
        indent=1,
    )
    return len(materialised)
