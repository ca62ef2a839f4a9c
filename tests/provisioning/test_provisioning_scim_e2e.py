"""Provisioning over SCIM end to end (issue 17): a change in the portal → the outbox row in
its transaction → the delivery job → the SCIM client → a real SCIM 2.0 server.

The vendor's application is ``scim2-server`` (python-scim) on 127.0.0.1
(tests/provisioning/scim_vendor_server.py); the member's own identity provider is this
test speaking SCIM to the portal's ``/scim/v2`` with an organisation's SCIM token. Jobs run
as their transaction commits (``jobs_inline``); "later" is the frozen clock advanced and
the workers' one-minute sweep run.
"""

from __future__ import annotations

import datetime as dt

import sqlalchemy as sa

from portal.db import db
from tests.conftest import SYSTEM
from tests.provisioning import scim_world as world
from tests.provisioning.scim_vendor_server import VendorServer

vendor_server = world.vendor_server
scim_world = world.scim_world
SCIM_JSON = world.SCIM_JSON


def test_assign_and_release_show_at_the_vendor(app, scim_world, vendor_server, jobs_inline):
    with app.app_context():
        world.member(app, scim_world, "dana@scim-buyer.example")
        world.assign(scim_world, "dana@scim-buyer.example")
        held = vendor_server.user("dana@scim-buyer.example")
        assert held is not None and held["active"] is True
        assert held["name"]["formatted"] == "Dana"

        world.release(scim_world, "dana@scim-buyer.example")
        assert vendor_server.user("dana@scim-buyer.example")["active"] is False

        world.assign(scim_world, "dana@scim-buyer.example")  # back: the same record, active
        users = vendor_server.users()
        assert len(users) == 1 and users[0]["active"] is True

        rows = world.deliveries()
        assert [r.event for r in rows] == ["seat.assigned", "seat.released", "seat.assigned"]
        assert {r.state for r in rows} == {"delivered"}


def test_the_members_idp_deactivating_someone_deactivates_them_at_the_vendor(
    app, client, scim_world, vendor_server, jobs_inline
):
    """The member company's IdP speaks SCIM to the portal: a user, a group mapped to the
    product (their seat), then ``active: false`` → inactive at the vendor."""
    from portal.catalogue.models import Product
    from portal.scim.models import ScimGroup
    from portal.scim.services import mapping_create, token_create
    from portal.sso.services import domain_claim, domain_verify
    from portal.tenancy.models import Organisation

    with app.app_context():
        organisation = db.session.get(Organisation, scim_world.org.id)
        claim = domain_claim(
            db.session, actor=SYSTEM, organisation=organisation, domain="scim-buyer.example"
        )
        domain_verify(db.session, actor=SYSTEM, claim=claim)
        _, token = token_create(db.session, actor=SYSTEM, organisation=organisation, name="IdP")
        db.session.commit()
    idp = {"Authorization": f"Bearer {token}", "Content-Type": SCIM_JSON}

    made = client.post(
        "/scim/v2/Users",
        headers=idp,
        json={
            "schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"],
            "userName": "erin@scim-buyer.example",
            "name": {"givenName": "Erin", "familyName": "Olsen"},
            "emails": [{"value": "erin@scim-buyer.example", "primary": True}],
            "active": True,
        },
    )
    assert made.status_code == 201, made.get_data(as_text=True)
    group = client.post(
        "/scim/v2/Groups",
        headers=idp,
        json={
            "schemas": ["urn:ietf:params:scim:schemas:core:2.0:Group"],
            "displayName": "App users",
            "members": [{"value": made.json["id"]}],
        },
    )
    assert group.status_code == 201, group.get_data(as_text=True)
    with app.app_context():
        mapping_create(
            db.session,
            actor=world.admin(scim_world),
            organisation=db.session.get(Organisation, scim_world.org.id),
            group=db.session.get(ScimGroup, int(group.json["id"])),
            product=db.session.get(Product, scim_world.product_id),
        )
        db.session.commit()
    held = vendor_server.user("erin@scim-buyer.example")
    assert held is not None and held["active"] is True

    gone = client.patch(
        f"/scim/v2/Users/{made.json['id']}",
        headers=idp,
        json={
            "schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"],
            "Operations": [{"op": "replace", "path": "active", "value": False}],
        },
    )
    assert gone.status_code == 200, gone.get_data(as_text=True)
    assert vendor_server.user("erin@scim-buyer.example")["active"] is False
    with app.app_context():
        events = [r.event for r in world.deliveries()]
        assert events[0] == "seat.assigned" and "user.deactivated" in events
        assert {r.state for r in world.deliveries()} == {"delivered"}


def test_delete_on_release_removes_the_person(app, scim_world, vendor_server, jobs_inline):
    from portal.catalogue.models import Vendor
    from portal.provisioning import services

    with app.app_context():
        services.settings_update(
            db.session,
            actor=SYSTEM,
            vendor=db.session.get(Vendor, scim_world.vendor_id),
            data={"on_release": "delete"},
        )
        db.session.commit()
        world.member(app, scim_world, "finn@scim-buyer.example")
        world.assign(scim_world, "finn@scim-buyer.example")
        assert vendor_server.user("finn@scim-buyer.example")["active"] is True
        world.release(scim_world, "finn@scim-buyer.example")
        assert vendor_server.users() == []


def test_a_vendor_down_for_a_while_gets_everything_in_order_once_back(
    app, scim_world, vendor_server: VendorServer, jobs_inline, clock
):
    clock.freeze(clock.now)
    vendor_server.down()
    with app.app_context():
        world.member(app, scim_world, "gil@scim-buyer.example")
        world.member(app, scim_world, "hana@scim-buyer.example")
        world.assign(scim_world, "gil@scim-buyer.example")
        world.assign(scim_world, "hana@scim-buyer.example")
        world.release(scim_world, "gil@scim-buyer.example")
        rows = world.deliveries()
        assert [r.event for r in rows] == ["seat.assigned", "seat.assigned", "seat.released"]
        assert {r.state for r in rows} == {"pending"}
        # Gil's release waits behind Gil's assignment, which failed (connection refused).
        gil_assigned, _, gil_released = rows
        assert gil_assigned.attempts >= 1 and gil_released.attempts == 0
        assert gil_assigned.last_error

        for _ in range(4):  # two hours away: retried with growing waits
            clock.advance(dt.timedelta(minutes=30))
            world.run_due(app)
        assert {r.state for r in world.deliveries()} == {"pending"}

        vendor_server.up()
        clock.advance(dt.timedelta(hours=1, minutes=1))
        world.run_due(app)
        assert {r.state for r in world.deliveries()} == {"delivered"}

    assert vendor_server.user("hana@scim-buyer.example")["active"] is True
    # Gil was created, then deactivated: the release did not overtake the assignment.
    assert vendor_server.user("gil@scim-buyer.example")["active"] is False
    gil_writes = [
        (method, path.split("?")[0])
        for method, path in vendor_server.requests
        if method in ("POST", "PATCH")
    ]
    assert gil_writes.count(("POST", "/v2/Users")) == 2  # Gil and Hana, once each
    assert gil_writes[-1][0] == "PATCH"  # the deactivation came last


def test_a_busy_vendor_is_retried_and_the_attempts_are_recorded(
    app, scim_world, vendor_server, jobs_inline, clock
):
    from portal.provisioning.models import DeliveryAttempt

    clock.freeze(clock.now)
    vendor_server.fail_next(2, 503, Retry_After="1")
    with app.app_context():
        world.member(app, scim_world, "ivo@scim-buyer.example")
        world.assign(scim_world, "ivo@scim-buyer.example")
        (row,) = world.deliveries()
        assert row.state == "pending" and row.last_status == 503
        for _ in range(3):
            clock.advance(dt.timedelta(minutes=10))
            world.run_due(app)
        (row,) = world.deliveries()
        assert row.state == "delivered"
        attempts = db.session.scalars(
            sa.select(DeliveryAttempt)
            .where(DeliveryAttempt.delivery_id == row.id)
            .order_by(DeliveryAttempt.id)
        ).all()
        assert [a.status for a in attempts] == [503, 503, 201]
        assert vendor_server.token not in "".join(a.request + a.response for a in attempts)
    assert vendor_server.user("ivo@scim-buyer.example")["active"] is True


def test_a_vendor_refusing_fails_the_delivery_and_the_next_goes_ahead(
    app, scim_world, vendor_server, jobs_inline
):
    vendor_server.fail_next(1, 400)
    with app.app_context():
        world.member(app, scim_world, "jo@scim-buyer.example")
        world.assign(scim_world, "jo@scim-buyer.example")
        (row,) = world.deliveries()
        assert row.state == "failed" and row.last_status == 400
        world.release(scim_world, "jo@scim-buyer.example")
        assert [r.state for r in world.deliveries()] == ["failed", "delivered"]


def test_a_worker_killed_after_the_vendor_answered_delivers_once_at_the_vendor(
    app, scim_world, vendor_server, jobs_inline, monkeypatch
):
    """The worker dies between the vendor's answer and recording it (simulated as in
    test_webhooks.py: recording the attempt raises, as a killed process stops there). The
    job's message comes again and the delivery goes out again: the person the first try
    created is found, not created twice."""
    from portal.provisioning import delivery as engine

    real_record = engine.record
    killed: list[int] = []

    def die_before_recording(session, delivery, settings, outcome, **kwargs):
        if delivery.event == "seat.assigned" and not killed:
            killed.append(delivery.id)
            raise RuntimeError("worker killed after the request went out")
        return real_record(session, delivery, settings, outcome, **kwargs)

    monkeypatch.setattr(engine, "record", die_before_recording)
    with app.app_context():
        world.member(app, scim_world, "kai@scim-buyer.example")
        world.assign(scim_world, "kai@scim-buyer.example")
        assert killed
        (row,) = world.deliveries()
        assert row.state == "delivered" and row.attempts == 1
    posts = [r for r in vendor_server.requests if r[0] == "POST"]
    assert len(posts) == 1  # created once; the second try found the person
    users = vendor_server.users()
    assert len(users) == 1 and users[0]["active"] is True
