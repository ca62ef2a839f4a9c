"""A vendor's provisioning settings, its webhook signing secret and its delivery log
(SPEC 8.4).

* ``GET`` / ``PUT /vendors/{slug}/provisioning``: the settings, never a secret; ``PUT``
  changes the fields it names (``null`` removes one).
* ``POST /vendors/{slug}/provisioning/webhook-secret``: a new signing secret, answered
  once (201); the previous one keeps signing for a day.
* ``GET /vendors/{slug}/deliveries``: the delivery log, newest first, with filters.
* ``POST /vendors/{slug}/deliveries/{id}/redeliver``: send one again.

A council token, or a vendor token of THAT vendor; another vendor's token gets 404 (the
vendor is not there for it), an organisation token 403.
"""

from __future__ import annotations

import datetime as dt
from typing import Annotated, Literal

from flask import Response
from flask_openapi3 import Tag
from pydantic import BaseModel, ConfigDict, Field, StrictBool, StringConstraints

from portal.api.auth import COUNCIL, VENDOR, current_actor
from portal.api.framework import reply, route
from portal.api.pagination import decode_cursor, encode_cursor
from portal.api.schemas import MAX_ID, ApiModel, ListQuery, SlugPath
from portal.catalogue.models import Vendor
from portal.catalogue.selectors import vendor_by_slug
from portal.db import db_session
from portal.kernel import policy
from portal.kernel.errors import NotFound
from portal.kernel.i18n import _l
from portal.kernel.policy import Action
from portal.provisioning import selectors, services
from portal.provisioning.models import Delivery, DeliveryAttempt, DeliveryState, Event

tag = Tag(
    name="Provisioning",
    description=(
        "Where a vendor's changes go (SCIM 2.0, signed webhooks), its signing secret and "
        "its delivery log (SPEC 8.4). The webhooks themselves are described under "
        "`webhooks`."
    ),
)

StateName = Literal["pending", "delivered", "failed"]
EventName = Literal[
    "seat.assigned", "seat.released", "user.deactivated", "user.updated", "subscription.changed"
]
UrlText = Annotated[str, StringConstraints(max_length=services.URL_MAX + 1)]


class ProvisioningSet(ApiModel):
    """The fields to change; one left out stays as it is, ``null`` removes it."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "example": {
                "scim_base_url": "https://app.example.com/scim/v2",
                "scim_token": "the vendor's bearer token",
                "webhook_url": "https://app.example.com/hooks/portal",
                "on_release": "deactivate",
            }
        },
    )
    scim_base_url: UrlText | None = Field(
        default=None, description="The vendor's SCIM 2.0 base URL (https in production)"
    )
    scim_token: Annotated[str, StringConstraints(max_length=services.TOKEN_MAX + 1)] | None = Field(
        default=None, description="The bearer token for it; stored encrypted, never shown"
    )
    webhook_url: UrlText | None = Field(default=None, description="Where webhooks are POSTed")
    on_release: Literal["deactivate", "delete"] | None = Field(
        default=None, description="What SCIM does to a person whose seat goes"
    )
    group_push: StrictBool | None = Field(
        default=None, description="Also keep a SCIM group per product"
    )
    reconcile_fix: StrictBool | None = Field(
        default=None, description="Let the daily reconciliation fix the drift it finds"
    )


class ProvisioningOut(BaseModel):
    """A vendor's settings, without any secret."""

    vendor: str
    scim_base_url: str | None
    scim_token_set: bool
    webhook_url: str | None
    webhook_secret_set: bool
    webhook_secret_created_at: dt.datetime | None
    previous_secret_until: dt.datetime | None = Field(
        description="Until when the previous secret still signs too (after a rotation)"
    )
    on_release: Literal["deactivate", "delete"]
    group_push: bool
    reconcile_fix: bool
    failing: bool = Field(description="Deliveries have failed for a day; the council was told")
    failing_since: dt.datetime | None
    last_success_at: dt.datetime | None


class SecretOut(BaseModel):
    """The new signing secret: shown this once."""

    secret: str = Field(description="`whsec_` and the base64 of 32 random bytes")
    previous_secret_until: dt.datetime | None
    settings: ProvisioningOut


class AttemptOut(BaseModel):
    at: dt.datetime
    outcome: Literal["delivered", "retry", "failed"]
    status: int | None
    error: str | None
    duration_ms: int
    response: str = Field(description="The answer, cut to a few kilobytes")


class DeliveryOut(BaseModel):
    """One change for the vendor over one channel, and how it fared."""

    id: int
    event: EventName
    channel: Literal["scim", "webhook"]
    webhook_id: str = Field(description="The same on every attempt (`webhook-id`)")
    person: str | None = Field(description="The person's email address, if about a person")
    product: str | None = Field(description="The product's SKU, if about one")
    state: StateName
    attempts: int
    created_at: dt.datetime
    next_attempt_at: dt.datetime | None = Field(description="When it is tried next (pending)")
    delivered_at: dt.datetime | None
    last_status: int | None
    last_error: str | None
    last_answer: AttemptOut | None
    payload: dict = Field(description="What the vendor is sent (the webhook's body)")

    @classmethod
    def of(cls, delivery: Delivery, last: DeliveryAttempt | None) -> DeliveryOut:
        data = delivery.payload.get("data", {})
        return cls(
            id=delivery.id,
            event=str(delivery.event),  # type: ignore[arg-type]
            channel=str(delivery.channel),  # type: ignore[arg-type]
            webhook_id=delivery.message_id,
            person=delivery.person_email,
            product=(data.get("product") or {}).get("sku"),
            state=str(delivery.state),  # type: ignore[arg-type]
            attempts=delivery.attempts,
            created_at=delivery.created_at,
            next_attempt_at=(
                delivery.next_attempt_at if delivery.state == DeliveryState.PENDING else None
            ),
            delivered_at=delivery.delivered_at,
            last_status=delivery.last_status,
            last_error=delivery.last_error,
            last_answer=(
                AttemptOut(
                    at=last.at,
                    outcome=last.outcome,  # type: ignore[arg-type]
                    status=last.status,
                    error=last.error,
                    duration_ms=last.duration_ms,
                    response=last.response,
                )
                if last is not None
                else None
            ),
            payload=delivery.payload,
        )


class DeliveryList(BaseModel):
    data: list[DeliveryOut]
    next_cursor: str | None


class DeliveryQuery(ListQuery):
    state: StateName | None = Field(default=None, description="Only deliveries in this state")
    event: EventName | None = Field(default=None, description="Only this event")
    person: str | None = Field(
        default=None, max_length=254, description="Part of the person's email address"
    )


class DeliveryPath(SlugPath):
    id: int = Field(ge=1, le=MAX_ID, description="The delivery's id")


def _vendor(slug: str, action: Action) -> Vendor:
    """The vendor ``slug``; 404 also when a vendor token names another vendor."""
    vendor = vendor_by_slug(db_session(), slug)
    policy.require(current_actor(), action, vendor_id=vendor.id)
    return vendor


def _settings_out(vendor: Vendor) -> ProvisioningOut:
    row = selectors.settings_for(db_session(), vendor.id)
    return ProvisioningOut(**services.describe(row, vendor))


@route(
    "get",
    "/vendors/<slug>/provisioning",
    scopes=[COUNCIL, VENDOR],
    tag=tag,
    action=Action.PROVISIONING_READ,
    responses={200: ProvisioningOut},
    errors=[404],
)
def provisioning_get(path: SlugPath) -> Response:
    """The vendor's provisioning settings (no secret is ever answered)."""
    vendor = _vendor(path.slug, Action.PROVISIONING_READ)
    return reply(_settings_out(vendor))


@route(
    "put",
    "/vendors/<slug>/provisioning",
    scopes=[COUNCIL, VENDOR],
    tag=tag,
    action=Action.PROVISIONING_CONFIGURE,
    responses={200: ProvisioningOut},
    errors=[404],
)
def provisioning_put(path: SlugPath, body: ProvisioningSet) -> Response:
    """Change the settings the body names; `null` removes a field.

    Addresses must be https (http outside production), with a host and no credentials.
    Deliveries go out over each channel configured: SCIM needs the URL and the token, a
    webhook the URL and a secret (`POST …/webhook-secret`).
    """
    vendor = _vendor(path.slug, Action.PROVISIONING_CONFIGURE)
    data = body.model_dump(exclude_unset=True)
    services.settings_update(db_session(), actor=current_actor(), vendor=vendor, data=data)
    return reply(_settings_out(vendor))


@route(
    "post",
    "/vendors/<slug>/provisioning/webhook-secret",
    scopes=[COUNCIL, VENDOR],
    tag=tag,
    action=Action.PROVISIONING_CONFIGURE,
    responses={201: SecretOut},
    errors=[404],
)
def webhook_secret_create(path: SlugPath) -> Response:
    """A new webhook signing secret, answered this once.

    After a rotation the previous secret signs as well for 24 hours (`webhook-signature`
    then carries two signatures), so the receiver can switch without losing a delivery.
    """
    vendor = _vendor(path.slug, Action.PROVISIONING_CONFIGURE)
    row, secret = services.webhook_secret_rotate(db_session(), actor=current_actor(), vendor=vendor)
    settings = _settings_out(vendor)
    response = reply(
        SecretOut(
            secret=secret,
            previous_secret_until=settings.previous_secret_until,
            settings=settings,
        ),
        status=201,
    )
    response.headers["Cache-Control"] = "no-store"
    return response


@route(
    "get",
    "/vendors/<slug>/deliveries",
    scopes=[COUNCIL, VENDOR],
    tag=tag,
    action=Action.DELIVERY_READ,
    responses={200: DeliveryList},
    errors=[404],
)
def deliveries_list(path: SlugPath, query: DeliveryQuery) -> Response:
    """The vendor's deliveries, newest first: event, person, state, attempts, last answer."""
    vendor = _vendor(path.slug, Action.DELIVERY_READ)
    before = decode_cursor(query.cursor)
    session = db_session()
    rows, more = selectors.deliveries_page(
        session,
        actor=current_actor(),
        filters=selectors.DeliveryFilter(
            vendor_id=vendor.id,
            state=DeliveryState(query.state) if query.state else None,
            event=Event(query.event) if query.event else None,
            person=query.person,
        ),
        limit=query.limit,
        before_id=before,
    )
    last = selectors.last_attempts(session, rows)
    return reply(
        {
            "data": [DeliveryOut.of(row, last.get(row.id)).model_dump(mode="json") for row in rows],
            "next_cursor": encode_cursor(rows[-1].id) if more and rows else None,
        }
    )


@route(
    "post",
    "/vendors/<slug>/deliveries/<int:id>/redeliver",
    scopes=[COUNCIL, VENDOR],
    tag=tag,
    action=Action.DELIVERY_REDELIVER,
    responses={202: DeliveryOut},
    errors=[404, 409],
)
def delivery_redeliver(path: DeliveryPath) -> Response:
    """Send a delivered or failed delivery again, with the same `webhook-id` (202: queued).

    A pending one is still being tried (409 `delivery_pending`).
    """
    vendor = _vendor(path.slug, Action.DELIVERY_REDELIVER)
    session = db_session()
    delivery = selectors.delivery_for(session, actor=current_actor(), delivery_id=path.id)
    if delivery.vendor_id != vendor.id:
        raise NotFound(_l("No such delivery."))
    services.redeliver(session, actor=current_actor(), delivery=delivery)
    return reply(DeliveryOut.of(delivery, None), status=202)


# ---------------------------------------------------------------- the webhooks (OpenAPI 3.1)


def _object(properties: dict, required: list[str] | None = None, **extra: object) -> dict:
    return {
        "type": "object",
        "properties": properties,
        "required": required if required is not None else list(properties),
        **extra,
    }


_ID = {"type": "string", "description": "The portal's id (a string of digits)"}
_TIME = {"type": "string", "format": "date-time"}
_PERSON = _object(
    {
        "id": {**_ID, "description": "The person's portal id (SCIM: the `externalId`)"},
        "email": {"type": "string", "format": "email"},
        "name": {"type": "string"},
        "active": {"type": "boolean"},
    }
)
_ORGANISATION = _object({"id": _ID, "slug": {"type": "string"}, "name": {"type": "string"}})
_PRODUCT = _object({"id": _ID, "sku": {"type": "string"}, "name": {"type": "string"}})
_SEAT = _object(
    {
        "id": _ID,
        "assigned_at": _TIME,
        "released_at": {**_TIME, "type": ["string", "null"]},
        "reason": {
            "type": ["string", "null"],
            "description": "Why it was released: released, deactivated, cancelled, idle, …",
        },
    },
    required=["id", "assigned_at"],
)
_HEADERS = {
    "webhook-id": {
        "description": "The delivery's id; the same on every attempt: dedupe on it",
        "required": True,
        "schema": {"type": "string"},
    },
    "webhook-timestamp": {
        "description": "The attempt's time in Unix seconds (reject ones far from now)",
        "required": True,
        "schema": {"type": "string"},
    },
    "webhook-signature": {
        "description": (
            "`v1,` and the base64 HMAC-SHA256 of `{webhook-id}.{webhook-timestamp}.{body}` "
            "keyed with the base64-decoded part of the `whsec_` secret; space-separated "
            "when two secrets sign (for 24 hours after a rotation)"
        ),
        "required": True,
        "schema": {"type": "string"},
    },
}


def _webhook(event: str, summary: str, data: dict) -> dict:
    body = _object(
        {
            "type": {"const": event},
            "timestamp": {**_TIME, "description": "When the change happened"},
            "data": data,
        }
    )
    return {
        "post": {
            "summary": summary,
            "description": (
                "Standard Webhooks (https://www.standardwebhooks.com). Answer 2xx once it "
                "is stored; anything else is tried again with backoff for three days "
                "(a 4xx other than 408 and 429: not again). Deliveries about one person "
                "come in the order of the changes."
            ),
            "tags": ["Provisioning"],
            "parameters": [
                {"name": name, "in": "header", **spec} for name, spec in _HEADERS.items()
            ],
            "requestBody": {
                "required": True,
                "content": {"application/json": {"schema": body}},
            },
            "responses": {"200": {"description": "Received (any 2xx)"}},
        }
    }


#: The ``webhooks`` section of the OpenAPI 3.1 document: what the portal POSTs to a vendor.
WEBHOOKS: dict[str, dict] = {
    "seat.assigned": _webhook(
        "seat.assigned",
        "A person got a seat of one of the vendor's products",
        _object(
            {"seat": _SEAT, "person": _PERSON, "organisation": _ORGANISATION, "product": _PRODUCT}
        ),
    ),
    "seat.released": _webhook(
        "seat.released",
        "A person's seat of one of the vendor's products was released",
        _object(
            {"seat": _SEAT, "person": _PERSON, "organisation": _ORGANISATION, "product": _PRODUCT}
        ),
    ),
    "user.deactivated": _webhook(
        "user.deactivated",
        "A person who holds or held a seat of the vendor's was deactivated",
        _object({"person": _PERSON, "organisation": _ORGANISATION, "deactivated_at": _TIME}),
    ),
    "subscription.changed": _webhook(
        "subscription.changed",
        "An organisation's subscription to one of the vendor's products opened, was "
        "resized or cancelled",
        _object(
            {
                "change": {"enum": ["opened", "resized", "cancelled"]},
                "subscription": _object(
                    {
                        "id": _ID,
                        "status": {"enum": ["active", "waitlisted", "cancelled"]},
                        "quantity": {"type": "integer", "minimum": 0},
                        "requested_quantity": {"type": "integer", "minimum": 0},
                    }
                ),
                "organisation": _ORGANISATION,
                "product": _PRODUCT,
            }
        ),
    ),
}
