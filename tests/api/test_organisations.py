"""``/organisations``: council tokens manage tenants; no other scope may."""

from __future__ import annotations

import pytest
import sqlalchemy as sa

from portal.audit.models import AuditEvent
from portal.db import db
from tests.api.conftest import assert_problem

SHAPE = {
    "slug",
    "name",
    "country",
    "currency",
    "tax_id",
    "billing_email",
    "status",
    "tax_rate_bp",
    "reverse_charge",
    "billing_provider",
}


def _body(slug: str = "acme", **extra) -> dict:
    body = {
        "slug": slug,
        "name": "Acme GmbH",
        "country": "de",
        "currency": "eur",
        "billing_email": "Billing@Acme.example",
    }
    body.update(extra)
    return body


def test_council_creates_an_active_organisation(app, api):
    council = api("council")
    response = council.post(
        "/organisations",
        json=_body(tax_rate_bp=1900, reverse_charge=True, billing_provider="stripe"),
    )
    assert response.status_code == 201
    body = response.get_json()
    assert set(body) == SHAPE
    assert body == {
        "slug": "acme",
        "name": "Acme GmbH",
        "country": "DE",
        "currency": "EUR",
        "tax_id": None,
        "billing_email": "billing@acme.example",
        "status": "active",
        "tax_rate_bp": 1900,
        "reverse_charge": True,
        "billing_provider": "stripe",
    }
    with app.app_context():
        event = db.session.scalar(
            sa.select(AuditEvent).where(AuditEvent.action == "organisation.create")
        )
        assert event.actor_label == f"token {council.token[:12]}…"


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("slug", "Not a slug!", "Use lower-case letters"),
        ("slug", "ab", "Use 3 to 63 characters."),
        ("country", "XX", "Choose a country"),
        ("currency", "XYZ", "Choose a currency"),
        ("billing_email", "not-an-email", "Enter a valid email address"),
        ("tax_rate_bp", 10001, "Enter 10000 or less."),
        ("tax_rate_bp", -1, "Enter 0 or more."),
        ("billing_provider", "paypal", "Choose one of"),
        ("name", "", "This field is required."),
        ("nickname", "x", "This field is not accepted."),
    ],
)
def test_each_field_is_validated(api, field, value, message):
    body = assert_problem(api("council").post("/organisations", json=_body(**{field: value})), 422)
    assert list(body["errors"]) == [field]
    assert body["errors"][field][0].startswith(message), body["errors"]


def test_a_taken_slug_is_409_on_the_field(api, make_org):
    make_org("acme")
    body = assert_problem(api("council").post("/organisations", json=_body()), 409, "slug_taken")
    assert "slug" in body["errors"]


def test_get_one_and_404_for_an_unknown_slug(api, make_org):
    org = make_org("acme")
    council = api("council")
    body = council.get("/organisations/ACME").get_json()
    assert body["slug"] == "acme" and body["name"] == org.name
    assert_problem(council.get("/organisations/nobody"), 404, "not_found")


def test_list_filters_by_status(api, make_org):
    make_org("live-one")
    make_org("gone-one", status="suspended")
    council = api("council")
    everyone = council.get("/organisations").get_json()["data"]
    assert {o["slug"] for o in everyone} == {"live-one", "gone-one"}
    suspended = council.get("/organisations?status=suspended").get_json()["data"]
    assert [o["slug"] for o in suspended] == ["gone-one"]


def test_patch_changes_only_the_fields_given(api, make_org):
    make_org("acme", tax_id="DE123")
    council = api("council")
    response = council.patch("/organisations/acme", json={"name": "Acme AG", "tax_rate_bp": 700})
    assert response.status_code == 200
    body = response.get_json()
    assert body["name"] == "Acme AG" and body["tax_rate_bp"] == 700
    assert body["tax_id"] == "DE123" and body["country"] == "DE"
    # null clears the nullable ones
    assert (
        council.patch("/organisations/acme", json={"tax_rate_bp": None}).get_json()["tax_rate_bp"]
        is None
    )


def test_patch_validates_and_refuses_slug_and_status(api, make_org):
    make_org("acme")
    council = api("council")
    body = assert_problem(council.patch("/organisations/acme", json={"country": "ZZ"}), 422)
    assert list(body["errors"]) == ["country"]
    for field, value in (("slug", "other"), ("status", "suspended")):
        body = assert_problem(council.patch("/organisations/acme", json={field: value}), 422)
        assert body["errors"] == {field: ["This field is not accepted."]}
    assert_problem(council.patch("/organisations/nobody", json={"name": "X"}), 404)


@pytest.mark.parametrize("scope", ["organisation", "vendor"])
def test_other_scopes_may_not_touch_organisations(api, make_org, make_vendor, scope):
    org = make_org("acme")
    owner = {"org": org} if scope == "organisation" else {"vendor": make_vendor()}
    client = api(scope, **owner)
    for response in (
        client.get("/organisations"),
        client.get("/organisations/acme"),
        client.patch("/organisations/acme", json={"name": "Mine now"}),
        client.post("/organisations", json=_body("newco")),
    ):
        assert_problem(response, 403, "scope_forbidden")
