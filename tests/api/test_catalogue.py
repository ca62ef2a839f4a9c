"""Catalogue endpoints: council tokens write; every scope reads ``/catalogue``."""

from __future__ import annotations

import pytest
import sqlalchemy as sa

from portal.catalogue.models import LicencePool, Price, Product, Vendor
from portal.db import db
from tests.api.conftest import assert_problem


def _count(app, model) -> int:
    with app.app_context():
        return db.session.scalar(sa.select(sa.func.count()).select_from(model))


PRODUCT = {
    "sku": "cad-suite",
    "vendor": "draftworks",
    "name": "CAD Suite",
    "description": "3D design",
    "launch_url": "https://cad.example/launch",
    "meters": [
        {"key": "renders", "name": "Renders", "unit": "render", "aggregation": "sum"},
        {
            "key": "designers",
            "name": "Active designers",
            "unit": "person",
            "aggregation": "unique_count",
            "property": "user",
        },
    ],
}


@pytest.fixture
def council_catalogue(api):
    """A council client with a vendor and a product."""
    council = api("council")
    assert (
        council.post(
            "/vendors",
            json={"slug": "draftworks", "name": "Draftworks", "contact_email": "s@dw.example"},
        ).status_code
        == 201
    )
    assert council.post("/products", json=PRODUCT).status_code == 201
    return council


def test_council_builds_the_catalogue(api):
    council = api("council")
    vendor = council.post(
        "/vendors",
        json={"slug": "draftworks", "name": "Draftworks", "contact_email": "Sales@DW.example"},
    )
    assert vendor.status_code == 201
    assert vendor.get_json() == {
        "slug": "draftworks",
        "name": "Draftworks",
        "status": "active",
        "contact_email": "sales@dw.example",
        "website": None,
    }
    product = council.post("/products", json=PRODUCT)
    assert product.status_code == 201
    body = product.get_json()
    assert body["sku"] == "cad-suite" and body["vendor"] == "draftworks"
    assert [m["key"] for m in body["meters"]] == ["designers", "renders"]
    assert body["meters"][0] == {
        "key": "designers",
        "name": "Active designers",
        "unit": "person",
        "aggregation": "unique_count",
        "property": "user",
    }
    pool = council.post(
        "/pools",
        json={
            "product": "cad-suite",
            "capacity": 25,
            "starts_on": "2020-01-01",
            "ends_on": "2099-12-31",
            "unit_cost": {"amount": 4500, "currency": "eur"},
        },
    )
    assert pool.status_code == 201
    pool_body = pool.get_json()
    assert pool_body["product"] == "cad-suite" and pool_body["capacity"] == 25
    assert pool_body["starts_on"] == "2020-01-01" and pool_body["ends_on"] == "2099-12-31"
    assert pool_body["unit_cost"] == {"amount": 4500, "currency": "EUR"}
    assert isinstance(pool_body["id"], int)
    seat_price = council.post(
        "/prices",
        json={"product": "cad-suite", "currency": "EUR", "model": "seat", "unit_amount": 5900},
    )
    assert seat_price.status_code == 201
    assert seat_price.get_json() == {
        "id": seat_price.get_json()["id"],
        "product": "cad-suite",
        "currency": "EUR",
        "model": "seat",
        "meter": None,
        "unit_amount": 5900,
        "tier_mode": None,
        "tiers": [],
        "tier_basis": "organisation",
    }
    metered = council.post(
        "/prices",
        json={
            "product": "cad-suite",
            "currency": "USD",
            "model": "metered",
            "meter": "renders",
            "tier_mode": "graduated",
            "tiers": [
                {"up_to": 1000, "unit_amount": 2},
                {"up_to": None, "unit_amount": 1, "flat_amount": 500},
            ],
        },
    )
    assert metered.status_code == 201, metered.get_json()
    assert metered.get_json()["meter"] == "renders"
    assert metered.get_json()["tiers"] == [
        {"up_to": 1000, "unit_amount": 2, "flat_amount": 0},
        {"up_to": None, "unit_amount": 1, "flat_amount": 500},
    ]
    entry = council.get("/catalogue").get_json()["data"][0]
    assert entry["sku"] == "cad-suite" and entry["vendor_status"] == "active"
    assert entry["subscribable"] is True
    assert entry["seats"] == {"capacity": 25, "reserved": 0, "free": 25, "waiting": 0}


def test_vendor_fields_are_validated(api):
    council = api("council")
    cases = [
        ({"slug": "X!", "name": "V"}, "slug"),
        ({"slug": "vendor", "name": ""}, "name"),
        ({"slug": "vendor", "name": "V", "status": "gone"}, "status"),
        ({"slug": "vendor", "name": "V", "contact_email": "nope"}, "contact_email"),
        ({"slug": "vendor", "name": "V", "website": "ftp://x"}, "website"),
    ]
    for body, field in cases:
        problem = assert_problem(council.post("/vendors", json=body), 422, "validation_failed")
        assert list(problem["errors"]) == [field], problem
    council.post("/vendors", json={"slug": "vendor", "name": "V"})
    assert_problem(
        council.post("/vendors", json={"slug": "vendor", "name": "V"}), 409, "slug_taken"
    )


def test_product_fields_are_validated(api, council_catalogue):
    council = council_catalogue
    problem = assert_problem(council.post("/products", json={**PRODUCT, "sku": "cad-suite"}), 409)
    assert problem["code"] == "sku_taken"
    problem = assert_problem(
        council.post("/products", json={**PRODUCT, "sku": "other", "vendor": "nobody"}), 404
    )
    assert problem["errors"] == {"vendor": ["No such vendor."]}
    bad_meter = {"key": "x", "name": "X", "unit": "u", "aggregation": "median"}
    problem = assert_problem(
        council.post("/products", json={**PRODUCT, "sku": "other", "meters": [bad_meter]}), 422
    )
    assert list(problem["errors"]) == ["meters.0.aggregation"]
    problem = assert_problem(
        council.post("/products", json={**PRODUCT, "sku": "other", "launch_url": "javascript:x"}),
        422,
    )
    assert list(problem["errors"]) == ["launch_url"]


def test_pool_fields_are_validated(app, council_catalogue):
    council = council_catalogue
    good = {
        "product": "cad-suite",
        "capacity": 5,
        "starts_on": "2030-01-01",
        "ends_on": "2030-12-31",
        "unit_cost": {"amount": 100, "currency": "EUR"},
    }
    for change, field in (
        ({"capacity": 0}, "capacity"),
        ({"starts_on": "someday"}, "starts_on"),
        ({"unit_cost": {"amount": -1, "currency": "EUR"}}, "unit_cost.amount"),
        ({"unit_cost": {"amount": 1, "currency": "EURO"}}, "unit_cost.currency"),
    ):
        problem = assert_problem(council.post("/pools", json={**good, **change}), 422)
        assert list(problem["errors"]) == [field], problem
    # A product that does not exist is not found (the field is named).
    problem = assert_problem(council.post("/pools", json={**good, "product": "nothing"}), 404)
    assert list(problem["errors"]) == ["product"], problem
    problem = assert_problem(council.post("/pools", json={**good, "ends_on": "2029-01-01"}), 422)
    assert problem["errors"]
    assert _count(app, LicencePool) == 0


def test_price_fields_are_validated(app, council_catalogue):
    council = council_catalogue
    seat = {"product": "cad-suite", "currency": "EUR", "model": "seat", "unit_amount": 100}
    for change, field in (
        ({"currency": "ABC"}, "currency"),
        ({"model": "flat"}, "model"),
        ({"unit_amount": -5}, "unit_amount"),
        ({"unit_amount": "ten"}, "unit_amount"),
    ):
        problem = assert_problem(council.post("/prices", json={**seat, **change}), 422)
        assert list(problem["errors"]) == [field], problem
    problem = assert_problem(
        council.post("/prices", json={**seat, "model": "metered", "meter": "nope"}), 404
    )
    assert list(problem["errors"]) == ["meter"]
    assert council.post("/prices", json=seat).status_code == 201
    assert_problem(council.post("/prices", json=seat), 409, "price_exists")
    assert _count(app, Price) == 1


def test_a_pool_post_is_idempotent(app, council_catalogue):
    council = council_catalogue
    body = {
        "product": "cad-suite",
        "capacity": 5,
        "starts_on": "2030-01-01",
        "ends_on": "2030-12-31",
        "unit_cost": {"amount": 100, "currency": "EUR"},
    }
    headers = {"Idempotency-Key": "pool-2030"}
    first = council.post("/pools", json=body, headers=headers)
    second = council.post("/pools", json=body, headers=headers)
    assert first.status_code == second.status_code == 201
    assert first.get_json() == second.get_json()
    assert _count(app, LicencePool) == 1
    other = council.post("/pools", json={**body, "capacity": 6}, headers=headers)
    assert_problem(other, 409, "idempotency_key_reused")


@pytest.mark.parametrize("scope", ["organisation", "vendor"])
def test_only_council_tokens_write_the_catalogue(app, api, make_org, make_vendor, scope):
    owner = {"org": make_org()} if scope == "organisation" else {"vendor": make_vendor()}
    client = api(scope, **owner)
    for path, body in (
        ("/vendors", {"slug": "sneaky", "name": "Sneaky"}),
        ("/products", PRODUCT),
        ("/pools", {}),
        ("/prices", {}),
    ):
        assert_problem(client.post(path, json=body), 403, "scope_forbidden")
    assert _count(app, Product) == 0
    assert _count(app, Vendor) == (1 if scope == "vendor" else 0)


@pytest.mark.parametrize("scope", ["council", "organisation", "vendor"])
def test_every_scope_reads_the_catalogue(api, make_org, make_vendor, make_product, scope):
    product = make_product(capacity=7)
    owner = {}
    if scope == "organisation":
        owner = {"org": make_org()}
    elif scope == "vendor":
        owner = {"vendor": make_vendor()}
    body = api(scope, **owner).get("/catalogue").get_json()
    assert [e["sku"] for e in body["data"]] == [product.sku]
    assert body["data"][0]["seats"]["capacity"] == 7


def test_catalogue_pages_search_and_vendor_filter(api, make_product):
    skus = [make_product(capacity=1).sku for _ in range(5)]
    other = make_product(capacity=1, sku="zeta-tool", vendor="zeta-soft")
    council = api("council")
    seen, cursor = [], None
    while True:
        body = council.get(
            "/catalogue?limit=2" + (f"&cursor={cursor}" if cursor else "")
        ).get_json()
        seen += [e["sku"] for e in body["data"]]
        cursor = body["next_cursor"]
        if not cursor:
            break
    assert seen == [*skus, other.sku]
    assert [e["sku"] for e in council.get("/catalogue?search=zeta").get_json()["data"]] == [
        "zeta-tool"
    ]
    assert [e["sku"] for e in council.get("/catalogue?vendor=zeta-soft").get_json()["data"]] == [
        "zeta-tool"
    ]
