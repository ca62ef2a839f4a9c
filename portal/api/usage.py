"""``/usage`` (vendors and the council report usage) and ``/entitlements/check``.

``POST /usage`` reads its body itself: a batch of up to 10,000 events is
decoded and checked by :mod:`portal.metering.ingest` in one pass, each bad event
is reported by index, and the good ones are kept. Each event carries its own
idempotency key, so resending a batch is always safe.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from flask import Response, current_app, request
from flask_openapi3 import Tag
from pydantic import BaseModel, ConfigDict, Field

from portal.api.auth import COUNCIL, VENDOR, current_actor, current_token
from portal.api.framework import reply, route
from portal.db import db
from portal.metering.ingest import MAX_BATCH, usage_ingest
from portal.metering.selectors import Entitlement, entitlement_check

tag = Tag(name="Usage", description="Usage events from vendors, and entitlement checks.")


class UsageEventDoc(BaseModel):
    """One usage event (documents the body; the portal decodes it with msgspec)."""

    model_config = ConfigDict(extra="forbid")
    idempotency_key: str = Field(
        min_length=1, max_length=255, description="Unique per organisation; resends count once."
    )
    organisation: str = Field(description="The organisation's slug")
    product: str = Field(description="The product's SKU (a vendor token: its own products)")
    meter: str = Field(description="The meter's key")
    quantity: str | int = Field(
        description="A non-negative decimal (string or JSON number) with at most 6 decimals; "
        "read exactly, never as a float."
    )
    occurred_at: dt.datetime = Field(
        description="RFC 3339 with a zone; at most 5 minutes ahead, at most "
        "PORTAL_USAGE_MAX_AGE_DAYS old. Events of an invoiced month are billed as late usage."
    )
    user_email: str | None = Field(default=None, max_length=254)
    properties: dict[str, Any] | None = Field(default=None, description="At most 4 KiB of JSON")


class UsageBatchDoc(BaseModel):
    model_config = ConfigDict(extra="forbid")
    events: list[dict[str, Any]] = Field(
        max_length=MAX_BATCH,
        description=f"Up to {MAX_BATCH:,} events, each as in the UsageEvent schema.",
        json_schema_extra={"items": UsageEventDoc.model_json_schema()},
    )


class Rejected(BaseModel):
    index: int = Field(description="The event's position in the batch, from 0")
    errors: dict[str, list[str]]


class UsageResult(BaseModel):
    """What happened to the batch."""

    accepted: int = Field(description="Events stored now")
    duplicates: int = Field(description="Events whose idempotency key was seen before")
    rejected: list[Rejected]


@route(
    "post",
    "/usage",
    scopes=[VENDOR, COUNCIL],
    tag=tag,
    responses={200: UsageResult},
    errors=(413,),
    raw_body=UsageBatchDoc,
)
def usage_report() -> Response:
    """Report a batch of usage events.

    Invalid events are listed in `rejected` with their index and errors; the
    valid ones are stored in the same transaction. A vendor token may report
    only its own products.
    """
    token = current_token()
    result = usage_ingest(
        db.session,
        actor=current_actor(),
        body=request.get_data(cache=False),
        vendor_id=token.vendor_id if token.scope == VENDOR else None,
        max_age_days=current_app.config["PORTAL_USAGE_MAX_AGE_DAYS"],
        token_id=token.id,
    )
    return reply(result.as_dict())


class EntitlementQuery(BaseModel):
    organisation: str = Field(min_length=1, max_length=63, description="The organisation's slug")
    user_email: str = Field(min_length=3, max_length=254)
    product: str = Field(min_length=1, max_length=63, description="The product's SKU")


class Seat(BaseModel):
    subscription: int
    user_email: str
    assigned_at: dt.datetime


class EntitlementOut(BaseModel):
    """Whether the person holds an active seat of the product."""

    entitled: bool
    seat: Seat | None


@route("get", "/entitlements/check", scopes=[VENDOR], tag=tag, responses={200: EntitlementOut})
def entitlement(query: EntitlementQuery) -> Response:
    """May this person use this product now?

    Answers for the vendor's own products only; for anything else the answer is
    `entitled: false`.
    """
    result = entitlement_check(
        db.session,
        vendor_id=current_token().vendor_id,
        organisation=query.organisation,
        user_email=query.user_email,
        product=query.product,
    )
    return reply(entitlement_body(result))


def entitlement_body(result: Entitlement) -> dict[str, Any]:
    """The JSON answer to a check (this view and :mod:`portal.api.fastpath` share it)."""
    return {
        "entitled": result.entitled,
        "seat": result.seat and Seat(**result.seat).model_dump(mode="json"),
    }
