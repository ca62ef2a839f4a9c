"""Usage events (tenant-owned) and idle-seat decisions."""

from __future__ import annotations

import datetime as dt
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Mapped, mapped_column

from portal.db import Base, BigIntId, TenantKey, TenantMixin, UTCDateTime
from portal.kernel.clock import now_utc

#: Quantities are exact decimals with this many digits after the point, stored as
#: integers (``quantity_micros``): 12.5 units are 12_500_000. Never a float.
QUANTITY_SCALE = 6
QUANTITY_FACTOR = 10**QUANTITY_SCALE


class UsageEvent(TenantMixin, Base):
    """One thing a vendor counted for an organisation's use of a product.

    Counted once per (organisation, idempotency key) however often it is sent
    (invariant 3): the unique constraint is the guarantee, inserts use
    ``ON CONFLICT DO NOTHING``.
    """

    __tablename__ = "usage_events"
    __tenant_key__ = TenantKey(primary_key=True)
    __table_args__ = (
        sa.CheckConstraint("quantity_micros >= 0", name="quantity_not_negative"),
        # Aggregation by organisation × product × meter over a period of occurred_at.
        sa.Index(
            "ix_usage_events_org_product_meter_time",
            "organisation_id",
            "product_id",
            "meter_id",
            "occurred_at",
        ),
    )

    # The primary key is the idempotency rule itself: one row per organisation and
    # key. No surrogate id: one index fewer to maintain on the hot insert path.
    product_id: Mapped[int] = mapped_column(
        sa.ForeignKey("products.id", ondelete="RESTRICT"), nullable=False
    )
    meter_id: Mapped[int] = mapped_column(
        sa.ForeignKey("meters.id", ondelete="RESTRICT"), nullable=False
    )
    idempotency_key: Mapped[str] = mapped_column(sa.String(255), primary_key=True)
    quantity_micros: Mapped[int] = mapped_column(sa.BigInteger, nullable=False)
    occurred_at: Mapped[dt.datetime] = mapped_column(UTCDateTime(), nullable=False)
    received_at: Mapped[dt.datetime] = mapped_column(UTCDateTime(), nullable=False, default=now_utc)
    user_email: Mapped[str | None] = mapped_column(sa.String(254))
    properties: Mapped[dict[str, Any] | None] = mapped_column(sa.JSON)
    # Which token sent it (vendor or council), for support questions.
    source_token_id: Mapped[int | None] = mapped_column(sa.BigInteger)


class IdleSeatDecision(TenantMixin, Base):
    """An org admin chose to keep an idle seat; it is not flagged again until ``until``."""

    __tablename__ = "idle_seat_decisions"
    __table_args__ = (sa.Index("ix_idle_seat_decisions_seat", "seat_assignment_id"),)

    id: Mapped[int] = mapped_column(BigIntId, primary_key=True)
    seat_assignment_id: Mapped[int] = mapped_column(
        sa.ForeignKey("seat_assignments.id", ondelete="CASCADE"), nullable=False
    )
    decision: Mapped[str] = mapped_column(sa.String(10), nullable=False)  # keep | release
    decided_by_id: Mapped[int | None] = mapped_column(
        sa.ForeignKey("users.id", ondelete="SET NULL")
    )
    decided_at: Mapped[dt.datetime] = mapped_column(UTCDateTime(), nullable=False, default=now_utc)
    until: Mapped[dt.date | None] = mapped_column(sa.Date)
