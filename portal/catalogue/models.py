"""Vendors, products, meters, licence pools and prices (all council-wide)."""

from __future__ import annotations

import datetime as dt
import enum

import sqlalchemy as sa
from sqlalchemy.orm import Mapped, mapped_column, relationship

from portal.db import Base, BigIntId, TimestampMixin, enum_column


class VendorStatus(enum.StrEnum):
    """A supplier's standing, shown to members (SPEC section 3)."""

    ACTIVE = "active"
    UNDER_REVIEW = "under_review"
    SUSPENDED = "suspended"


class Aggregation(enum.StrEnum):
    """How a meter's events add up over a period."""

    SUM = "sum"
    COUNT = "count"
    MAX = "max"
    UNIQUE_COUNT = "unique_count"


class PriceModel(enum.StrEnum):
    SEAT = "seat"
    METERED = "metered"


class TierMode(enum.StrEnum):
    GRADUATED = "graduated"
    VOLUME = "volume"


class Vendor(TimestampMixin, Base):
    """A supplier the council buys licences from."""

    __tablename__ = "vendors"
    __table_args__ = (
        sa.CheckConstraint(
            "status IN ('active', 'under_review', 'suspended')", name="status_known"
        ),
    )

    id: Mapped[int] = mapped_column(BigIntId, primary_key=True)
    slug: Mapped[str] = mapped_column(sa.String(63), unique=True, nullable=False)
    name: Mapped[str] = mapped_column(sa.String(200), nullable=False)
    status: Mapped[VendorStatus] = mapped_column(
        enum_column(VendorStatus, 16), nullable=False, default=VendorStatus.ACTIVE
    )
    contact_email: Mapped[str | None] = mapped_column(sa.String(254))
    website: Mapped[str | None] = mapped_column(sa.String(500))
    status_note: Mapped[str | None] = mapped_column(sa.String(500))

    products: Mapped[list[Product]] = relationship(back_populates="vendor", order_by="Product.name")


class Product(TimestampMixin, Base):
    """A SaaS product members can take seats of."""

    __tablename__ = "products"

    id: Mapped[int] = mapped_column(BigIntId, primary_key=True)
    vendor_id: Mapped[int] = mapped_column(
        sa.ForeignKey("vendors.id", ondelete="RESTRICT"), nullable=False, index=True
    )
    sku: Mapped[str] = mapped_column(sa.String(63), unique=True, nullable=False)
    name: Mapped[str] = mapped_column(sa.String(200), nullable=False)
    description: Mapped[str] = mapped_column(sa.Text, nullable=False, default="")
    launch_url: Mapped[str | None] = mapped_column(sa.String(500))

    vendor: Mapped[Vendor] = relationship(back_populates="products", lazy="joined")
    meters: Mapped[list[Meter]] = relationship(
        back_populates="product", order_by="Meter.key", cascade="all, delete-orphan"
    )


class Meter(Base):
    """Something a vendor counts for a product (API calls, GB stored, active users)."""

    __tablename__ = "meters"
    __table_args__ = (
        sa.UniqueConstraint("product_id", "key", name="uq_meters_product_key"),
        sa.CheckConstraint(
            "aggregation IN ('sum', 'count', 'max', 'unique_count')", name="aggregation_known"
        ),
    )

    id: Mapped[int] = mapped_column(BigIntId, primary_key=True)
    product_id: Mapped[int] = mapped_column(
        sa.ForeignKey("products.id", ondelete="CASCADE"), nullable=False
    )
    key: Mapped[str] = mapped_column(sa.String(63), nullable=False)
    name: Mapped[str] = mapped_column(sa.String(200), nullable=False)
    unit: Mapped[str] = mapped_column(sa.String(40), nullable=False)
    aggregation: Mapped[Aggregation] = mapped_column(enum_column(Aggregation, 16), nullable=False)
    # For unique_count: the event property whose distinct values are counted.
    property: Mapped[str | None] = mapped_column(sa.String(63))

    product: Mapped[Product] = relationship(back_populates="meters")


class LicencePool(TimestampMixin, Base):
    """Seats of a product the council bought for a term, at a unit cost per seat-month."""

    __tablename__ = "licence_pools"
    __table_args__ = (
        sa.CheckConstraint("capacity > 0", name="capacity_positive"),
        sa.CheckConstraint("ends_on >= starts_on", name="term_ordered"),
        sa.CheckConstraint("unit_cost_amount >= 0", name="unit_cost_not_negative"),
        sa.CheckConstraint("length(unit_cost_currency) = 3", name="currency_iso4217"),
        sa.Index("ix_licence_pools_product_term", "product_id", "starts_on", "ends_on"),
    )

    id: Mapped[int] = mapped_column(BigIntId, primary_key=True)
    product_id: Mapped[int] = mapped_column(
        sa.ForeignKey("products.id", ondelete="RESTRICT"), nullable=False
    )
    capacity: Mapped[int] = mapped_column(sa.Integer, nullable=False)
    starts_on: Mapped[dt.date] = mapped_column(sa.Date, nullable=False)
    ends_on: Mapped[dt.date] = mapped_column(sa.Date, nullable=False)
    unit_cost_amount: Mapped[int] = mapped_column(sa.BigInteger, nullable=False)
    unit_cost_currency: Mapped[str] = mapped_column(sa.String(3), nullable=False)
    reference: Mapped[str | None] = mapped_column(sa.String(200))

    product: Mapped[Product] = relationship(lazy="joined")

    def in_force(self, day: dt.date) -> bool:
        return self.starts_on <= day <= self.ends_on


class Price(TimestampMixin, Base):
    """What members pay for a product in one currency: per seat-month or per meter unit."""

    __tablename__ = "prices"
    __table_args__ = (
        sa.CheckConstraint("model IN ('seat', 'metered')", name="model_known"),
        sa.CheckConstraint(
            "(model = 'seat' AND meter_id IS NULL) OR (model = 'metered' AND meter_id IS NOT NULL)",
            name="meter_matches_model",
        ),
        sa.CheckConstraint(
            "tier_mode IS NULL OR tier_mode IN ('graduated', 'volume')", name="tier_mode_known"
        ),
        sa.CheckConstraint("unit_amount >= 0", name="unit_amount_not_negative"),
        sa.CheckConstraint("length(currency) = 3", name="currency_iso4217"),
        # One seat price per product and currency; one metered price per meter and currency.
        sa.Index(
            "uq_prices_seat",
            "product_id",
            "currency",
            unique=True,
            sqlite_where=sa.text("model = 'seat'"),
            postgresql_where=sa.text("model = 'seat'"),
        ),
        sa.Index(
            "uq_prices_meter",
            "meter_id",
            "currency",
            unique=True,
            sqlite_where=sa.text("model = 'metered'"),
            postgresql_where=sa.text("model = 'metered'"),
        ),
    )

    id: Mapped[int] = mapped_column(BigIntId, primary_key=True)
    product_id: Mapped[int] = mapped_column(
        sa.ForeignKey("products.id", ondelete="RESTRICT"), nullable=False, index=True
    )
    currency: Mapped[str] = mapped_column(sa.String(3), nullable=False)
    model: Mapped[PriceModel] = mapped_column(enum_column(PriceModel, 10), nullable=False)
    meter_id: Mapped[int | None] = mapped_column(sa.ForeignKey("meters.id", ondelete="RESTRICT"))
    unit_amount: Mapped[int] = mapped_column(sa.BigInteger, nullable=False)
    tier_mode: Mapped[TierMode | None] = mapped_column(enum_column(TierMode, 10))

    product: Mapped[Product] = relationship(lazy="joined")
    meter: Mapped[Meter | None] = relationship(lazy="joined")
    tiers: Mapped[list[PriceTier]] = relationship(
        order_by="PriceTier.position", cascade="all, delete-orphan", lazy="selectin"
    )


class PriceTier(Base):
    """One tier of a tiered price: units up to ``up_to`` (None: no limit)."""

    __tablename__ = "price_tiers"
    __table_args__ = (
        sa.UniqueConstraint("price_id", "position", name="uq_price_tiers_price_position"),
        sa.CheckConstraint("up_to IS NULL OR up_to > 0", name="up_to_positive"),
        sa.CheckConstraint("unit_amount >= 0 AND flat_amount >= 0", name="amounts_not_negative"),
    )

    id: Mapped[int] = mapped_column(BigIntId, primary_key=True)
    price_id: Mapped[int] = mapped_column(
        sa.ForeignKey("prices.id", ondelete="CASCADE"), nullable=False
    )
    position: Mapped[int] = mapped_column(sa.Integer, nullable=False)
    up_to: Mapped[int | None] = mapped_column(sa.BigInteger)
    unit_amount: Mapped[int] = mapped_column(sa.BigInteger, nullable=False)
    flat_amount: Mapped[int] = mapped_column(sa.BigInteger, nullable=False, default=0)
