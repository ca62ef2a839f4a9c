"""An organisation's OpenID connection and its email domains (both tenant-owned)."""

from __future__ import annotations

import datetime as dt
import enum

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
from portal.identity.models import User
from portal.kernel.clock import now_utc
from portal.tenancy.models import Organisation


class DomainStatus(enum.StrEnum):
    PENDING = "pending"
    VERIFIED = "verified"


class SsoConnection(TenantMixin, TimestampMixin, Base):
    """One organisation's OpenID Connect provider.

    The client secret is stored encrypted with ``PORTAL_ENCRYPTION_KEY``
    (:mod:`portal.crypto`). ``enforce_sso`` turns password sign-in off for the
    organisation's verified domains, except for ``break_glass_user`` (one of its
    org admins, for when the provider is down).
    """

    __tablename__ = "sso_connections"
    __tenant_key__ = TenantKey(ondelete="CASCADE", unique=True)

    id: Mapped[int] = mapped_column(BigIntId, primary_key=True)
    issuer: Mapped[str] = mapped_column(sa.String(500), nullable=False)
    client_id: Mapped[str] = mapped_column(sa.String(255), nullable=False)
    client_secret_encrypted: Mapped[str] = mapped_column(sa.Text, nullable=False)
    enabled: Mapped[bool] = mapped_column(sa.Boolean, nullable=False, default=True)
    enforce_sso: Mapped[bool] = mapped_column(sa.Boolean, nullable=False, default=False)
    break_glass_user_id: Mapped[int | None] = mapped_column(
        sa.ForeignKey("users.id", ondelete="SET NULL")
    )
    jit_enabled: Mapped[bool] = mapped_column(sa.Boolean, nullable=False, default=True)
    # Only people whose ID token lists ``required_group`` in the ``group_claim`` claim.
    group_claim: Mapped[str | None] = mapped_column(sa.String(100))
    required_group: Mapped[str | None] = mapped_column(sa.String(255))
    last_test_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime())
    last_test_ok: Mapped[bool | None] = mapped_column(sa.Boolean)
    last_test_message: Mapped[str | None] = mapped_column(sa.Text)

    organisation: Mapped[Organisation] = relationship(lazy="joined")
    break_glass_user: Mapped[User | None] = relationship(lazy="joined")


class EmailDomain(TenantMixin, Base):
    """An email domain an organisation claims; it routes to SSO only once verified.

    A domain may be claimed by several organisations while pending, but only
    one can hold it verified (a partial unique index), so a pending claim
    cannot squat a domain and a verified one cannot be taken.
    """

    __tablename__ = "email_domains"
    __tenant_key__ = TenantKey(ondelete="CASCADE")
    __table_args__ = (
        sa.CheckConstraint("status IN ('pending', 'verified')", name="status_known"),
        sa.CheckConstraint("domain = lower(domain)", name="domain_lower_case"),
        sa.UniqueConstraint("organisation_id", "domain", name="uq_email_domains_org_domain"),
        sa.Index(
            "uq_email_domains_verified",
            "domain",
            unique=True,
            sqlite_where=sa.text("status = 'verified'"),
            postgresql_where=sa.text("status = 'verified'"),
        ),
    )

    id: Mapped[int] = mapped_column(BigIntId, primary_key=True)
    domain: Mapped[str] = mapped_column(sa.String(253), nullable=False, index=True)
    status: Mapped[DomainStatus] = mapped_column(
        enum_column(DomainStatus, 16), nullable=False, default=DomainStatus.PENDING
    )
    claimed_by_id: Mapped[int | None] = mapped_column(
        sa.ForeignKey("users.id", ondelete="SET NULL")
    )
    verified_by_id: Mapped[int | None] = mapped_column(
        sa.ForeignKey("users.id", ondelete="SET NULL")
    )
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime(), nullable=False, default=now_utc)
    verified_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime())

    organisation: Mapped[Organisation] = relationship(lazy="joined")
