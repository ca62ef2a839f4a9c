"""``/subscriptions`` and their seats (organisation and council tokens).

An organisation token acts only for its own organisation: another
organisation's subscriptions are invisible to it (404), and naming another
organisation in a request is refused (403). A council token names the
organisation it acts for. Vendor tokens are refused by scope (403).
"""

from __future__ import annotations

import datetime as dt
from typing import Annotated, Literal

from flask import Response
from flask_openapi3 import Tag
from pydantic import BaseModel, ConfigDict, Field, StringConstraints

from portal.api import pagination
from portal.api.auth import COUNCIL, ORGANISATION, current_actor
from portal.api.framework import reply, route
from portal.api.schemas import DATE, EMAIL, SLUG, ApiModel, IdPath, ListQuery
from portal.api.selectors import organisation_named, product_named
from portal.catalogue.models import Product
from portal.db import db_session
from portal.kernel.clock import now_utc
from portal.kernel.errors import NotFound, PermissionDenied, ValidationFailed
from portal.kernel.i18n import _l
from portal.kernel.policy import Action
from portal.kernel.scope import Scope, scope_of
from portal.seats import selectors, services
from portal.seats.models import SeatAssignment, Subscription
from portal.seats.services import Outcome
from portal.tenancy.models import Organisation

tag = Tag(
    name="Subscriptions", description="Seats members reserve from the pools, and who holds them."
)

SCOPES = [ORGANISATION, COUNCIL]
# A slug or SKU; the server reads it case-blind after stripping blanks, the document
# states the canonical form.
Reference = Annotated[
    str,
    StringConstraints(strip_whitespace=True, min_length=1, max_length=63),
    Field(json_schema_extra=SLUG),
]
EmailText = Annotated[
    str, StringConstraints(min_length=1, max_length=254), Field(json_schema_extra=EMAIL)
]


# ---------------------------------------------------------------- request bodies and queries


class SubscriptionCreate(ApiModel):
    """Reserve seats of a product for an organisation."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "example": {"organisation": "acme", "product": "cad-suite", "quantity": 5}
        },
    )
    organisation: Reference | None = Field(
        default=None,
        description="The organisation's slug: required with a council token; "
        "with an organisation token, leave out or give its own.",
    )
    product: Reference = Field(description="The product's SKU")
    quantity: int = Field(ge=1, le=services.MAX_QUANTITY)
    on_shortage: Literal["reject", "waitlist", "partial"] = Field(
        default="reject",
        description="When the pools cannot cover the quantity: refuse (409 pool_exhausted), "
        "take the free seats and wait for the rest, or take the free seats only.",
    )
    starts_on: dt.date | None = Field(
        default=None,
        description="Default today; a council token may give a past date for an existing contract.",
        json_schema_extra=DATE,
    )


class SubscriptionResize(ApiModel):
    """A new quantity of seats."""

    model_config = ConfigDict(extra="forbid")
    quantity: int = Field(ge=1, le=services.MAX_QUANTITY)
    on_shortage: Literal["reject", "waitlist", "partial"] = "reject"


class SubscriptionPath(IdPath):
    pass


class SeatPath(IdPath):
    user_email: Annotated[str, StringConstraints(min_length=3, max_length=254)] = Field(
        json_schema_extra=EMAIL
    )


class SeatAssign(ApiModel):
    """Give a person a seat; an email without an account gets an invitation."""

    model_config = ConfigDict(
        extra="forbid", json_schema_extra={"example": {"user_email": "pat.lee@acme.example"}}
    )
    user_email: EmailText


class SubscriptionQuery(ListQuery):
    organisation: str | None = Field(
        default=None,
        max_length=63,
        description="An organisation's slug (council tokens)",
        json_schema_extra=SLUG,
    )
    product: str | None = Field(
        default=None, max_length=63, description="A product's SKU", json_schema_extra=SLUG
    )
    include_cancelled: bool = False


# ---------------------------------------------------------------- responses


class SubscriptionOut(BaseModel):
    """A subscription: ``quantity`` seats granted of ``requested_quantity`` asked for."""

    id: int
    organisation: str = Field(description="The organisation's slug")
    product: str = Field(description="The product's SKU")
    quantity: int = Field(description="Seats granted (they count against the pools)")
    requested_quantity: int = Field(description="Seats asked for; the rest wait")
    status: Literal["active", "waitlisted", "cancelled"]
    starts_on: dt.date
    ends_on: dt.date | None
    created_at: dt.datetime

    @classmethod
    def of(cls, subscription: Subscription) -> SubscriptionOut:
        return cls(
            id=subscription.id,
            organisation=subscription.organisation.slug,
            product=subscription.product.sku,
            quantity=subscription.quantity,
            requested_quantity=subscription.requested_quantity,
            status=subscription.status,  # type: ignore[arg-type]
            starts_on=subscription.starts_on,
            ends_on=subscription.ends_on,
            created_at=subscription.created_at,
        )


class SubscriptionResult(SubscriptionOut):
    """A subscription after a request for seats, with what the request got."""

    outcome: Literal["granted", "partial", "waitlisted"] = Field(
        description="granted: all seats (201/200); partial or waitlisted: fewer (202)"
    )

    @classmethod
    def of_outcome(cls, outcome: Outcome) -> SubscriptionResult:
        return cls(
            **SubscriptionOut.of(outcome.subscription).model_dump(),
            outcome=outcome.result,  # type: ignore[arg-type]
        )


class SubscriptionList(BaseModel):
    """One page of subscriptions."""

    data: list[SubscriptionOut]
    next_cursor: str | None


class SeatOut(BaseModel):
    """A seat held by a person."""

    subscription: int
    user_email: str
    assigned_at: dt.datetime
    released_at: dt.datetime | None

    @classmethod
    def of(cls, seat: SeatAssignment) -> SeatOut:
        return cls(
            subscription=seat.subscription_id,
            user_email=seat.user.email,
            assigned_at=seat.assigned_at,
            released_at=seat.released_at,
        )


# ---------------------------------------------------------------- scope


def _scope() -> Scope:
    """Whose rows the token reads and acts for: its organisation's, or (council) every one."""
    return scope_of(current_actor())


def _organisation(slug: str | None) -> Organisation:
    """The organisation a request names, checked against the token's scope."""
    own = _scope().organisation_id
    if own is not None:
        organisation = db_session().get(Organisation, own)
        if organisation is None:  # pragma: no cover (the token's organisation exists)
            raise NotFound(_l("No such organisation."))
        if slug is not None and slug.lower() != organisation.slug:
            raise PermissionDenied(
                _l("This token acts only for its own organisation."),
                errors={"organisation": [_l("Leave out, or give this token's own organisation.")]},
            )
        return organisation
    if slug is None:
        raise ValidationFailed(
            _l("Name the organisation."), errors={"organisation": [_l("This field is required.")]}
        )
    return organisation_named(db_session(), slug)


def _product(sku: str) -> Product:
    """The product a request names by SKU (404 naming the field when there is none)."""
    return product_named(db_session(), sku)


def _result(outcome: Outcome, complete_status: int) -> Response:
    status = complete_status if outcome.complete else 202
    return reply(SubscriptionResult.of_outcome(outcome), status)


# ---------------------------------------------------------------- views


@route(
    "post",
    "/subscriptions",
    scopes=SCOPES,
    tag=tag,
    action=Action.SUBSCRIPTION_CREATE,
    responses={201: SubscriptionResult, 202: SubscriptionResult},
    errors=[404, 409],
    creates=True,
)
def subscription_create(body: SubscriptionCreate) -> Response:
    """Subscribe an organisation to a product.

    201 when every seat is granted; 202 when the request is waitlisted or partly
    granted (see `outcome` and `status`); 409 `pool_exhausted` with
    `on_shortage: reject` when the pools cannot cover it. 404 for an unknown
    organisation or product; a council token must name the organisation (422);
    only a council token may give a `starts_on` other than today (403).
    """
    if body.starts_on not in (None, now_utc().date()) and not _scope().is_council:
        # A rule of the token's scope, not of the body: the council dates contracts.
        raise PermissionDenied(
            _l("Only the council can date a subscription other than today."),
            errors={"starts_on": [_l("Leave out: subscriptions start today.")]},
        )
    outcome = services.subscription_create(
        db_session(),
        actor=current_actor(),
        organisation=_organisation(body.organisation),
        product=_product(body.product),
        quantity=body.quantity,
        on_shortage=body.on_shortage,
        starts_on=body.starts_on,
    )
    return _result(outcome, 201)


@route(
    "get",
    "/subscriptions",
    scopes=SCOPES,
    tag=tag,
    action=Action.SUBSCRIPTION_READ,
    responses={200: SubscriptionList},
    errors=[404],
)
def subscriptions_list(query: SubscriptionQuery) -> Response:
    """List subscriptions, oldest first (live ones unless `include_cancelled`).

    404 for an unknown organisation or product in the filters.
    """
    scope = (
        Scope.organisation(_organisation(query.organisation).id) if query.organisation else _scope()
    )
    product_id = _product(query.product).id if query.product else None
    rows = selectors.subscriptions_list(
        db_session(),
        scope=scope,
        product_id=product_id,
        include_cancelled=query.include_cancelled,
        after_id=pagination.decode_cursor(query.cursor),
        limit=query.limit + 1,
    )
    return reply(
        pagination.page(
            rows,
            limit=query.limit,
            serialise=lambda s: SubscriptionOut.of(s).model_dump(mode="json"),
            key=_id,
        )
    )


@route(
    "get",
    "/subscriptions/<int:id>",
    scopes=SCOPES,
    tag=tag,
    action=Action.SUBSCRIPTION_READ,
    responses={200: SubscriptionOut},
    errors=[404],
)
def subscription_get(path: SubscriptionPath) -> Response:
    """One subscription."""
    subscription = selectors.subscription_in_scope(
        db_session(), scope=_scope(), subscription_id=path.id
    )
    return reply(SubscriptionOut.of(subscription))


@route(
    "patch",
    "/subscriptions/<int:id>",
    scopes=SCOPES,
    tag=tag,
    action=Action.SUBSCRIPTION_RESIZE,
    responses={200: SubscriptionResult, 202: SubscriptionResult},
    errors=[404, 409],
)
def subscription_resize(path: SubscriptionPath, body: SubscriptionResize) -> Response:
    """Change the quantity of seats.

    Growing follows `on_shortage` as creating does (200, or 202 when waitlisted or
    partial); shrinking below the seats assigned is refused (409 `seats_assigned`).
    """
    outcome = services.subscription_resize(
        db_session(),
        actor=current_actor(),
        subscription=selectors.subscription_in_scope(
            db_session(), scope=_scope(), subscription_id=path.id
        ),
        quantity=body.quantity,
        on_shortage=body.on_shortage,
    )
    return _result(outcome, 200)


@route(
    "post",
    "/subscriptions/<int:id>/seats",
    scopes=SCOPES,
    tag=tag,
    action=Action.SEAT_ASSIGN,
    responses={201: SeatOut},
    errors=[404, 409],
    creates=True,
)
def seat_assign(path: SubscriptionPath, body: SeatAssign) -> Response:
    """Assign a seat to a person (409 `no_free_seat` when every seat is taken)."""
    seat = services.seat_assign(
        db_session(),
        actor=current_actor(),
        subscription=selectors.subscription_in_scope(
            db_session(), scope=_scope(), subscription_id=path.id
        ),
        user_email=body.user_email,
    )
    return reply(SeatOut.of(seat), 201)


@route(
    "delete",
    "/subscriptions/<int:id>/seats/<user_email>",
    scopes=SCOPES,
    tag=tag,
    action=Action.SEAT_RELEASE,
    responses={200: SeatOut},
    errors=[404],
)
def seat_release(path: SeatPath) -> Response:
    """Release a person's seat; it stays reserved for the organisation."""
    seat = services.seat_release(
        db_session(),
        actor=current_actor(),
        subscription=selectors.subscription_in_scope(
            db_session(), scope=_scope(), subscription_id=path.id
        ),
        user_email=path.user_email,
    )
    return reply(SeatOut.of(seat))


def _id(subscription: Subscription) -> int:
    return subscription.id
