"""Subscriptions, their quantity history, seat assignments and seat requests (tenant-owned)."""

from __future__ import annotations

import datetime as dt
import enum

import sqlalchemy as sa
from sqlalchemy.orm import Mapped, mapped_column, relationship

from portal.catalogue.models import Product
from portal.db import Base, BigIntId, TenantMixin, TimestampMixin, UTCDateTime, enum_column
from portal.identity.models import User
from portal.kernel.clock import now_utc
from portal.tenancy.models import Organisation


class SubscriptionStatus(enum.StrEnum):
    ACTIVE = "active"
    WAITLISTED = "waitlisted"
    CANCELLED = "cancelled"


class Subscription(TenantMixin, TimestampMixin, Base):
    """An organisation's reservation of seats of a product from the council's pools.

    ``quantity`` is what is granted (and counts against pool capacity);
    ``requested_quantity`` is what the organisation asked for. While
    ``requested_quantity > quantity`` the difference waits in the product's
    waitlist, first come first served by ``waitlisted_at``.
    """

    __tablename__ = "subscriptions"
    __table_args__ = (
        sa.CheckConstraint("quantity >= 0", name="quantity_not_negative"),
        sa.CheckConstraint("requested_quantity >= quantity", name="requested_covers_granted"),
        sa.CheckConstraint("status IN ('active', 'waitlisted', 'cancelled')", name="status_known"),
        # One live subscription per organisation and product.
        sa.Index(
            "uq_subscriptions_live",
            "organisation_id",
            "product_id",
            unique=True,
            sqlite_where=sa.text("status != 'cancelled'"),
            postgresql_where=sa.text("status != 'cancelled'"),
        ),
        sa.Index("ix_subscriptions_product_status", "product_id", "status"),
        # The waiting subscriptions of a product in waitlist order (migration 0040): the
        # waitlist's fill and the demand board's oldest waiting read only these.
        sa.Index(
            "ix_subscriptions_waiting",
            "product_id",
            "waitlisted_at",
            "id",
            sqlite_where=sa.text("requested_quantity > quantity"),
            postgresql_where=sa.text("requested_quantity > quantity"),
        ),
    )

    id: Mapped[int] = mapped_column(BigIntId, primary_key=True)
    product_id: Mapped[int] = mapped_column(
        sa.ForeignKey("products.id", ondelete="RESTRICT"), nullable=False
    )
    quantity: Mapped[int] = mapped_column(sa.Integer, nullable=False)
    requested_quantity: Mapped[int] = mapped_column(sa.Integer, nullable=False)
    status: Mapped[SubscriptionStatus] = mapped_column(
        enum_column(SubscriptionStatus, 16), nullable=False
    )
    starts_on: Mapped[dt.date] = mapped_column(sa.Date, nullable=False)
    ends_on: Mapped[dt.date | None] = mapped_column(sa.Date)
    waitlisted_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime())
    cancelled_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime())
    #: Active seats of the subscription, kept by every seat write (:mod:`portal.seats.writes`)
    #: in the statement that checks the capacity: ``assigned <= quantity`` is invariant 2.
    assigned: Mapped[int] = mapped_column(sa.Integer, nullable=False, default=0, server_default="0")

    organisation: Mapped[Organisation] = relationship(lazy="joined")
    product: Mapped[Product] = relationship(lazy="joined")

    @property
    def waiting(self) -> int:
        """Seats asked for and not yet granted."""
        return self.requested_quantity - self.quantity


class SubscriptionChange(TenantMixin, Base):
    """Each change of a subscription's granted quantity, for proration and history."""

    __tablename__ = "subscription_changes"
    __table_args__ = (
        sa.Index("ix_subscription_changes_sub_time", "subscription_id", "effective_at"),
    )

    id: Mapped[int] = mapped_column(BigIntId, primary_key=True)
    subscription_id: Mapped[int] = mapped_column(
        sa.ForeignKey("subscriptions.id", ondelete="CASCADE"), nullable=False
    )
    quantity: Mapped[int] = mapped_column(sa.Integer, nullable=False)
    effective_at: Mapped[dt.datetime] = mapped_column(
        UTCDateTime(), nullable=False, default=now_utc
    )
    reason: Mapped[str] = mapped_column(sa.String(40), nullable=False)


class SeatAssignment(TenantMixin, Base):
    """A seat of a subscription held by a person, from ``assigned_at`` until ``released_at``."""

    __tablename__ = "seat_assignments"
    __table_args__ = (
        # A person holds at most one active seat of a product (invariant 2).
        sa.Index(
            "uq_seat_assignments_active_user_product",
            "user_id",
            "product_id",
            unique=True,
            sqlite_where=sa.text("released_at IS NULL"),
            postgresql_where=sa.text("released_at IS NULL"),
        ),
        sa.Index("ix_seat_assignments_subscription_active", "subscription_id", "released_at"),
        # The catalogue's seats held per product, council-wide (1,000,000 seats at scale):
        # an index-only count (organisation_id is in it for the row-level security policy).
        sa.Index(
            "ix_seat_assignments_product_active",
            "product_id",
            "organisation_id",
            sqlite_where=sa.text("released_at IS NULL"),
            postgresql_where=sa.text("released_at IS NULL"),
        ),
        # The council economics' assigned seat-days: the seats assigned, or released, since
        # a month began (portal.billing.economics.seat_days; migration 0030).
        sa.Index(
            "ix_seat_assignments_product_recent",
            "product_id",
            "assigned_at",
            "organisation_id",
            sqlite_where=sa.text("released_at IS NULL"),
            postgresql_where=sa.text("released_at IS NULL"),
        ),
        sa.Index(
            "ix_seat_assignments_product_released",
            "product_id",
            "released_at",
            "assigned_at",
            "organisation_id",
            sqlite_where=sa.text("released_at IS NOT NULL"),
            postgresql_where=sa.text("released_at IS NOT NULL"),
        ),
        sa.CheckConstraint(
            "released_at IS NULL OR released_at >= assigned_at", name="release_after_assign"
        ),
    )

    id: Mapped[int] = mapped_column(BigIntId, primary_key=True)
    subscription_id: Mapped[int] = mapped_column(
        sa.ForeignKey("subscriptions.id", ondelete="RESTRICT"), nullable=False
    )
    product_id: Mapped[int] = mapped_column(
        sa.ForeignKey("products.id", ondelete="RESTRICT"), nullable=False
    )
    user_id: Mapped[int] = mapped_column(
        sa.ForeignKey("users.id", ondelete="RESTRICT"), nullable=False
    )
    assigned_at: Mapped[dt.datetime] = mapped_column(UTCDateTime(), nullable=False, default=now_utc)
    released_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime())
    release_reason: Mapped[str | None] = mapped_column(sa.String(40))

    subscription: Mapped[Subscription] = relationship(lazy="joined")
    user: Mapped[User] = relationship(lazy="joined")


class ProductSeatCount(Base):
    """A change of a product's seats reserved, waiting and assigned, council-wide.

    Every change of a subscription's quantity and every seat assigned or released adds a
    row here, in its own transaction; a product's figures are the sums of its rows
    (:mod:`portal.seats.counts`), and ``seats.fold_counts`` folds each product's rows into
    one every minute. Rows are only ever added (and folded), never updated, so seat changes
    in different organisations never wait on each other here, and the catalogue reads a few
    rows per product instead of every subscription (docs/ARCHITECTURE.md, "Seat figures").
    Not tenant-owned: the sums are the shared pool's, shown to everyone who sees the product.
    """

    __tablename__ = "product_seat_counts"
    __table_args__ = (
        sa.Index("ix_product_seat_counts_product", "product_id", "reserved", "waiting", "assigned"),
    )

    id: Mapped[int] = mapped_column(BigIntId, primary_key=True)
    product_id: Mapped[int] = mapped_column(
        sa.ForeignKey("products.id", ondelete="CASCADE"), nullable=False
    )
    reserved: Mapped[int] = mapped_column(sa.BigInteger, nullable=False, default=0)
    waiting: Mapped[int] = mapped_column(sa.BigInteger, nullable=False, default=0)
    assigned: Mapped[int] = mapped_column(sa.BigInteger, nullable=False, default=0)


class SeatRequestStatus(enum.StrEnum):
    PENDING = "pending"
    APPROVED = "approved"
    DECLINED = "declined"
    CANCELLED = "cancelled"


class SeatRequest(TenantMixin, Base):
    """A member asks for a seat of a product; their org admin approves or declines."""

    __tablename__ = "seat_requests"
    __table_args__ = (
        sa.CheckConstraint(
            "status IN ('pending', 'approved', 'declined', 'cancelled')", name="status_known"
        ),
        sa.Index(
            "uq_seat_requests_pending",
            "user_id",
            "product_id",
            unique=True,
            sqlite_where=sa.text("status = 'pending'"),
            postgresql_where=sa.text("status = 'pending'"),
        ),
    )

    id: Mapped[int] = mapped_column(BigIntId, primary_key=True)
    product_id: Mapped[int] = mapped_column(
        sa.ForeignKey("products.id", ondelete="RESTRICT"), nullable=False
    )
    user_id: Mapped[int] = mapped_column(
        sa.ForeignKey("users.id", ondelete="CASCADE"), nullable=False
    )
    status: Mapped[SeatRequestStatus] = mapped_column(
        enum_column(SeatRequestStatus, 16), nullable=False, default=SeatRequestStatus.PENDING
    )
    note: Mapped[str | None] = mapped_column(sa.String(1000))
    decision_note: Mapped[str | None] = mapped_column(sa.String(1000))
    decided_by_id: Mapped[int | None] = mapped_column(
        sa.ForeignKey("users.id", ondelete="SET NULL")
    )
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime(), nullable=False, default=now_utc)
    decided_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime())

    product: Mapped[Product] = relationship(lazy="joined")
    user: Mapped[User] = relationship(lazy="joined", foreign_keys=[user_id])
