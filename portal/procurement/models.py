"""Purchase orders to vendors, their lines and approvals, and the vendors' invoices (SPEC 8.3).

All council-wide tables (no organisation): the council buys, members never see them.
Money is integer minor units beside the order's currency (invariant 7); every line of
an order and of a vendor invoice is in the order's currency.

The states and the one table of allowed transitions are in
:mod:`portal.procurement.purchase_orders` (docs/PROCUREMENT.md).
"""

from __future__ import annotations

import datetime as dt
import enum

import sqlalchemy as sa
from sqlalchemy.orm import Mapped, mapped_column, relationship

from portal.catalogue.models import LicencePool, Product, Vendor
from portal.db import Base, BigIntId, TenantMixin, TimestampMixin, UTCDateTime, enum_column
from portal.identity.models import User
from portal.kernel.clock import now_utc
from portal.kernel.i18n import _l
from portal.tenancy.models import Organisation


class PurchaseOrderState(enum.StrEnum):
    DRAFT = "draft"
    APPROVED = "approved"
    SENT = "sent"
    CONFIRMED = "confirmed"
    RECEIVED = "received"
    CANCELLED = "cancelled"


#: A state as people read it (the code stays English in the API, CSV and the audit log).
STATE_NAMES = {
    PurchaseOrderState.DRAFT: _l("draft"),
    PurchaseOrderState.APPROVED: _l("approved"),
    PurchaseOrderState.SENT: _l("sent"),
    PurchaseOrderState.CONFIRMED: _l("confirmed"),
    PurchaseOrderState.RECEIVED: _l("received"),
    PurchaseOrderState.CANCELLED: _l("cancelled"),
}


def state_name(state: str) -> str:
    """``sent`` → "sent" / "отправлен": a purchase order's state in the reader's language."""
    name = STATE_NAMES.get(state)  # type: ignore[call-overload]
    return str(name) if name is not None else str(state)


#: Orders that commit the council to pay: approved or later, never cancelled.
COMMITTED = (
    PurchaseOrderState.APPROVED,
    PurchaseOrderState.SENT,
    PurchaseOrderState.CONFIRMED,
    PurchaseOrderState.RECEIVED,
)

_STATES_SQL = ", ".join(f"'{state.value}'" for state in PurchaseOrderState)


class PurchaseOrder(TimestampMixin, Base):
    """An order of seats from one vendor for one term, in one currency.

    ``number`` (``PO-YYYY-NNNNNN``) is given at approval, gapless; a draft has none.
    ``total`` is the sum of the lines' amounts, kept with them.
    """

    __tablename__ = "purchase_orders"
    __table_args__ = (
        sa.CheckConstraint(f"state IN ({_STATES_SQL})", name="state_known"),
        sa.CheckConstraint("ends_on >= starts_on", name="term_ordered"),
        sa.CheckConstraint("total >= 0", name="total_not_negative"),
        sa.CheckConstraint(
            "number IS NOT NULL OR state IN ('draft', 'cancelled')", name="numbered_once_approved"
        ),
        sa.Index("ix_purchase_orders_state_vendor", "state", "vendor_id"),
    )

    id: Mapped[int] = mapped_column(BigIntId, primary_key=True)
    vendor_id: Mapped[int] = mapped_column(
        sa.ForeignKey("vendors.id", ondelete="RESTRICT"), nullable=False, index=True
    )
    number: Mapped[str | None] = mapped_column(sa.String(32), unique=True)
    state: Mapped[PurchaseOrderState] = mapped_column(
        enum_column(PurchaseOrderState, 16), nullable=False, default=PurchaseOrderState.DRAFT
    )
    currency: Mapped[str] = mapped_column(sa.String(3), nullable=False)
    starts_on: Mapped[dt.date] = mapped_column(sa.Date, nullable=False)
    ends_on: Mapped[dt.date] = mapped_column(sa.Date, nullable=False)
    total: Mapped[int] = mapped_column(sa.BigInteger, nullable=False, default=0)
    notes: Mapped[str] = mapped_column(sa.Text, nullable=False, default="")
    #: where the draft came from: ``manual``, ``demand`` (the demand board), ``forecast``
    source: Mapped[str] = mapped_column(sa.String(20), nullable=False, default="manual")
    created_by_id: Mapped[int | None] = mapped_column(
        sa.ForeignKey("users.id", ondelete="SET NULL")
    )
    approved_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime())
    sent_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime())
    sent_to: Mapped[str | None] = mapped_column(sa.String(254))
    confirmed_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime())
    #: the vendor's own reference for its confirmation (an order number, a mail's subject)
    vendor_reference: Mapped[str | None] = mapped_column(sa.String(200))
    received_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime())
    cancelled_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime())
    cancel_reason: Mapped[str | None] = mapped_column(sa.String(500))
    #: the document as sent to the vendor (kept as it was sent)
    pdf: Mapped[bytes | None] = mapped_column(sa.LargeBinary, deferred=True)

    vendor: Mapped[Vendor] = relationship(lazy="joined")
    created_by: Mapped[User | None] = relationship()
    lines: Mapped[list[PurchaseOrderLine]] = relationship(
        back_populates="purchase_order",
        order_by="PurchaseOrderLine.position",
        cascade="all, delete-orphan",
    )
    approvals: Mapped[list[PurchaseOrderApproval]] = relationship(
        back_populates="purchase_order",
        order_by="PurchaseOrderApproval.id",
        cascade="all, delete-orphan",
    )
    vendor_invoices: Mapped[list[VendorInvoice]] = relationship(
        back_populates="purchase_order", order_by="VendorInvoice.id"
    )

    @property
    def label(self) -> str:
        """Its number, or ``draft #id`` before approval."""
        return self.number or f"#{self.id}"


class PurchaseOrderLine(Base):
    """Seats of one product: ``unit_cost`` per seat-month, ``amount`` for the whole term."""

    __tablename__ = "purchase_order_lines"
    __table_args__ = (
        sa.UniqueConstraint(
            "purchase_order_id", "position", name="uq_purchase_order_lines_position"
        ),
        sa.CheckConstraint("seats > 0", name="seats_positive"),
        sa.CheckConstraint("unit_cost >= 0", name="unit_cost_not_negative"),
        sa.CheckConstraint("amount >= 0", name="amount_not_negative"),
        sa.CheckConstraint("received_seats >= 0", name="received_not_negative"),
    )

    id: Mapped[int] = mapped_column(BigIntId, primary_key=True)
    purchase_order_id: Mapped[int] = mapped_column(
        sa.ForeignKey("purchase_orders.id", ondelete="CASCADE"), nullable=False
    )
    position: Mapped[int] = mapped_column(sa.Integer, nullable=False)
    product_id: Mapped[int] = mapped_column(
        sa.ForeignKey("products.id", ondelete="RESTRICT"), nullable=False, index=True
    )
    seats: Mapped[int] = mapped_column(sa.Integer, nullable=False)
    unit_cost: Mapped[int] = mapped_column(sa.BigInteger, nullable=False)
    months: Mapped[int] = mapped_column(sa.Integer, nullable=False)
    amount: Mapped[int] = mapped_column(sa.BigInteger, nullable=False)
    received_seats: Mapped[int] = mapped_column(sa.Integer, nullable=False, default=0)
    #: the pool the seats went into at receipt (created, or extended)
    pool_id: Mapped[int | None] = mapped_column(
        sa.ForeignKey("licence_pools.id", ondelete="SET NULL")
    )

    purchase_order: Mapped[PurchaseOrder] = relationship(back_populates="lines")
    product: Mapped[Product] = relationship(lazy="joined")
    pool: Mapped[LicencePool | None] = relationship()


class PurchaseOrderApproval(Base):
    """One person's approval of an order; a person approves an order at most once."""

    __tablename__ = "purchase_order_approvals"
    __table_args__ = (
        sa.UniqueConstraint(
            "purchase_order_id", "user_id", name="uq_purchase_order_approvals_person"
        ),
    )

    id: Mapped[int] = mapped_column(BigIntId, primary_key=True)
    purchase_order_id: Mapped[int] = mapped_column(
        sa.ForeignKey("purchase_orders.id", ondelete="CASCADE"), nullable=False
    )
    user_id: Mapped[int] = mapped_column(
        sa.ForeignKey("users.id", ondelete="RESTRICT"), nullable=False, index=True
    )
    role: Mapped[str] = mapped_column(sa.String(20), nullable=False)
    approved_at: Mapped[dt.datetime] = mapped_column(UTCDateTime(), nullable=False, default=now_utc)

    purchase_order: Mapped[PurchaseOrder] = relationship(back_populates="approvals")
    user: Mapped[User] = relationship(lazy="joined")


class VendorInvoice(Base):
    """The vendor's invoice to the council against one order, line by line."""

    __tablename__ = "vendor_invoices"
    __table_args__ = (
        sa.UniqueConstraint(
            "purchase_order_id", "vendor_number", name="uq_vendor_invoices_vendor_number"
        ),
        sa.CheckConstraint("amount >= 0", name="amount_not_negative"),
    )

    id: Mapped[int] = mapped_column(BigIntId, primary_key=True)
    purchase_order_id: Mapped[int] = mapped_column(
        sa.ForeignKey("purchase_orders.id", ondelete="RESTRICT"), nullable=False
    )
    vendor_number: Mapped[str] = mapped_column(sa.String(100), nullable=False)
    issued_on: Mapped[dt.date] = mapped_column(sa.Date, nullable=False)
    currency: Mapped[str] = mapped_column(sa.String(3), nullable=False)
    amount: Mapped[int] = mapped_column(sa.BigInteger, nullable=False)
    recorded_by_id: Mapped[int | None] = mapped_column(
        sa.ForeignKey("users.id", ondelete="SET NULL")
    )
    recorded_at: Mapped[dt.datetime] = mapped_column(UTCDateTime(), nullable=False, default=now_utc)

    purchase_order: Mapped[PurchaseOrder] = relationship(back_populates="vendor_invoices")
    lines: Mapped[list[VendorInvoiceLine]] = relationship(
        back_populates="vendor_invoice", cascade="all, delete-orphan"
    )


class VendorInvoiceLine(Base):
    """Seats and amount a vendor invoice charges for one line of the order."""

    __tablename__ = "vendor_invoice_lines"
    __table_args__ = (
        sa.UniqueConstraint(
            "vendor_invoice_id", "purchase_order_line_id", name="uq_vendor_invoice_lines_po_line"
        ),
        sa.CheckConstraint("seats >= 0", name="seats_not_negative"),
        sa.CheckConstraint("amount >= 0", name="amount_not_negative"),
    )

    id: Mapped[int] = mapped_column(BigIntId, primary_key=True)
    vendor_invoice_id: Mapped[int] = mapped_column(
        sa.ForeignKey("vendor_invoices.id", ondelete="CASCADE"), nullable=False
    )
    purchase_order_line_id: Mapped[int] = mapped_column(
        sa.ForeignKey("purchase_order_lines.id", ondelete="RESTRICT"), nullable=False, index=True
    )
    seats: Mapped[int] = mapped_column(sa.Integer, nullable=False)
    amount: Mapped[int] = mapped_column(sa.BigInteger, nullable=False)

    vendor_invoice: Mapped[VendorInvoice] = relationship(back_populates="lines")


# ---------------------------------------------------------------- product requests (part D2)


class ProductRequestState(enum.StrEnum):
    OPEN = "open"
    PLANNED = "planned"
    ORDERED = "ordered"
    DECLINED = "declined"
    MERGED = "merged"


#: A request's state as people read it.
REQUEST_STATE_NAMES = {
    ProductRequestState.OPEN: _l("open"),
    ProductRequestState.PLANNED: _l("planned"),
    ProductRequestState.ORDERED: _l("ordered"),
    ProductRequestState.DECLINED: _l("declined"),
    ProductRequestState.MERGED: _l("merged"),
}

#: The states a request still counts as demand in.
REQUEST_WAITING = (ProductRequestState.OPEN, ProductRequestState.PLANNED)

_REQUEST_STATES_SQL = ", ".join(f"'{state.value}'" for state in ProductRequestState)


def request_state_name(state: str) -> str:
    """``planned`` → "planned" / "запланирован": a product request's state."""
    name = REQUEST_STATE_NAMES.get(state)  # type: ignore[call-overload]
    return str(name) if name is not None else str(state)


class ProductRequest(TenantMixin, TimestampMixin, Base):
    """A member's or org admin's request for a product not in the catalogue (issue 16).

    The council answers it (``state`` and ``reply``, shown to the requesters), merges
    duplicates into one *primary* request (a merged one has ``state = merged`` and
    ``merged_into_id``; it counts in the primary's demand and shows the primary's
    answer), links it to the catalogue product once there is one (``product_id``) and
    drafts a purchase order from it (``purchase_order_id``, ``state = ordered``).
    """

    __tablename__ = "product_requests"
    __table_args__ = (
        sa.CheckConstraint(f"state IN ({_REQUEST_STATES_SQL})", name="state_known"),
        sa.CheckConstraint("seats > 0", name="seats_positive"),
        sa.CheckConstraint(
            "(state = 'merged') = (merged_into_id IS NOT NULL)", name="merged_has_primary"
        ),
        sa.CheckConstraint(
            "merged_into_id IS NULL OR merged_into_id != id", name="not_merged_into_self"
        ),
        sa.Index("ix_product_requests_state_created", "state", "created_at"),
    )

    id: Mapped[int] = mapped_column(BigIntId, primary_key=True)
    requested_by_id: Mapped[int | None] = mapped_column(
        sa.ForeignKey("users.id", ondelete="SET NULL")
    )
    product_name: Mapped[str] = mapped_column(sa.String(200), nullable=False)
    #: the vendor as typed, or an existing vendor's (``vendor_id``)
    vendor_name: Mapped[str] = mapped_column(sa.String(200), nullable=False, default="")
    vendor_id: Mapped[int | None] = mapped_column(sa.ForeignKey("vendors.id", ondelete="SET NULL"))
    seats: Mapped[int] = mapped_column(sa.Integer, nullable=False)
    note: Mapped[str] = mapped_column(sa.Text, nullable=False, default="")
    state: Mapped[ProductRequestState] = mapped_column(
        enum_column(ProductRequestState, 16), nullable=False, default=ProductRequestState.OPEN
    )
    reply: Mapped[str] = mapped_column(sa.Text, nullable=False, default="")
    answered_by_id: Mapped[int | None] = mapped_column(
        sa.ForeignKey("users.id", ondelete="SET NULL")
    )
    answered_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime())
    merged_into_id: Mapped[int | None] = mapped_column(
        # NO ACTION (checked at the statement's end): a table emptied at once is no breach
        sa.ForeignKey("product_requests.id"),
        index=True,
    )
    product_id: Mapped[int | None] = mapped_column(
        sa.ForeignKey("products.id", ondelete="SET NULL"), index=True
    )
    purchase_order_id: Mapped[int | None] = mapped_column(
        sa.ForeignKey("purchase_orders.id", ondelete="SET NULL")
    )

    organisation: Mapped[Organisation] = relationship(lazy="joined")
    requested_by: Mapped[User | None] = relationship(foreign_keys=[requested_by_id], lazy="joined")
    vendor: Mapped[Vendor | None] = relationship()
    product: Mapped[Product | None] = relationship(lazy="joined")
