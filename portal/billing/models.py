"""Invoices, their lines, invoice runs, numbering, credit notes and payments.

All money is integer minor units beside a currency code (invariant 7). An
invoice is a draft until finalised; then it has a number and never changes
(invariant 4): corrections are credit notes.
"""

from __future__ import annotations

import datetime as dt
import enum
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Mapped, mapped_column, relationship

from portal.db import (
    Base,
    BigIntId,
    TenantKey,
    TenantMixin,
    TimestampMixin,
    UTCDateTime,
    enum_column,
)
from portal.kernel.clock import now_utc
from portal.kernel.i18n import _l
from portal.tenancy.models import Organisation


class InvoiceStatus(enum.StrEnum):
    DRAFT = "draft"
    OPEN = "open"
    PAID = "paid"
    VOID = "void"
    UNCOLLECTIBLE = "uncollectible"


# Finalised invoices that stand: they were issued and count (void ones were cancelled).
ISSUED = (InvoiceStatus.OPEN, InvoiceStatus.PAID, InvoiceStatus.UNCOLLECTIBLE)

# An invoice's status as people read it (the code stays English in APIs, CSV and the audit log).
STATUS_NAMES = {
    InvoiceStatus.DRAFT: _l("draft"),
    InvoiceStatus.OPEN: _l("open"),
    InvoiceStatus.PAID: _l("paid"),
    InvoiceStatus.VOID: _l("void"),
    InvoiceStatus.UNCOLLECTIBLE: _l("uncollectible"),
}


def status_name(status: str) -> str:
    """``open`` → "open" / "открыт": an invoice status in the reader's language."""
    name = STATUS_NAMES.get(status)  # type: ignore[call-overload]
    return str(name) if name is not None else str(status)


class PaymentMethod(enum.StrEnum):
    STRIPE = "stripe"
    BANK_TRANSFER = "bank_transfer"
    OTHER = "other"


class InvoiceRunStatus(enum.StrEnum):
    QUEUED = "queued"  # recorded, its job waiting for a worker
    RUNNING = "running"
    DONE = "done"
    FAILED = "failed"


class Invoice(TenantMixin, TimestampMixin, Base):
    """One organisation's bill for one calendar month (UTC) in one currency."""

    __tablename__ = "invoices"
    __tenant_key__ = TenantKey(index=False)
    __table_args__ = (
        # Invariant 5: one invoice per organisation, period and currency.
        sa.UniqueConstraint("organisation_id", "period", "currency", name="uq_invoices_org_period"),
        sa.CheckConstraint(
            "status IN ('draft', 'open', 'paid', 'void', 'uncollectible')", name="status_known"
        ),
        sa.CheckConstraint("length(currency) = 3", name="currency_iso4217"),
        sa.CheckConstraint("total = subtotal + tax", name="total_adds_up"),
        sa.CheckConstraint(
            "(status = 'draft' AND number IS NULL) OR (status != 'draft' AND number IS NOT NULL)",
            name="number_when_final",
        ),
        sa.Index("ix_invoices_period_status", "period", "status"),
        # Past-due invoices, oldest due first, a page at a time (migration 0030).
        sa.Index(
            "ix_invoices_open_due",
            "due_on",
            "id",
            sqlite_where=sa.text("status = 'open'"),
            postgresql_where=sa.text("status = 'open'"),
        ),
    )

    id: Mapped[int] = mapped_column(BigIntId, primary_key=True)
    period: Mapped[str] = mapped_column(sa.String(7), nullable=False)  # YYYY-MM
    currency: Mapped[str] = mapped_column(sa.String(3), nullable=False)
    status: Mapped[InvoiceStatus] = mapped_column(
        enum_column(InvoiceStatus, 16), nullable=False, default=InvoiceStatus.DRAFT
    )
    number: Mapped[str | None] = mapped_column(sa.String(32), unique=True)
    subtotal: Mapped[int] = mapped_column(sa.BigInteger, nullable=False, default=0)
    tax: Mapped[int] = mapped_column(sa.BigInteger, nullable=False, default=0)
    total: Mapped[int] = mapped_column(sa.BigInteger, nullable=False, default=0)
    tax_rate_bp: Mapped[int] = mapped_column(sa.Integer, nullable=False, default=0)
    reverse_charge: Mapped[bool] = mapped_column(sa.Boolean, nullable=False, default=False)
    note: Mapped[str | None] = mapped_column(sa.String(1000))
    payment_reference: Mapped[str | None] = mapped_column(sa.String(64), unique=True)
    amount_paid: Mapped[int] = mapped_column(sa.BigInteger, nullable=False, default=0)
    amount_credited: Mapped[int] = mapped_column(sa.BigInteger, nullable=False, default=0)
    finalised_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime())
    # Usage received up to this moment is on the invoice; events of its period that
    # arrive later are billed as late usage on a following invoice.
    usage_counted_until: Mapped[dt.datetime | None] = mapped_column(UTCDateTime())
    due_on: Mapped[dt.date | None] = mapped_column(sa.Date)
    paid_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime())
    voided_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime())
    # The PDF rendered at finalisation: the document the organisation received.
    pdf: Mapped[bytes | None] = mapped_column(sa.LargeBinary, deferred=True)

    organisation: Mapped[Organisation] = relationship(lazy="joined")
    lines: Mapped[list[InvoiceLine]] = relationship(
        order_by="InvoiceLine.position", cascade="all, delete-orphan", lazy="selectin"
    )

    @property
    def amount_due(self) -> int:
        """What is still owed: total less payments and credit notes."""
        if self.status in (InvoiceStatus.DRAFT, InvoiceStatus.VOID):
            return 0
        return max(0, self.total - self.amount_paid - self.amount_credited)


class InvoiceLine(TenantMixin, Base):
    """One line of an invoice, with what produced it in ``source``."""

    __tablename__ = "invoice_lines"
    __table_args__ = (
        sa.UniqueConstraint("invoice_id", "position", name="uq_invoice_lines_position"),
        sa.CheckConstraint(
            "kind IN ('seat', 'metered', 'late_usage', 'adjustment')", name="kind_known"
        ),
    )

    id: Mapped[int] = mapped_column(BigIntId, primary_key=True)
    invoice_id: Mapped[int] = mapped_column(
        sa.ForeignKey("invoices.id", ondelete="CASCADE"), nullable=False
    )
    position: Mapped[int] = mapped_column(sa.Integer, nullable=False)
    kind: Mapped[str] = mapped_column(sa.String(16), nullable=False)
    product_id: Mapped[int | None] = mapped_column(
        sa.ForeignKey("products.id", ondelete="RESTRICT")
    )
    product_sku: Mapped[str | None] = mapped_column(sa.String(63))
    description: Mapped[str] = mapped_column(sa.String(500), nullable=False)
    # An exact decimal as text ("11.6000"): seat-months or a meter's aggregate.
    quantity: Mapped[str] = mapped_column(sa.String(40), nullable=False)
    unit_amount: Mapped[int | None] = mapped_column(sa.BigInteger)
    amount: Mapped[int] = mapped_column(sa.BigInteger, nullable=False)
    source: Mapped[dict[str, Any]] = mapped_column(sa.JSON, nullable=False, default=dict)
    # A seat line of a council-basis price (SPEC 8.3): the council-wide average reserved
    # seats of the product in the month, and the tier (1, 2, …) that quantity chose.
    council_quantity: Mapped[int | None] = mapped_column(sa.BigInteger)
    tier: Mapped[int | None] = mapped_column(sa.Integer)


class InvoiceRun(Base):
    """One run of the month's invoicing: progress for the page and the CLI."""

    __tablename__ = "invoice_runs"

    id: Mapped[int] = mapped_column(BigIntId, primary_key=True)
    period: Mapped[str] = mapped_column(sa.String(7), nullable=False, index=True)
    status: Mapped[InvoiceRunStatus] = mapped_column(
        enum_column(InvoiceRunStatus, 16), nullable=False, default=InvoiceRunStatus.RUNNING
    )
    finalize: Mapped[bool] = mapped_column(sa.Boolean, nullable=False, default=False)
    organisations_total: Mapped[int] = mapped_column(sa.Integer, nullable=False, default=0)
    organisations_done: Mapped[int] = mapped_column(sa.Integer, nullable=False, default=0)
    invoices_created: Mapped[int] = mapped_column(sa.Integer, nullable=False, default=0)
    invoices_refreshed: Mapped[int] = mapped_column(sa.Integer, nullable=False, default=0)
    invoices_finalised: Mapped[int] = mapped_column(sa.Integer, nullable=False, default=0)
    error: Mapped[str | None] = mapped_column(sa.Text)
    started_by: Mapped[str] = mapped_column(sa.String(254), nullable=False)
    started_at: Mapped[dt.datetime] = mapped_column(UTCDateTime(), nullable=False, default=now_utc)
    finished_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime())
    # The job that executes the run (portal.jobs; none for a run the CLI executes itself).
    job_id: Mapped[int | None] = mapped_column(
        sa.ForeignKey("jobs.id", ondelete="SET NULL"), index=True
    )


class DocumentCounter(Base):
    """The last number given for a prefix and year; locked to give the next one.

    Incremented in the same transaction that finalises the document, so a
    rollback gives the number back: numbers are unique and gapless.
    """

    __tablename__ = "document_counters"

    prefix: Mapped[str] = mapped_column(sa.String(12), primary_key=True)
    year: Mapped[int] = mapped_column(sa.Integer, primary_key=True)
    last_value: Mapped[int] = mapped_column(sa.BigInteger, nullable=False, default=0)


class InvoiceProductTotal(Base):
    """What the issued invoices of a month bill for a product, per currency: the sum of
    their lines of that product (migration 0034).

    Kept by :func:`portal.billing.lifecycle.invoice_move`, the one place an invoice's
    status changes: added when a draft is finalised, taken off when an invoice is voided
    (the only ways into and out of :data:`ISSUED`); an issued invoice's lines never
    change. The council's economics read a month's totals here instead of summing its
    100,000 lines. ``lines`` counts the lines summed, so a product billed nothing is told
    from one whose lines add up to zero. Council-wide: sums over every organisation.
    """

    __tablename__ = "invoice_product_totals"

    period: Mapped[str] = mapped_column(sa.String(7), primary_key=True)  # YYYY-MM
    product_id: Mapped[int] = mapped_column(
        sa.ForeignKey("products.id", ondelete="RESTRICT"), primary_key=True
    )
    currency: Mapped[str] = mapped_column(sa.String(3), primary_key=True)
    amount: Mapped[int] = mapped_column(sa.BigInteger, nullable=False)
    lines: Mapped[int] = mapped_column(sa.BigInteger, nullable=False)


class CreditNote(TenantMixin, Base):
    """A correction of a finalised invoice: reduces what is owed, for part or all of it."""

    __tablename__ = "credit_notes"
    __table_args__ = (
        sa.CheckConstraint("subtotal > 0", name="subtotal_positive"),
        sa.CheckConstraint("total = subtotal + tax", name="total_adds_up"),
    )

    id: Mapped[int] = mapped_column(BigIntId, primary_key=True)
    invoice_id: Mapped[int] = mapped_column(
        sa.ForeignKey("invoices.id", ondelete="RESTRICT"), nullable=False, index=True
    )
    number: Mapped[str] = mapped_column(sa.String(32), unique=True, nullable=False)
    currency: Mapped[str] = mapped_column(sa.String(3), nullable=False)
    subtotal: Mapped[int] = mapped_column(sa.BigInteger, nullable=False)
    tax: Mapped[int] = mapped_column(sa.BigInteger, nullable=False)
    total: Mapped[int] = mapped_column(sa.BigInteger, nullable=False)
    reason: Mapped[str] = mapped_column(sa.String(1000), nullable=False)
    created_by: Mapped[str] = mapped_column(sa.String(254), nullable=False)
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime(), nullable=False, default=now_utc)

    invoice: Mapped[Invoice] = relationship(lazy="joined")


class Payment(TenantMixin, Base):
    """Money received against an invoice: by Stripe, or recorded by finance."""

    __tablename__ = "payments"
    __table_args__ = (
        sa.CheckConstraint("amount > 0", name="amount_positive"),
        sa.CheckConstraint("method IN ('stripe', 'bank_transfer', 'other')", name="method_known"),
    )

    id: Mapped[int] = mapped_column(BigIntId, primary_key=True)
    invoice_id: Mapped[int] = mapped_column(
        sa.ForeignKey("invoices.id", ondelete="RESTRICT"), nullable=False, index=True
    )
    amount: Mapped[int] = mapped_column(sa.BigInteger, nullable=False)
    currency: Mapped[str] = mapped_column(sa.String(3), nullable=False)
    method: Mapped[PaymentMethod] = mapped_column(enum_column(PaymentMethod, 16), nullable=False)
    reference: Mapped[str | None] = mapped_column(sa.String(200))
    # Stripe's PaymentIntent id, once: a webhook delivered twice records one payment.
    external_id: Mapped[str | None] = mapped_column(sa.String(100), unique=True)
    received_on: Mapped[dt.date] = mapped_column(sa.Date, nullable=False)
    recorded_by: Mapped[str] = mapped_column(sa.String(254), nullable=False)
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime(), nullable=False, default=now_utc)
