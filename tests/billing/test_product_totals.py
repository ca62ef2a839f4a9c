"""The month's billed totals per product (invoice_product_totals, migration 0034) kept as
invoices are finalised, paid, written off and voided: always the sums of the issued
invoices' lines, as the migration's backfill computes them from the lines; the council's
economics read them."""

from __future__ import annotations

import sqlalchemy as sa

from portal.billing import lifecycle
from portal.billing.economics import council_economics
from portal.billing.models import Invoice, InvoiceProductTotal
from portal.db import db
from portal.kernel.clock import now_utc
from tests.billing.factories import draft, finalize, subscribe
from tests.conftest import SYSTEM
from tests.support import migration


def _kept() -> list[tuple]:
    return sorted(
        tuple(row)
        for row in db.session.execute(
            sa.select(
                InvoiceProductTotal.period,
                InvoiceProductTotal.product_id,
                InvoiceProductTotal.currency,
                InvoiceProductTotal.amount,
                InvoiceProductTotal.lines,
            ).where(InvoiceProductTotal.lines != 0)
        )
    )


def _from_the_lines() -> list[tuple]:
    """What migration 0034's backfill computes from the issued invoices' lines now."""
    db.session.execute(sa.delete(InvoiceProductTotal))
    db.session.execute(sa.text(migration("0034_invoice_product_totals.py").BACKFILL))
    rows = _kept()
    db.session.rollback()
    return rows


def test_the_totals_follow_finalising_paying_writing_off_and_voiding(
    app, issued, make_org, make_product
):
    period, product = issued["period"], issued["product"]
    other = make_product(20, sku="pdf-tools", vendor="autodraft", price=1500)
    orgs = [make_org(f"org{i}", tax_rate_bp=1900) for i in range(3)]
    invoices = []
    for i, org in enumerate(orgs):
        subscribe(app, org.id, product.id, 2 + i, issued["first"])
        subscribe(app, org.id, other.id, 1 + i, issued["first"])
        invoice_id = draft(app, org.id, period)
        assert invoice_id is not None
        invoices.append(invoice_id)
    with app.app_context():
        # Drafts count for nothing: only acme's issued invoice.
        assert _kept() == _from_the_lines()
        assert {row[1] for row in _kept()} == {product.id}
    for invoice_id in invoices:
        finalize(app, invoice_id)
    with app.app_context():
        kept = _kept()
        assert kept == _from_the_lines()
        assert {row[1] for row in kept} == {product.id, other.id}
        paid, written_off, voided = (db.session.get(Invoice, i) for i in invoices)
        lifecycle.payment_record(
            db.session,
            actor=SYSTEM,
            invoice=paid,
            amount=paid.total,
            method="bank_transfer",
            received_on=now_utc().date(),
        )
        lifecycle.invoice_mark_uncollectible(
            db.session, actor=SYSTEM, invoice=written_off, reason="gone"
        )
        db.session.commit()
        assert _kept() == kept  # still issued: the same sums
        lifecycle.invoice_void(db.session, actor=SYSTEM, invoice=voided, reason="sent twice")
        db.session.commit()
        after = _kept()
        assert after == _from_the_lines()
        assert after != kept
        # The economics bill what the lines of the invoices still issued add up to.
        billed = {
            p.product_id: p.billed
            for p in council_economics(db.session, period=period, today=now_utc().date()).products
        }
        for _, product_id, currency, amount, _ in after:
            assert billed[product_id][currency] == amount


def test_a_product_whose_only_invoice_is_voided_is_not_billed(app, issued, make_org):
    period = issued["period"]
    with app.app_context():
        economics = council_economics(db.session, period=period, today=now_utc().date())
        assert [p.product_id for p in economics.products if p.billed] == [issued["product"].id]
        invoice = db.session.get(Invoice, issued["invoice_id"])
        lifecycle.invoice_void(db.session, actor=SYSTEM, invoice=invoice, reason="duplicate")
        db.session.commit()
        economics = council_economics(db.session, period=period, today=now_utc().date())
        assert [p.product_id for p in economics.products if p.billed] == []
        assert _from_the_lines() == [] == _kept()
