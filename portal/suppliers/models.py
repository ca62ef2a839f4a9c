"""Vendors' service status history, incidents and their updates (issue 15, SPEC 8.2).

All council-wide: a vendor's status and incidents are public to every signed-in person.
The vendor's *current* status lives on :class:`~portal.catalogue.models.Vendor`
(``service_status``...); its history is a chain of intervals here, exactly one of them
open (``ended_at`` NULL) per vendor once the vendor has any history.
"""

from __future__ import annotations

import datetime as dt
import enum

import sqlalchemy as sa
from sqlalchemy.orm import Mapped, mapped_column, relationship

from portal.catalogue.models import ServiceStatus, StatusSource, Vendor
from portal.db import Base, BigIntId, UTCDateTime, enum_column
from portal.kernel.clock import now_utc

__all__ = [
    "Incident",
    "IncidentImpact",
    "IncidentState",
    "IncidentUpdate",
    "ServiceStatus",
    "StatusSource",
    "VendorStatusInterval",
]

_STATUSES = "'operational', 'degraded', 'partial_outage', 'major_outage', 'maintenance'"
_SOURCES = "'vendor', 'council', 'statuspage'"
_IMPACTS = "'none', 'minor', 'major', 'critical'"
_STATES = "'investigating', 'identified', 'monitoring', 'resolved'"


class IncidentImpact(enum.StrEnum):
    NONE = "none"
    MINOR = "minor"
    MAJOR = "major"
    CRITICAL = "critical"


class IncidentState(enum.StrEnum):
    INVESTIGATING = "investigating"
    IDENTIFIED = "identified"
    MONITORING = "monitoring"
    RESOLVED = "resolved"


class VendorStatusInterval(Base):
    """A stretch of time a vendor's service was in one status: [started_at, ended_at)."""

    __tablename__ = "vendor_status_intervals"
    __table_args__ = (
        sa.CheckConstraint(f"service_status IN ({_STATUSES})", name="service_status_known"),
        sa.CheckConstraint(f"source IN ({_SOURCES})", name="source_known"),
        sa.CheckConstraint("ended_at IS NULL OR ended_at >= started_at", name="ordered"),
        sa.Index("ix_vendor_status_intervals_vendor_started", "vendor_id", "started_at"),
        # Exactly one open interval per vendor.
        sa.Index(
            "uq_vendor_status_intervals_open",
            "vendor_id",
            unique=True,
            sqlite_where=sa.text("ended_at IS NULL"),
            postgresql_where=sa.text("ended_at IS NULL"),
        ),
    )

    id: Mapped[int] = mapped_column(BigIntId, primary_key=True)
    vendor_id: Mapped[int] = mapped_column(
        sa.ForeignKey("vendors.id", ondelete="CASCADE"), nullable=False
    )
    service_status: Mapped[ServiceStatus] = mapped_column(
        enum_column(ServiceStatus, 16), nullable=False
    )
    started_at: Mapped[dt.datetime] = mapped_column(UTCDateTime(), nullable=False)
    ended_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime())
    source: Mapped[StatusSource] = mapped_column(enum_column(StatusSource, 16), nullable=False)
    message: Mapped[str | None] = mapped_column(sa.String(500))


class Incident(Base):
    """Something wrong with a vendor's service, told as it develops."""

    __tablename__ = "incidents"
    __table_args__ = (
        sa.CheckConstraint(f"impact IN ({_IMPACTS})", name="impact_known"),
        sa.CheckConstraint(f"state IN ({_STATES})", name="state_known"),
        sa.CheckConstraint(f"source IN ({_SOURCES})", name="source_known"),
        sa.CheckConstraint(
            "(state = 'resolved') = (resolved_at IS NOT NULL)", name="resolved_has_time"
        ),
        # A Statuspage incident is imported once per vendor.
        sa.UniqueConstraint("vendor_id", "external_id", name="uq_incidents_vendor_external"),
        sa.Index("ix_incidents_vendor_opened", "vendor_id", "opened_at"),
        sa.Index("ix_incidents_state", "state"),
    )

    id: Mapped[int] = mapped_column(BigIntId, primary_key=True)
    vendor_id: Mapped[int] = mapped_column(
        sa.ForeignKey("vendors.id", ondelete="CASCADE"), nullable=False
    )
    title: Mapped[str] = mapped_column(sa.String(200), nullable=False)
    impact: Mapped[IncidentImpact] = mapped_column(enum_column(IncidentImpact, 16), nullable=False)
    state: Mapped[IncidentState] = mapped_column(enum_column(IncidentState, 16), nullable=False)
    opened_at: Mapped[dt.datetime] = mapped_column(UTCDateTime(), nullable=False, default=now_utc)
    resolved_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime())
    source: Mapped[StatusSource] = mapped_column(enum_column(StatusSource, 16), nullable=False)
    external_id: Mapped[str | None] = mapped_column(sa.String(100))
    updated_at: Mapped[dt.datetime] = mapped_column(UTCDateTime(), nullable=False, default=now_utc)

    vendor: Mapped[Vendor] = relationship(lazy="joined")
    updates: Mapped[list[IncidentUpdate]] = relationship(
        back_populates="incident",
        order_by="IncidentUpdate.created_at.desc(), IncidentUpdate.id.desc()",
        cascade="all, delete-orphan",
    )

    @property
    def is_open(self) -> bool:
        return self.state != IncidentState.RESOLVED


class IncidentUpdate(Base):
    """One timestamped update of an incident: its state and impact then, and what was said."""

    __tablename__ = "incident_updates"
    __table_args__ = (
        sa.CheckConstraint(f"impact IN ({_IMPACTS})", name="impact_known"),
        sa.CheckConstraint(f"state IN ({_STATES})", name="state_known"),
        sa.UniqueConstraint("incident_id", "external_id", name="uq_incident_updates_external"),
        sa.Index("ix_incident_updates_incident_created", "incident_id", "created_at"),
    )

    id: Mapped[int] = mapped_column(BigIntId, primary_key=True)
    incident_id: Mapped[int] = mapped_column(
        sa.ForeignKey("incidents.id", ondelete="CASCADE"), nullable=False
    )
    state: Mapped[IncidentState] = mapped_column(enum_column(IncidentState, 16), nullable=False)
    impact: Mapped[IncidentImpact] = mapped_column(enum_column(IncidentImpact, 16), nullable=False)
    body: Mapped[str] = mapped_column(sa.Text, nullable=False)
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime(), nullable=False, default=now_utc)
    author: Mapped[str] = mapped_column(sa.String(254), nullable=False)  # who, as a label
    external_id: Mapped[str | None] = mapped_column(sa.String(100))  # a Statuspage update's id

    incident: Mapped[Incident] = relationship(back_populates="updates")
