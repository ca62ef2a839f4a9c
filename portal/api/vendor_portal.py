"""What the vendor portal shows a vendor's admins, for its systems (issue 15, SPEC 8.1).

* ``GET /vendors/{slug}/seats``: each of the vendor's products with the seats the council
  bought (capacity of the pools in force), reserved by organisations, assigned to people,
  free and waiting: sums over the council, never who holds one.
* ``GET /vendors/{slug}/usage-health?days=30``: per UTC day (of receipt), the vendor's
  usage batches and their events accepted, duplicate and rejected by code.

A council token, or a vendor token of THAT vendor; another vendor's token is answered 404
(to it, the vendor is not there), an organisation token 403.
"""

from __future__ import annotations

import datetime as dt

from flask import Response
from flask_openapi3 import Tag
from pydantic import BaseModel, Field

from portal.api.auth import COUNCIL, VENDOR, current_actor
from portal.api.framework import reply, route
from portal.api.schemas import ApiParams, SlugPath
from portal.catalogue.models import Vendor
from portal.catalogue.selectors import vendor_by_slug
from portal.db import db_session
from portal.kernel import policy
from portal.kernel.clock import now_utc
from portal.kernel.policy import Action
from portal.suppliers import vendor_portal as portal

tag = Tag(
    name="Vendor portal",
    description="A vendor's own seat counts and usage-reporting health (SPEC 8.1).",
)


def _vendor(slug: str, action: Action) -> Vendor:
    """The vendor ``slug``; 404 also when a vendor token names another vendor."""
    vendor = vendor_by_slug(db_session(), slug)
    policy.require(current_actor(), action, vendor_id=vendor.id)
    return vendor


# ---------------------------------------------------------------- seats


class ProductSeatsOut(BaseModel):
    product: str = Field(description="The product's SKU")
    name: str
    capacity: int = Field(description="Seats of the pools in force today")
    reserved: int = Field(description="Seats reserved by organisations (every one's)")
    assigned: int = Field(description="Reserved seats held by a person")
    free: int = Field(description="Capacity not reserved")
    waiting: int = Field(description="Seats organisations wait for (waitlist)")


class VendorSeatsOut(BaseModel):
    vendor: str
    day: dt.date
    data: list[ProductSeatsOut]


@route(
    "get",
    "/vendors/<slug>/seats",
    scopes=[COUNCIL, VENDOR],
    tag=tag,
    action=Action.VENDOR_SEATS_READ,
    responses={200: VendorSeatsOut},
    errors=[404],
)
def vendor_seats(path: SlugPath) -> Response:
    """The vendor's products with their seat counts today (sums, never people)."""
    vendor = _vendor(path.slug, Action.VENDOR_SEATS_READ)
    day = now_utc().date()
    entries = portal.products_seats(db_session(), actor=current_actor(), vendor=vendor, day=day)
    return reply(
        VendorSeatsOut(
            vendor=vendor.slug,
            day=day,
            data=[
                ProductSeatsOut(
                    product=e.product.sku,
                    name=e.product.name,
                    capacity=e.figures.capacity,
                    reserved=e.figures.reserved,
                    assigned=e.figures.assigned,
                    free=e.figures.free,
                    waiting=e.figures.waiting,
                )
                for e in entries
            ],
        )
    )


# ---------------------------------------------------------------- usage reporting health


class HealthQuery(ApiParams):
    days: int = Field(
        default=portal.HEALTH_DAYS,
        ge=1,
        le=portal.HEALTH_MAX_DAYS,
        description="Days up to today (UTC) to cover",
    )


class RejectedByCode(BaseModel):
    invalid: int = Field(description="A field malformed, unknown or out of range")
    no_subscription: int = Field(description="No subscription of the product in force that day")
    not_organisation_person: int = Field(description="user_email not of the organisation")


class HealthDayOut(BaseModel):
    day: dt.date
    batches: int
    accepted: int
    duplicates: int
    rejected: int
    rejected_by_code: RejectedByCode
    last_batch_at: dt.datetime


class UsageHealthOut(BaseModel):
    vendor: str
    since: dt.date
    days: int
    batches: int
    accepted: int
    duplicates: int
    rejected: int
    rejected_by_code: RejectedByCode
    data: list[HealthDayOut] = Field(description="Days with a batch, newest first")


@route(
    "get",
    "/vendors/<slug>/usage-health",
    scopes=[COUNCIL, VENDOR],
    tag=tag,
    action=Action.VENDOR_USAGE_HEALTH_READ,
    responses={200: UsageHealthOut},
    errors=[404],
)
def vendor_usage_health(path: SlugPath, query: HealthQuery) -> Response:
    """How the vendor's usage batches fared per day: accepted, duplicate, rejected by code."""
    vendor = _vendor(path.slug, Action.VENDOR_USAGE_HEALTH_READ)
    health = portal.usage_health(
        db_session(),
        actor=current_actor(),
        vendor=vendor,
        today=now_utc().date(),
        days=query.days,
    )
    return reply(
        UsageHealthOut(
            vendor=vendor.slug,
            since=health.since,
            days=health.days,
            batches=health.batches,
            accepted=health.accepted,
            duplicates=health.duplicates,
            rejected=health.rejected,
            rejected_by_code=RejectedByCode(**health.rejected_by_code),
            data=[
                HealthDayOut(
                    day=row.day,
                    batches=row.batches,
                    accepted=row.accepted,
                    duplicates=row.duplicates,
                    rejected=row.rejected,
                    rejected_by_code=RejectedByCode(**row.rejected_by_code),
                    last_batch_at=row.last_batch_at,
                )
                for row in health.rows
            ],
        )
    )
