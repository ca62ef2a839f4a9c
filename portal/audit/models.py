"""The audit event model."""

from __future__ import annotations

import datetime as dt
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Mapped, mapped_column

from portal.db import Base, BigIntId, MixedTenantMixin, TenantKey, UTCDateTime
from portal.kernel.clock import now_utc


class AuditEvent(MixedTenantMixin, Base):
    """One change by one actor. Never updated or deleted by the portal."""

    __tablename__ = "audit_events"
    __tenant_key__ = TenantKey(ondelete="SET NULL", index=False)
    __table_args__ = (sa.Index("ix_audit_events_org_time", "organisation_id", "occurred_at"),)

    id: Mapped[int] = mapped_column(BigIntId, primary_key=True)
    occurred_at: Mapped[dt.datetime] = mapped_column(
        UTCDateTime(), default=now_utc, nullable=False, index=True
    )
    actor_user_id: Mapped[int | None] = mapped_column(
        sa.ForeignKey("users.id", ondelete="SET NULL"), index=True
    )
    # A readable name of the actor kept even if the account goes: an email, "cli", "token …".
    actor_label: Mapped[str] = mapped_column(sa.String(254), nullable=False)
    # The organisation the change concerns; empty for council-wide changes.
    action: Mapped[str] = mapped_column(sa.String(80), nullable=False, index=True)
    target_type: Mapped[str] = mapped_column(sa.String(40), nullable=False)
    target_id: Mapped[str | None] = mapped_column(sa.String(80))
    target_label: Mapped[str | None] = mapped_column(sa.String(254))
    before: Mapped[dict[str, Any] | None] = mapped_column(sa.JSON)
    after: Mapped[dict[str, Any] | None] = mapped_column(sa.JSON)
    ip: Mapped[str | None] = mapped_column(sa.String(64))
