"""Factories for catalogue and seat tests."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from typing import Any

import pytest

from portal.db import db, now_utc
from tests.conftest import SYSTEM


@pytest.fixture
def make_product(app) -> Callable[..., Any]:
    """A vendor (created once per slug), a product and a pool of ``capacity`` seats in force."""
    from portal.catalogue.models import Vendor
    from portal.catalogue.services import pool_create, price_create, product_create, vendor_create

    counter = iter(range(1, 10_000))

    def make(
        capacity: int = 10,
        *,
        sku: str | None = None,
        vendor: str = "acme-soft",
        vendor_status: str = "active",
        price: int | None = 1000,
        currency: str = "EUR",
    ):
        n = next(counter)
        sku = sku or f"product-{n}"
        today = now_utc().date()
        with app.app_context():
            import sqlalchemy as sa

            if db.session.scalar(sa.select(Vendor).where(Vendor.slug == vendor)) is None:
                vendor_create(
                    db.session,
                    actor=SYSTEM,
                    data={"slug": vendor, "name": vendor.title(), "status": vendor_status},
                )
            product = product_create(
                db.session,
                actor=SYSTEM,
                data={
                    "sku": sku,
                    "vendor": vendor,
                    "name": f"Product {sku}",
                    "launch_url": f"https://{sku}.example/launch",
                    "meters": [
                        {
                            "key": "api_calls",
                            "name": "API calls",
                            "unit": "call",
                            "aggregation": "sum",
                        }
                    ],
                },
            )
            if capacity:
                pool_create(
                    db.session,
                    actor=SYSTEM,
                    data={
                        "product": sku,
                        "capacity": capacity,
                        "starts_on": (today - dt.timedelta(days=30)).isoformat(),
                        "ends_on": (today + dt.timedelta(days=335)).isoformat(),
                        "unit_cost": {"amount": 500, "currency": "EUR"},
                    },
                )
            if price is not None:
                price_create(
                    db.session,
                    actor=SYSTEM,
                    data={
                        "product": sku,
                        "currency": currency,
                        "model": "seat",
                        "unit_amount": price,
                    },
                )
            db.session.commit()
            return ProductRef(product.id, product.sku)

    return make


class ProductRef:
    def __init__(self, id: int, sku: str) -> None:
        self.id, self.sku = id, sku
