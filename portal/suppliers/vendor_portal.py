"""The vendor portal's reads and writes (issue 15, SPEC 8.1): a vendor admin's own vendor.

A vendor admin belongs to no organisation, so their requests run council-wide in the
database (``portal.identity.auth.person_scope``), as a vendor's API token does. What
they may see is decided here instead, by the policy's ``OWN_VENDOR`` rules: every
function takes the vendor and asks ``policy.require(actor, …, vendor_id=vendor.id)``
first, and answers only that vendor's rows, or aggregates over its products (seat
counts, usage batches): never an organisation's people, seats or invoices. Council
staff reach every vendor (``ANY``), so the council's pages can use the same reads.

Service status, incidents and the profile are :mod:`portal.suppliers.services`' (the
vendor's pages call them as the council's do); API tokens are :mod:`portal.api.services`'.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Session

from portal.catalogue.models import LicencePool, Vendor
from portal.kernel import policy
from portal.kernel.actor import Actor
from portal.kernel.errors import NotFound
from portal.kernel.i18n import _l
from portal.kernel.policy import Action
from portal.metering.ingest import REJECTION_CODES
from portal.metering.models import UsageReportDay
from portal.seats.figures import ProductFigures, catalogue_list
from portal.suppliers.models import Incident, IncidentState

#: Days of usage-reporting health the portal shows by default, and at most.
HEALTH_DAYS = 30
HEALTH_MAX_DAYS = 90


def own_vendor(session: Session, actor: Actor) -> Vendor:
    """The vendor of a vendor admin (or a vendor token); :class:`NotFound` for anyone else."""
    vendor = session.get(Vendor, actor.vendor_id) if actor.vendor_id is not None else None
    if vendor is None:
        raise NotFound(_l("No such vendor here."))
    policy.require(actor, Action.VENDOR_READ, vendor_id=vendor.id)
    return vendor


# ---------------------------------------------------------------- products and seats


@dataclass
class ProductSeats:
    """One of the vendor's products: its seat figures today and its licence pools."""

    figures: ProductFigures
    pools: list[LicencePool]

    @property
    def product(self) -> Any:
        return self.figures.product


@dataclass
class SeatTotals:
    products: int = 0
    capacity: int = 0
    reserved: int = 0
    assigned: int = 0
    free: int = 0
    waiting: int = 0


def products_seats(
    session: Session, *, actor: Actor, vendor: Vendor, day: dt.date
) -> list[ProductSeats]:
    """The vendor's products with capacity in force, reserved, assigned, free and waiting
    seats on ``day``, and every pool (past, in force, future): sums over the council, in
    five queries, never who holds a seat."""
    policy.require(actor, Action.VENDOR_SEATS_READ, vendor_id=vendor.id)
    figures = catalogue_list(session, day=day, vendor_slug=vendor.slug)
    ids = [f.product.id for f in figures]
    pools: dict[int, list[LicencePool]] = {pid: [] for pid in ids}
    if ids:
        for pool in session.scalars(
            sa.select(LicencePool)
            .where(LicencePool.product_id.in_(ids))
            .order_by(LicencePool.starts_on, LicencePool.id)
        ):
            pools[pool.product_id].append(pool)
    return [ProductSeats(figures=f, pools=pools[f.product.id]) for f in figures]


def seat_totals(products: list[ProductSeats]) -> SeatTotals:
    """The seat figures of all the vendor's products together."""
    totals = SeatTotals(products=len(products))
    for entry in products:
        f = entry.figures
        totals.capacity += f.capacity
        totals.reserved += f.reserved
        totals.assigned += f.assigned
        totals.free += f.free
        totals.waiting += f.waiting
    return totals


# ---------------------------------------------------------------- usage reporting health


@dataclass
class UsageHealth:
    """A vendor's usage batches over the last ``days`` UTC days (receipt days), newest first."""

    days: int
    since: dt.date
    rows: list[UsageReportDay]
    batches: int = 0
    accepted: int = 0
    duplicates: int = 0
    rejected_by_code: dict[str, int] = field(default_factory=dict)
    last_batch_at: dt.datetime | None = None

    @property
    def rejected(self) -> int:
        return sum(self.rejected_by_code.values())

    @property
    def events(self) -> int:
        return self.accepted + self.duplicates + self.rejected

    @property
    def rejected_pct(self) -> int:
        """Rejected events as a whole percentage of the events sent (0 when none)."""
        return round(100 * self.rejected / self.events) if self.events else 0


def usage_health(
    session: Session, *, actor: Actor, vendor: Vendor, today: dt.date, days: int = HEALTH_DAYS
) -> UsageHealth:
    """Per UTC day, the vendor's usage batches and their events accepted, duplicate and
    rejected by code (``portal.metering.ingest.REJECTION_CODES``), for ``days`` days up to
    ``today``; days without a batch have no row."""
    policy.require(actor, Action.VENDOR_USAGE_HEALTH_READ, vendor_id=vendor.id)
    days = max(1, min(int(days), HEALTH_MAX_DAYS))
    since = today - dt.timedelta(days=days - 1)
    rows = list(
        session.scalars(
            sa.select(UsageReportDay)
            .where(UsageReportDay.vendor_id == vendor.id, UsageReportDay.day >= since)
            .order_by(UsageReportDay.day.desc())
        )
    )
    health = UsageHealth(
        days=days, since=since, rows=rows, rejected_by_code=dict.fromkeys(REJECTION_CODES, 0)
    )
    for row in rows:
        health.batches += row.batches
        health.accepted += row.accepted
        health.duplicates += row.duplicates
        for code, count in row.rejected_by_code.items():
            health.rejected_by_code[code] = health.rejected_by_code.get(code, 0) + count
        if health.last_batch_at is None or row.last_batch_at > health.last_batch_at:
            health.last_batch_at = row.last_batch_at
    return health


# ---------------------------------------------------------------- incidents


def incidents_of(
    session: Session, *, actor: Actor, vendor: Vendor, limit: int = 20
) -> tuple[list[Incident], list[Incident]]:
    """The vendor's open incidents (oldest first) and its latest resolved ones."""
    policy.require(actor, Action.VENDOR_READ, vendor_id=vendor.id)
    open_ = list(
        session.scalars(
            sa.select(Incident)
            .where(Incident.vendor_id == vendor.id, Incident.state != IncidentState.RESOLVED)
            .order_by(Incident.opened_at, Incident.id)
        ).unique()
    )
    resolved = list(
        session.scalars(
            sa.select(Incident)
            .where(Incident.vendor_id == vendor.id, Incident.state == IncidentState.RESOLVED)
            .order_by(Incident.resolved_at.desc(), Incident.id.desc())
            .limit(limit)
        ).unique()
    )
    return open_, resolved


def incident_of(session: Session, *, actor: Actor, vendor: Vendor, incident_id: int) -> Incident:
    """One incident of the vendor; :class:`NotFound` for another vendor's (or none)."""
    policy.require(actor, Action.VENDOR_INCIDENT_MANAGE, vendor_id=vendor.id)
    incident = session.scalar(
        sa.select(Incident).where(Incident.id == incident_id, Incident.vendor_id == vendor.id)
    )
    if incident is None:
        raise NotFound(_l("No such incident here."))
    return incident
