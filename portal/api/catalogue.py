"""``/vendors``, ``/products``, ``/pools``, ``/prices`` (council) and ``/catalogue`` (any token).

Request bodies are the catalogue services' own pydantic models, renamed for the
OpenAPI document, so the API and the pages share one set of rules and messages.
"""

from __future__ import annotations

import datetime as dt
from typing import Literal

from flask import Response
from flask_openapi3 import Tag
from pydantic import BaseModel, ConfigDict, Field

from portal.api import pagination
from portal.api.auth import ANY_SCOPE, COUNCIL, current_actor
from portal.api.framework import reply, route
from portal.api.schemas import SLUG, ApiModel, ListQuery, document_rule
from portal.api.selectors import meter_named, product_named, vendor_named
from portal.catalogue import services
from portal.catalogue.models import LicencePool, Price, Product, Vendor
from portal.db import db_session
from portal.kernel.clock import now_utc
from portal.kernel.policy import Action
from portal.seats import figures
from portal.seats.figures import ProductFigures

tag = Tag(name="Catalogue", description="Vendors, products, licence pools and prices.")


# ---------------------------------------------------------------- request bodies


class VendorCreate(services.VendorFields, ApiModel):
    """A supplier of the council."""

    model_config = ConfigDict(
        json_schema_extra={
            "example": {
                "slug": "cadworks",
                "name": "CADworks GmbH",
                "contact_email": "sales@cad.example",
            }
        }
    )


class ProductCreate(services.ProductFields, ApiModel):
    """A product of a vendor (``vendor`` is the vendor's slug), with its meters."""

    model_config = ConfigDict(
        json_schema_extra={
            "example": {
                "sku": "cad-suite-pro",
                "vendor": "acme-soft",
                "name": "CAD Suite Pro",
                "meters": [
                    {"key": "renders", "name": "Renders", "unit": "job", "aggregation": "sum"}
                ],
            }
        }
    )


class PoolCreate(services.PoolFields, ApiModel):
    """Seats of a product (``product`` is its SKU) the council bought for a term."""

    model_config = ConfigDict(
        json_schema_extra={
            "example": {
                "product": "cad-suite",
                "capacity": 50,
                "starts_on": "2026-01-01",
                "ends_on": "2026-12-31",
                "unit_cost": {"amount": 1200, "currency": "EUR"},
            }
        }
    )


class PriceCreate(services.PriceFields, ApiModel):
    """What members pay for a product in one currency, per seat-month or per meter unit."""

    model_config = ConfigDict(
        json_schema_extra={
            "example": {
                "product": "cad-suite",
                "currency": "GBP",
                "model": "metered",
                "meter": "api_calls",
                "tier_mode": "graduated",
                "tiers": [
                    {"up_to": 1000, "unit_amount": 2, "flat_amount": 0},
                    {"up_to": None, "unit_amount": 1, "flat_amount": 0},
                ],
            }
        }
    )


# What the services check across fields, stated in the document as well (flask-openapi3
# keeps anyOf/allOf, not if/then).
document_rule(
    services.MeterFields,
    anyOf=[
        {"properties": {"aggregation": {"enum": ["sum", "count", "max"]}}},
        {"required": ["property"], "properties": {"property": {"not": {"type": "null"}}}},
    ],
)
document_rule(
    services.PriceFields,
    allOf=[
        {
            "anyOf": [
                {"properties": {"model": {"enum": ["seat"]}, "meter": {"type": "null"}}},
                {
                    "required": ["meter"],
                    "properties": {
                        "model": {"enum": ["metered"]},
                        "meter": {"not": {"type": "null"}},
                    },
                },
            ]
        },
        {
            "anyOf": [
                {"properties": {"tiers": {"maxItems": 0}, "tier_mode": {"type": "null"}}},
                {
                    "required": ["tiers", "tier_mode"],
                    "properties": {
                        "tiers": {"minItems": 1},
                        "tier_mode": {"enum": ["graduated", "volume"]},
                    },
                },
            ]
        },
    ],
)


# ---------------------------------------------------------------- responses


class VendorOut(BaseModel):
    """A supplier."""

    slug: str
    name: str
    status: Literal["active", "under_review", "suspended"]
    contact_email: str | None
    website: str | None

    @classmethod
    def of(cls, vendor: Vendor) -> VendorOut:
        return cls.model_validate(vendor, from_attributes=True)


class MeterOut(BaseModel):
    key: str
    name: str
    unit: str
    aggregation: Literal["sum", "count", "max", "unique_count"]
    property: str | None


class ProductOut(BaseModel):
    """A product and its meters."""

    sku: str
    vendor: str = Field(description="The vendor's slug")
    name: str
    description: str
    launch_url: str | None
    meters: list[MeterOut]

    @classmethod
    def of(cls, product: Product) -> ProductOut:
        return cls(
            sku=product.sku,
            vendor=product.vendor.slug,
            name=product.name,
            description=product.description,
            launch_url=product.launch_url,
            meters=[
                MeterOut.model_validate(m, from_attributes=True)
                for m in sorted(product.meters, key=lambda m: m.key)
            ],
        )


class Money(BaseModel):
    amount: int = Field(description="Integer minor units (cents)")
    currency: str


class PoolOut(BaseModel):
    """A licence pool."""

    id: int
    product: str = Field(description="The product's SKU")
    capacity: int
    starts_on: dt.date
    ends_on: dt.date
    unit_cost: Money = Field(description="The council's cost per seat-month")
    reference: str | None

    @classmethod
    def of(cls, pool: LicencePool) -> PoolOut:
        return cls(
            id=pool.id,
            product=pool.product.sku,
            capacity=pool.capacity,
            starts_on=pool.starts_on,
            ends_on=pool.ends_on,
            unit_cost=Money(amount=pool.unit_cost_amount, currency=pool.unit_cost_currency),
            reference=pool.reference,
        )


class TierOut(BaseModel):
    up_to: int | None = Field(description="Units up to and including this; null: no limit")
    unit_amount: int
    flat_amount: int


class PriceOut(BaseModel):
    """A price; amounts are integer minor units of ``currency``."""

    id: int
    product: str
    currency: str
    model: Literal["seat", "metered"]
    meter: str | None = Field(description="The meter's key, for metered prices")
    unit_amount: int
    tier_mode: Literal["graduated", "volume"] | None
    tiers: list[TierOut]
    tier_basis: Literal["organisation", "council"] = Field(
        description=(
            "What chooses a seat price's tier: the organisation's seats, or the council-wide "
            "average reserved seats of the product in the month (council volume pricing)"
        )
    )

    @classmethod
    def of(cls, price: Price) -> PriceOut:
        return cls(
            id=price.id,
            product=price.product.sku,
            currency=price.currency,
            model=price.model,  # type: ignore[arg-type]
            meter=price.meter.key if price.meter else None,
            unit_amount=price.unit_amount,
            tier_mode=price.tier_mode,  # type: ignore[arg-type]
            tiers=[TierOut.model_validate(t, from_attributes=True) for t in price.tiers],
            tier_basis=price.tier_basis,  # type: ignore[arg-type]
        )


class Seats(BaseModel):
    capacity: int = Field(description="Seats in the pools in force today")
    reserved: int = Field(description="Seats granted to subscriptions")
    free: int
    waiting: int = Field(description="Seats asked for on the waitlist")


class CatalogueEntry(ProductOut):
    """A product as members see it, with today's seat figures."""

    vendor_name: str
    vendor_status: Literal["active", "under_review", "suspended"]
    subscribable: bool = Field(description="False while the vendor is under review or suspended")
    seats: Seats

    @classmethod
    def of_figures(cls, figures: ProductFigures) -> CatalogueEntry:
        product = figures.product
        return cls(
            **ProductOut.of(product).model_dump(),
            vendor_name=product.vendor.name,
            vendor_status=product.vendor.status,  # type: ignore[arg-type]
            subscribable=figures.subscribable,
            seats=Seats(
                capacity=figures.capacity,
                reserved=figures.reserved,
                free=figures.free,
                waiting=figures.waiting,
            ),
        )


class CatalogueList(BaseModel):
    """One page of the catalogue."""

    data: list[CatalogueEntry]
    next_cursor: str | None


class CatalogueQuery(ListQuery):
    search: str | None = Field(
        default=None, max_length=100, description="Words in the name, SKU or vendor"
    )
    vendor: str | None = Field(
        default=None, max_length=63, description="A vendor's slug", json_schema_extra=SLUG
    )


# ---------------------------------------------------------------- views


@route(
    "post",
    "/vendors",
    scopes=[COUNCIL],
    tag=tag,
    action=Action.VENDOR_CREATE,
    responses={201: VendorOut},
    errors=[409],
    creates=True,
)
def vendor_create(body: VendorCreate) -> Response:
    """Add a vendor."""
    vendor = services.vendor_create(
        db_session(), actor=current_actor(), data=body.model_dump(exclude_unset=True)
    )
    return reply(VendorOut.of(vendor), 201)


@route(
    "post",
    "/products",
    scopes=[COUNCIL],
    tag=tag,
    action=Action.CATALOGUE_PRODUCT_CREATE,
    responses={201: ProductOut},
    errors=[404, 409],
    creates=True,
)
def product_create(body: ProductCreate) -> Response:
    """Add a product of a vendor, with its meters (404 for an unknown vendor)."""
    vendor_named(db_session(), body.vendor)
    product = services.product_create(
        db_session(), actor=current_actor(), data=body.model_dump(exclude_unset=True)
    )
    return reply(ProductOut.of(product), 201)


@route(
    "post",
    "/pools",
    scopes=[COUNCIL],
    tag=tag,
    action=Action.POOL_CREATE,
    responses={201: PoolOut},
    errors=[404],
    creates=True,
)
def pool_create(body: PoolCreate) -> Response:
    """Record a licence pool; waitlisted subscriptions may be granted seats at once.

    404 for an unknown product; `ends_on` must be on or after `starts_on`.
    """
    product_named(db_session(), body.product)
    pool = services.pool_create(
        db_session(), actor=current_actor(), data=body.model_dump(exclude_unset=True)
    )
    return reply(PoolOut.of(pool), 201)


@route(
    "post",
    "/prices",
    scopes=[COUNCIL],
    tag=tag,
    action=Action.PRICE_CREATE,
    responses={201: PriceOut},
    errors=[404, 409],
    creates=True,
)
def price_create(body: PriceCreate) -> Response:
    """Set a product's price in one currency (404 for an unknown product or meter).

    Tier limits rise and only the last tier is open (`up_to` null); 409
    `price_exists` when the product has this kind of price in this currency.
    """
    product = product_named(db_session(), body.product)
    if body.meter:
        meter_named(product, body.meter)
    price = services.price_create(
        db_session(), actor=current_actor(), data=body.model_dump(exclude_unset=True)
    )
    return reply(PriceOut.of(price), 201)


@route(
    "get",
    "/catalogue",
    scopes=ANY_SCOPE,
    tag=tag,
    action=Action.CATALOGUE_READ,
    responses={200: CatalogueList},
)
def catalogue_list(query: CatalogueQuery) -> Response:
    """Products with today's capacity, reserved and free seats, oldest first.

    The catalogue is the council's whole range (tens to hundreds of products), so a
    page is cut from the full, id-ordered list rather than by a keyset query.
    """
    after_id = pagination.decode_cursor(query.cursor)
    entries = sorted(
        figures.catalogue_list(
            db_session(),
            day=now_utc().date(),
            search=query.search,
            vendor_slug=query.vendor,
            with_meters=True,  # each entry lists its meters: one query for all, not one each
        ),
        key=_product_id,
    )
    rows = [e for e in entries if after_id is None or e.product.id > after_id][: query.limit + 1]
    return reply(
        pagination.page(
            rows,
            limit=query.limit,
            serialise=lambda f: CatalogueEntry.of_figures(f).model_dump(mode="json"),
            key=_product_id,
        )
    )


def _product_id(figures: ProductFigures) -> int:
    return figures.product.id
