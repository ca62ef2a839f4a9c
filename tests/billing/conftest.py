"""Billing fixtures: an organisation subscribed since last month, with prices and usage."""

from __future__ import annotations

import datetime as dt
import json
import uuid
from typing import Any

import pytest

from portal.db import db
from portal.kernel.clock import now_utc
from tests.conftest import SYSTEM


def last_month() -> tuple[str, dt.date]:
    first_this = now_utc().date().replace(day=1)
    first_last = (first_this - dt.timedelta(days=1)).replace(day=1)
    return f"{first_last:%Y-%m}", first_last


def this_month() -> str:
    return f"{now_utc():%Y-%m}"


def send_usage(app, events: list[dict[str, Any]]) -> None:
    from portal.metering.ingest import usage_ingest

    with app.app_context():
        usage_ingest(
            db.session,
            actor=SYSTEM,
            body=json.dumps({"events": events}).encode(),
            vendor_id=None,
            max_age_days=70,
        )
        db.session.commit()


def usage(org: str, quantity: str, when: dt.datetime, meter: str = "api_calls") -> dict:
    return {
        "idempotency_key": str(uuid.uuid4()),
        "organisation": org,
        "product": "cad-suite",
        "meter": meter,
        "quantity": quantity,
        "occurred_at": when.isoformat(),
    }


@pytest.fixture
def billed(app, make_org, make_product):  # noqa: F811
    """acme (EUR, 19 % tax) holds 10 seats of cad-suite since the 1st of last month,
    at 30.00 per seat-month and 0.02 per API call."""
    from portal.catalogue.models import Product
    from portal.catalogue.services import price_create
    from portal.seats.services import subscription_create
    from portal.tenancy.models import Organisation

    org = make_org("acme", tax_rate_bp=1900)
    product = make_product(50, sku="cad-suite", vendor="autodraft", price=3000)
    period, first = last_month()
    with app.app_context():
        price_create(
            db.session,
            actor=SYSTEM,
            data={
                "product": "cad-suite",
                "currency": "EUR",
                "model": "metered",
                "meter": "api_calls",
                "unit_amount": 2,
            },
        )
        subscription_create(
            db.session,
            actor=SYSTEM,
            organisation=db.session.get(Organisation, org.id),
            product=db.session.get(Product, product.id),
            quantity=10,
            starts_on=first,
        )
        db.session.commit()
    return {"org": org, "product": product, "period": period, "first": first}


from tests.billing.factories import issued  # noqa: E402, F401  (fixture re-export)
