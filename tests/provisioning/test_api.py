"""``/api/v1/vendors/{slug}/provisioning``, its webhook secret and the delivery log:
council tokens and that vendor's tokens only; bad input answered 4xx, nothing changed."""

from __future__ import annotations

import pytest
import sqlalchemy as sa

from portal.db import db
from portal.provisioning.models import Delivery, VendorProvisioning


def _token(app, scope, *, vendor=None, org=None):
    from portal.api.services import token_create
    from tests.conftest import SYSTEM

    with app.app_context():
        from portal.catalogue.models import Vendor
        from portal.tenancy.models import Organisation

        kwargs = {}
        if vendor:
            kwargs["vendor"] = db.session.query(Vendor).filter_by(slug=vendor).one()
        if org:
            kwargs["organisation"] = db.session.get(Organisation, org)
        _, plaintext = token_create(db.session, actor=SYSTEM, scope=scope, name="t", **kwargs)
        db.session.commit()
        return {"Authorization": f"Bearer {plaintext}"}


@pytest.fixture
def tokens(app, make_product, world):
    make_product(sku="other-app", vendor="other")
    return {
        "council": _token(app, "council"),
        "hooked": _token(app, "vendor", vendor="hooked"),
        "other": _token(app, "vendor", vendor="other"),
        "org": _token(app, "organisation", org=world.org_id),
    }


def test_settings_are_read_and_changed_without_secrets(app, client, tokens):
    put = client.put(
        "/api/v1/vendors/other/provisioning",
        json={
            "scim_base_url": "http://127.0.0.1:9/scim/v2",
            "scim_token": "s3cret-token",
            "on_release": "delete",
        },
        headers=tokens["other"],
    )
    assert put.status_code == 200, put.json
    body = put.json
    assert body["scim_base_url"] == "http://127.0.0.1:9/scim/v2"
    assert body["scim_token_set"] is True and body["on_release"] == "delete"
    assert "s3cret-token" not in put.get_data(as_text=True)
    with app.app_context():
        row = db.session.scalar(
            sa.select(VendorProvisioning)
            .join(VendorProvisioning.vendor)
            .where(VendorProvisioning.scim_token_sealed.is_not(None))
        )
        assert "s3cret-token" not in row.scim_token_sealed and row.scim_token() == "s3cret-token"
    # null removes; a field left out stays
    put = client.put(
        "/api/v1/vendors/other/provisioning", json={"scim_token": None}, headers=tokens["council"]
    )
    assert put.json["scim_token_set"] is False and put.json["on_release"] == "delete"
    got = client.get("/api/v1/vendors/other/provisioning", headers=tokens["other"])
    assert got.status_code == 200 and got.json["scim_base_url"] == "http://127.0.0.1:9/scim/v2"


def test_the_secret_is_shown_once_and_rotates_with_an_overlap(client, tokens):
    first = client.post(
        "/api/v1/vendors/other/provisioning/webhook-secret", headers=tokens["other"]
    )
    assert first.status_code == 201 and first.json["secret"].startswith("whsec_")
    assert first.json["previous_secret_until"] is None
    assert first.headers["Cache-Control"] == "no-store"
    second = client.post(
        "/api/v1/vendors/other/provisioning/webhook-secret", headers=tokens["council"]
    )
    assert second.json["secret"] != first.json["secret"]
    assert second.json["previous_secret_until"] is not None
    got = client.get("/api/v1/vendors/other/provisioning", headers=tokens["other"])
    assert first.json["secret"] not in got.get_data(as_text=True)
    assert second.json["secret"] not in got.get_data(as_text=True)


@pytest.mark.parametrize(
    "body, field",
    [
        ({"webhook_url": "ftp://example.com/x"}, "webhook_url"),
        ({"webhook_url": "https://user:pw@example.com/x"}, "webhook_url"),
        ({"webhook_url": "https://"}, "webhook_url"),
        ({"scim_base_url": "https://example.com/" + "a" * 600}, "scim_base_url"),
        ({"scim_base_url": 5}, "scim_base_url"),
        ({"on_release": "archive"}, "on_release"),
        ({"group_push": "yes"}, "group_push"),
        ({"scim_token": "has spaces in it"}, "scim_token"),
        ({"surprise": 1}, "surprise"),
    ],
)
def test_bad_settings_are_refused_and_nothing_changes(app, client, tokens, body, field):
    before = client.get("/api/v1/vendors/hooked/provisioning", headers=tokens["council"]).json
    answer = client.put("/api/v1/vendors/hooked/provisioning", json=body, headers=tokens["council"])
    assert answer.status_code == 422, answer.json
    assert answer.content_type.startswith("application/problem+json")
    assert any(key.startswith(field) for key in answer.json.get("errors", {})), answer.json
    after = client.get("/api/v1/vendors/hooked/provisioning", headers=tokens["council"]).json
    assert after == before


def test_not_json_is_a_4xx(client, tokens):
    answer = client.put(
        "/api/v1/vendors/hooked/provisioning",
        data="{not json",
        headers={**tokens["council"], "Content-Type": "application/json"},
    )
    assert 400 <= answer.status_code < 500


def test_another_vendors_token_finds_nothing_and_an_organisation_token_is_refused(client, tokens):
    for method, path in [
        ("get", "/api/v1/vendors/hooked/provisioning"),
        ("put", "/api/v1/vendors/hooked/provisioning"),
        ("post", "/api/v1/vendors/hooked/provisioning/webhook-secret"),
        ("get", "/api/v1/vendors/hooked/deliveries"),
    ]:
        kwargs = {"json": {}} if method == "put" else {}
        other = getattr(client, method)(path, headers=tokens["other"], **kwargs)
        assert other.status_code == 404, (path, other.status_code)
        org = getattr(client, method)(path, headers=tokens["org"], **kwargs)
        assert org.status_code == 403, (path, org.status_code)
        anonymous = getattr(client, method)(path, **kwargs)
        assert anonymous.status_code == 401


def test_the_delivery_log_lists_filters_and_redelivers(app, client, tokens, world, jobs_inline):
    from tests.provisioning.test_webhooks import _assign

    with app.app_context():
        _assign(world, "ann@buyer.example")
    log = client.get("/api/v1/vendors/hooked/deliveries", headers=tokens["hooked"])
    assert log.status_code == 200
    events = [d["event"] for d in log.json["data"]]
    assert events == ["seat.assigned", "subscription.changed"]
    first = log.json["data"][0]
    assert first["person"] == "ann@buyer.example" and first["state"] == "delivered"
    assert first["attempts"] == 1 and first["last_answer"]["status"] == 200
    only = client.get(
        "/api/v1/vendors/hooked/deliveries?event=seat.assigned&person=ann&state=delivered",
        headers=tokens["council"],
    )
    assert [d["id"] for d in only.json["data"]] == [first["id"]]
    paged = client.get("/api/v1/vendors/hooked/deliveries?limit=1", headers=tokens["council"])
    assert len(paged.json["data"]) == 1 and paged.json["next_cursor"]
    rest = client.get(
        f"/api/v1/vendors/hooked/deliveries?limit=1&cursor={paged.json['next_cursor']}",
        headers=tokens["council"],
    )
    assert [d["event"] for d in rest.json["data"]] == ["subscription.changed"]
    assert (
        client.get(
            "/api/v1/vendors/hooked/deliveries?state=lost", headers=tokens["council"]
        ).status_code
        == 422
    )
    # another vendor's token cannot redeliver it, even through its own slug
    assert (
        client.post(
            f"/api/v1/vendors/other/deliveries/{first['id']}/redeliver", headers=tokens["other"]
        ).status_code
        == 404
    )
    again = client.post(
        f"/api/v1/vendors/hooked/deliveries/{first['id']}/redeliver", headers=tokens["hooked"]
    )
    assert again.status_code == 202, again.json
    with app.app_context():
        row = db.session.get(Delivery, first["id"])
        assert row.state == "delivered" and row.attempts == 2  # sent again (inline job)


def test_the_openapi_document_lists_the_webhooks(client):
    doc = client.get("/api/v1/openapi.json").json
    assert set(doc["webhooks"]) >= {
        "seat.assigned",
        "seat.released",
        "user.deactivated",
        "subscription.changed",
    }
    assert "/api/v1/vendors/{slug}/provisioning" in doc["paths"]
    assert "/api/v1/vendors/{slug}/deliveries" in doc["paths"]


def test_an_organisation_token_assigning_a_seat_writes_the_delivery_in_its_scope(
    app, client, tokens, world, receiver, jobs_inline
):
    """An organisation's own request (row-level security on PostgreSQL: its scope only)
    writes the delivery, and the job sends it."""
    assigned = client.post(
        f"/api/v1/subscriptions/{world.subscription_id}/seats",
        json={"user_email": "org@buyer.example"},
        headers=tokens["org"],
    )
    assert assigned.status_code == 201, assigned.json
    released = client.delete(
        f"/api/v1/subscriptions/{world.subscription_id}/seats/org@buyer.example",
        headers=tokens["org"],
    )
    assert released.status_code in (200, 204), released.get_data(as_text=True)
    assert receiver.types[-2:] == ["seat.assigned", "seat.released"]
    with app.app_context():
        rows = db.session.scalars(sa.select(Delivery).where(Delivery.user_id.is_not(None))).all()
        assert {r.organisation_id for r in rows} == {world.org_id}
