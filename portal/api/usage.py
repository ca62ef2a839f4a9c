"""``/usage`` (vendors and the council report usage) and ``/entitlements/check``.

``POST /usage`` reads its body itself: a batch of up to 10,000 events is
decoded and checked by :mod:`portal.metering.ingest` in one pass, each bad event
is reported by index with a stable code, and the good ones are kept. Each event
carries its own idempotency key, so resending a batch is always safe.
"""

from __future__ import annotations

import datetime as dt
from typing import Any, Literal

from flask import Response, current_app, request
from flask_openapi3 import Tag
from pydantic import BaseModel, ConfigDict, Field

from portal.api.auth import COUNCIL, VENDOR, current_actor, current_token
from portal.api.framework import reply, route
from portal.api.schemas import ApiParams
from portal.db import db_session
from portal.kernel.policy import Action
from portal.metering.ingest import (
    MAX_BATCH,
    MAX_KEY_LENGTH,
    MAX_PROPERTIES_BYTES,
    MAX_QUANTITY,
    REJECTION_CODES,
    usage_ingest,
)
from portal.metering.selectors import Entitlement, entitlement_check

tag = Tag(name="Usage", description="Usage events from vendors, and entitlement checks.")

#: Strings of an event must not hold a NUL character (U+0000): such an event is rejected.
NO_NUL = r"^[^\u0000]*$"


class UsageEventDoc(BaseModel):
    """One usage event (documents the body; the portal decodes it with msgspec)."""

    model_config = ConfigDict(extra="forbid")
    idempotency_key: str = Field(
        min_length=1,
        max_length=MAX_KEY_LENGTH,
        pattern=NO_NUL,
        description="Unique per organisation; resends count once.",
    )
    organisation: str = Field(
        pattern=NO_NUL,
        description="The organisation's slug. It must hold a subscription of the product "
        "in force on the day of `occurred_at`, or the event is rejected (`no_subscription`).",
    )
    product: str = Field(
        pattern=NO_NUL, description="The product's SKU (a vendor token: its own products)"
    )
    meter: str = Field(pattern=NO_NUL, description="The meter's key")
    quantity: str | int | float = Field(
        description=f"A non-negative decimal (string or JSON number) with at most 6 decimals, "
        f"at most {MAX_QUANTITY:,}; read exactly, never as a float."
    )
    occurred_at: dt.datetime = Field(
        description="RFC 3339 with a zone; at most 5 minutes ahead, at most "
        "PORTAL_USAGE_MAX_AGE_DAYS old. Events of an invoiced month are billed as late usage."
    )
    user_email: str | None = Field(
        default=None,
        max_length=254,
        pattern=NO_NUL,
        description="A person of the organisation (an account of it, active or not); "
        "anyone else's address rejects the event (`not_organisation_person`).",
    )
    properties: dict[str, Any] | None = Field(
        default=None,
        description=f"At most {MAX_PROPERTIES_BYTES} bytes of JSON; no NUL characters in keys "
        "or strings, integers within 64 bits.",
    )


class UsageBatchDoc(BaseModel):
    model_config = ConfigDict(extra="forbid")
    events: list[dict[str, Any]] = Field(
        min_length=1,
        max_length=MAX_BATCH,
        description=f"Up to {MAX_BATCH:,} events, each as in the UsageEvent schema.",
        json_schema_extra={"items": UsageEventDoc.model_json_schema()},
    )


class Rejected(BaseModel):
    index: int = Field(description="The event's position in the batch, from 0")
    code: Literal[REJECTION_CODES] = Field(  # type: ignore[valid-type]
        description="Why, stable for programs: `invalid` (a field is malformed, unknown or "
        "out of range: see `errors`), `no_subscription` (the organisation held no "
        "subscription of the product in force on the day the event occurred), "
        "`not_organisation_person` (`user_email` is not a person of the organisation)."
    )
    errors: dict[str, list[str]] = Field(description="Messages by field")


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
    action=Action.USAGE_REPORT,
    responses={200: UsageResult},
    errors=(413,),
    raw_body=UsageBatchDoc,
)
def usage_report() -> Response:
    """Report a batch of usage events.

    Invalid events are listed in `rejected` with their index, a stable `code`
    and errors by field; the valid ones are stored in the same transaction. A
    vendor token may report only its own products; any token reports only for an
    organisation holding a subscription of the product in force when the event
    occurred, and only for that organisation's people (SPEC invariant 8).
    """
    token = current_token()
    result = usage_ingest(
        db_session(),
        actor=current_actor(),
        body=request.get_data(cache=False),
        vendor_id=token.vendor_id if token.scope == VENDOR else None,
        max_age_days=current_app.config["PORTAL_USAGE_MAX_AGE_DAYS"],
        token_id=token.id,
    )
    return reply(result.as_dict())


class EntitlementQuery(ApiParams):
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


@route(
    "get",
    "/entitlements/check",
    scopes=[VENDOR],
    tag=tag,
    action=Action.ENTITLEMENT_CHECK,
    responses={200: EntitlementOut},
)
def entitlement(query: EntitlementQuery) -> Response:
    """May this person use this product now?

    Answers for the vendor's own products only; for anything else the answer is
    `entitled: false`.
    """
    result = entitlement_check(
        db_session(),
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
