"""``GET /api/v1/demand`` and ``/demand/requests``: council tokens read the board's figures
per product with the linked product requests, a page at a time; other tokens are refused;
bad queries are 422 problems."""

from __future__ import annotations

import pytest

from tests.api.conftest import ApiClient, assert_problem
from tests.procurement.demand_support import build


@pytest.fixture
def world(app, make_org, make_product):
    return build(app, make_org, make_product)


def test_the_figures_per_product_with_their_requests(world, council_api):
    response = council_api.get("/demand")
    assert response.status_code == 200, response.get_json()
    body = response.get_json()
    assert body["next_cursor"] is None
    by_sku = {row["product"]: row for row in body["data"]}
    assert [row["product"] for row in body["data"]] == ["cad-suite", "secure-mail", "no-pool"]
    cad = by_sku["cad-suite"]
    assert {k: cad[k] for k in cad if k not in ("requests", "trend", "oldest_waiting_since")} == {
        "product": "cad-suite",
        "name": "Product cad-suite",
        "vendor": "acme-soft",
        "capacity": 5,
        "reserved": 5,
        "assigned": 2,
        "reserved_percent": 100,
        "assigned_percent": 40,
        "waitlisted": 2,
        "waiting_days": 10,
        "seat_requests": 1,
        "product_requests": 2,
        "requested_seats": 7,
        "pressure": 10,
        "suggested_seats": 10,
        "trend_direction": "flat",
    }
    assert cad["oldest_waiting_since"] is not None
    assert [p["reserved"] for p in cad["trend"]] == [5, 1, 5, 5]
    assert [p["on"] for p in cad["trend"]] == [i.date().isoformat() for i in world.instants]
    assert [
        (r["id"], r["state"], r["merged_into"], r["organisation"]) for r in cad["requests"]
    ] == [
        (world.r1, "open", None, "org-a"),
        (world.r2, "merged", world.r1, "org-b"),
    ]
    assert by_sku["no-pool"]["reserved_percent"] is None


def test_the_list_pages_in_product_order(world, council_api):
    first = council_api.get("/demand?limit=2").get_json()
    assert [row["product"] for row in first["data"]] == ["cad-suite", "secure-mail"]
    second = council_api.get(f"/demand?limit=2&cursor={first['next_cursor']}").get_json()
    assert [row["product"] for row in second["data"]] == ["no-pool"]
    assert second["next_cursor"] is None


def test_the_requests_list(world, council_api):
    body = council_api.get("/demand/requests").get_json()
    assert [r["id"] for r in body["data"]] == [world.r4, world.r3, world.r2, world.r1]
    atlas = body["data"][0]
    assert (atlas["product_name"], atlas["product"], atlas["seats"]) == ("Atlas GIS", None, 6)
    declined = council_api.get("/demand/requests?state=declined").get_json()
    assert [r["id"] for r in declined["data"]] == [world.r3]


@pytest.mark.parametrize(
    "query",
    ["limit=0", "limit=201", "limit=x", "cursor=!!", "cursor=" + "A" * 300],
)
def test_bad_queries_are_problems(world, council_api, query):
    assert_problem(council_api.get(f"/demand?{query}"), 422)


def test_a_bad_state_is_a_problem(world, council_api):
    assert_problem(council_api.get("/demand/requests?state=lost"), 422)


def test_organisation_and_vendor_tokens_are_refused(app, world):
    from portal.api.services import token_create
    from portal.catalogue.models import Vendor
    from portal.db import db
    from portal.tenancy.models import Organisation
    from tests.conftest import SYSTEM

    with app.app_context():
        _, org_token = token_create(
            db.session,
            actor=SYSTEM,
            scope="organisation",
            name="o",
            organisation=db.session.get(Organisation, world.a.id),
        )
        vendor = db.session.query(Vendor).filter_by(slug="acme-soft").one()
        _, vendor_token = token_create(
            db.session, actor=SYSTEM, scope="vendor", name="v", vendor=vendor
        )
        db.session.commit()
    for token in (org_token, vendor_token):
        client = ApiClient(app.test_client(), token)
        assert_problem(client.get("/demand"), 403)
        assert_problem(client.get("/demand/requests"), 403)
    assert_problem(ApiClient(app.test_client(), None).get("/demand"), 401)


def test_the_openapi_document_has_the_operations(client):
    doc = client.get("/api/v1/openapi.json").get_json()
    assert "get" in doc["paths"]["/api/v1/demand"]
    assert "get" in doc["paths"]["/api/v1/demand/requests"]
    assert "DemandOut" in doc["components"]["schemas"]


def test_the_requests_come_a_page_at_a_time_newest_first(world, council_api):
    """The list is cursor-paged like every API list (SPEC: ``next_cursor``): pages of two
    walk every request once, newest first; the state filter pages the same way."""
    seen, cursor = [], None
    for _ in range(5):
        query = "/demand/requests?limit=2" + (f"&cursor={cursor}" if cursor else "")
        body = council_api.get(query).get_json()
        seen.append([r["id"] for r in body["data"]])
        cursor = body["next_cursor"]
        if cursor is None:
            break
    assert seen == [[world.r4, world.r3], [world.r2, world.r1]]
    whole = council_api.get("/demand/requests").get_json()
    assert [r["id"] for r in whole["data"]] == [world.r4, world.r3, world.r2, world.r1]
    assert whole["next_cursor"] is None
    one = council_api.get("/demand/requests?state=declined&limit=1").get_json()
    assert [r["id"] for r in one["data"]] == [world.r3] and one["next_cursor"] is None
    for bad in ("limit=0", "limit=201", "cursor=!!"):
        assert_problem(council_api.get(f"/demand/requests?{bad}"), 422)
