"""``POST /api/v1/usage`` and ``GET /api/v1/entitlements/check`` over HTTP."""

from __future__ import annotations

import json

import sqlalchemy as sa

from portal.catalogue.models import Vendor
from portal.db import db
from portal.metering.models import UsageEvent
from portal.seats import services as seats
from portal.seats.models import Subscription
from tests.api.conftest import ApiClient, VendorRef, api, assert_problem, make_token  # noqa: F401
from tests.conftest import SYSTEM
from tests.metering.conftest import event


def _vendor_client(app, make_token, slug: str) -> ApiClient:  # noqa: F811
    with app.app_context():
        vendor = db.session.scalar(sa.select(Vendor).where(Vendor.slug == slug))
        ref = VendorRef(vendor.id, vendor.slug)
    return ApiClient(app.test_client(), make_token("vendor", vendor=ref))


def _count(app) -> int:
    with app.app_context():
        return db.session.scalar(sa.select(sa.func.count()).select_from(UsageEvent))


def test_vendor_reports_a_batch_and_a_resend_counts_once(app, metered, make_token):  # noqa: F811
    client = _vendor_client(app, make_token, "autodraft")
    batch = {"events": [event(quantity=q) for q in ("1", "2.5", 3)]}
    first = client.post("/usage", json=batch)
    assert first.status_code == 200, first.get_data(as_text=True)
    assert first.get_json() == {"accepted": 3, "duplicates": 0, "rejected": []}
    again = client.post("/usage", json=batch)
    assert again.get_json() == {"accepted": 0, "duplicates": 3, "rejected": []}
    assert _count(app) == 3


def test_rejected_events_are_listed_by_index_and_the_rest_kept(app, metered, make_token):  # noqa: F811
    client = _vendor_client(app, make_token, "autodraft")
    response = client.post(
        "/usage", json={"events": [event(), event(quantity="-2"), event(meter="nope"), event()]}
    )
    body = response.get_json()
    assert body["accepted"] == 2
    assert [(r["index"], sorted(r["errors"])) for r in body["rejected"]] == [
        (1, ["quantity"]),
        (2, ["meter"]),
    ]
    assert _count(app) == 2


def test_a_vendor_cannot_report_another_vendors_product(app, metered, make_token, make_product):  # noqa: F811
    make_product(3, sku="bi-studio", vendor="datalake")
    client = _vendor_client(app, make_token, "datalake")
    response = client.post("/usage", json={"events": [event()]})
    body = response.get_json()
    assert body["accepted"] == 0
    assert body["rejected"][0]["errors"] == {"product": ["This product is not one of yours."]}


def test_council_tokens_report_any_product_and_organisation_tokens_cannot(
    app,
    metered,
    api,  # noqa: F811
):
    council = api("council")
    assert council.post("/usage", json={"events": [event()]}).get_json()["accepted"] == 1
    org_client = api("organisation", org=metered["org"])
    assert_problem(org_client.post("/usage", json={"events": [event()]}), 403, "scope_forbidden")
    assert_problem(api(None).post("/usage", json={"events": [event()]}), 401)
    assert _count(app) == 1


def test_a_batch_over_the_limit_or_not_json_is_a_problem(app, metered, api):  # noqa: F811
    council = api("council")
    too_many = {"events": [event(idempotency_key=str(i)) for i in range(10_001)]}
    assert_problem(council.post("/usage", json=too_many), 422, "batch_too_large")
    response = council.client.post(
        "/api/v1/usage",
        data=b"{not json",
        headers={"Authorization": f"Bearer {council.token}", "Content-Type": "application/json"},
    )
    assert_problem(response, 422, "validation_failed")
    assert _count(app) == 0


def test_entitlement_check(app, metered, make_token, make_user):  # noqa: F811
    person = make_user("member", metered["org"])
    sub_id = metered["subscription"]
    with app.app_context():
        seats.seat_assign(
            db.session,
            actor=SYSTEM,
            subscription=db.session.get(Subscription, sub_id),
            user_email=person.email,
        )
        db.session.commit()
    client = _vendor_client(app, make_token, "autodraft")
    yes = client.get(
        f"/entitlements/check?organisation=acme&user_email={person.email}&product=cad-suite"
    )
    assert yes.status_code == 200
    body = yes.get_json()
    assert body["entitled"] is True
    assert body["seat"]["subscription"] == sub_id and body["seat"]["user_email"] == person.email
    no = client.get(
        "/entitlements/check?organisation=acme&user_email=x@acme.example&product=cad-suite"
    )
    assert no.get_json() == {"entitled": False, "seat": None}
    missing = client.get("/entitlements/check?organisation=acme")
    problem = assert_problem(missing, 422)
    assert {"user_email", "product"} <= set(problem["errors"])


def test_entitlement_check_is_for_vendor_tokens_only(app, metered, api):  # noqa: F811
    response = api("council").get(
        "/entitlements/check?organisation=acme&user_email=a@b.example&product=cad-suite"
    )
    assert_problem(response, 403, "scope_forbidden")


def test_the_openapi_document_describes_the_usage_body(app, metered, api):  # noqa: F811
    document = app.test_client().get("/api/v1/openapi.json").get_json()
    operation = document["paths"]["/api/v1/usage"]["post"]
    schema = operation["requestBody"]["content"]["application/json"]["schema"]
    assert schema["properties"]["events"]["maxItems"] == 10_000
    assert "idempotency_key" in json.dumps(schema)
    assert "/api/v1/entitlements/check" in document["paths"]
