"""Helpers for the finance page, document, import and API tests (on top of ``billed``)."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest
import sqlalchemy as sa

from portal.billing import drafting, lifecycle
from portal.billing.models import CreditNote, Invoice, InvoiceRun, Payment
from portal.db import db
from portal.tenancy.models import Organisation
from tests.conftest import SYSTEM


def draft(app, org_id: int, period: str) -> int | None:
    """Draft (or refresh) an organisation's invoice; its id, or None when nothing is owed."""
    with app.app_context():
        invoice, _ = drafting.invoice_draft_refresh(
            db.session,
            actor=SYSTEM,
            organisation=db.session.get(Organisation, org_id),
            period=period,
        )
        db.session.commit()
        return invoice.id if invoice else None


def finalize(app, invoice_id: int) -> str:
    with app.app_context():
        invoice = lifecycle.invoice_finalize(
            db.session, actor=SYSTEM, invoice=db.session.get(Invoice, invoice_id)
        )
        db.session.commit()
        return invoice.number or ""


def invoice_of(app, invoice_id: int) -> Invoice:
    """A detached copy of an invoice (lines loaded, PDF included)."""
    with app.app_context():
        invoice = db.session.get(Invoice, invoice_id)
        assert invoice is not None
        _ = invoice.pdf
        db.session.expunge(invoice)
        return invoice


def count(app, model: Any) -> int:
    with app.app_context():
        return db.session.scalar(sa.select(sa.func.count()).select_from(model)) or 0


def counts(app) -> tuple[int, ...]:
    """Rows that finance forms create: nothing changed when these stay the same."""
    return tuple(count(app, m) for m in (Invoice, CreditNote, Payment, InvoiceRun))


def subscribe(app, org_id: int, product_id: int, quantity: int, starts_on: dt.date) -> None:
    from portal.catalogue.models import Product
    from portal.seats.services import subscription_create

    with app.app_context():
        subscription_create(
            db.session,
            actor=SYSTEM,
            organisation=db.session.get(Organisation, org_id),
            product=db.session.get(Product, product_id),
            quantity=quantity,
            starts_on=starts_on,
        )
        db.session.commit()


def make_due(app, invoice_id: int, due_on: dt.date) -> None:
    """Move an issued invoice's due date (as if it had been issued long ago)."""
    with app.app_context():
        db.session.execute(sa.update(Invoice).where(Invoice.id == invoice_id).values(due_on=due_on))
        db.session.commit()


@pytest.fixture
def issued(app, billed) -> dict[str, Any]:
    """acme's invoice for last month, finalised: 10 seats × 30.00 + 19 % = 357.00 EUR."""
    invoice_id = draft(app, billed["org"].id, billed["period"])
    assert invoice_id is not None
    number = finalize(app, invoice_id)
    return {**billed, "invoice_id": invoice_id, "number": number}
