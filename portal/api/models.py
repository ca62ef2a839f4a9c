"""API tokens and stored responses for ``Idempotency-Key`` replays."""

from __future__ import annotations

import datetime as dt
import enum
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Mapped, mapped_column, relationship

from portal.catalogue.models import Vendor
from portal.db import Base, BigIntId, MixedTenantMixin, TenantKey, UTCDateTime, enum_column
from portal.kernel.clock import now_utc
from portal.tenancy.models import Organisation


class TokenScope(enum.StrEnum):
    """Whom a token acts for: the council, one organisation or one vendor."""

    COUNCIL = "council"
    ORGANISATION = "organisation"
    VENDOR = "vendor"


class ApiToken(MixedTenantMixin, Base):
    """A bearer token with a scope: the council, one organisation or one vendor.

    Only the SHA-256 digest of the token is stored; the token itself is shown once.
    ``prefix`` (the first characters) lets people tell their tokens apart.
    """

    __tablename__ = "api_tokens"
    __tenant_key__ = TenantKey(ondelete="CASCADE")
    __table_args__ = (
        sa.CheckConstraint("scope IN ('council', 'organisation', 'vendor')", name="scope_known"),
        sa.CheckConstraint(
            "(scope = 'council' AND organisation_id IS NULL AND vendor_id IS NULL) OR "
            "(scope = 'organisation' AND organisation_id IS NOT NULL AND vendor_id IS NULL) OR "
            "(scope = 'vendor' AND vendor_id IS NOT NULL AND organisation_id IS NULL)",
            name="scope_owner",
        ),
    )

    id: Mapped[int] = mapped_column(BigIntId, primary_key=True)
    scope: Mapped[TokenScope] = mapped_column(enum_column(TokenScope, 16), nullable=False)
    vendor_id: Mapped[int | None] = mapped_column(
        sa.ForeignKey("vendors.id", ondelete="CASCADE"), index=True
    )
    name: Mapped[str] = mapped_column(sa.String(200), nullable=False)
    prefix: Mapped[str] = mapped_column(sa.String(16), nullable=False)
    token_hash: Mapped[str] = mapped_column(sa.String(64), unique=True, nullable=False)
    created_by_id: Mapped[int | None] = mapped_column(
        sa.ForeignKey("users.id", ondelete="SET NULL")
    )
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime(), nullable=False, default=now_utc)
    last_used_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime())
    expires_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime())
    revoked_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime())

    organisation: Mapped[Organisation | None] = relationship(lazy="joined")
    vendor: Mapped[Vendor | None] = relationship(lazy="joined")

    @property
    def state(self) -> str:
        if self.revoked_at:
            return "revoked"
        if self.expires_at and self.expires_at <= now_utc():
            return "expired"
        return "active"


class IdempotentRequest(MixedTenantMixin, Base):
    """The first response to a creating POST with an ``Idempotency-Key``, for replays."""

    __tablename__ = "idempotent_requests"
    __tenant_key__ = TenantKey(ondelete="CASCADE")
    __table_args__ = (
        sa.UniqueConstraint("token_id", "key", name="uq_idempotent_requests_token_key"),
    )

    id: Mapped[int] = mapped_column(BigIntId, primary_key=True)
    # The caller's organisation when the token is an organisation's, for scoped cleanup.
    token_id: Mapped[int] = mapped_column(
        sa.ForeignKey("api_tokens.id", ondelete="CASCADE"), nullable=False
    )
    key: Mapped[str] = mapped_column(sa.String(255), nullable=False)
    method: Mapped[str] = mapped_column(sa.String(8), nullable=False)
    path: Mapped[str] = mapped_column(sa.String(500), nullable=False)
    request_hash: Mapped[str] = mapped_column(sa.String(64), nullable=False)
    response_status: Mapped[int] = mapped_column(sa.Integer, nullable=False)
    response_body: Mapped[Any] = mapped_column(sa.JSON, nullable=False)
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime(), nullable=False, default=now_utc)
