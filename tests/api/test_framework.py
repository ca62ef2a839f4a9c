"""What every endpoint shares: problem details, scopes, pagination, idempotency, the documents."""

from __future__ import annotations

import re
import threading

import pytest
import sqlalchemy as sa

from portal.api.models import IdempotentRequest
from portal.catalogue.models import LicencePool
from portal.db import db
from portal.tenancy.models import Organisation
from tests.api.conftest import assert_problem
from tests.conftest import login


def _org_body(slug: str, **extra) -> dict:
    body = {
        "slug": slug,
        "name": f"Org {slug}",
        "country": "DE",
        "currency": "EUR",
        "billing_email": f"billing@{slug}.example",
    }
    body.update(extra)
    return body


def _count(app, model, *where) -> int:
    with app.app_context():
        return db.session.scalar(sa.select(sa.func.count()).select_from(model).where(*where))


# ---------------------------------------------------------------- problem details


def test_unknown_paths_and_methods_are_problems(api):
    council = api("council")
    assert_problem(council.get("/no-such-thing"), 404)
    assert_problem(council.client.put("/api/v1/organisations"), 405)


def test_request_validation_errors_are_422_problems_with_errors_per_field(api):
    response = api("council").post("/organisations", json={"slug": "x", "country": "XX"})
    body = assert_problem(response, 422, "validation_failed")
    assert body["errors"]["slug"] == ["Use 3 to 63 characters."]
    assert body["errors"]["country"] == ["Choose a country (ISO 3166-1 two-letter code, e.g. DE)."]
    for field in ("name", "currency", "billing_email"):
        assert body["errors"][field] == ["This field is required."], field


def test_a_body_that_is_not_a_json_object_is_a_422_problem(api):
    council = api("council")
    for data in ("not json", "[1, 2]"):
        response = council.client.post(
            "/api/v1/organisations",
            data=data,
            headers={
                "Authorization": f"Bearer {council.token}",
                "Content-Type": "application/json",
            },
        )
        body = assert_problem(response, 422, "validation_failed")
        assert body["errors"], body


def test_query_parameters_are_validated(api):
    council = api("council")
    assert assert_problem(council.get("/organisations?limit=201"), 422)["errors"]["limit"] == [
        "Enter 200 or less."
    ]
    assert "limit" in assert_problem(council.get("/organisations?limit=0"), 422)["errors"]
    assert "limit" in assert_problem(council.get("/organisations?limit=many"), 422)["errors"]
    assert "status" in assert_problem(council.get("/organisations?status=odd"), 422)["errors"]


def test_the_token_is_checked_before_the_body(api, client, make_vendor):
    assert_problem(client.post("/api/v1/organisations", json={"slug": "x"}), 401)
    # A wrong scope is refused before the body is looked at, too.
    vendor_client = api("vendor", vendor=make_vendor())
    assert_problem(vendor_client.post("/organisations", json={}), 403, "scope_forbidden")
    assert_problem(vendor_client.post("/subscriptions", json={}), 403, "scope_forbidden")


def test_a_wrong_scope_is_403_with_a_code(api, make_org):
    body = assert_problem(
        api("organisation", org=make_org()).get("/organisations"), 403, "scope_forbidden"
    )
    assert "council" in body["detail"]


def test_a_signed_in_browser_session_does_not_authenticate_the_api(app, make_user):
    client = app.test_client()
    login(client, make_user("council_admin"))
    assert_problem(client.get("/api/v1/organisations"), 401)


def test_the_api_needs_no_csrf_token(app, api):
    """Bearer-authenticated POSTs are exempt from CSRF even with a session cookie present."""
    council = api("council")
    council.client.get("/login")  # the client now holds a session cookie
    assert council.post("/organisations", json=_org_body("no-csrf")).status_code == 201


# ---------------------------------------------------------------- pagination


def test_walking_next_cursor_returns_every_row_once(api, make_org):
    slugs = {make_org().slug for _ in range(7)}
    council = api("council")
    seen: list[str] = []
    cursor = None
    pages = 0
    while True:
        path = "/organisations?limit=3" + (f"&cursor={cursor}" if cursor else "")
        body = council.get(path).get_json()
        assert set(body) == {"data", "next_cursor"}
        assert len(body["data"]) <= 3
        seen += [o["slug"] for o in body["data"]]
        pages += 1
        cursor = body["next_cursor"]
        if cursor is None:
            break
        # A row added behind the cursor does not shift later pages.
        if pages == 1:
            slugs.add(make_org().slug)
    assert len(seen) == len(set(seen)) == len(slugs)
    assert set(seen) == slugs
    assert pages == 3


def test_an_exact_last_page_has_no_next_cursor(api, make_org):
    for _ in range(4):
        make_org()
    body = api("council").get("/organisations?limit=4").get_json()
    assert len(body["data"]) == 4 and body["next_cursor"] is None


def test_a_forged_cursor_is_a_validation_error(api):
    council = api("council")
    for cursor in ("garbage", "eyJ2IjoxfQ", "eyJ2IjoxLCJhZnRlciI6IngifQ"):
        body = assert_problem(council.get(f"/organisations?cursor={cursor}"), 422)
        assert "cursor" in body["errors"]


# ---------------------------------------------------------------- idempotency


def test_the_same_key_and_body_replay_the_first_response(app, api):
    council = api("council")
    headers = {"Idempotency-Key": "create-acme-1"}
    first = council.post("/organisations", json=_org_body("acme"), headers=headers)
    again = council.post("/organisations", json=_org_body("acme"), headers=headers)
    assert first.status_code == again.status_code == 201
    assert again.get_json() == first.get_json()
    assert again.headers["Idempotent-Replayed"] == "true"
    assert "Idempotent-Replayed" not in first.headers
    assert _count(app, Organisation) == 1
    assert _count(app, IdempotentRequest) == 1


def test_the_same_key_with_another_body_is_409(app, api):
    council = api("council")
    headers = {"Idempotency-Key": "k-1"}
    assert (
        council.post("/organisations", json=_org_body("acme"), headers=headers).status_code == 201
    )
    response = council.post("/organisations", json=_org_body("other"), headers=headers)
    assert_problem(response, 409, "idempotency_key_reused")
    assert _count(app, Organisation) == 1


def test_keys_are_per_token(app, api):
    one, two = api("council"), api("council")
    headers = {"Idempotency-Key": "shared"}
    assert one.post("/organisations", json=_org_body("one"), headers=headers).status_code == 201
    assert two.post("/organisations", json=_org_body("two"), headers=headers).status_code == 201
    assert _count(app, Organisation) == 2


def test_a_failed_request_is_not_stored_and_may_be_retried(app, api, make_org):
    make_org("taken")
    council = api("council")
    headers = {"Idempotency-Key": "retry-me"}
    response = council.post("/organisations", json=_org_body("taken"), headers=headers)
    assert_problem(response, 409, "slug_taken")
    assert _count(app, IdempotentRequest) == 0


def test_an_empty_or_long_key_is_a_validation_error(api):
    council = api("council")
    for key in ("", "k" * 256):
        body = assert_problem(
            council.post(
                "/organisations", json=_org_body("acme"), headers={"Idempotency-Key": key}
            ),
            422,
        )
        assert "Idempotency-Key" in body["errors"]


def test_without_a_key_each_request_runs(app, api):
    council = api("council")
    assert council.post("/organisations", json=_org_body("acme")).status_code == 201
    assert_problem(council.post("/organisations", json=_org_body("acme")), 409, "slug_taken")


@pytest.fixture
def lost_race(monkeypatch):
    """Make the next lookup of a stored response miss, as when a twin request commits just after."""
    from portal.api import selectors

    real = selectors.idempotent_request_find
    misses = {"left": 0}

    def find(*args, **kwargs):
        if misses["left"]:
            misses["left"] -= 1
            return None
        return real(*args, **kwargs)

    monkeypatch.setattr(selectors, "idempotent_request_find", find)
    return misses


def test_a_twin_that_loses_on_a_domain_rule_replays_the_winner(app, api, lost_race):
    council = api("council")
    headers = {"Idempotency-Key": "twin"}
    first = council.post("/organisations", json=_org_body("acme"), headers=headers)
    lost_race["left"] = 1
    second = council.post("/organisations", json=_org_body("acme"), headers=headers)
    assert second.status_code == 201 and second.get_json() == first.get_json()
    assert second.headers["Idempotent-Replayed"] == "true"
    assert _count(app, Organisation) == 1


def test_a_twin_that_loses_on_the_key_constraint_is_rolled_back_and_replays(
    app, api, make_product, lost_race
):
    product = make_product(capacity=0)
    council = api("council")
    body = {
        "product": product.sku,
        "capacity": 5,
        "starts_on": "2030-01-01",
        "ends_on": "2030-12-31",
        "unit_cost": {"amount": 100, "currency": "EUR"},
    }
    headers = {"Idempotency-Key": "pool-1"}
    first = council.post("/pools", json=body, headers=headers)
    assert first.status_code == 201
    lost_race["left"] = 1
    second = council.post("/pools", json=body, headers=headers)
    assert second.status_code == 201 and second.get_json() == first.get_json()
    assert _count(app, LicencePool) == 1
    assert _count(app, IdempotentRequest) == 1


def test_two_identical_requests_racing_create_one_row(app, api):
    council = api("council")
    barrier = threading.Barrier(2)
    responses = []

    def send():
        client = app.test_client()
        barrier.wait()
        responses.append(
            client.post(
                "/api/v1/organisations",
                json=_org_body("racer"),
                headers={"Authorization": f"Bearer {council.token}", "Idempotency-Key": "race"},
            )
        )

    threads = [threading.Thread(target=send) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert [r.status_code for r in responses] == [201, 201], [r.get_json() for r in responses]
    assert responses[0].get_json() == responses[1].get_json()
    assert _count(app, Organisation) == 1
    assert _count(app, IdempotentRequest) == 1


# ---------------------------------------------------------------- the OpenAPI document and docs


def test_the_openapi_document_is_valid_openapi_3_1_and_lists_every_endpoint(app, client):
    from openapi_spec_validator import validate
    from openapi_spec_validator.validation import OpenAPIV31SpecValidator

    response = client.get("/api/v1/openapi.json")
    assert response.status_code == 200
    doc = response.get_json()
    assert doc["openapi"].startswith("3.1")
    validate(doc, cls=OpenAPIV31SpecValidator)
    routes = {
        (re.sub(r"<(?:\w+:)?(\w+)>", r"{\1}", rule.rule), method.lower())
        for rule in app.url_map.iter_rules()
        if rule.endpoint.startswith("api.")
        for method in rule.methods - {"HEAD", "OPTIONS"}
    }
    documented = {(path, method) for path, item in doc["paths"].items() for method in item}
    assert routes == documented
    for path, method in (
        ("/api/v1/organisations", "post"),
        ("/api/v1/organisations", "get"),
        ("/api/v1/organisations/{slug}", "get"),
        ("/api/v1/organisations/{slug}", "patch"),
        ("/api/v1/vendors", "post"),
        ("/api/v1/products", "post"),
        ("/api/v1/pools", "post"),
        ("/api/v1/prices", "post"),
        ("/api/v1/catalogue", "get"),
        ("/api/v1/subscriptions", "post"),
        ("/api/v1/subscriptions", "get"),
        ("/api/v1/subscriptions/{id}", "patch"),
        ("/api/v1/subscriptions/{id}/seats", "post"),
        ("/api/v1/subscriptions/{id}/seats/{user_email}", "delete"),
    ):
        assert (path, method) in documented, (path, method)
    assert doc["components"]["securitySchemes"]["bearerAuth"]["scheme"] == "bearer"
    create = doc["paths"]["/api/v1/organisations"]["post"]
    assert any(p["name"] == "Idempotency-Key" for p in create["parameters"])
    assert "application/problem+json" in create["responses"]["422"]["content"]
    # Each operation says which token scopes it accepts (lost from 020903a until mypy saw the
    # loop reuse the description's name).
    assert create["description"].endswith("Token scopes: council.")


def test_the_docs_page_loads_only_local_assets(client):
    response = client.get("/api/v1/docs")
    assert response.status_code == 200
    html = response.get_data(as_text=True)
    assets = re.findall(r'(?:src|href)="([^"]+)"', html)
    assert any("swagger-ui-bundle.js" in a for a in assets)
    assert any("swagger-ui.css" in a for a in assets)
    for asset in assets:
        assert asset.startswith("/"), asset
        assert not asset.startswith("//"), asset
        asset_response = client.get(asset)
        assert asset_response.status_code == 200, asset
        asset_response.close()
    assert 'data-spec-url="/api/v1/openapi.json"' in html
    for path, expected in (
        ("/static/api-docs.js", b"validatorUrl: null"),
        ("/static/vendor/swagger-ui/LICENSE", b"Apache License"),
        ("/static/vendor/swagger-ui/VERSION", b"swagger-ui-dist"),
    ):
        asset_response = client.get(path)
        assert expected in asset_response.data, path
        asset_response.close()
