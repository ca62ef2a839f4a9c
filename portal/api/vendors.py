"""``/vendors`` read by any token, and a vendor's service status and incidents (SPEC 8.2).

* ``GET /vendors`` and ``GET /vendors/{slug}``: the supplier directory for any token
  (council, organisation or vendor): standing, service status (and whether a status page
  reading is stale), uptime over 30 and 90 days as decimal strings ("99.95"), open
  incidents.
* ``PUT /vendors/{slug}/service-status``, ``POST /vendors/{slug}/incidents`` and
  ``POST /vendors/{slug}/incidents/{id}/updates``: a council token, or a vendor token of
  THAT vendor; another vendor's token is answered 404 (to it, the vendor is not there to
  change), an organisation token 403.

(``POST /vendors``, the council adding a vendor, is in :mod:`portal.api.catalogue`.)
"""

from __future__ import annotations

import datetime as dt
from decimal import Decimal
from typing import Annotated, Literal

from flask import Response
from flask_openapi3 import Tag
from pydantic import BaseModel, ConfigDict, Field, StringConstraints

from portal.api.auth import ANY_SCOPE, COUNCIL, VENDOR, current_actor
from portal.api.framework import reply, route
from portal.api.pagination import decode_cursor, page
from portal.api.schemas import MAX_ID, ApiModel, ListQuery, SlugPath
from portal.catalogue.models import ServiceStatus, Vendor
from portal.catalogue.selectors import vendor_by_slug
from portal.db import db_session
from portal.kernel import policy
from portal.kernel.clock import now_utc
from portal.kernel.policy import Action
from portal.suppliers import selectors, services
from portal.suppliers.models import Incident, IncidentUpdate
from portal.suppliers.selectors import Uptime, VendorSummary

tag = Tag(
    name="Suppliers",
    description="Vendors' profiles, service status, uptime and incidents (SPEC 8.2).",
)

StatusName = Literal["operational", "degraded", "partial_outage", "major_outage", "maintenance"]
ImpactName = Literal["none", "minor", "major", "critical"]
StateName = Literal["investigating", "identified", "monitoring", "resolved"]
SourceName = Literal["vendor", "council", "statuspage"]

Text = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1)]


# ---------------------------------------------------------------- requests


class VendorListQuery(ListQuery):
    country: str | None = Field(
        default=None,
        min_length=2,
        max_length=2,
        description="ISO 3166-1 alpha-2 code",
        json_schema_extra={"pattern": r"^[A-Za-z]{2}$"},
    )
    service_status: StatusName | None = Field(default=None, description="Only this status")
    product: str | None = Field(
        default=None, max_length=63, description="Vendors of this product (its SKU)"
    )
    search: str | None = Field(
        default=None,
        max_length=100,
        description="Words in the name, legal name, slug or a product's name",
    )


class IncidentPath(SlugPath):
    id: int = Field(ge=1, le=MAX_ID, description="The incident's id")


class ServiceStatusSet(ApiModel):
    """The vendor's service status now, and a message for the people using it."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "example": {"service_status": "degraded", "message": "Exports are slow."}
        },
    )
    service_status: StatusName
    message: Annotated[str, StringConstraints(max_length=services.MESSAGE_MAX)] | None = None


class IncidentOpen(ApiModel):
    """An incident: what is wrong, how badly, and the first word on it."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "example": {
                "title": "Sign-in fails for some users",
                "impact": "major",
                "body": "We are investigating failed sign-ins.",
            }
        },
    )
    title: Annotated[Text, StringConstraints(max_length=services.TITLE_MAX)]
    impact: ImpactName
    body: Annotated[Text, StringConstraints(max_length=services.BODY_MAX)]


class IncidentUpdateAdd(ApiModel):
    """A timestamped update; a new ``state`` or ``impact`` changes the incident
    (``resolved`` closes it)."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={"example": {"body": "Fixed; we are watching.", "state": "monitoring"}},
    )
    body: Annotated[Text, StringConstraints(max_length=services.BODY_MAX)]
    state: StateName | None = None
    impact: ImpactName | None = None


# ---------------------------------------------------------------- responses


def _percent(value: Decimal | None) -> str | None:
    return None if value is None else f"{value:.2f}"


class IncidentUpdateOut(BaseModel):
    id: int
    state: StateName
    impact: ImpactName
    body: str
    created_at: dt.datetime
    author: str

    @classmethod
    def of(cls, update: IncidentUpdate) -> IncidentUpdateOut:
        return cls(
            id=update.id,
            state=update.state.value,
            impact=update.impact.value,
            body=update.body,
            created_at=update.created_at,
            author=update.author,
        )


class IncidentBrief(BaseModel):
    """An open incident, as the vendor list shows it (the vendor's page has its updates)."""

    id: int
    title: str
    impact: ImpactName
    state: StateName
    opened_at: dt.datetime

    @classmethod
    def of(cls, incident: Incident) -> IncidentBrief:
        return cls(
            id=incident.id,
            title=incident.title,
            impact=incident.impact.value,
            state=incident.state.value,
            opened_at=incident.opened_at,
        )


class IncidentOut(BaseModel):
    """An incident and its updates, newest first."""

    id: int
    vendor: str = Field(description="The vendor's slug")
    title: str
    impact: ImpactName
    state: StateName
    opened_at: dt.datetime
    resolved_at: dt.datetime | None
    source: SourceName
    updates: list[IncidentUpdateOut]

    @classmethod
    def of(cls, incident: Incident, vendor: Vendor) -> IncidentOut:
        return cls(
            id=incident.id,
            vendor=vendor.slug,
            title=incident.title,
            impact=incident.impact.value,
            state=incident.state.value,
            opened_at=incident.opened_at,
            resolved_at=incident.resolved_at,
            source=incident.source.value,
            updates=[IncidentUpdateOut.of(u) for u in incident.updates],
        )


class UptimeOut(BaseModel):
    uptime_percent: str | None = Field(
        description="Time not in partial or major outage over the known time, two places "
        "(rounded down), as a string: '99.95'; null when none of the window is known"
    )
    maintenance_percent: str | None
    outage_seconds: int
    maintenance_seconds: int
    known_seconds: int = Field(description="The part of the window after history begins")

    @classmethod
    def of(cls, up: Uptime) -> UptimeOut:
        return cls(
            uptime_percent=_percent(up.uptime_percent),
            maintenance_percent=_percent(up.maintenance_percent),
            outage_seconds=up.outage_seconds,
            maintenance_seconds=up.maintenance_seconds,
            known_seconds=up.known_seconds,
        )


class VendorEntry(BaseModel):
    """A vendor of the supplier directory."""

    slug: str
    name: str
    status: Literal["active", "under_review", "suspended"] = Field(
        description="The vendor's standing with the council"
    )
    legal_name: str | None
    country: str | None
    website: str | None
    service_status: StatusName
    service_status_message: str | None
    service_status_source: SourceName | None
    service_status_at: dt.datetime | None
    status_stale: bool = Field(
        description="The status came from a status page the portal could not read lately"
    )
    uptime_30d: str | None = Field(description="Uptime over 30 days, e.g. '99.95'")
    uptime_90d: str | None
    products: list[str] = Field(description="SKUs of its products in the catalogue")
    open_incidents: list[IncidentBrief]

    @classmethod
    def of(cls, summary: VendorSummary) -> VendorEntry:
        vendor = summary.vendor
        return cls(
            slug=vendor.slug,
            name=vendor.name,
            status=vendor.status.value,
            legal_name=vendor.legal_name,
            country=vendor.country,
            website=vendor.website,
            service_status=vendor.service_status.value,
            service_status_message=vendor.service_status_message,
            service_status_source=(
                vendor.service_status_source.value if vendor.service_status_source else None
            ),
            service_status_at=vendor.service_status_at,
            status_stale=summary.stale,
            uptime_30d=_percent(summary.uptime_30.uptime_percent),
            uptime_90d=_percent(summary.uptime_90.uptime_percent),
            products=[p.sku for p in summary.products],
            open_incidents=[IncidentBrief.of(i) for i in summary.open_incidents],
        )


class VendorList(BaseModel):
    data: list[VendorEntry]
    next_cursor: str | None


class VendorDetail(BaseModel):
    """A vendor's profile, standing, service status, uptime and open incidents."""

    slug: str
    name: str
    status: Literal["active", "under_review", "suspended"]
    status_note: str | None = Field(description="The council's note on the standing")
    legal_name: str | None
    country: str | None
    website: str | None
    support_contact: str | None
    data_residency: str | None
    service_status: StatusName
    service_status_message: str | None
    service_status_source: SourceName | None
    service_status_at: dt.datetime | None
    status_stale: bool
    status_polled_at: dt.datetime | None = Field(
        description="The last good status page reading (vendors with a status page)"
    )
    uptime_30d: str | None = Field(description="Uptime over 30 days, e.g. '99.95'")
    uptime_90d: str | None
    uptime: dict[str, UptimeOut] = Field(description="Details by window: '30d', '90d'")
    products: list[str]
    open_incidents: list[IncidentOut]

    @classmethod
    def of(cls, summary: VendorSummary) -> VendorDetail:
        vendor = summary.vendor
        entry = VendorEntry.of(summary)
        return cls(
            **entry.model_dump(exclude={"open_incidents"}),
            status_note=vendor.status_note,
            support_contact=vendor.support_contact,
            data_residency=vendor.data_residency,
            status_polled_at=vendor.status_polled_at,
            uptime={f"{days}d": UptimeOut.of(up) for days, up in summary.uptime.items()},
            open_incidents=[IncidentOut.of(i, vendor) for i in summary.open_incidents],
        )


class ServiceStatusOut(BaseModel):
    slug: str
    service_status: StatusName
    service_status_message: str | None
    service_status_source: SourceName | None
    service_status_at: dt.datetime | None
    changed: bool = Field(description="False when the status was already this one")


# ---------------------------------------------------------------- views


@route(
    "get",
    "/vendors",
    scopes=ANY_SCOPE,
    tag=tag,
    action=Action.SUPPLIER_READ,
    responses={200: VendorList},
)
def vendors_list(query: VendorListQuery) -> Response:
    """The supplier directory: vendors in the order they were added, with their service
    status and uptime; filters by country, service status, product and text."""
    policy.require(current_actor(), Action.SUPPLIER_READ)
    after_id = decode_cursor(query.cursor)
    summaries = selectors.directory(
        db_session(),
        filters=selectors.DirectoryFilter(
            country=query.country,
            service_status=query.service_status,
            product=query.product,
            text=query.search,
        ),
        now=now_utc(),
        after_id=after_id,
        limit=query.limit + 1,
        by_id=True,
    )
    return reply(
        page(
            summaries,
            limit=query.limit,
            serialise=lambda s: VendorEntry.of(s).model_dump(mode="json"),
            key=lambda s: s.vendor.id,
        )
    )


@route(
    "get",
    "/vendors/<slug>",
    scopes=ANY_SCOPE,
    tag=tag,
    action=Action.SUPPLIER_READ,
    responses={200: VendorDetail},
    errors=[404],
)
def vendor_get(path: SlugPath) -> Response:
    """One vendor: profile, standing, service status, uptime (30 and 90 days), open
    incidents with their updates."""
    policy.require(current_actor(), Action.SUPPLIER_READ)
    vendor = vendor_by_slug(db_session(), path.slug)
    return reply(VendorDetail.of(selectors.vendor_summary(db_session(), vendor, now=now_utc())))


def _vendor_for_change(slug: str, action: Action) -> Vendor:
    """The vendor ``slug``; 404 also when a vendor token names another vendor."""
    vendor = vendor_by_slug(db_session(), slug)
    policy.require(current_actor(), action, vendor_id=vendor.id)
    return vendor


@route(
    "put",
    "/vendors/<slug>/service-status",
    scopes=[COUNCIL, VENDOR],
    tag=tag,
    action=Action.VENDOR_SERVICE_STATUS_SET,
    responses={200: ServiceStatusOut},
    errors=[404],
)
def vendor_service_status_set(path: SlugPath, body: ServiceStatusSet) -> Response:
    """Set the vendor's service status (its history keeps each change as an interval).

    The same status again changes nothing (`changed: false`; a new message is kept).
    """
    vendor = _vendor_for_change(path.slug, Action.VENDOR_SERVICE_STATUS_SET)
    changed = services.set_service_status(
        db_session(), current_actor(), vendor, ServiceStatus(body.service_status), body.message
    )
    return reply(
        ServiceStatusOut(
            slug=vendor.slug,
            service_status=vendor.service_status.value,
            service_status_message=vendor.service_status_message,
            service_status_source=(
                vendor.service_status_source.value if vendor.service_status_source else None
            ),
            service_status_at=vendor.service_status_at,
            changed=changed,
        )
    )


@route(
    "post",
    "/vendors/<slug>/incidents",
    scopes=[COUNCIL, VENDOR],
    tag=tag,
    action=Action.VENDOR_INCIDENT_MANAGE,
    responses={201: IncidentOut},
    errors=[404],
    creates=True,
)
def vendor_incident_open(path: SlugPath, body: IncidentOpen) -> Response:
    """Open an incident of the vendor (state `investigating`) with its first update."""
    vendor = _vendor_for_change(path.slug, Action.VENDOR_INCIDENT_MANAGE)
    incident = services.open_incident(
        db_session(),
        current_actor(),
        vendor,
        title=body.title,
        impact=body.impact,
        body=body.body,
    )
    return reply(IncidentOut.of(incident, vendor), 201)


@route(
    "post",
    "/vendors/<slug>/incidents/<int:id>/updates",
    scopes=[COUNCIL, VENDOR],
    tag=tag,
    action=Action.VENDOR_INCIDENT_MANAGE,
    responses={201: IncidentOut},
    errors=[404, 409],
    creates=True,
)
def vendor_incident_update(path: IncidentPath, body: IncidentUpdateAdd) -> Response:
    """Add an update to an incident of the vendor; 409 `incident_resolved` once resolved."""
    vendor = _vendor_for_change(path.slug, Action.VENDOR_INCIDENT_MANAGE)
    incident = selectors.incident_of_vendor(db_session(), vendor, path.id)
    services.add_incident_update(
        db_session(),
        current_actor(),
        incident,
        body=body.body,
        state=body.state,
        impact=body.impact,
    )
    db_session().expire(incident, ["updates"])
    return reply(IncidentOut.of(incident, vendor), 201)
