"""``/api/v1/vendors``: the directory for any token, service status and incidents for a
council token or the vendor's own (issue 15, SPEC 8.2)."""

from __future__ import annotations

import datetime as dt

import pytest

from portal import signals
from portal.catalogue.models import Vendor
from portal.db import db
from portal.suppliers.models import Incident, VendorStatusInterval
from tests.api.conftest import assert_problem
from tests.suppliers.test_supplier_status import received
from tests.support import count, db_rows


def put(client, path: str, json, headers=None):
    return client.client.put("/api/v1" + path, json=json, headers=client._headers(headers))


@pytest.fixture
def vendors(make_vendor):
    return make_vendor("mail-co"), make_vendor("bi-works")


def test_any_token_reads_the_directory_and_a_vendor(app, api, vendors, make_org, clock):
    clock.freeze("2027-02-01T12:00Z")
    mail, bi = vendors
    with app.app_context():
        vendor = db.session.get(Vendor, mail.id)
        vendor.country, vendor.legal_name = "DE", "Mail Co GmbH"
        db.session.commit()
    org = make_org()
    for client in (api("council"), api("organisation", org=org), api("vendor", vendor=bi)):
        listed = client.get("/vendors")
        assert listed.status_code == 200, listed.get_data(as_text=True)
        assert [v["slug"] for v in listed.get_json()["data"]] == ["mail-co", "bi-works"]
        one = client.get("/vendors/mail-co")
        assert one.status_code == 200
        body = one.get_json()
        assert (body["legal_name"], body["country"], body["service_status"]) == (
            "Mail Co GmbH",
            "DE",
            "operational",
        )
        assert body["uptime_30d"] is None or body["uptime_30d"] == "100.00"
        assert body["open_incidents"] == [] and body["status_stale"] is False
    client = api("council")
    assert [v["slug"] for v in client.get("/vendors?country=de").get_json()["data"]] == ["mail-co"]
    assert client.get("/vendors?service_status=major_outage").get_json()["data"] == []
    first = client.get("/vendors?limit=1").get_json()
    second = client.get(f"/vendors?limit=1&cursor={first['next_cursor']}").get_json()
    assert [v["slug"] for v in first["data"] + second["data"]] == ["mail-co", "bi-works"]
    assert_problem(client.get("/vendors/nobody-here"), 404)
    assert_problem(client.get("/vendors?service_status=down"), 422)
    assert_problem(client.get("/vendors?country=DEU"), 422)
    assert_problem(api(None).get("/vendors"), 401)


def test_a_vendor_token_sets_its_own_status_and_another_vendors_is_404(
    app, api, vendors, make_org, clock
):
    clock.freeze("2027-02-01T12:00Z")
    mail, bi = vendors
    own = api("vendor", vendor=mail)
    with received(signals.vendor_service_status_changed) as sent:
        answer = put(
            own,
            "/vendors/mail-co/service-status",
            {"service_status": "degraded", "message": "Slow sending"},
        )
        assert answer.status_code == 200, answer.get_data(as_text=True)
        assert answer.get_json()["changed"] is True
        assert answer.get_json()["service_status_source"] == "vendor"
        again = put(
            own,
            "/vendors/mail-co/service-status",
            {"service_status": "degraded", "message": "Slow sending"},
        )
        assert again.get_json()["changed"] is False
    assert len(sent) == 1
    before = db_rows(app)
    # Another vendor's token: not found; an organisation token: not allowed at all.
    assert_problem(
        put(
            api("vendor", vendor=bi),
            "/vendors/mail-co/service-status",
            {"service_status": "major_outage"},
        ),
        404,
    )
    assert_problem(
        put(
            api("organisation", org=make_org()),
            "/vendors/mail-co/service-status",
            {"service_status": "major_outage"},
        ),
        403,
    )
    assert_problem(
        api("vendor", vendor=bi).post(
            "/vendors/mail-co/incidents", {"title": "t", "impact": "minor", "body": "b"}
        ),
        404,
    )
    after = db_rows(app)
    assert {
        k: v
        for k, v in after.items()
        if k not in ("api_tokens", "organisations", "users", "audit_events", "audit_chain_head")
    } == {
        k: v
        for k, v in before.items()
        if k not in ("api_tokens", "organisations", "users", "audit_events", "audit_chain_head")
    }
    council = api("council")
    answer = put(council, "/vendors/bi-works/service-status", {"service_status": "maintenance"})
    assert answer.get_json()["service_status_source"] == "council"
    assert count(app, VendorStatusInterval) == 4  # two per vendor: before and now


@pytest.mark.parametrize(
    "body",
    [
        {},
        {"service_status": "down"},
        {"service_status": None},
        {"service_status": "degraded", "message": "x" * 501},
        {"service_status": "degraded", "extra": 1},
        ["degraded"],
        "degraded",
    ],
)
def test_bad_status_bodies_are_422_and_change_nothing(app, api, vendors, body):
    mail, _ = vendors
    before = db_rows(app)
    client = api("vendor", vendor=mail)
    after_token = db_rows(app)
    assert_problem(put(client, "/vendors/mail-co/service-status", body), 422)
    assert db_rows(app)["vendors"] == after_token["vendors"] == before["vendors"]
    assert count(app, VendorStatusInterval) == 0


def test_incidents_open_update_resolve_through_the_api(app, api, vendors, clock):
    clock.freeze("2027-02-01T12:00Z")
    mail, bi = vendors
    own = api("vendor", vendor=mail)
    with received(signals.vendor_incident_changed) as sent:
        opened = own.post(
            "/vendors/mail-co/incidents",
            {"title": "Sending delayed", "impact": "minor", "body": "Queue backlog."},
        )
        assert opened.status_code == 201, opened.get_data(as_text=True)
        incident = opened.get_json()
        assert (incident["state"], incident["source"], len(incident["updates"])) == (
            "investigating",
            "vendor",
            1,
        )
        path = f"/vendors/mail-co/incidents/{incident['id']}/updates"
        listed = own.get("/vendors?search=mail").get_json()["data"]
        assert [(i["id"], i["state"]) for i in listed[0]["open_incidents"]] == [
            (incident["id"], "investigating")
        ]
        clock.advance(dt.timedelta(minutes=5))
        updated = own.post(path, {"body": "Worse.", "impact": "major"})
        assert updated.status_code == 201
        assert updated.get_json()["impact"] == "major"
        clock.advance(dt.timedelta(minutes=5))
        resolved = api("council").post(path, {"body": "Done.", "state": "resolved"})
        assert resolved.get_json()["state"] == "resolved"
        assert [u["author"] for u in resolved.get_json()["updates"]] == [
            "The council",
            "Vendor mail-co",
            "Vendor mail-co",
        ]
    assert [s["change"] for s in sent] == ["opened", "impact_changed", "resolved"]
    assert own.get("/vendors").get_json()["data"][0]["open_incidents"] == []
    assert_problem(own.post(path, {"body": "Again"}), 409, "incident_resolved")
    # Another vendor's path to the same incident, an unknown id, bad bodies.
    assert_problem(
        api("council").post(f"/vendors/bi-works/incidents/{incident['id']}/updates", {"body": "x"}),
        404,
    )
    assert_problem(own.post("/vendors/mail-co/incidents/999999/updates", {"body": "x"}), 404)
    for bad in (
        {"title": "", "impact": "minor", "body": "b"},
        {"title": "t", "impact": "huge", "body": "b"},
        {"title": "t", "impact": "minor"},
        {"title": "t" * 201, "impact": "minor", "body": "b"},
        {"title": "t\x00", "impact": "minor", "body": "b"},
    ):
        response = own.post("/vendors/mail-co/incidents", bad)
        assert response.status_code in (400, 422), (bad, response.status_code)
        assert response.mimetype == "application/problem+json"
    assert count(app, Incident) == 1
    detail = api("council").get("/vendors/mail-co").get_json()
    assert detail["open_incidents"] == []


def test_the_openapi_document_describes_the_supplier_routes(client):
    document = client.get("/api/v1/openapi.json")
    paths = document.get_json()["paths"]
    assert "/api/v1/vendors/{slug}/service-status" in paths
    assert "put" in paths["/api/v1/vendors/{slug}/service-status"]
    assert "/api/v1/vendors/{slug}/incidents/{id}/updates" in paths
    assert paths["/api/v1/vendors"]["get"]["x-token-scopes"] == [
        "council",
        "organisation",
        "vendor",
    ]


def _statements(app, call) -> int:
    import sqlalchemy as sa

    seen = []

    def count_one(*args, **kwargs):
        seen.append(1)

    with app.app_context():
        engine = db.engine
    sa.event.listen(engine, "before_cursor_execute", count_one)
    try:
        response = call()
    finally:
        sa.event.remove(engine, "before_cursor_execute", count_one)
    assert response.status_code == 200, response.get_data(as_text=True)
    return len(seen)


def test_the_list_and_the_feeds_read_the_same_statements_for_more_vendors(
    app, api, make_product, make_org, clock
):
    """No N+1: 2 vendors or 6, each with a product, history and an incident of two updates."""
    from portal.suppliers import services
    from tests.conftest import SYSTEM
    from tests.support import client_for

    clock.freeze("2027-02-01T12:00Z")
    client = api("council")
    reader = client_for(app, "member", make_org())

    def grow(upto: int) -> None:
        for n in range(upto):
            slug = f"vendor-{n}"
            with app.app_context():
                if db.session.query(Vendor).filter_by(slug=slug).first() is not None:
                    continue
            make_product(sku=f"prod-{n}", vendor=slug)
            with app.app_context():
                vendor = db.session.query(Vendor).filter_by(slug=slug).one()
                services.set_service_status(db.session, SYSTEM, vendor, "degraded")
                incident = services.open_incident(
                    db.session, SYSTEM, vendor, title="Slow", impact="minor", body="b"
                )
                services.add_incident_update(db.session, SYSTEM, incident, body="still")
                db.session.commit()

    counts = []
    client.get("/vendors")  # the token's first use is noted (a write): not counted
    for size in (2, 6):
        grow(size)
        counts.append(
            (
                _statements(app, lambda: client.get("/vendors")),
                _statements(app, lambda: client.get("/vendors/vendor-1")),
                _statements(app, lambda: reader.get("/feeds/suppliers.json")),
                _statements(app, lambda: reader.get("/feeds/suppliers.atom")),
            )
        )
    assert counts[0] == counts[1], counts
