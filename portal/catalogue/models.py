"""Vendors, products, meters, licence pools and prices (all council-wide)."""

from __future__ import annotations

import datetime as dt
import enum

import sqlalchemy as sa
from sqlalchemy.orm import Mapped, mapped_column, relationship

from portal.db import Base, BigIntId, TimestampMixin, UTCDateTime, enum_column


class VendorStatus(enum.StrEnum):
    """A supplier's standing, shown to members (SPEC section 3)."""

    ACTIVE = "active"
    UNDER_REVIEW = "under_review"
    SUSPENDED = "suspended"


class ServiceStatus(enum.StrEnum):
    """Whether a supplier's service works right now (issue 15; Statuspage's vocabulary)."""

    OPERATIONAL = "operational"
    DEGRADED = "degraded"
    PARTIAL_OUTAGE = "partial_outage"
    MAJOR_OUTAGE = "major_outage"
    MAINTENANCE = "maintenance"


#: The service statuses that count against uptime (maintenance is counted apart).
OUTAGE_STATUSES = (ServiceStatus.PARTIAL_OUTAGE, ServiceStatus.MAJOR_OUTAGE)


class StatusSource(enum.StrEnum):
    """Who said what the service status is."""

    VENDOR = "vendor"  # the vendor, on its portal page or with its API token
    COUNCIL = "council"  # council staff
    STATUSPAGE = "statuspage"  # the poller, from the vendor's Statuspage summary.json


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


class TierBasis(enum.StrEnum):
    """What chooses a seat price's tier (SPEC 8.3): the organisation's seats or the council's."""

    ORGANISATION = "organisation"
    COUNCIL = "council"  # the council-wide average reserved seats of the product in the month


class Vendor(TimestampMixin, Base):
    """A supplier the council buys licences from."""

    __tablename__ = "vendors"
    __table_args__ = (
        sa.CheckConstraint(
            "status IN ('active', 'under_review', 'suspended')", name="status_known"
        ),
        sa.CheckConstraint(
            "service_status IN ('operational', 'degraded', 'partial_outage', 'major_outage', "
            "'maintenance')",
            name="service_status_known",
        ),
        sa.CheckConstraint(
            "service_status_source IS NULL OR "
            "service_status_source IN ('vendor', 'council', 'statuspage')",
            name="service_status_source_known",
        ),
        sa.CheckConstraint("country IS NULL OR length(country) = 2", name="country_iso3166"),
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
    # The supplier's profile (issue 15; migration 0019).
    legal_name: Mapped[str | None] = mapped_column(sa.String(200))
    country: Mapped[str | None] = mapped_column(sa.String(2))  # ISO 3166-1 alpha-2, upper case
    support_contact: Mapped[str | None] = mapped_column(sa.String(254))
    data_residency: Mapped[str | None] = mapped_column(sa.String(200))
    # Its service status now (the history: portal.suppliers.models.VendorStatusInterval).
    service_status: Mapped[ServiceStatus] = mapped_column(
        enum_column(ServiceStatus, 16),
        nullable=False,
        default=ServiceStatus.OPERATIONAL,
        server_default=ServiceStatus.OPERATIONAL.value,
    )
    service_status_message: Mapped[str | None] = mapped_column(sa.String(500))
    service_status_source: Mapped[StatusSource | None] = mapped_column(
        enum_column(StatusSource, 16)
    )
    service_status_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime())
    # The base of a Statuspage-format site; the poller reads <base>/api/v2/summary.json.
    status_page_url: Mapped[str | None] = mapped_column(sa.String(500))
    # The last good reading's time; the last failure's time and reason (cleared by a good
    # reading): a status read before a failure is stale, and the pages say so.
    status_polled_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime())
    status_poll_failed_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime())
    status_poll_error: Mapped[str | None] = mapped_column(sa.String(500))

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
        sa.CheckConstraint("tier_basis IN ('organisation', 'council')", name="tier_basis_known"),
        sa.CheckConstraint(
            "tier_basis = 'organisation' OR (model = 'seat' AND tier_mode = 'volume')",
            name="council_basis_seat_volume",
        ),
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
    # council: a seat price's (volume) tier is chosen by the council-wide average seats.
    tier_basis: Mapped[TierBasis] = mapped_column(
        enum_column(TierBasis, 16),
        nullable=False,
        default=TierBasis.ORGANISATION,
        server_default=TierBasis.ORGANISATION.value,
    )

    product: Mapped[Product] = relationship(lazy="joined")
    meter: Mapped[Meter | None] = relationship(lazy="joined")
    tiers: Mapped[list[PriceTier]] = relationship(
        order_by="PriceTier.position", cascade="all, delete-orphan", lazy="selectin"
    )

    @property
    def unit_range(self) -> tuple[int, int]:
        """The lowest and highest unit amount (its tiers', or its own without tiers): what a
        council-volume seat may cost before the month's council-wide seats choose the tier."""
        amounts = [t.unit_amount for t in self.tiers] or [self.unit_amount]
        return min(amounts), max(amounts)


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
