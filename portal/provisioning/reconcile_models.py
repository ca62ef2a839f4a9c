"""Reconciliation runs and the drift they found (issue 17; migration 0025).

A :class:`ReconciliationRun` (council-wide: one vendor's) is one reading of the people a
vendor's application holds over SCIM, compared with the seats of the vendor's products
in the portal. Each :class:`DriftFinding` is one person the two disagree about, and
what (if anything) was done about it. Council-wide like the vendor's settings: an
"extra" at the vendor may be nobody in the portal, and a run covers every
organisation's people; it is read by council staff and by that vendor's admins only.
"""

from __future__ import annotations

import datetime as dt
import enum

import sqlalchemy as sa
from sqlalchemy.orm import Mapped, mapped_column, relationship

from portal.catalogue.models import Vendor
from portal.db import Base, BigIntId, UTCDateTime, enum_column
from portal.kernel.clock import now_utc


class RunState(enum.StrEnum):
    QUEUED = "queued"  # asked for on a page or over the API: a worker runs it next
    RUNNING = "running"
    DONE = "done"
    FAILED = "failed"  # the vendor's users could not be read: ``error`` says why


class DriftKind(enum.StrEnum):
    #: active at the vendor, with no seat of its products in the portal
    EXTRA = "active_without_seat"
    #: holds a seat, unknown to the vendor
    MISSING = "missing"
    #: holds a seat, inactive at the vendor
    INACTIVE = "inactive"


class DriftFix(enum.StrEnum):
    DEACTIVATED = "deactivated"
    CREATED = "created"
    ACTIVATED = "activated"
    #: a delivery for this person is still on its way: it will set it right
    IN_FLIGHT = "in_flight"
    FAILED = "failed"


class ReconciliationRun(Base):
    """One comparison of a vendor's users with the portal's seats."""

    __tablename__ = "provisioning_reconciliations"
    __table_args__ = (
        sa.CheckConstraint("state IN ('queued', 'running', 'done', 'failed')", name="state_known"),
        sa.Index("ix_provisioning_reconciliations_vendor_id_id", "vendor_id", "id"),
    )

    id: Mapped[int] = mapped_column(BigIntId, primary_key=True)
    vendor_id: Mapped[int] = mapped_column(
        sa.ForeignKey("vendors.id", ondelete="CASCADE"), nullable=False
    )
    state: Mapped[RunState] = mapped_column(enum_column(RunState, 16), nullable=False)
    #: whether drift was to be fixed (the vendor's ``reconcile_fix``, or ``--fix``)
    fix: Mapped[bool] = mapped_column(sa.Boolean, nullable=False, default=False)
    started_at: Mapped[dt.datetime] = mapped_column(UTCDateTime(), nullable=False, default=now_utc)
    finished_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime())
    requested_by: Mapped[str] = mapped_column(sa.String(254), nullable=False)
    vendor_users: Mapped[int] = mapped_column(sa.Integer, nullable=False, default=0)
    seated_people: Mapped[int] = mapped_column(sa.Integer, nullable=False, default=0)
    drift_count: Mapped[int] = mapped_column(sa.Integer, nullable=False, default=0)
    fixed_count: Mapped[int] = mapped_column(sa.Integer, nullable=False, default=0)
    error: Mapped[str | None] = mapped_column(sa.String(500))

    vendor: Mapped[Vendor] = relationship(lazy="joined")
    findings: Mapped[list[DriftFinding]] = relationship(
        back_populates="run", order_by="DriftFinding.id", cascade="all, delete-orphan"
    )


class DriftFinding(Base):
    """One person the vendor and the portal disagree about."""

    __tablename__ = "provisioning_drift"
    __table_args__ = (
        sa.CheckConstraint(
            "kind IN ('active_without_seat', 'missing', 'inactive')", name="kind_known"
        ),
        sa.CheckConstraint(
            "fix IS NULL OR fix IN ('deactivated', 'created', 'activated', 'in_flight', 'failed')",
            name="fix_known",
        ),
    )

    id: Mapped[int] = mapped_column(BigIntId, primary_key=True)
    run_id: Mapped[int] = mapped_column(
        sa.ForeignKey("provisioning_reconciliations.id", ondelete="CASCADE"),
        nullable=False,
        index=True,
    )
    kind: Mapped[DriftKind] = mapped_column(enum_column(DriftKind, 24), nullable=False)
    #: the portal's person, when the vendor's record is someone the portal knows
    user_id: Mapped[int | None] = mapped_column(
        sa.ForeignKey("users.id", ondelete="SET NULL"), index=True
    )
    user_name: Mapped[str] = mapped_column(sa.String(254), nullable=False)
    #: the vendor's id of the record (none for a person missing there)
    vendor_resource_id: Mapped[str | None] = mapped_column(sa.String(255))
    fix: Mapped[DriftFix | None] = mapped_column(enum_column(DriftFix, 16))
    fix_error: Mapped[str | None] = mapped_column(sa.String(500))

    run: Mapped[ReconciliationRun] = relationship(back_populates="findings")
