"""``/demand``: what members ask for and use, per product (issue 16, SPEC 8.3).

Council tokens only (organisation and vendor tokens are refused by scope: 403). The
figures are the demand board's (:func:`portal.procurement.demand.demand_board`), per
product in id order, paginated with the usual cursor; each product carries the product
requests linked to it that still wait. The requests not linked to any product yet are
listed by ``GET /demand/requests``.
"""

from __future__ import annotations

import datetime as dt
from typing import Literal

from flask import Response
from flask_openapi3 import Tag
from pydantic import BaseModel, Field

from portal.api import pagination
from portal.api.auth import COUNCIL, current_actor
from portal.api.framework import reply, route
from portal.api.schemas import ListQuery
from portal.db import db_session
from portal.kernel.policy import Action
from portal.procurement import demand as service
from portal.procurement.models import ProductRequest

tag = Tag(
    name="Demand",
    description=(
        "Per product: waitlisted seats and the oldest wait, open seat requests, requests for "
        "products not in the catalogue, utilisation and its trend (the demand board)."
    ),
)

RequestStates = Literal["open", "planned", "ordered", "declined", "merged"]


class ProductRequestOut(BaseModel):
    """A request for a product not in the catalogue (its organisation's slug)."""

    id: int
    organisation: str = Field(description="The requesting organisation's slug")
    product_name: str
    vendor_name: str
    vendor: str | None = Field(description="The vendor's slug, when it is a known vendor")
    seats: int
    state: RequestStates
    reply: str
    merged_into: int | None = Field(description="The primary request of a merged one")
    product: str | None = Field(description="The catalogue product's SKU it is linked to")
    purchase_order: int | None = Field(description="The purchase order drafted from it")
    created_at: dt.datetime

    @classmethod
    def of(cls, r: ProductRequest) -> ProductRequestOut:
        return cls(
            id=r.id,
            organisation=r.organisation.slug,
            product_name=r.product_name,
            vendor_name=r.vendor_name,
            vendor=r.vendor.slug if r.vendor else None,
            seats=r.seats,
            state=r.state,  # type: ignore[arg-type]
            reply=r.reply,
            merged_into=r.merged_into_id,
            product=r.product.sku if r.product else None,
            purchase_order=r.purchase_order_id,
            created_at=r.created_at,
        )


class TrendPoint(BaseModel):
    on: dt.date = Field(description="The first day of a month, or today")
    reserved: int


class DemandOut(BaseModel):
    """One product's demand, council-wide."""

    product: str = Field(description="The product's SKU")
    name: str
    vendor: str = Field(description="The vendor's slug")
    capacity: int = Field(description="Seats of the pools in force today")
    reserved: int = Field(description="Seats of live subscriptions")
    assigned: int = Field(description="Seats held by people now")
    reserved_percent: int | None = Field(description="reserved ÷ capacity, %; null: no pool")
    assigned_percent: int | None = Field(description="assigned ÷ reserved, %; null: none")
    waitlisted: int = Field(description="Seats asked for beyond what was granted")
    oldest_waiting_since: dt.datetime | None = Field(
        description="When the longest-waiting subscription started waiting"
    )
    waiting_days: int | None
    seat_requests: int = Field(description="Members' open seat requests")
    product_requests: int = Field(description="Linked product requests still waiting")
    requested_seats: int = Field(description="Their seats")
    pressure: int = Field(description="waitlisted + seat requests + requested seats")
    suggested_seats: int = Field(description="A purchase order's seats: the pressure")
    trend: list[TrendPoint] = Field(
        description="Reserved seats on the first day of each of the last 3 months, and now"
    )
    trend_direction: Literal["up", "down", "flat"]
    requests: list[ProductRequestOut] = Field(description="The linked product requests waiting")


class DemandList(BaseModel):
    """One page of products' demand, in product id order."""

    data: list[DemandOut]
    next_cursor: str | None


class ProductRequestList(BaseModel):
    """One page of requests for products not in the catalogue, newest first."""

    data: list[ProductRequestOut]
    next_cursor: str | None


class RequestQuery(ListQuery):
    state: RequestStates | None = None


def _out(row: service.DemandRow, requests: list[ProductRequest]) -> dict:
    return DemandOut(
        product=row.product.sku,
        name=row.product.name,
        vendor=row.product.vendor.slug,
        capacity=row.capacity,
        reserved=row.reserved,
        assigned=row.assigned,
        reserved_percent=row.reserved_percent,
        assigned_percent=row.assigned_percent,
        waitlisted=row.waitlisted,
        oldest_waiting_since=row.oldest_waiting_at,
        waiting_days=row.waiting_days,
        seat_requests=row.seat_requests,
        product_requests=row.product_requests,
        requested_seats=row.requested_seats,
        pressure=row.pressure,
        suggested_seats=row.suggested_seats,
        trend=[
            TrendPoint(on=dt.date.fromisoformat(label), reserved=value)
            for label, value in zip(row.trend_labels, row.trend, strict=True)
        ],
        trend_direction=row.direction,
        requests=[ProductRequestOut.of(r) for r in requests],
    ).model_dump(mode="json")


@route(
    "get",
    "/demand",
    scopes=[COUNCIL],
    tag=tag,
    action=Action.DEMAND_READ,
    responses={200: DemandList},
)
def demand_index(query: ListQuery) -> Response:
    """Every product's demand, in product id order, a page at a time.

    The figures are those of the demand board: pressure is the seats asked for and not
    given (waitlisted + open seat requests + the seats of waiting product requests).
    """
    session = db_session()
    actor = current_actor()
    rows = service.demand_board(
        session,
        actor,
        after_id=pagination.decode_cursor(query.cursor),
        limit=query.limit + 1,
    )
    linked = service.waiting_requests_of(session, actor, [r.product.id for r in rows])
    return reply(
        pagination.page(
            rows,
            limit=query.limit,
            serialise=lambda row: _out(row, linked.get(row.product.id, [])),
            key=lambda row: row.product.id,
        )
    )


@route(
    "get",
    "/demand/requests",
    scopes=[COUNCIL],
    tag=tag,
    action=Action.PRODUCT_REQUEST_READ,
    responses={200: ProductRequestList},
)
def demand_requests(query: RequestQuery) -> Response:
    """Requests for products not in the catalogue, newest first, a page at a time (the
    cursor points at the oldest request of the page before: the next page is older)."""
    rows = service.product_requests_list(
        db_session(),
        current_actor(),
        state=query.state,
        limit=query.limit + 1,
        before_id=pagination.decode_cursor(query.cursor),
    )
    return reply(
        pagination.page(
            rows,
            limit=query.limit,
            serialise=lambda r: ProductRequestOut.of(r).model_dump(mode="json"),
            key=lambda r: r.id,
        )
    )
