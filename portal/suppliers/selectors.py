"""Reading suppliers: the directory's list and a vendor's summary, status history, uptime,
incidents, and whether a status page reading is stale (issue 15, SPEC 8.2).

Vendors, their status history and incidents are council-wide and public to every signed-in
person (``supplier.read``): nothing here takes a scope. What a *vendor admin* may change is
the services' rule.

Uptime over a window ``[now - days, now)``: the share of the *known* time that the service
was not in ``partial_outage`` or ``major_outage``. Known time starts at the vendor's first
history interval: a vendor with no history at all has been in its current status since it
was last set, or else since it was added to the catalogue (the default, operational).
Maintenance is not downtime; its share of the known time is reported apart. Percentages
have two places, uptime rounded down (an outage never shows as 100.00), maintenance to
the nearest.
"""

from __future__ import annotations

import datetime as dt
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from decimal import ROUND_DOWN, ROUND_HALF_UP, Decimal

import sqlalchemy as sa
from sqlalchemy.orm import Session, selectinload

from portal.catalogue.models import OUTAGE_STATUSES, Product, ServiceStatus, Vendor
from portal.kernel.errors import NotFound
from portal.kernel.i18n import _l
from portal.suppliers.models import Incident, IncidentState, VendorStatusInterval

#: A status page reading older than this (or followed by a failed poll) is stale.
STALE_AFTER = dt.timedelta(minutes=20)
#: Resolved incidents shown as "recent" for this long.
RECENT_DAYS = 30
#: The uptime windows the directory and the API show.
UPTIME_WINDOWS = (30, 90)

_MICRO = dt.timedelta(microseconds=1)
_HUNDRED = Decimal(100)
_TWO_PLACES = Decimal("0.01")


@dataclass(frozen=True)
class Uptime:
    """A vendor's uptime over a window ending at ``ends_at``."""

    days: int
    ends_at: dt.datetime
    #: None when no time of the window is known (the vendor is newer than the window's end).
    uptime_percent: Decimal | None
    maintenance_percent: Decimal | None
    outage_seconds: int
    maintenance_seconds: int
    known_seconds: int  # the part of the window after the vendor's history starts


@dataclass(frozen=True)
class _Span:
    status: ServiceStatus
    start: dt.datetime
    end: dt.datetime | None


def _percent(part: int, whole: int, rounding: str) -> Decimal:
    return (Decimal(part) * _HUNDRED / Decimal(whole)).quantize(_TWO_PLACES, rounding=rounding)


def _uptime_of(spans: Iterable[_Span], *, days: int, now: dt.datetime) -> Uptime:
    start = now - dt.timedelta(days=days)
    known = outage = maintenance = 0
    for span in spans:
        lo = max(span.start, start)
        hi = min(span.end or now, now)
        if hi <= lo:
            continue
        length = (hi - lo) // _MICRO
        known += length
        if span.status in OUTAGE_STATUSES:
            outage += length
        elif span.status == ServiceStatus.MAINTENANCE:
            maintenance += length
    if known == 0:
        return Uptime(days, now, None, None, 0, 0, 0)
    return Uptime(
        days=days,
        ends_at=now,
        uptime_percent=_percent(known - outage, known, ROUND_DOWN),
        maintenance_percent=_percent(maintenance, known, ROUND_HALF_UP),
        outage_seconds=outage // 1_000_000,
        maintenance_seconds=maintenance // 1_000_000,
        known_seconds=known // 1_000_000,
    )


def _spans(
    session: Session, vendors: Sequence[Vendor], since: dt.datetime
) -> dict[int, list[_Span]]:
    """Each vendor's history spans reaching past ``since`` (one query for all vendors)."""
    ids = [vendor.id for vendor in vendors]
    found: dict[int, list[_Span]] = defaultdict(list)
    if ids:
        rows = session.execute(
            sa.select(
                VendorStatusInterval.vendor_id,
                VendorStatusInterval.service_status,
                VendorStatusInterval.started_at,
                VendorStatusInterval.ended_at,
            )
            .where(
                VendorStatusInterval.vendor_id.in_(ids),
                sa.or_(
                    VendorStatusInterval.ended_at.is_(None),
                    VendorStatusInterval.ended_at > since,
                ),
            )
            .order_by(VendorStatusInterval.vendor_id, VendorStatusInterval.started_at)
        )
        for vendor_id, status, started_at, ended_at in rows:
            found[vendor_id].append(_Span(ServiceStatus(status), started_at, ended_at))
    for vendor in vendors:
        # A vendor with history has an open interval, which the query always finds.
        if vendor.id not in found:
            # No history yet: the current status since it was set (or the vendor added).
            found[vendor.id] = [
                _Span(vendor.service_status, vendor.service_status_at or vendor.created_at, None)
            ]
    return found


def uptime(
    session: Session,
    vendor_id: int,
    *,
    days: int,
    now: dt.datetime,
) -> Uptime:
    """The vendor's uptime over the ``days`` before ``now`` (see the module's definition)."""
    if days <= 0:
        raise ValueError("days must be positive")
    vendor = session.get(Vendor, vendor_id)
    if vendor is None:
        raise NotFound(_l("No such vendor."))
    spans = _spans(session, [vendor], now - dt.timedelta(days=days))
    return _uptime_of(spans[vendor.id], days=days, now=now)


def uptimes(
    session: Session, vendors: Sequence[Vendor], *, days: Sequence[int], now: dt.datetime
) -> dict[int, dict[int, Uptime]]:
    """``{vendor_id: {days: Uptime}}`` for many vendors and windows in one query."""
    if not vendors or not days:
        return {}
    spans = _spans(session, vendors, now - dt.timedelta(days=max(days)))
    return {
        vendor.id: {d: _uptime_of(spans[vendor.id], days=d, now=now) for d in days}
        for vendor in vendors
    }


def status_history(
    session: Session, vendor_id: int, *, since: dt.datetime | None = None, limit: int = 200
) -> list[VendorStatusInterval]:
    """The vendor's status intervals, newest first (those reaching past ``since``)."""
    query = sa.select(VendorStatusInterval).where(VendorStatusInterval.vendor_id == vendor_id)
    if since is not None:
        query = query.where(
            sa.or_(VendorStatusInterval.ended_at.is_(None), VendorStatusInterval.ended_at > since)
        )
    query = query.order_by(
        VendorStatusInterval.started_at.desc(), VendorStatusInterval.id.desc()
    ).limit(limit)
    return list(session.scalars(query))


def open_incidents(session: Session, vendor_id: int | None = None) -> list[Incident]:
    """Unresolved incidents (of one vendor, or of all), newest first, with their updates."""
    query = (
        sa.select(Incident)
        .where(Incident.state != IncidentState.RESOLVED)
        .options(selectinload(Incident.updates))
        .order_by(Incident.opened_at.desc(), Incident.id.desc())
    )
    if vendor_id is not None:
        query = query.where(Incident.vendor_id == vendor_id)
    return list(session.scalars(query))


def recent_incidents(
    session: Session,
    vendor_id: int | None = None,
    *,
    now: dt.datetime,
    days: int = RECENT_DAYS,
    limit: int = 50,
) -> list[Incident]:
    """Open incidents and those resolved in the last ``days``, most recently changed first."""
    since = now - dt.timedelta(days=days)
    query = (
        sa.select(Incident)
        .where(sa.or_(Incident.resolved_at.is_(None), Incident.resolved_at >= since))
        .options(selectinload(Incident.updates))
        .order_by(Incident.updated_at.desc(), Incident.id.desc())
        .limit(limit)
    )
    if vendor_id is not None:
        query = query.where(Incident.vendor_id == vendor_id)
    return list(session.scalars(query))


def incident_of_vendor(session: Session, vendor: Vendor, incident_id: object) -> Incident:
    """The vendor's incident ``incident_id``; NotFound for another's or a malformed id."""
    try:
        number = int(str(incident_id))
    except ValueError:
        number = 0
    if not 0 < number < 2**63:
        raise NotFound(_l("No such incident."))
    incident = session.get(Incident, number)
    if incident is None or incident.vendor_id != vendor.id:
        raise NotFound(_l("No such incident."))
    return incident


def reading_stale(vendor: Vendor, *, now: dt.datetime) -> bool:
    """Whether the status shown came from a status page we could not read lately.

    Only a vendor with a status page address has readings: stale when the last poll
    failed, when none has succeeded yet, or when the last good one is older than
    :data:`STALE_AFTER`.
    """
    if not vendor.status_page_url:
        return False
    if vendor.status_poll_error:
        return True
    return vendor.status_polled_at is None or now - vendor.status_polled_at > STALE_AFTER


# ---------------------------------------------------------------- the directory


@dataclass
class VendorSummary:
    """Everything the directory shows of one vendor."""

    vendor: Vendor
    products: list[Product]
    uptime: dict[int, Uptime]  # by window length in days (30, 90)
    open_incidents: list[Incident]
    recent_incidents: list[Incident] = field(default_factory=list)
    stale: bool = False

    @property
    def uptime_30(self) -> Uptime:
        return self.uptime[30]

    @property
    def uptime_90(self) -> Uptime:
        return self.uptime[90]


def vendor_summary(
    session: Session, vendor: Vendor, *, now: dt.datetime, recent_days: int = RECENT_DAYS
) -> VendorSummary:
    """One vendor's profile page: products, uptime over 30 and 90 days, open and recent
    incidents (with their updates), staleness. Four queries."""
    products = list(
        session.scalars(
            sa.select(Product).where(Product.vendor_id == vendor.id).order_by(Product.name)
        )
    )
    recent = recent_incidents(session, vendor.id, now=now, days=recent_days)
    return VendorSummary(
        vendor=vendor,
        products=products,
        uptime=uptimes(session, [vendor], days=UPTIME_WINDOWS, now=now)[vendor.id],
        open_incidents=[incident for incident in recent if incident.is_open],
        recent_incidents=recent,
        stale=reading_stale(vendor, now=now),
    )


@dataclass(frozen=True)
class DirectoryFilter:
    """The directory's filters; None (or blank) is no filter."""

    country: str | None = None  # ISO alpha-2
    service_status: str | None = None  # a ServiceStatus value
    product: str | None = None  # a product's SKU
    text: str | None = None  # in the vendor's name, legal name, slug or a product's name


def _like(text: str) -> str:
    escaped = text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return f"%{escaped.lower()}%"


def directory(
    session: Session,
    *,
    filters: DirectoryFilter | None = None,
    now: dt.datetime,
    limit: int = 500,
    after_id: int | None = None,
    by_id: bool = False,
) -> list[VendorSummary]:
    """Vendors matching ``filters``, by name, each with products, uptime (30 and 90 days)
    and open incidents (no updates, no recent ones): four queries whatever the count.

    ``by_id`` and ``after_id`` give the API's keyset pages instead of the name order.
    Unknown filter values match nothing (a country or status nobody has, an SKU nobody
    sells); text is matched case-insensitively as a plain substring.
    """
    f = filters or DirectoryFilter()
    order = (Vendor.id,) if by_id else (Vendor.name, Vendor.id)
    query = sa.select(Vendor).order_by(*order).limit(limit)
    if after_id is not None:  # the API's pages: by id, after a cursor
        query = query.where(Vendor.id > after_id)
    if f.country:
        query = query.where(Vendor.country == f.country.strip().upper()[:2])
    if f.service_status:
        query = query.where(Vendor.service_status == f.service_status.strip()[:16])
    if f.product:
        query = query.where(
            Vendor.id.in_(
                sa.select(Product.vendor_id).where(Product.sku == f.product.strip().lower()[:63])
            )
        )
    if f.text and f.text.strip():
        pattern = _like(f.text.strip()[:200])
        query = query.where(
            sa.or_(
                sa.func.lower(Vendor.name).like(pattern, escape="\\"),
                sa.func.lower(sa.func.coalesce(Vendor.legal_name, "")).like(pattern, escape="\\"),
                Vendor.slug.like(pattern, escape="\\"),
                Vendor.id.in_(
                    sa.select(Product.vendor_id).where(
                        sa.func.lower(Product.name).like(pattern, escape="\\")
                    )
                ),
            )
        )
    vendors = list(session.scalars(query))
    if not vendors:
        return []
    ids = [vendor.id for vendor in vendors]
    products: dict[int, list[Product]] = defaultdict(list)
    for product in session.scalars(
        sa.select(Product).where(Product.vendor_id.in_(ids)).order_by(Product.name)
    ):
        products[product.vendor_id].append(product)
    incidents: dict[int, list[Incident]] = defaultdict(list)
    for incident in session.scalars(
        sa.select(Incident)
        .where(Incident.vendor_id.in_(ids), Incident.state != IncidentState.RESOLVED)
        .order_by(Incident.opened_at.desc(), Incident.id.desc())
    ):
        incidents[incident.vendor_id].append(incident)
    windows = uptimes(session, vendors, days=UPTIME_WINDOWS, now=now)
    return [
        VendorSummary(
            vendor=vendor,
            products=products[vendor.id],
            uptime=windows[vendor.id],
            open_incidents=incidents[vendor.id],
            stale=reading_stale(vendor, now=now),
        )
        for vendor in vendors
    ]


def vendors_with_status_page(session: Session, *, slug: str | None = None) -> list[Vendor]:
    """Vendors the poller reads (one of them with ``slug``), by slug."""
    query = sa.select(Vendor).where(Vendor.status_page_url.is_not(None)).order_by(Vendor.slug)
    if slug is not None:
        query = query.where(Vendor.slug == slug.lower())
    return list(session.scalars(query))


def countries(session: Session) -> list[str]:
    """The countries vendors are in (the directory's filter's choices)."""
    return list(
        session.scalars(
            sa.select(Vendor.country)
            .where(Vendor.country.is_not(None))
            .distinct()
            .order_by(Vendor.country)
        )
    )
