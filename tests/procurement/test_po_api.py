"""``/api/v1/purchase-orders``: council tokens draft, read and move orders; bad input is a
clear 4xx with nothing changed; approvals are people's, not tokens'."""

from __future__ import annotations

import pytest

from portal.procurement.models import PurchaseOrder, VendorInvoice
from tests.api.conftest import assert_problem, miss_the_stored_answer_once
from tests.procurement.po_support import act, person, term
from tests.support import count, db_rows


def _rows(app):
    """Every row but the token's (its last use is recorded)."""
    return {table: rows for table, rows in db_rows(app).items() if table != "api_tokens"}


def _body(**change):
    starts_on, ends_on = term()
    body = {
        "vendor": "acme-soft",
        "currency": "EUR",
        "starts_on": starts_on.isoformat(),
        "ends_on": ends_on.isoformat(),
        "lines": [
            {"product": "cad-suite", "seats": 3, "unit_cost": 1000},
            {"product": "secure-mail", "seats": 2, "unit_cost": 250},
        ],
        "notes": "Renewal",
    }
    body.update(change)
    return body


def test_a_council_token_drafts_and_reads_an_order(supplier, council_api):
    response = council_api.post("/purchase-orders", json=_body())
    assert response.status_code == 201, response.get_json()
    created = response.get_json()
    assert response.headers["Location"] == f"/api/v1/purchase-orders/{created['id']}"
    assert created["state"] == "draft" and created["number"] is None
    assert created["vendor"] == "acme-soft" and created["source"] == "manual"
    assert [(line["product"], line["months"], line["amount"]) for line in created["lines"]] == [
        ("cad-suite", 12, 36000),
        ("secure-mail", 12, 6000),
    ]
    assert created["total"] == 42000
    assert created["approvals_missing"] == ["council_admin"]
    shown = council_api.get(f"/purchase-orders/{created['id']}").get_json()
    assert shown == created
    listed = council_api.get("/purchase-orders?state=draft&vendor=acme-soft").get_json()
    assert [po["id"] for po in listed["data"]] == [created["id"]]
    assert council_api.get("/purchase-orders?state=sent").get_json()["data"] == []


def test_two_drafts_with_one_key_that_race_make_one_order(app, supplier, council_api, monkeypatch):
    """The second draft looks for the key before the first has stored it; the order and the
    stored answer are committed together, so the second's order is rolled back with its
    failed insert of the key and the first's answer is replayed."""
    headers = {"Idempotency-Key": "po-raced"}
    first = council_api.post("/purchase-orders", json=_body(), headers=headers)
    assert first.status_code == 201, first.get_json()
    looks = miss_the_stored_answer_once(monkeypatch)
    second = council_api.post("/purchase-orders", json=_body(), headers=headers)
    assert len(looks) == 2
    assert second.status_code == 201 and second.get_json() == first.get_json()
    assert second.headers["Idempotent-Replayed"] == "true"
    assert count(app, PurchaseOrder) == 1


def test_the_list_pages_newest_first(supplier, council_api):
    ids = [council_api.post("/purchase-orders", json=_body()).get_json()["id"] for _ in range(3)]
    first = council_api.get("/purchase-orders?limit=2").get_json()
    assert [po["id"] for po in first["data"]] == ids[::-1][:2]
    second = council_api.get(f"/purchase-orders?limit=2&cursor={first['next_cursor']}").get_json()
    assert [po["id"] for po in second["data"]] == [ids[0]] and second["next_cursor"] is None


def test_tokens_do_not_approve_but_move_the_rest(app, supplier, council_api, people, mailbox):
    po_id = council_api.post("/purchase-orders", json=_body()).get_json()["id"]
    assert_problem(
        council_api.post(f"/purchase-orders/{po_id}/approve"), 403, "approval_needs_person"
    )
    act(app, people["admin"], po_id, "approve")
    sent = council_api.post(f"/purchase-orders/{po_id}/send")
    assert sent.status_code == 200, sent.get_json()
    assert sent.get_json()["state"] == "sent" and sent.get_json()["sent_to"]
    confirmed = council_api.post(
        f"/purchase-orders/{po_id}/confirm", json={"vendor_reference": "SO-4411"}
    ).get_json()
    assert (confirmed["state"], confirmed["vendor_reference"]) == ("confirmed", "SO-4411")
    received = council_api.post(f"/purchase-orders/{po_id}/receive").get_json()
    assert received["state"] == "received"
    assert all(
        line["received_seats"] == line["seats"] and line["pool"] for line in received["lines"]
    )
    again = council_api.post(f"/purchase-orders/{po_id}/receive")
    assert_problem(again, 409, "invalid_transition")
    assert_problem(
        council_api.post(f"/purchase-orders/{po_id}/cancel", json={}), 409, "invalid_transition"
    )


def test_a_vendor_invoice_is_recorded_and_matched(app, supplier, council_api, people):
    po_id = council_api.post("/purchase-orders", json=_body()).get_json()["id"]
    act(app, people["admin"], po_id, "approve")
    council_api.post(f"/purchase-orders/{po_id}/send")
    lines = council_api.get(f"/purchase-orders/{po_id}").get_json()["lines"]
    response = council_api.post(
        f"/purchase-orders/{po_id}/vendor-invoices",
        json={
            "vendor_number": "INV-9",
            "issued_on": "2027-01-03",
            "lines": [{"line_id": lines[0]["id"], "seats": 3, "amount": 40000}],
        },
    )
    assert response.status_code == 201, response.get_json()
    [cad, mail] = response.get_json()["lines"]
    assert (cad["invoiced_seats"], cad["invoiced_amount"]) == (3, 40000)
    assert cad["problems"] == ["over_invoiced", "seats_not_received", "price_differs"]
    assert mail["problems"] == []
    [invoice] = response.get_json()["vendor_invoices"]
    assert (invoice["vendor_number"], invoice["amount"], invoice["currency"]) == (
        "INV-9",
        40000,
        "EUR",
    )
    repeat = council_api.post(
        f"/purchase-orders/{po_id}/vendor-invoices",
        json={
            "vendor_number": "INV-9",
            "issued_on": "2027-01-03",
            "lines": [{"line_id": lines[1]["id"], "seats": 1, "amount": 1}],
        },
    )
    assert_problem(repeat, 409, "vendor_invoice_recorded")
    assert count(app, VendorInvoice) == 1


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"vendor": "Not A Slug!"}, "vendor"),
        ({"currency": "EURO"}, "currency"),
        ({"currency": "XYZ"}, "currency"),
        ({"starts_on": "2027-02-30"}, "starts_on"),
        ({"ends_on": "10000-01-01"}, "ends_on"),
        ({"lines": []}, "lines"),
        ({"lines": None}, "lines"),
        ({"lines": [{"product": "cad-suite", "seats": 0, "unit_cost": 1}]}, "lines.0.seats"),
        (
            {"lines": [{"product": "cad-suite", "seats": 1, "unit_cost": 2**64}]},
            "lines.0.unit_cost",
        ),
        ({"lines": [{"product": "cad-suite", "seats": "many", "unit_cost": 1}]}, "lines.0.seats"),
        ({"notes": "a\x00b"}, "notes"),
        ({"surprise": 1}, "surprise"),
    ],
)
def test_bad_drafts_are_422_naming_the_field(app, supplier, council_api, change, field):
    before = _rows(app)
    response = council_api.post("/purchase-orders", json=_body(**change))
    body = assert_problem(response, 422)
    assert field in body["errors"], body
    assert _rows(app) == before


def test_an_unknown_vendor_or_product_is_404_naming_it(app, supplier, council_api):
    body = assert_problem(council_api.post("/purchase-orders", json=_body(vendor="nobody")), 404)
    assert "vendor" in body["errors"]
    lines = [{"product": "nothing-here", "seats": 1, "unit_cost": 1}]
    body = assert_problem(council_api.post("/purchase-orders", json=_body(lines=lines)), 404)
    assert "lines.0.product" in body["errors"]
    assert_problem(council_api.get("/purchase-orders?vendor=nobody"), 404)
    assert count(app, PurchaseOrder) == 0


def test_other_bodies_and_ids_are_4xx(app, supplier, council_api):
    assert_problem(
        council_api.post(
            "/purchase-orders", data="{", headers={"Content-Type": "application/json"}
        ),
        422,
    )
    assert_problem(council_api.post("/purchase-orders", json=[1, 2]), 422)
    ends_before = _body(starts_on="2027-06-01", ends_on="2027-05-01")
    assert_problem(council_api.post("/purchase-orders", json=ends_before), 422)
    foreign = _body(lines=[{"product": "cad-suite", "seats": 1, "unit_cost": 1}] * 2)
    assert (
        "lines.1.product"
        in assert_problem(council_api.post("/purchase-orders", json=foreign), 422)["errors"]
    )
    for path in ("/purchase-orders/999999", f"/purchase-orders/{2**63}", "/purchase-orders/abc"):
        assert council_api.get(path).status_code == 404
    assert_problem(council_api.post("/purchase-orders/999999/send"), 404)
    assert_problem(council_api.get("/purchase-orders?state=lost"), 422)
    assert_problem(council_api.get("/purchase-orders?cursor=%00"), 422)
    assert count(app, PurchaseOrder) == 0


def test_organisation_and_vendor_tokens_are_refused(app, supplier, make_org):
    from portal.api.services import token_create
    from portal.catalogue.models import Vendor
    from portal.db import db
    from portal.tenancy.models import Organisation
    from tests.api.conftest import ApiClient
    from tests.conftest import SYSTEM

    org = make_org("acme")
    with app.app_context():
        _, org_token = token_create(
            db.session,
            actor=SYSTEM,
            scope="organisation",
            name="o",
            organisation=db.session.get(Organisation, org.id),
        )
        _, vendor_token = token_create(
            db.session,
            actor=SYSTEM,
            scope="vendor",
            name="v",
            vendor=db.session.get(Vendor, supplier["vendor_id"]),
        )
        db.session.commit()
    for token in (org_token, vendor_token):
        client = ApiClient(app.test_client(), token)
        assert_problem(client.get("/purchase-orders"), 403)
        assert_problem(client.post("/purchase-orders", json=_body()), 403)
    assert count(app, PurchaseOrder) == 0


def test_the_openapi_document_has_the_operations(client):
    doc = client.get("/api/v1/openapi.json").get_json()
    paths = doc["paths"]
    assert {"get", "post"} <= set(paths["/api/v1/purchase-orders"])
    for move in ("approve", "send", "confirm", "receive", "cancel", "vendor-invoices"):
        assert "post" in paths[f"/api/v1/purchase-orders/{{id}}/{move}"]


def test_person_helper_is_the_page_s_actor(make_user):
    # the fixture-made actors are people with the user's role (what a page builds)
    user = make_user("finance", second_factor=False)
    assert person(user).role == "finance"
