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

#: The foreign keys (table, column) that PostgreSQL keeps per statement, by triggers, not as
#: constraints checked row by row (migration 0035, docs/METERING.md "References checked per
#: statement"): a 10,000-event batch names a few organisations, products and meters, and
#: checking each again for every row was half its insert. SQLite keeps the constraints.
STATEMENT_CHECKED_REFERENCES = frozenset(
    {
        ("usage_events", "organisation_id"),
        ("usage_events", "product_id"),
        ("usage_events", "meter_id"),
        ("usage_event_keys", "organisation_id"),
    }
)


class UsageEvent(TenantMixin, Base):
    """One thing a vendor counted for an organisation's use of a product.

    Counted once per (organisation, idempotency key) however often it is sent
    (invariant 3). SQLite: the primary key is the guarantee, inserts use
    ``ON CONFLICT DO NOTHING``. PostgreSQL (migration 0013): the table is partitioned
    by month of ``occurred_at`` and has no primary key (a unique index of a partitioned
    table must contain the partition key); :class:`UsageEventKey` is the guarantee
    there, across every partition. The ORM's primary key below is the identity either way.
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


class UsageEventKey(TenantMixin, Base):
    """One row per (organisation, idempotency key) stored in ``usage_events``: on
    PostgreSQL the counted-once rule (invariant 3) across the month partitions.

    Ingestion inserts the batch's keys here with ``ON CONFLICT DO NOTHING`` and, in the
    same statement, the events whose keys were new (``portal.metering.ingest``); parallel
    batches sending one key wait on its index entry, so exactly one stores the event,
    whatever months the copies name. Empty on SQLite, whose ``usage_events`` keeps the
    rule as its primary key.
    """

    __tablename__ = "usage_event_keys"
    __tenant_key__ = TenantKey(primary_key=True)

    idempotency_key: Mapped[str] = mapped_column(sa.String(255), primary_key=True)


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


#: The sum of a day's quantities may pass 64 bits (10,000 events of 10⁹ units are 10¹⁹
#: millionths): an exact decimal on PostgreSQL; SQLite's integers are 64-bit (as its
#: ``sum()`` of the events themselves is).
QuantityTotal = sa.BigInteger().with_variant(sa.Numeric(38, 0), "postgresql")


class UsageDaily(TenantMixin, Base):
    """A rollup of usage kept at ingest: one row per organisation, product, meter and UTC day.

    Written in the transaction that stores the events, from the events actually stored
    (never the duplicates), by ``portal.metering.ingest``; pages read these rows instead
    of the month's events (``portal.metering.selectors``). ``sum``, ``max`` and ``count``
    meters read ``quantity_micros``, ``max_micros`` and ``events``.
    """

    __tablename__ = "usage_daily"
    __tenant_key__ = TenantKey(primary_key=True)

    product_id: Mapped[int] = mapped_column(
        sa.ForeignKey("products.id", ondelete="RESTRICT"), primary_key=True
    )
    meter_id: Mapped[int] = mapped_column(
        sa.ForeignKey("meters.id", ondelete="RESTRICT"), primary_key=True
    )
    day: Mapped[dt.date] = mapped_column(sa.Date, primary_key=True)
    quantity_micros: Mapped[int] = mapped_column(QuantityTotal, nullable=False)
    max_micros: Mapped[int] = mapped_column(sa.BigInteger, nullable=False)
    events: Mapped[int] = mapped_column(sa.BigInteger, nullable=False)


class UsageDailyPerson(TenantMixin, Base):
    """Who used a product's meter on a UTC day, and the last time that day (a rollup kept
    at ingest from events with a ``user_email``).

    Answers, without the month's events: people with usage (seat utilisation, the pool
    charts), ``unique_count`` meters counting ``user_email`` (distinct over the days),
    and each holder's last use (idle seats).
    """

    __tablename__ = "usage_daily_people"
    __tenant_key__ = TenantKey(primary_key=True)
    __table_args__ = (
        # The council's pool chart: people with usage per day of one product.
        sa.Index("ix_usage_daily_people_product_day", "product_id", "day"),
        # A seat holder's use of a product by day (idle seats, seats with usage): one probe
        # per seat from a day on, whatever the history (migration 0028).
        sa.Index(
            "ix_usage_daily_people_person_day", "organisation_id", "product_id", "user_email", "day"
        ),
    )

    product_id: Mapped[int] = mapped_column(
        sa.ForeignKey("products.id", ondelete="RESTRICT"), primary_key=True
    )
    user_email: Mapped[str] = mapped_column(sa.String(254), primary_key=True)
    meter_id: Mapped[int] = mapped_column(
        sa.ForeignKey("meters.id", ondelete="RESTRICT"), primary_key=True
    )
    day: Mapped[dt.date] = mapped_column(sa.Date, primary_key=True)
    last_occurred_at: Mapped[dt.datetime] = mapped_column(UTCDateTime(), nullable=False)
    events: Mapped[int] = mapped_column(sa.BigInteger, nullable=False)


class UsageLastUse(TenantMixin, Base):
    """The last UTC day a person used a product (a rollup kept at ingest, migration 0033).

    One row per organisation, product and person, written only when a batch brings a later
    day than the one stored: at most once a day per person and product, however many
    batches. Idle seats read the organisation's people with recent use from it as one set,
    hashed once, instead of probing each seat holder's days of ``usage_daily_people``; that
    table still answers the exact time within the day.
    """

    __tablename__ = "usage_last_use"
    __tenant_key__ = TenantKey(primary_key=True)

    product_id: Mapped[int] = mapped_column(
        sa.ForeignKey("products.id", ondelete="RESTRICT"), primary_key=True
    )
    user_email: Mapped[str] = mapped_column(sa.String(254), primary_key=True)
    last_day: Mapped[dt.date] = mapped_column(sa.Date, nullable=False)


# ---------------------------------------------------------------- usage reporting health
# (issue 15, the vendor portal: SPEC 8.1 "usage-reporting health")


class UsageReportDay(Base):
    """How a vendor's usage reports fared on one UTC day (the day a batch was received).

    One row per vendor and day, counted by ``portal.metering.ingest`` in the transaction
    that stores a vendor token's batch (one ``INSERT … ON CONFLICT DO UPDATE`` per batch):
    batches, events accepted (stored now), duplicates (an idempotency key seen before) and
    rejected, by rejection code (``portal.metering.ingest.REJECTION_CODES``: one column
    each, so the upsert only adds numbers). Council-wide: a vendor's batch spans
    organisations, and the row holds no organisation's data, only counts. A batch refused
    whole (empty, too large, not JSON) writes nothing: it is rolled back with its answer.
    """

    __tablename__ = "usage_report_days"

    vendor_id: Mapped[int] = mapped_column(
        sa.ForeignKey("vendors.id", ondelete="CASCADE"), primary_key=True
    )
    day: Mapped[dt.date] = mapped_column(sa.Date, primary_key=True)
    batches: Mapped[int] = mapped_column(sa.BigInteger, nullable=False, default=0)
    accepted: Mapped[int] = mapped_column(sa.BigInteger, nullable=False, default=0)
    duplicates: Mapped[int] = mapped_column(sa.BigInteger, nullable=False, default=0)
    rejected_invalid: Mapped[int] = mapped_column(sa.BigInteger, nullable=False, default=0)
    rejected_no_subscription: Mapped[int] = mapped_column(sa.BigInteger, nullable=False, default=0)
    rejected_not_organisation_person: Mapped[int] = mapped_column(
        sa.BigInteger, nullable=False, default=0
    )
    last_batch_at: Mapped[dt.datetime] = mapped_column(UTCDateTime(), nullable=False)

    @property
    def rejected_by_code(self) -> dict[str, int]:
        """Rejected events by code (``REJECTION_CODES``), zeros included."""
        return {
            "invalid": self.rejected_invalid,
            "no_subscription": self.rejected_no_subscription,
            "not_organisation_person": self.rejected_not_organisation_person,
        }

    @property
    def rejected(self) -> int:
        return sum(self.rejected_by_code.values())

    @property
    def events(self) -> int:
        return self.accepted + self.duplicates + self.rejected
