"""SCIM tokens, groups, their members and group → product mappings (all tenant-owned)."""

from __future__ import annotations

import datetime as dt

import sqlalchemy as sa
from sqlalchemy.orm import Mapped, mapped_column, relationship

from portal.catalogue.models import Product
from portal.db import Base, BigIntId, TenantKey, TenantMixin, TimestampMixin, UTCDateTime
from portal.identity.models import User
from portal.kernel.clock import now_utc
from portal.tenancy.models import Organisation


class ScimToken(TenantMixin, Base):
    """A bearer token for an organisation's ``/scim/v2``; only its SHA-256 digest is kept."""

    __tablename__ = "scim_tokens"
    __tenant_key__ = TenantKey(ondelete="CASCADE")

    id: Mapped[int] = mapped_column(BigIntId, primary_key=True)
    name: Mapped[str] = mapped_column(sa.String(200), nullable=False)
    prefix: Mapped[str] = mapped_column(sa.String(16), nullable=False)
    token_hash: Mapped[str] = mapped_column(sa.String(64), unique=True, nullable=False)
    created_by_id: Mapped[int | None] = mapped_column(
        sa.ForeignKey("users.id", ondelete="SET NULL")
    )
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime(), nullable=False, default=now_utc)
    last_used_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime())
    revoked_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime())
    # None: until revoked (chosen, or made before SCIM tokens expired: migration 0037).
    expires_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime())

    organisation: Mapped[Organisation] = relationship(lazy="joined")

    @property
    def state(self) -> str:
        if self.revoked_at:
            return "revoked"
        if self.expires_at and self.expires_at <= now_utc():
            return "expired"
        return "active"


class ScimGroup(TenantMixin, TimestampMixin, Base):
    """A group the organisation's identity provider pushed over SCIM."""

    __tablename__ = "scim_groups"
    __tenant_key__ = TenantKey(ondelete="CASCADE")
    __table_args__ = (
        sa.UniqueConstraint("organisation_id", "display_name", name="uq_scim_groups_org_name"),
    )

    id: Mapped[int] = mapped_column(BigIntId, primary_key=True)
    display_name: Mapped[str] = mapped_column(sa.String(255), nullable=False)
    external_id: Mapped[str | None] = mapped_column(sa.String(255))

    organisation: Mapped[Organisation] = relationship(lazy="joined")


class ScimGroupMember(TenantMixin, Base):
    """A person in a SCIM group."""

    __tablename__ = "scim_group_members"
    __tenant_key__ = TenantKey(ondelete="CASCADE")
    __table_args__ = (
        sa.UniqueConstraint("group_id", "user_id", name="uq_scim_group_members_group_user"),
    )

    id: Mapped[int] = mapped_column(BigIntId, primary_key=True)
    group_id: Mapped[int] = mapped_column(
        sa.ForeignKey("scim_groups.id", ondelete="CASCADE"), nullable=False
    )
    user_id: Mapped[int] = mapped_column(
        sa.ForeignKey("users.id", ondelete="CASCADE"), nullable=False, index=True
    )
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime(), nullable=False, default=now_utc)

    user: Mapped[User] = relationship(lazy="joined")


class ScimGroupProduct(TenantMixin, Base):
    """A group mapped to a product: its members get seats of the organisation's subscription."""

    __tablename__ = "scim_group_products"
    __tenant_key__ = TenantKey(ondelete="CASCADE")
    __table_args__ = (
        sa.UniqueConstraint("group_id", "product_id", name="uq_scim_group_products_group_product"),
    )

    id: Mapped[int] = mapped_column(BigIntId, primary_key=True)
    group_id: Mapped[int] = mapped_column(
        sa.ForeignKey("scim_groups.id", ondelete="CASCADE"), nullable=False
    )
    product_id: Mapped[int] = mapped_column(
        sa.ForeignKey("products.id", ondelete="RESTRICT"), nullable=False
    )
    created_by_id: Mapped[int | None] = mapped_column(
        sa.ForeignKey("users.id", ondelete="SET NULL")
    )
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime(), nullable=False, default=now_utc)

    group: Mapped[ScimGroup] = relationship(lazy="joined")
    product: Mapped[Product] = relationship(lazy="joined")
