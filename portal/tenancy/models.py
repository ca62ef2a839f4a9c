"""The organisation (tenant) model."""

from __future__ import annotations

import enum

import sqlalchemy as sa
from sqlalchemy.orm import Mapped, mapped_column

from portal.db import Base, BigIntId, TimestampMixin, enum_column


class OrganisationStatus(enum.StrEnum):
    """Lifecycle of a member organisation (SPEC section 3)."""

    PENDING = "pending"
    ACTIVE = "active"
    SUSPENDED = "suspended"
    CLOSED = "closed"


class BillingProvider(enum.StrEnum):
    """How an organisation pays: by card through Stripe or by bank transfer."""

    STRIPE = "stripe"
    MANUAL = "manual"


class Organisation(TimestampMixin, Base):
    """A member company of the council: the tenant every member-owned row belongs to."""

    __tablename__ = "organisations"
    __table_args__ = (
        # The organisations list, by name a page at a time (10,000 of them at scale).
        sa.Index("ix_organisations_name", "name", "id"),
        sa.CheckConstraint("length(country) = 2", name="country_alpha2"),
        sa.CheckConstraint("length(currency) = 3", name="currency_iso4217"),
        sa.CheckConstraint(
            "tax_rate_bp IS NULL OR (tax_rate_bp >= 0 AND tax_rate_bp <= 10000)",
            name="tax_rate_bp_range",
        ),
        sa.CheckConstraint(
            "status IN ('pending', 'active', 'suspended', 'closed')", name="status_known"
        ),
        sa.CheckConstraint(
            "billing_provider IN ('stripe', 'manual')", name="billing_provider_known"
        ),
    )

    id: Mapped[int] = mapped_column(BigIntId, primary_key=True)
    slug: Mapped[str] = mapped_column(sa.String(63), unique=True, nullable=False)
    name: Mapped[str] = mapped_column(sa.String(200), nullable=False)
    country: Mapped[str] = mapped_column(sa.String(2), nullable=False)
    currency: Mapped[str] = mapped_column(sa.String(3), nullable=False)
    tax_id: Mapped[str | None] = mapped_column(sa.String(64))
    # The buyer's postal address on its invoices, and their language (en/ru; none:
    # English): migration 0016, issue 14.
    billing_address: Mapped[str | None] = mapped_column(sa.Text)
    invoice_language: Mapped[str | None] = mapped_column(sa.String(8))
    billing_email: Mapped[str] = mapped_column(sa.String(254), nullable=False)
    status: Mapped[OrganisationStatus] = mapped_column(
        enum_column(OrganisationStatus, 16),
        nullable=False,
        default=OrganisationStatus.PENDING,
        index=True,
    )
    status_reason: Mapped[str | None] = mapped_column(sa.String(500))
    billing_provider: Mapped[str] = mapped_column(sa.String(16), nullable=False, default="manual")
    tax_rate_bp: Mapped[int | None] = mapped_column(sa.Integer)
    reverse_charge: Mapped[bool] = mapped_column(sa.Boolean, nullable=False, default=False)
    # Who applied through the public membership page (empty for ones staff created).
    applicant_name: Mapped[str | None] = mapped_column(sa.String(200))
    applicant_email: Mapped[str | None] = mapped_column(sa.String(254))
    application_note: Mapped[str | None] = mapped_column(sa.Text)
    # Its admin requires everyone to sign in with a second factor (SPEC 8.1).
    require_second_factor: Mapped[bool] = mapped_column(
        sa.Boolean, nullable=False, default=False, server_default=sa.false()
    )

    @property
    def is_active(self) -> bool:
        return self.status == OrganisationStatus.ACTIVE

    def __repr__(self) -> str:
        return f"<Organisation {self.slug} {self.status}>"
