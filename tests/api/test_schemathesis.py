"""Property-based tests of ``/api/v1`` against its own OpenAPI document (schemathesis).

Every operation a token of each scope (council, organisation, vendor) may call
is exercised with such a token against the real app and a migrated database
holding an organisation, a vendor, a product with a meter and a pool, named as
the document's examples name them, so the examples phase finds them.
Generation is seeded and deterministic, and bounded (``max-examples``), so a
run is repeatable and quick.

Checks: no server error; the status is documented; the body matches the
documented schema and content type; documented headers are present; a method
the operation does not have answers 405 with ``Allow``; and a request valid by
the document is never refused as invalid (422).

Excluded, with reasons:

* ``negative_data_rejection`` (requests the document rules out must be refused):
  the server is deliberately more lenient than the document in places: it strips
  blanks around text and reads slugs, SKUs, countries and currencies case-blind;
  the document states the canonical form only. Such requests are still made
  (negative mode), and must not get a server error or an undocumented answer.
* Rules the document cannot state (JSON schema does not compare values) are
  made true in generated bodies before they are sent, in :func:`_fit`: a council
  token names the ``organisation`` of a new subscription (an organisation token
  acts for its own); a pool ends on or after it starts; a product's meters have
  keys of their own; a price's tier limits rise and only the last is open. The
  422s for breaking them are covered by tests/api/test_subscriptions.py and
  tests/api/test_catalogue.py.
"""

from __future__ import annotations

import os

import pytest
import schemathesis
from hypothesis import HealthCheck, settings

SEED = 20261201
MAX_EXAMPLES = 8


def _document() -> dict:
    """The OpenAPI document, from an app of its own (the document needs no database)."""
    os.environ.setdefault("PORTAL_ENV", "test")
    from portal import create_app

    app = create_app(
        {
            "TESTING": True,
            "SQLALCHEMY_DATABASE_URI": "sqlite://",
            "RATELIMIT_STORAGE_URI": "memory://",
        }
    )
    return app.api_doc


CONFIG = schemathesis.Config.from_dict(
    {
        "seed": SEED,
        "base-url": "http://localhost",
        "generation": {"max-examples": MAX_EXAMPLES, "deterministic": True},
        "phases": {"stateful": {"enabled": False}},
        "checks": {"negative_data_rejection": {"enabled": False}},
    }
)
schema = schemathesis.openapi.from_dict(_document(), config=CONFIG)
# The world below is made once per operation and shared by its examples on purpose.
SETTINGS = settings(suppress_health_check=[HealthCheck.function_scoped_fixture])


@pytest.fixture
def world(app, make_org, make_product, make_token) -> dict:
    import sqlalchemy as sa

    from portal.catalogue.models import Product, Vendor
    from portal.catalogue.services import meter_create
    from portal.db import db
    from tests.api.conftest import VendorRef
    from tests.conftest import SYSTEM

    # The names the document's examples use, so the examples phase finds them.
    acme = make_org("acme")
    make_product(10, sku="cad-suite", vendor="acme-soft")
    with app.app_context():
        product = db.session.scalar(sa.select(Product).where(Product.sku == "cad-suite"))
        meter = {"key": "api_calls", "name": "API calls", "unit": "call", "aggregation": "sum"}
        meter_create(db.session, actor=SYSTEM, product=product, data=meter)
        db.session.commit()
        vendor = db.session.scalar(sa.select(Vendor).where(Vendor.slug == "acme-soft"))
        vendor_ref = VendorRef(vendor.id, vendor.slug)
    return {
        "app": app,
        "council": make_token("council"),
        "organisation": make_token("organisation", org=acme),
        "vendor": make_token("vendor", vendor=vendor_ref),
    }


def _fit(case, scope: str) -> None:
    """Make a generated body keep the rules the document cannot state (see above)."""
    body = case.body
    if case.method != "POST" or not isinstance(body, dict):
        return
    if case.path == "/api/v1/subscriptions" and scope == "council":
        if body.get("organisation") is None:
            body["organisation"] = "acme"
    elif case.path == "/api/v1/pools":
        starts, ends = body.get("starts_on"), body.get("ends_on")
        if isinstance(starts, str) and isinstance(ends, str) and ends < starts:
            body["starts_on"], body["ends_on"] = ends, starts
    elif case.path == "/api/v1/products" and isinstance(body.get("meters"), list):
        seen: set[str] = set()
        for n, meter in enumerate(body["meters"]):
            if isinstance(meter, dict) and isinstance(meter.get("key"), str):
                if meter["key"] in seen:
                    meter["key"] = f"{meter['key'][:58]}-{n}"
                seen.add(meter["key"])
    elif case.path == "/api/v1/purchase-orders":
        # a term that ends on or after it starts; the world's vendor and its one product,
        # once, and a total within the money limit (tests/procurement/test_po_api.py has
        # the 4xx of breaking those)
        starts, ends = body.get("starts_on"), body.get("ends_on")
        if isinstance(starts, str) and isinstance(ends, str) and ends < starts:
            body["starts_on"], body["ends_on"] = ends, starts
        if isinstance(body.get("lines"), list) and body["lines"]:
            line = body["lines"][0]
            if isinstance(line, dict):
                body["vendor"] = "acme-soft"
                body["lines"] = [{**line, "product": "cad-suite", "seats": 1, "unit_cost": 1}]
    elif case.path == "/api/v1/prices" and isinstance(body.get("tiers"), list):
        tiers = body["tiers"]
        for n, tier in enumerate(tiers, start=1):
            if isinstance(tier, dict):
                tier["up_to"] = None if n == len(tiers) else n


def _call(case, world: dict, scope: str) -> None:
    _fit(case, scope)
    # The document is loaded at collection; the app under test is this session's.
    case.operation.schema.app = world["app"]
    case.call_and_validate(app=world["app"], headers={"Authorization": f"Bearer {world[scope]}"})


def _for(scope: str):
    """The operations a token of ``scope`` may call (the others answer 403 before reading
    the request: tests/api/test_framework.py covers that)."""
    return schema.include(
        func=lambda ctx: scope in ctx.operation.definition.raw.get("x-token-scopes", ())
    )


@_for("council").parametrize()
@SETTINGS
def test_council_token(case, world):
    _call(case, world, "council")


@_for("organisation").parametrize()
@SETTINGS
def test_organisation_token(case, world):
    _call(case, world, "organisation")


@_for("vendor").parametrize()
@SETTINGS
def test_vendor_token(case, world):
    _call(case, world, "vendor")
