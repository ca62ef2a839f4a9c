"""The suppliers' incident feeds (issue 15): JSON Feed and Atom, per vendor and for all,
for signed-in people and API tokens only."""

from __future__ import annotations

import datetime as dt
import xml.etree.ElementTree as ET

import pytest

from portal.api.services import token_create
from portal.catalogue.models import Vendor
from portal.catalogue.services import vendor_create
from portal.db import db
from portal.suppliers import services
from tests.conftest import SYSTEM
from tests.support import client_for

ATOM = "{http://www.w3.org/2005/Atom}"
T0 = dt.datetime(2027, 4, 1, 8, tzinfo=dt.UTC)


@pytest.fixture
def incidents(app, clock):
    clock.freeze(T0)
    with app.app_context():
        mail = vendor_create(db.session, actor=SYSTEM, data={"slug": "mail-co", "name": "Mail Co"})
        bi = vendor_create(db.session, actor=SYSTEM, data={"slug": "bi-works", "name": "BI Works"})
        services.set_service_status(db.session, SYSTEM, mail, "major_outage", "Down")
        first = services.open_incident(
            db.session,
            SYSTEM,
            mail,
            title="Sending <fails> & \x0bbounces",
            impact="critical",
            body="Looking into it.",
        )
        clock.advance(dt.timedelta(minutes=30))
        services.add_incident_update(db.session, SYSTEM, first, body="Fixed.", state="resolved")
        services.open_incident(
            db.session, SYSTEM, bi, title="Reports slow", impact="minor", body="Slow."
        )
        # Resolved long ago: not in the feed.
        old = services.open_incident(
            db.session, SYSTEM, bi, title="Ancient", impact="minor", body="Old."
        )
        old.opened_at = old.updated_at = T0 - dt.timedelta(days=200)
        services.add_incident_update(db.session, SYSTEM, old, body="Done.", state="resolved")
        old.resolved_at = old.updated_at = T0 - dt.timedelta(days=199)
        for update in old.updates:
            update.created_at = T0 - dt.timedelta(days=199)
        db.session.commit()


def test_json_feeds_for_all_and_for_one_vendor(app, incidents, make_org):
    client = client_for(app, "member", make_org())
    answer = client.get("/feeds/suppliers.json")
    assert answer.status_code == 200
    assert answer.mimetype == "application/feed+json"
    feed = answer.get_json()
    assert feed["version"] == "https://jsonfeed.org/version/1.1"
    assert [i["_incident"]["title"] for i in feed["items"]] == [
        "Reports slow",
        "Sending <fails> & \x0bbounces",
    ]
    resolved = feed["items"][1]["_incident"]
    assert (resolved["state"], resolved["impact"], resolved["vendor"]) == (
        "resolved",
        "critical",
        "mail-co",
    )
    assert [u["state"] for u in resolved["updates"]] == ["resolved", "investigating"]
    assert {v["slug"]: v["service_status"] for v in feed["_vendors"]} == {
        "bi-works": "operational",
        "mail-co": "major_outage",
    }
    one = client.get("/feeds/suppliers/bi-works.json").get_json()
    assert [i["_incident"]["title"] for i in one["items"]] == ["Reports slow"]
    assert client.get("/feeds/suppliers/nobody.json").status_code == 404


def test_atom_feeds_are_well_formed_and_escaped(app, incidents, make_org):
    client = client_for(app, "org_admin", make_org())
    answer = client.get("/feeds/suppliers.atom")
    assert answer.status_code == 200
    assert answer.mimetype == "application/atom+xml"
    root = ET.fromstring(answer.data)  # noqa: S314 (the portal's own feed) parses: well-formed
    assert root.tag == f"{ATOM}feed"
    entries = root.findall(f"{ATOM}entry")
    titles = [e.find(f"{ATOM}title").text for e in entries]
    assert titles[1] == "Mail Co: Sending <fails> & bounces (resolved)"  # \x0b dropped
    assert b"&lt;fails&gt; &amp; bounces" in answer.data
    terms = {c.get("term") for c in entries[1].findall(f"{ATOM}category")}
    assert {"impact:critical", "state:resolved", "vendor:mail-co"} <= terms
    one = ET.fromstring(client.get("/feeds/suppliers/mail-co.atom").data)  # noqa: S314
    assert len(one.findall(f"{ATOM}entry")) == 1


def test_feeds_need_a_person_or_a_token(app, incidents):
    anonymous = app.test_client()
    answer = anonymous.get("/feeds/suppliers.json")
    assert answer.status_code == 302 and "/login" in answer.headers["Location"]
    bad = anonymous.get("/feeds/suppliers.atom", headers={"Authorization": "Bearer pk_c_nonsense"})
    assert bad.status_code == 401
    with app.app_context():
        vendor = db.session.query(Vendor).filter_by(slug="bi-works").one()
        _, plaintext = token_create(
            db.session, actor=SYSTEM, scope="vendor", vendor=vendor, name="feed reader"
        )
        db.session.commit()
    good = anonymous.get(
        "/feeds/suppliers/mail-co.json", headers={"Authorization": f"Bearer {plaintext}"}
    )
    assert good.status_code == 200
    assert good.get_json()["items"][0]["_incident"]["vendor"] == "mail-co"
