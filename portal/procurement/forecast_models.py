"""What the renewal-forecast reminders remember: each reminder sent, once (council-wide)."""

from __future__ import annotations

import datetime as dt

import sqlalchemy as sa
from sqlalchemy.orm import Mapped, mapped_column

from portal.db import Base, BigIntId, UTCDateTime
from portal.kernel.clock import now_utc


class PoolReminder(Base):
    """A reminder about a pool, sent to council staff once per (pool, kind, term end).

    ``kind``: ``ends_in_60``, ``ends_in_30`` (days before the pool's ``ends_on``) or
    ``runs_out`` (forecast to run out within 30 days). A pool whose term is extended
    has a new ``ends_on``, so its reminders come again for the new end.
    """

    __tablename__ = "pool_reminders"
    __table_args__ = (
        sa.UniqueConstraint("pool_id", "kind", "ends_on", name="uq_pool_reminders_pool_id"),
        sa.CheckConstraint("kind IN ('ends_in_60', 'ends_in_30', 'runs_out')", name="kind_known"),
    )

    id: Mapped[int] = mapped_column(BigIntId, primary_key=True)
    pool_id: Mapped[int] = mapped_column(
        sa.ForeignKey("licence_pools.id", ondelete="CASCADE"), nullable=False
    )
    kind: Mapped[str] = mapped_column(sa.String(16), nullable=False)
    ends_on: Mapped[dt.date] = mapped_column(sa.Date, nullable=False)
    # For runs_out: the day the forecast said the pool would run out.
    runs_out_on: Mapped[dt.date | None] = mapped_column(sa.Date)
    sent_at: Mapped[dt.datetime] = mapped_column(UTCDateTime(), nullable=False, default=now_utc)
