"""The invoice lifecycle's one transition table: every allowed move works, no other does."""

from __future__ import annotations

import datetime as dt
import itertools

import pytest
import sqlalchemy as sa

from portal.billing.lifecycle import (
    INVOICE_TRANSITIONS,
    invoice_actions,
    invoice_can_become,
    invoice_move,
)
from portal.billing.models import Invoice, InvoiceStatus
from portal.db import db
from portal.kernel.errors import InvalidState

MOMENT = dt.datetime(2026, 3, 4, 5, 6, tzinfo=dt.UTC)
PAIRS = list(itertools.product(InvoiceStatus, InvoiceStatus))
TIMESTAMPS = ("finalised_at", "paid_at", "voided_at")


def _invoice(status: InvoiceStatus, organisation_id: int = 1, period: str = "2026-02") -> Invoice:
    final = status != InvoiceStatus.DRAFT
    return Invoice(
        organisation_id=organisation_id,
        period=period,
        currency="EUR",
        status=status,
        number=f"INV-2026-{period[-2:]}{list(InvoiceStatus).index(status):04d}" if final else None,
        finalised_at=dt.datetime(2026, 3, 1, tzinfo=dt.UTC) if final else None,
    )


def test_the_table_names_every_status():
    assert set(INVOICE_TRANSITIONS) == set(InvoiceStatus)
    for targets in INVOICE_TRANSITIONS.values():
        assert targets <= set(InvoiceStatus)
    # Final states stay final; nothing goes back to draft (invariant 4).
    assert INVOICE_TRANSITIONS[InvoiceStatus.VOID] == frozenset()
    assert INVOICE_TRANSITIONS[InvoiceStatus.PAID] == frozenset()
    assert all(InvoiceStatus.DRAFT not in t for t in INVOICE_TRANSITIONS.values())


@pytest.mark.parametrize(("source", "target"), PAIRS, ids=[f"{s}->{t}" for s, t in PAIRS])
def test_each_move_is_allowed_exactly_when_the_table_says(source, target):
    invoice = _invoice(source)
    before = {name: getattr(invoice, name) for name in ("status", *TIMESTAMPS)}
    allowed = target in INVOICE_TRANSITIONS[source]
    assert invoice_can_become(invoice, target) is allowed
    if allowed:
        invoice_move(invoice, target, at=MOMENT)
        assert invoice.status == target
        if target == InvoiceStatus.PAID:
            assert invoice.paid_at == MOMENT
        if target == InvoiceStatus.VOID:
            assert invoice.voided_at == MOMENT
        if target == InvoiceStatus.OPEN:
            assert invoice.finalised_at == (before["finalised_at"] or MOMENT)
    else:
        with pytest.raises(InvalidState) as raised:
            invoice_move(invoice, target, at=MOMENT)
        assert raised.value.code == "invalid_transition"
        assert {name: getattr(invoice, name) for name in ("status", *TIMESTAMPS)} == before


def test_every_allowed_move_is_stored_and_read_back_as_the_enum(app, make_org):
    """The moves pass the database's own checks (a number once final), and read back typed."""
    org = make_org()
    allowed = [(s, t) for s, t in PAIRS if t in INVOICE_TRANSITIONS[s]]
    with app.app_context():
        ids = []
        for month, (source, target) in enumerate(allowed, start=1):
            invoice = _invoice(source, org.id, f"2025-{month:02d}")
            db.session.add(invoice)
            db.session.flush()
            if source == InvoiceStatus.DRAFT:  # finalising gives the number first
                invoice.number = f"INV-2025-{month:06d}"
            invoice_move(invoice, target, at=MOMENT)
            db.session.flush()
            ids.append((invoice.id, target))
        db.session.commit()
        db.session.expire_all()
        for invoice_id, target in ids:
            status = db.session.scalar(sa.select(Invoice.status).where(Invoice.id == invoice_id))
            assert status is target
        raw = db.session.execute(sa.text("SELECT DISTINCT status FROM invoices")).scalars()
        assert {type(value) for value in raw} == {str}  # the column is still plain text


@pytest.mark.parametrize(
    ("status", "paid", "expected"),
    [
        (InvoiceStatus.DRAFT, 0, {"refresh", "finalise"}),
        (InvoiceStatus.OPEN, 0, {"credit", "pay", "void", "write_off"}),
        (InvoiceStatus.OPEN, 100, {"credit", "pay", "write_off"}),  # paid on: no longer voidable
        (InvoiceStatus.UNCOLLECTIBLE, 0, {"credit", "pay"}),
        (InvoiceStatus.PAID, 0, {"credit"}),
        (InvoiceStatus.VOID, 0, set()),
    ],
)
def test_the_page_offers_what_the_table_and_the_services_allow(status, paid, expected):
    invoice = _invoice(status)
    invoice.amount_paid = paid
    assert invoice_actions(invoice) == expected
