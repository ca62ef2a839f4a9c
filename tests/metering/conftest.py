"""Fixtures for metering: a vendor's product with meters, an organisation, and a batch helper."""

from __future__ import annotations

import datetime as dt
import json
import uuid
from typing import Any

import pytest

from portal.audit.services import Actor
from portal.db import db, now_utc
from tests.conftest import SYSTEM

COUNCIL = Actor(label="council token", role="council_admin")


@pytest.fixture
def metered(app, make_org, make_product):  # noqa: F811
    """An organisation and a product with sum, max, count and unique_count meters."""
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
    return {"org": org, "product": product, "vendor_id": vendor_id}


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
        result = usage_ingest(
            db.session,
            actor=actor,
            body=raw if raw is not None else body(events),
            vendor_id=vendor_id,
            max_age_days=35,
        )
        db.session.commit()
        return result
