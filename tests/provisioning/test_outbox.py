"""The outbox: which changes write deliveries, for which vendors and channels, in the
change's own transaction (jobs are not run here: rows stay pending)."""

from __future__ import annotations

import sqlalchemy as sa

from portal.db import db
from portal.provisioning.models import Delivery
from tests.conftest import SYSTEM
from tests.provisioning.test_webhooks import _admin, _assign, _subscription


def _rows(**where):
    query = sa.select(Delivery).order_by(Delivery.id)
    for key, value in where.items():
        query = query.where(getattr(Delivery, key) == value)
    return db.session.scalars(query).all()


def _configure_scim(vendor_slug="hooked"):
    from portal.catalogue.models import Vendor
    from portal.provisioning import services

    vendor = db.session.query(Vendor).filter_by(slug=vendor_slug).one()
    services.settings_update(
        db.session,
        actor=SYSTEM,
        vendor=vendor,
        data={"scim_base_url": "http://127.0.0.1:9/scim/v2", "scim_token": "t"},
    )
    db.session.commit()


def test_nothing_is_written_for_a_vendor_without_provisioning(
    app, make_org, make_user, make_product
):
    from portal.catalogue.models import Product
    from portal.identity.models import User
    from portal.kernel.actor import Actor
    from portal.seats.services import seat_assign, subscription_create
    from portal.tenancy.models import Organisation

    org = make_org("plain")
    admin = make_user("org_admin", org)
    product = make_product(sku="plain-app", vendor="plain")
    with app.app_context():
        outcome = subscription_create(
            db.session,
            actor=SYSTEM,
            organisation=db.session.get(Organisation, org.id),
            product=db.session.get(Product, product.id),
            quantity=2,
        )
        seat_assign(
            db.session,
            actor=Actor.person(db.session.get(User, admin.id)),
            subscription=outcome.subscription,
            user_email="x@plain.example",
        )
        db.session.commit()
        assert _rows() == []


def test_each_configured_channel_gets_its_events(app, world):
    with app.app_context():
        _configure_scim()
        _assign(world, "amy@buyer.example")
        assigned = _rows(event="seat.assigned")
        assert sorted(r.channel for r in assigned) == ["scim", "webhook"]
        assert {r.sequence_key for r in assigned} == {f"user:{assigned[0].user_id}"}
        assert all(r.organisation_id == world.org_id and r.state == "pending" for r in assigned)
        assert len({r.message_id for r in assigned}) == 2
        # a subscription change is for webhooks only
        assert {r.channel for r in _rows(event="subscription.changed")} == {"webhook"}


def test_a_profile_change_is_a_scim_update_for_vendors_holding_the_person(app, world):
    from portal.identity.accounts import profile_update
    from portal.identity.models import User
    from portal.kernel.actor import Actor

    with app.app_context():
        seat = _assign(world, "ben@buyer.example")
        user = db.session.get(User, seat.user_id)
        profile_update(db.session, actor=Actor.person(user), user=user, name="Ben Newname")
        db.session.commit()
        assert _rows(event="user.updated") == []  # no SCIM configured yet: nothing to PATCH
        _configure_scim()
        user = db.session.get(User, seat.user_id)
        profile_update(db.session, actor=Actor.person(user), user=user, name="Ben Other")
        db.session.commit()
        updated = _rows(event="user.updated")
        assert [r.channel for r in updated] == ["scim"]
        assert updated[0].payload["data"]["person"]["name"] == "Ben Other"
        assert updated[0].payload["data"]["fields"] == ["name"]


def test_cancelling_a_subscription_releases_each_seat_at_the_vendor(app, world):
    from portal.seats.services import subscription_cancel

    with app.app_context():
        _assign(world, "cat@buyer.example")
        _assign(world, "dan@buyer.example")
        subscription_cancel(db.session, actor=_admin(world), subscription=_subscription(world))
        db.session.commit()
        released = _rows(event="seat.released")
        assert sorted(r.person_email for r in released) == [
            "cat@buyer.example",
            "dan@buyer.example",
        ]
        assert all(r.payload["data"]["seat"]["reason"] == "cancelled" for r in released)
        changes = [r.payload["data"]["change"] for r in _rows(event="subscription.changed")]
        assert changes == ["opened", "cancelled"]


def test_bulk_assignment_writes_rows_only_for_the_seats_given(app, world):
    from portal.seats.services import seat_assign_many

    with app.app_context():
        results = seat_assign_many(
            db.session,
            actor=_admin(world),
            subscription=_subscription(world),
            emails=["e1@buyer.example", "not an email", "e2@buyer.example"],
        )
        db.session.commit()
        assert [r.ok for r in results] == [True, False, True]
        assert sorted(r.person_email for r in _rows(event="seat.assigned")) == [
            "e1@buyer.example",
            "e2@buyer.example",
        ]


def test_a_resize_and_a_waitlist_grant_tell_the_vendor(app, world):
    from portal.seats.services import subscription_resize

    with app.app_context():
        subscription_resize(
            db.session, actor=_admin(world), subscription=_subscription(world), quantity=7
        )
        db.session.commit()
        changes = [r.payload["data"] for r in _rows(event="subscription.changed")]
        assert [c["change"] for c in changes] == ["opened", "resized"]
        assert changes[-1]["subscription"]["quantity"] == 7
