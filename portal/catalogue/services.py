"""Writes on the catalogue: vendors, products and meters, licence pools, prices.

All of these are the council's: only council admins (or the CLI/system) act.
Growing a pool can grant waitlisted seats, so pool writes call the seats
domain's waitlist through a signal.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Callable
from typing import Annotated, Any, Literal, TypeVar

import sqlalchemy as sa
from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    ValidationInfo,
    field_validator,
    model_validator,
)
from sqlalchemy.orm import Session

from portal.audit.services import audit_record, changed, snapshot
from portal.catalogue.models import LicencePool, Meter, Price, PriceTier, Product, Vendor
from portal.catalogue.selectors import product_by_sku, vendor_by_slug
from portal.kernel import policy
from portal.kernel.actor import Actor
from portal.kernel.errors import Conflict, ValidationFailed
from portal.kernel.i18n import _l
from portal.kernel.policy import Action
from portal.signals import pool_capacity_changed, pool_changing, vendor_standing_changed
from portal.validation import (
    MAX_AMOUNT,
    Currency,
    Email,
    SafeDate,
    Slug,
    Stripped,
    check_slug,
    optional_text,
    parse,
)

M = TypeVar("M", bound=BaseModel)

_KEY_RE = re.compile(r"^[a-z][a-z0-9_.-]*$")
_URL_RE = re.compile(r"^https?://[^\s/$.?#].[^\s]*$")


def check_key(value: str) -> str:
    if not _KEY_RE.match(value):
        raise ValueError(
            _l("Use lower-case letters, digits, “_”, “.” and “-”, starting with a letter.")
        )
    return value


def check_url(value: str) -> str:
    if not _URL_RE.match(value):
        raise ValueError(_l("Enter a web address starting with https:// (or http://)."))
    return value


Name = Annotated[str, Stripped, StringConstraints(min_length=1, max_length=200)]
Key = Annotated[
    str, Stripped, StringConstraints(min_length=1, max_length=63), AfterValidator(check_key)
]
Url = Annotated[str, Stripped, StringConstraints(max_length=500), AfterValidator(check_url)]
Amount = Annotated[int, Field(ge=0, le=MAX_AMOUNT)]


COUNCIL_ADMINS_ONLY = _l("Only council admins manage the catalogue.")


def _parse_naming_taken(
    model: type[M], data: dict[str, Any], *, field: str, taken: Callable[[str], bool], message: Any
) -> M:
    """``data`` as ``model``; a refusal names a taken ``field`` too, beside the other problems.

    So a form shows every message on its first submit (a missing name does not hide a taken
    slug until the next one).
    """
    try:
        return parse(model, data)
    except ValidationFailed as error:
        errors = error.errors
        if field not in errors:
            try:
                value = check_slug(str(data.get(field) or "").strip())
            except ValueError:
                value = None
            if value and taken(value):
                errors[field] = [str(message)]
        raise ValidationFailed(_l("Some fields need attention."), errors=errors) from None


# ---------------------------------------------------------------- vendors


class VendorFields(BaseModel):
    model_config = ConfigDict(extra="forbid")
    slug: Slug
    name: Name
    status: Literal["active", "under_review", "suspended"] = "active"
    contact_email: Email | None = None
    website: Url | None = None
    status_note: optional_text(500) = None  # type: ignore[valid-type]


VENDOR_FIELDS = ("slug", "name", "status", "contact_email", "website", "status_note")


def vendor_create(session: Session, *, actor: Actor, data: dict[str, Any]) -> Vendor:
    """Add a supplier."""
    policy.require(actor, Action.VENDOR_CREATE, message=COUNCIL_ADMINS_ONLY)
    fields = _parse_naming_taken(
        VendorFields,
        data,
        field="slug",
        taken=lambda slug: (
            session.scalar(sa.select(Vendor.id).where(Vendor.slug == slug)) is not None
        ),
        message=_l("This slug is taken; choose another."),
    )
    if session.scalar(sa.select(Vendor.id).where(Vendor.slug == fields.slug)) is not None:
        raise Conflict(
            _l("The vendor slug “%(slug)s” is taken.", slug=fields.slug),
            code="slug_taken",
            errors={"slug": [_l("This slug is taken; choose another.")]},
        )
    vendor = Vendor(**fields.model_dump())
    session.add(vendor)
    session.flush()
    audit_record(
        session,
        actor=actor,
        action="vendor.create",
        target_type="vendor",
        target_id=vendor.id,
        target_label=vendor.slug,
        after=snapshot(vendor, VENDOR_FIELDS),
    )
    return vendor


def vendor_update(
    session: Session, *, actor: Actor, vendor: Vendor, data: dict[str, Any]
) -> Vendor:
    """Change a supplier's details or status (the slug stays)."""
    policy.require(actor, Action.VENDOR_UPDATE, message=COUNCIL_ADMINS_ONLY)
    fields = parse(VendorFields, {**snapshot(vendor, VENDOR_FIELDS), **data, "slug": vendor.slug})
    before = snapshot(vendor, VENDOR_FIELDS)
    old_status = vendor.status
    for key, value in fields.model_dump().items():
        setattr(vendor, key, value)
    session.flush()
    old, new = changed(before, snapshot(vendor, VENDOR_FIELDS))
    if new:
        audit_record(
            session,
            actor=actor,
            action="vendor.update",
            target_type="vendor",
            target_id=vendor.id,
            target_label=vendor.slug,
            before=old,
            after=new,
        )
    if vendor.status != old_status:
        # Notifications tell the people holding its products' seats (SPEC 8.2).
        vendor_standing_changed.send(vendor, session=session, actor=actor, old_status=old_status)
    return vendor


# ---------------------------------------------------------------- products and meters


class MeterFields(BaseModel):
    model_config = ConfigDict(extra="forbid")
    key: Key
    name: Name
    unit: Annotated[str, Stripped, StringConstraints(min_length=1, max_length=40)]
    aggregation: Literal["sum", "count", "max", "unique_count"]
    property: Key | None = None

    @model_validator(mode="after")
    def _property_for_unique_count(self) -> MeterFields:
        if self.aggregation == "unique_count" and not self.property:
            raise ValueError(_l("A unique_count meter needs the property whose values it counts."))
        return self


class ProductFields(BaseModel):
    model_config = ConfigDict(extra="forbid")
    sku: Slug
    vendor: Slug
    name: Name
    description: Annotated[str, Stripped, StringConstraints(max_length=5000)] = ""
    launch_url: Url | None = None
    meters: list[MeterFields] = Field(default_factory=list, max_length=20)

    @model_validator(mode="after")
    def _unique_meter_keys(self) -> ProductFields:
        keys = [m.key for m in self.meters]
        if len(keys) != len(set(keys)):
            raise ValueError(_l("Each meter of a product needs its own key."))
        return self


PRODUCT_FIELDS = ("sku", "name", "description", "launch_url")


def product_create(session: Session, *, actor: Actor, data: dict[str, Any]) -> Product:
    """Add a product of a vendor, with its meters."""
    policy.require(actor, Action.CATALOGUE_PRODUCT_CREATE, message=COUNCIL_ADMINS_ONLY)
    fields = _parse_naming_taken(
        ProductFields,
        data,
        field="sku",
        taken=lambda sku: (
            session.scalar(sa.select(Product.id).where(Product.sku == sku)) is not None
        ),
        message=_l("This SKU is taken; choose another."),
    )
    vendor = vendor_by_slug(session, fields.vendor, field="vendor")
    if session.scalar(sa.select(Product.id).where(Product.sku == fields.sku)) is not None:
        raise Conflict(
            _l("The SKU “%(sku)s” is taken.", sku=fields.sku),
            code="sku_taken",
            errors={"sku": [_l("This SKU is taken; choose another.")]},
        )
    product = Product(
        vendor_id=vendor.id,
        sku=fields.sku,
        name=fields.name,
        description=fields.description,
        launch_url=fields.launch_url,
        meters=[Meter(**m.model_dump()) for m in fields.meters],
    )
    session.add(product)
    session.flush()
    audit_record(
        session,
        actor=actor,
        action="product.create",
        target_type="product",
        target_id=product.id,
        target_label=product.sku,
        after={
            **snapshot(product, PRODUCT_FIELDS),
            "vendor": vendor.slug,
            "meters": [m.key for m in product.meters],
        },
    )
    return product


class ProductUpdate(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: Name | None = None
    description: Annotated[str, Stripped, StringConstraints(max_length=5000)] | None = None
    launch_url: Url | None = None


def product_update(
    session: Session, *, actor: Actor, product: Product, data: dict[str, Any]
) -> Product:
    """Change a product's name, description or launch link (the SKU stays)."""
    policy.require(actor, Action.CATALOGUE_PRODUCT_UPDATE, message=COUNCIL_ADMINS_ONLY)
    fields = parse(ProductUpdate, data)
    before = snapshot(product, PRODUCT_FIELDS)
    for key, value in fields.model_dump(include=set(data)).items():
        if value is not None or key == "launch_url":
            setattr(product, key, value)
    session.flush()
    old, new = changed(before, snapshot(product, PRODUCT_FIELDS))
    if new:
        audit_record(
            session,
            actor=actor,
            action="product.update",
            target_type="product",
            target_id=product.id,
            target_label=product.sku,
            before=old,
            after=new,
        )
    return product


def meter_create(
    session: Session, *, actor: Actor, product: Product, data: dict[str, Any]
) -> Meter:
    """Add a meter to a product."""
    policy.require(actor, Action.CATALOGUE_METER_CREATE, message=COUNCIL_ADMINS_ONLY)
    fields = parse(MeterFields, data)
    if any(m.key == fields.key for m in product.meters):
        raise Conflict(
            _l("%(product)s already has a meter “%(key)s”.", product=product.name, key=fields.key),
            code="meter_key_taken",
            errors={"key": [_l("This product already has a meter with this key.")]},
        )
    meter = Meter(product_id=product.id, **fields.model_dump())
    session.add(meter)
    session.flush()
    session.refresh(product)
    audit_record(
        session,
        actor=actor,
        action="meter.create",
        target_type="meter",
        target_id=meter.id,
        target_label=f"{product.sku}/{meter.key}",
        after=fields.model_dump(),
    )
    return meter


# ---------------------------------------------------------------- pools


class UnitCost(BaseModel):
    model_config = ConfigDict(extra="forbid")
    amount: Amount
    currency: Currency


class PoolFields(BaseModel):
    model_config = ConfigDict(extra="forbid")
    product: Slug
    capacity: Annotated[int, Field(ge=1, le=1_000_000)]
    starts_on: SafeDate
    ends_on: SafeDate
    unit_cost: UnitCost
    reference: optional_text(200) = None  # type: ignore[valid-type]

    @field_validator("ends_on")
    @classmethod
    def _term_ordered(cls, ends_on: dt.date, info: ValidationInfo) -> dt.date:
        # A field's check (not the model's): it runs, and is named, even when another
        # field is wrong too (every message on a form's first submit).
        starts_on = info.data.get("starts_on")
        if starts_on is not None and ends_on < starts_on:
            raise ValueError(_l("The pool must end on or after the day it starts."))
        return ends_on


POOL_FIELDS = (
    "capacity",
    "starts_on",
    "ends_on",
    "unit_cost_amount",
    "unit_cost_currency",
    "reference",
)


def pool_create(session: Session, *, actor: Actor, data: dict[str, Any]) -> LicencePool:
    """Record seats the council bought; waitlisted requests may be granted at once."""
    policy.require(actor, Action.POOL_CREATE, message=COUNCIL_ADMINS_ONLY)
    fields = parse(PoolFields, data)
    product = product_by_sku(session, fields.product, field="product")
    pool = LicencePool(
        product_id=product.id,
        capacity=fields.capacity,
        starts_on=fields.starts_on,
        ends_on=fields.ends_on,
        unit_cost_amount=fields.unit_cost.amount,
        unit_cost_currency=fields.unit_cost.currency,
        reference=fields.reference,
    )
    session.add(pool)
    session.flush()
    audit_record(
        session,
        actor=actor,
        action="pool.create",
        target_type="pool",
        target_id=pool.id,
        target_label=product.sku,
        after=snapshot(pool, POOL_FIELDS),
    )
    pool_capacity_changed.send(product, session=session, actor=actor)
    return pool


class PoolUpdate(BaseModel):
    model_config = ConfigDict(extra="forbid")
    capacity: Annotated[int, Field(ge=1, le=1_000_000)] | None = None
    ends_on: SafeDate | None = None
    reference: optional_text(200) = None  # type: ignore[valid-type]


def pool_update(
    session: Session, *, actor: Actor, pool: LicencePool, data: dict[str, Any]
) -> LicencePool:
    """Grow or shrink a pool, or change its end. Shrinking below reserved seats is refused."""
    policy.require(actor, Action.POOL_UPDATE, message=COUNCIL_ADMINS_ONLY)
    fields = parse(PoolUpdate, data)
    lock_product(session, pool.product_id)
    session.refresh(pool)
    before = snapshot(pool, POOL_FIELDS)
    if fields.capacity is not None:
        pool.capacity = fields.capacity
    if fields.ends_on is not None:
        if fields.ends_on < pool.starts_on:
            raise ValidationFailed(
                _l("The pool must end on or after the day it starts."),
                errors={"ends_on": [_l("The pool must end on or after the day it starts.")]},
            )
        pool.ends_on = fields.ends_on
    if "reference" in data:
        pool.reference = fields.reference
    session.flush()
    # Seats refuses (capacity_below_reserved) when the pools in force would hold fewer
    # seats than subscriptions reserve (invariant 1, portal.seats.capacity).
    pool_changing.send(pool, session=session)
    old, new = changed(before, snapshot(pool, POOL_FIELDS))
    if new:
        audit_record(
            session,
            actor=actor,
            action="pool.update",
            target_type="pool",
            target_id=pool.id,
            target_label=pool.product.sku,
            before=old,
            after=new,
        )
    pool_capacity_changed.send(pool.product, session=session, actor=actor)
    return pool


def lock_product(session: Session, product_id: int) -> None:
    """Serialise changes of one product's seat reservations (``SELECT … FOR UPDATE``).

    On PostgreSQL this row lock is what keeps reservations within capacity when
    requests race; on SQLite every transaction already holds the write lock
    (``BEGIN IMMEDIATE``, see :mod:`portal.db`).
    """
    session.execute(sa.select(Product.id).where(Product.id == product_id).with_for_update())


# ---------------------------------------------------------------- prices


class TierFields(BaseModel):
    model_config = ConfigDict(extra="forbid")
    up_to: Annotated[int, Field(ge=1, le=MAX_AMOUNT)] | None = None
    unit_amount: Amount
    flat_amount: Amount = 0


class PriceFields(BaseModel):
    model_config = ConfigDict(extra="forbid")
    product: Slug
    currency: Currency
    model: Literal["seat", "metered"]
    meter: Key | None = None
    unit_amount: Amount = 0
    tier_mode: Literal["graduated", "volume"] | None = None
    tiers: list[TierFields] = Field(default_factory=list, max_length=20)
    tier_basis: Literal["organisation", "council"] = Field(
        default="organisation",
        description=(
            "What chooses the tier of a seat price: the organisation's own seats, or "
            "(council) the council-wide average reserved seats of the product in the month; "
            "council needs a seat price with volume tiers and no flat amounts"
        ),
    )

    @model_validator(mode="after")
    def _consistent(self) -> PriceFields:
        if self.model == "seat" and self.meter:
            raise ValueError(_l("A seat price has no meter."))
        if self.model == "metered" and not self.meter:
            raise ValueError(_l("A metered price needs the meter it prices."))
        if self.tiers and not self.tier_mode:
            raise ValueError(_l("Tiers need a tier mode: graduated or volume."))
        if self.tier_mode and not self.tiers:
            raise ValueError(_l("A tier mode needs tiers."))
        if self.tiers:
            limits = [t.up_to for t in self.tiers]
            if limits[-1] is not None:
                raise ValueError(_l("The last tier must have no upper limit (up_to null)."))
            bounded = list(limits[:-1])
            if None in bounded or bounded != sorted(set(bounded)):  # type: ignore[type-var]
                raise ValueError(_l("Tier limits must rise, and only the last may be open."))
        if self.tier_basis == "council":
            if self.model != "seat":
                raise ValueError(_l("Council volume pricing is for seat prices."))
            if self.tier_mode != "volume":
                raise ValueError(_l("Council volume pricing needs volume tiers."))
            if any(t.flat_amount for t in self.tiers):
                raise ValueError(_l("Council volume tiers have no flat amounts."))
        return self


def price_create(session: Session, *, actor: Actor, data: dict[str, Any]) -> Price:
    """Set what members pay for a product in one currency."""
    policy.require(actor, Action.PRICE_CREATE, message=COUNCIL_ADMINS_ONLY)
    fields = parse(PriceFields, data)
    product = product_by_sku(session, fields.product, field="product")
    meter = None
    if fields.meter:
        meter = next((m for m in product.meters if m.key == fields.meter), None)
        if meter is None:
            raise ValidationFailed(
                _l("%(product)s has no meter “%(key)s”.", product=product.name, key=fields.meter),
                errors={
                    "meter": [_l("Choose one of the meters of %(product)s.", product=product.name)]
                },
            )
    clash = sa.select(Price.id).where(
        Price.currency == fields.currency, Price.model == fields.model
    )
    clash = (
        clash.where(Price.meter_id == meter.id)
        if meter
        else clash.where(Price.product_id == product.id)
    )
    if session.scalar(clash) is not None:
        raise Conflict(
            _l(
                "%(product)s already has a seat price in %(currency)s.",
                product=product.name,
                currency=fields.currency,
            )
            if fields.model == "seat"
            else _l(
                "%(product)s already has a metered price in %(currency)s for this meter.",
                product=product.name,
                currency=fields.currency,
            ),
            code="price_exists",
            errors={"currency": [_l("A price in this currency exists already.")]},
        )
    price = Price(
        product_id=product.id,
        currency=fields.currency,
        model=fields.model,
        meter_id=meter.id if meter else None,
        unit_amount=fields.unit_amount,
        tier_mode=fields.tier_mode,
        tier_basis=fields.tier_basis,
        tiers=[PriceTier(position=i, **t.model_dump()) for i, t in enumerate(fields.tiers)],
    )
    session.add(price)
    session.flush()
    audit_record(
        session,
        actor=actor,
        action="price.create",
        target_type="price",
        target_id=price.id,
        target_label=f"{product.sku} {price.currency} {price.model}",
        after=fields.model_dump(mode="json"),
    )
    return price
