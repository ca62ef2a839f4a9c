"""Fixtures for metering: a vendor's product with meters, an organisation, and a batch helper."""

from __future__ import annotations

import datetime as dt
import json
import uuid
from typing import Any

import pytest

from portal.db import bind_scope, db
from portal.kernel.actor import Actor, Role
from portal.kernel.clock import now_utc
from portal.kernel.scope import Scope
from tests.conftest import SYSTEM

COUNCIL = Actor.api_token("council token", role=Role.COUNCIL_ADMIN)


#: Subscriptions made by :func:`subscribe` start this many days ago: before the
#: oldest event the tests send (``max_age_days=35``), so every event the tests
#: mean to be counted falls in a subscription in force (SPEC invariant 8).
SUBSCRIBED_DAYS_AGO = 40


def subscribe(
    app, org_slug: str, sku: str, *, quantity: int = 5, days_ago: int = SUBSCRIBED_DAYS_AGO
) -> int:
    """The organisation's live subscription of ``sku`` (created, backdated by the
    council, if there is none; resized to ``quantity`` if there is); its id."""
    from portal.catalogue.selectors import product_by_sku
    from portal.seats import selectors as seat_selectors
    from portal.seats.services import subscription_create, subscription_resize
    from portal.tenancy.selectors import organisation_by_slug

    with app.app_context():
        org = organisation_by_slug(db.session, org_slug)
        product = product_by_sku(db.session, sku)
        live = seat_selectors.live_subscription(
            db.session, organisation_id=org.id, product_id=product.id
        )
        if live is None:
            live = subscription_create(
                db.session,
                actor=SYSTEM,
                organisation=org,
                product=product,
                quantity=quantity,
                starts_on=now_utc().date() - dt.timedelta(days=days_ago),
            ).subscription
        elif live.quantity != quantity:
            subscription_resize(db.session, actor=SYSTEM, subscription=live, quantity=quantity)
        db.session.commit()
        return live.id


def person(app, org_slug: str, email: str) -> str:
    """An account (a member) of the organisation with this email, made if missing."""
    import sqlalchemy as sa

    from portal.identity.accounts import user_create
    from portal.identity.models import User
    from portal.tenancy.selectors import organisation_by_slug

    with app.app_context():
        email = email.lower()
        if db.session.scalar(sa.select(User.id).where(User.email == email)) is None:
            user_create(
                db.session,
                actor=SYSTEM,
                email=email,
                role="member",
                organisation=organisation_by_slug(db.session, org_slug),
            )
            db.session.commit()
    return email


@pytest.fixture
def metered(app, make_org, make_product):  # noqa: F811
    """An organisation and a product with sum, max, count and unique_count meters;
    the organisation subscribes to it (since 40 days ago)."""
    from portal.catalogue.models import Product
    from portal.catalogue.services import meter_create

    org = make_org("acme")
    product = make_product(10, sku="cad-suite", vendor="autodraft")
    with app.app_context():
        p = db.session.get(Product, product.id)
        for key, aggregation, prop in (
            ("storage_gb", "max", None),
            ("sessions", "count", None),
            ("active_users", "unique_count", "user_email"),
            ("regions", "unique_count", "region"),
        ):
            meter_create(
                db.session,
                actor=SYSTEM,
                product=p,
                data={
                    "key": key,
                    "name": key,
                    "unit": "unit",
                    "aggregation": aggregation,
                    "property": prop,
                },
            )
        vendor_id = p.vendor_id
        db.session.commit()
    subscription_id = subscribe(app, org.slug, product.sku)
    return {"org": org, "product": product, "vendor_id": vendor_id, "subscription": subscription_id}


def event(**overrides: Any) -> dict[str, Any]:
    """A valid event (meter api_calls of cad-suite for acme), with overrides."""
    base = {
        "idempotency_key": str(uuid.uuid4()),
        "organisation": "acme",
        "product": "cad-suite",
        "meter": "api_calls",
        "quantity": "1",
        "occurred_at": (now_utc() - dt.timedelta(hours=1)).isoformat(),
    }
    base.update(overrides)
    return base


def body(events: list[dict[str, Any]]) -> bytes:
    return json.dumps({"events": events}).encode()


def ingest(app, events, *, vendor_id=None, actor=COUNCIL, raw: bytes | None = None):
    from portal.metering.ingest import usage_ingest

    with app.app_context():
        # As the API binds a council or vendor token's requests (also from the tests' threads).
        bind_scope(db.session, Scope.council())
        result = usage_ingest(
            db.session,
            actor=actor,
            body=raw if raw is not None else body(events),
            vendor_id=vendor_id,
            max_age_days=35,
        )
        db.session.commit()
        return result
