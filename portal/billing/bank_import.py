"""Bank statement import: incoming transfers matched to invoices by payment reference.

The file is CSV with a header row naming (in any order, any case) ``date``,
``amount``, ``currency`` and ``reference``; other columns are ignored. Each
row is one transfer received. Its reference is matched to an invoice's
payment reference (:func:`portal.billing.lifecycle.invoice_by_reference`), first
as a whole, then by the first invoice number found inside it ("Invoice
INV-2026-000042, thank you").

Every row gets an outcome:

* ``matched``: recorded as a bank-transfer payment (in full or in part);
* ``unmatched``: no invoice has that reference;
* ``mismatched``: an invoice was found, but the currency differs, the amount is
  more than is owed, or the invoice is not open; nothing is recorded, finance
  looks at it;
* ``duplicate``: the same transfer was imported before (or twice in the file);
* ``invalid``: the row itself is wrong (a date, an amount).

A transfer is known again by a digest of its date, amount, currency and
reference and of how many identical rows came before it in the file, stored as
the payment's ``external_id`` (``bank:…``), so importing the same statement
twice records each payment once.
"""

from __future__ import annotations

import csv
import datetime as dt
import hashlib
import io
import re
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field

import sqlalchemy as sa
from sqlalchemy.orm import Session

from portal import i18n
from portal.audit.services import audit_record
from portal.billing.access import FINANCE_ONLY
from portal.billing.lifecycle import invoice_by_reference, invoice_can_become, payment_record
from portal.billing.models import Invoice, InvoiceStatus, Payment, PaymentMethod, status_name
from portal.kernel import policy
from portal.kernel.actor import Actor
from portal.kernel.clock import now_utc
from portal.kernel.errors import DomainError, ValidationFailed
from portal.kernel.i18n import _, _l, _ln
from portal.kernel.iso import is_currency
from portal.kernel.money import to_minor
from portal.kernel.policy import Action

REQUIRED = ("date", "amount", "currency", "reference")
MAX_ROWS = 10_000
MAX_CHARACTERS = 2_000_000  # a statement's text; a page reads one byte more to know
NUMBER_IN_TEXT = re.compile(r"\b[A-Z0-9]{1,12}-\d{4}-\d{6}\b")


@dataclass
class ImportRow:
    """One line of the statement and what became of it."""

    line: int  # the line in the file (the header is line 1)
    date: str
    amount: str
    currency: str
    reference: str
    outcome: str = "invalid"
    message: str = ""
    invoice: Invoice | None = None
    amount_minor: int | None = None


@dataclass
class ImportResult:
    rows: list[ImportRow] = field(default_factory=list)

    @property
    def counts(self) -> dict[str, int]:
        found = Counter(r.outcome for r in self.rows)
        return {
            k: found.get(k, 0)
            for k in ("matched", "unmatched", "mismatched", "duplicate", "invalid")
        }


def _header(fieldnames: Sequence[str] | None) -> dict[str, str]:
    names = {(n or "").strip().lower(): n for n in fieldnames or []}
    missing = [n for n in REQUIRED if n not in names]
    if missing:
        names_missing = ", ".join(missing)
        raise ValidationFailed(
            _ln(
                "The statement needs a header row with the columns date, amount, currency, "
                "reference; %(columns)s is missing.",
                "The statement needs a header row with the columns date, amount, currency, "
                "reference; %(columns)s are missing.",
                len(missing),
                columns=names_missing,
            ),
            errors={
                "file": [
                    _ln(
                        "Missing column: %(columns)s.",
                        "Missing columns: %(columns)s.",
                        len(missing),
                        columns=names_missing,
                    )
                ]
            },
        )
    return {n: names[n] for n in REQUIRED}


def _find_invoice(session: Session, reference: str) -> Invoice | None:
    invoice = invoice_by_reference(session, reference)
    if invoice is not None:
        return invoice
    for candidate in NUMBER_IN_TEXT.findall(reference.upper()):
        invoice = invoice_by_reference(session, candidate)
        if invoice is not None:
            return invoice
    return None


def _transfer_key(row: ImportRow, occurrence: int) -> str:
    text = (
        f"{row.date}|{row.amount_minor}|{row.currency}|{row.reference.strip().upper()}|{occurrence}"
    )
    return "bank:" + hashlib.sha256(text.encode()).hexdigest()[:40]


def _parse(row: ImportRow, today: dt.date) -> dt.date | None:
    """Check a row's own fields; sets ``message`` and returns None when it is invalid."""
    try:
        received = dt.date.fromisoformat(row.date.strip())
    except ValueError:
        row.message = _("The date must be YYYY-MM-DD.")
        return None
    if received > today:
        row.message = _("The date is in the future.")
        return None
    row.currency = row.currency.strip().upper()
    if not is_currency(row.currency):
        row.message = _("“%(currency)s” is not an ISO 4217 currency.", currency=row.currency)
        return None
    try:
        row.amount_minor = to_minor(row.amount.strip(), row.currency)
    except ValueError as error:
        row.message = _("Amount: %(problem)s", problem=str(error))
        return None
    if row.amount_minor <= 0:
        row.message = _("Not money received (the amount is not positive).")
        return None
    if not row.reference.strip():
        row.message = _("The reference is empty.")
        return None
    return received


def bank_statement_upload(session: Session, *, actor: Actor, data: bytes) -> ImportResult:
    """Import an uploaded statement: UTF-8 (a byte-order mark is fine), at most 2 MB of text.

    ``data`` is the file's first :data:`MAX_CHARACTERS` + 1 bytes (a longer file
    is refused without reading it all).
    """
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise ValidationFailed(
            _l("The file must be UTF-8 text (CSV)."),
            errors={"file": [_l("The file must be UTF-8 text (CSV).")]},
        ) from exc
    if len(text) > MAX_CHARACTERS:
        raise ValidationFailed(
            _l("The file is over 2 MB; split the statement."),
            errors={"file": [_l("The file is over 2 MB; split the statement.")]},
        )
    return bank_statement_import(session, actor=actor, text=text)


def bank_statement_import(session: Session, *, actor: Actor, text: str) -> ImportResult:
    """Match every row of a bank statement (CSV text) and record the matched payments."""
    policy.require(actor, Action.PAYMENT_IMPORT_BANK, message=FINANCE_ONLY)
    reader = csv.DictReader(io.StringIO(text))
    columns = _header(reader.fieldnames)
    today = now_utc().date()
    result = ImportResult()
    seen: Counter[tuple] = Counter()
    for number, raw in enumerate(reader, start=2):
        if len(result.rows) >= MAX_ROWS:
            raise ValidationFailed(
                _l(
                    "A statement may have at most %(limit)s rows; split the file.",
                    limit=i18n.number(MAX_ROWS),
                ),
                errors={"file": [_l("At most %(limit)s rows.", limit=i18n.number(MAX_ROWS))]},
            )
        if not any((v or "").strip() for v in raw.values() if isinstance(v, str)):
            continue  # a blank line
        cell = {name: str(raw.get(column) or "") for name, column in columns.items()}
        row = ImportRow(
            line=number,
            date=cell["date"],
            amount=cell["amount"],
            currency=cell["currency"],
            reference=cell["reference"],
        )
        result.rows.append(row)
        received = _parse(row, today)
        if received is None:
            continue
        identity = (row.date, row.amount_minor, row.currency, row.reference.strip().upper())
        key = _transfer_key(row, seen[identity])
        seen[identity] += 1
        if session.scalar(sa.select(Payment.id).where(Payment.external_id == key)) is not None:
            row.outcome, row.message = "duplicate", _("Imported before; not recorded again.")
            continue
        invoice = _find_invoice(session, row.reference)
        if invoice is None:
            row.outcome, row.message = "unmatched", _("No invoice has this reference.")
            continue
        row.invoice = invoice
        problem = _mismatch(invoice, row)
        if problem:
            row.outcome, row.message = "mismatched", problem
            continue
        try:
            with session.begin_nested():
                payment_record(
                    session,
                    actor=actor,
                    invoice=invoice,
                    amount=row.amount_minor,  # type: ignore[arg-type]
                    method=PaymentMethod.BANK_TRANSFER,
                    received_on=received,
                    reference=row.reference.strip(),
                    external_id=key,
                )
        except DomainError as error:
            row.outcome, row.message = "mismatched", error.detail
            continue
        row.outcome = "matched"
        row.message = (
            _("Paid in full.")
            if invoice.status == InvoiceStatus.PAID
            else _("Part payment recorded; the rest is still due.")
        )
    if not result.rows:
        raise ValidationFailed(
            _l("The statement has no rows."),
            errors={"file": [_l("The file has a header but no rows.")]},
        )
    audit_record(
        session,
        actor=actor,
        action="bank_statement.import",
        target_type="bank_statement",
        target_label=f"{len(result.rows)} rows",
        after=result.counts,
    )
    return result


def _mismatch(invoice: Invoice, row: ImportRow) -> str:
    """Why a transfer cannot be recorded against ``invoice`` ("" when it can)."""
    if invoice.currency != row.currency:
        return _(
            "%(number)s is in %(currency)s; the transfer is in %(transfer_currency)s.",
            number=invoice.number,
            currency=invoice.currency,
            transfer_currency=row.currency,
        )
    if not invoice_can_become(invoice, InvoiceStatus.PAID):
        return _(
            "%(number)s is %(status)s; nothing is owed on it.",
            number=invoice.number,
            status=status_name(invoice.status),
        )
    assert row.amount_minor is not None
    if row.amount_minor > invoice.amount_due:
        return _(
            "The transfer (%(amount)s) is more than the %(due)s still owed on %(number)s.",
            amount=i18n.money(row.amount_minor, row.currency),
            due=i18n.money(invoice.amount_due, invoice.currency),
            number=invoice.number,
        )
    return ""
