"""The SCIM transport (portal.provisioning.scim_client) against a real SCIM 2.0 server.

The vendor is ``scim2-server`` (python-scim) on 127.0.0.1 (tests/provisioning/
scim_vendor_server.py). Each delivery is carried out as the delivery engine calls it,
``deliver(session, settings, delivery)``, given the settings and a delivery row's fields;
the outbox and engine around it are proved in test_provisioning_scim_e2e.py.
"""

from __future__ import annotations

import datetime as dt
from types import SimpleNamespace
from typing import Any

import pytest

from portal.db import db
from portal.provisioning.scim_client import (
    Directory,
    Person,
    deliver,
    quoted,
    retry_after,
)
from portal.provisioning.scim_client import test_connection as check_connection
from tests.conftest import SYSTEM
from tests.provisioning.scim_vendor_server import VendorServer, start

VENDOR = "scim-vendor"


@pytest.fixture
def vendor_server():
    server = start()
    try:
        yield server
    finally:
        server.stop()


def settings_for(app, server: VendorServer, **overrides: Any) -> SimpleNamespace:
    from portal.catalogue.models import Vendor

    with app.app_context():
        import sqlalchemy as sa

        vendor_id = db.session.scalar(sa.select(Vendor.id).where(Vendor.slug == VENDOR))
    values = {
        "vendor_id": vendor_id,
        "scim_base_url": server.base_url,
        "group_push": False,
        "on_release": "deactivate",
        "token": server.token,
    }
    values.update(overrides)
    token = values.pop("token")
    return SimpleNamespace(scim_token=lambda: token, **values)


@pytest.fixture
def world(app, make_org, make_product, make_user):
    """An organisation with two subscriptions of one vendor's products and a member."""
    from portal.catalogue.models import Product
    from portal.seats.subscriptions import subscription_create
    from portal.tenancy.models import Organisation

    org = make_org()
    first = make_product(5, sku="scim-first", vendor=VENDOR)
    second = make_product(5, sku="scim-second", vendor=VENDOR)
    member = make_user("member", org, email="ann.lee@scim-org.example")
    subscriptions = {}
    with app.app_context():
        for ref in (first, second):
            outcome = subscription_create(
                db.session,
                actor=SYSTEM,
                organisation=db.session.get(Organisation, org.id),
                product=db.session.get(Product, ref.id),
                quantity=2,
            )
            subscriptions[ref.sku] = outcome.subscription.id
        db.session.commit()
    return SimpleNamespace(org=org, first=first, second=second, member=member, subs=subscriptions)


def assign(app, world, sku: str, email: str | None = None) -> None:
    from portal.seats.assignments import seat_assign
    from portal.seats.models import Subscription

    with app.app_context():
        seat_assign(
            db.session,
            actor=SYSTEM,
            subscription=db.session.get(Subscription, world.subs[sku]),
            user_email=email or world.member.email,
        )
        db.session.commit()


def release(app, world, sku: str, email: str | None = None) -> None:
    from portal.seats.assignments import seat_release
    from portal.seats.models import Subscription

    with app.app_context():
        seat_release(
            db.session,
            actor=SYSTEM,
            subscription=db.session.get(Subscription, world.subs[sku]),
            user_email=email or world.member.email,
        )
        db.session.commit()


def run(app, settings, event: str, user_id: int | None, product_id: int | None = None, **payload):
    delivery = SimpleNamespace(
        event=event, user_id=user_id, product_id=product_id, payload={"data": payload}
    )
    with app.app_context():
        outcome = deliver(db.session, settings, delivery)
        db.session.rollback()
    return outcome


# ------------------------------------------------------------------ people


def test_an_assignment_creates_the_person_active_once(app, world, vendor_server):
    settings = settings_for(app, vendor_server)
    assign(app, world, "scim-first")

    outcome = run(app, settings, "seat.assigned", world.member.id, world.first.id)
    assert outcome.delivered, outcome
    assert outcome.status == 201
    assert "POST" in outcome.request and "/Users" in outcome.request
    assert vendor_server.token not in outcome.request  # the token never reaches the log
    held = vendor_server.user(world.member.email)
    assert held["active"] is True
    assert held["externalId"] == str(world.member.id)
    assert held["emails"][0]["value"] == world.member.email
    assert held["name"]["formatted"].startswith("Person ")

    again = run(app, settings, "seat.assigned", world.member.id, world.first.id)
    assert again.delivered
    assert len(vendor_server.users()) == 1  # found by its userName: not created twice


def test_a_person_the_vendor_holds_inactive_is_activated_not_duplicated(app, world, vendor_server):
    vendor_server.add_user(world.member.email.upper(), active=False)  # userName: any case
    assign(app, world, "scim-first")

    outcome = run(
        app,
        vendor_server_settings := settings_for(app, vendor_server),
        "seat.assigned",
        world.member.id,
        world.first.id,
    )
    assert outcome.delivered, outcome
    assert vendor_server_settings.scim_base_url == vendor_server.base_url
    users = vendor_server.users()
    assert len(users) == 1 and users[0]["active"] is True


def test_releasing_the_last_seat_of_the_vendor_deactivates_only_then(app, world, vendor_server):
    settings = settings_for(app, vendor_server)
    assign(app, world, "scim-first")
    assign(app, world, "scim-second")
    run(app, settings, "seat.assigned", world.member.id, world.first.id)

    release(app, world, "scim-first")
    outcome = run(app, settings, "seat.released", world.member.id, world.first.id)
    assert outcome.delivered
    assert "kept active" in outcome.response
    assert vendor_server.user(world.member.email)["active"] is True

    release(app, world, "scim-second")
    outcome = run(app, settings, "seat.released", world.member.id, world.second.id)
    assert outcome.delivered
    assert vendor_server.user(world.member.email)["active"] is False


def test_on_release_delete_deletes_the_person(app, world, vendor_server):
    settings = settings_for(app, vendor_server, on_release="delete")
    assign(app, world, "scim-first")
    run(app, settings, "seat.assigned", world.member.id, world.first.id)
    release(app, world, "scim-first")

    outcome = run(app, settings, "seat.released", world.member.id, world.first.id)
    assert outcome.delivered and outcome.status == 204
    assert vendor_server.users() == []
    # Deleting someone the vendor no longer holds is done already.
    assert run(app, settings, "user.deactivated", world.member.id).delivered


def test_a_deactivated_person_is_deactivated_even_with_seats_left(app, world, vendor_server):
    from portal.identity.accounts import user_set_active
    from portal.identity.models import User

    settings = settings_for(app, vendor_server)
    assign(app, world, "scim-first")
    run(app, settings, "seat.assigned", world.member.id, world.first.id)
    with app.app_context():
        user_set_active(
            db.session, actor=SYSTEM, user=db.session.get(User, world.member.id), active=False
        )
        db.session.commit()

    assert run(app, settings, "user.deactivated", world.member.id).delivered
    assert vendor_server.user(world.member.email)["active"] is False
    # An assignment delivered late for a person deactivated since creates nobody again.
    outcome = run(app, settings, "seat.assigned", world.member.id, world.first.id)
    assert outcome.delivered and "no longer active" in outcome.response
    assert vendor_server.user(world.member.email)["active"] is False


def test_a_profile_change_is_patched_and_found_by_external_id(app, world, vendor_server):
    from portal.identity.models import User

    settings = settings_for(app, vendor_server)
    assign(app, world, "scim-first")
    run(app, settings, "seat.assigned", world.member.id, world.first.id)
    with app.app_context():
        user = db.session.get(User, world.member.id)
        user.email, user.name = "ann.smith@scim-org.example", "Ann Smith"
        user.given_name, user.family_name = "Ann", "Smith"
        db.session.commit()

    outcome = run(app, settings, "user.updated", world.member.id)
    assert outcome.delivered, outcome
    assert "PATCH" in outcome.request
    assert vendor_server.user(world.member.email) is None
    held = vendor_server.user("ann.smith@scim-org.example")
    assert held["externalId"] == str(world.member.id)
    assert held["name"]["formatted"] == "Ann Smith"
    assert held["name"]["familyName"] == "Smith"
    assert held["emails"][0]["value"] == "ann.smith@scim-org.example"
    assert len(vendor_server.users()) == 1


def test_a_profile_change_of_someone_the_vendor_does_not_hold_is_nothing(app, world, vendor_server):
    outcome = run(app, settings_for(app, vendor_server), "user.updated", world.member.id)
    assert outcome.delivered and "not held" in outcome.response
    assert vendor_server.users() == []


def test_group_push_keeps_a_group_per_product(app, world, vendor_server):
    settings = settings_for(app, vendor_server, group_push=True)
    assign(app, world, "scim-first")
    assign(app, world, "scim-second")
    run(app, settings, "seat.assigned", world.member.id, world.first.id)
    run(app, settings, "seat.assigned", world.member.id, world.second.id)
    run(app, settings, "seat.assigned", world.member.id, world.first.id)  # again: no-op

    held = vendor_server.user(world.member.email)
    groups = {g["externalId"]: g for g in vendor_server.groups()}
    assert set(groups) == {"scim-first", "scim-second"}
    assert groups["scim-first"]["displayName"] == "Product scim-first"
    assert [m["value"] for m in groups["scim-first"]["members"]] == [held["id"]]

    release(app, world, "scim-first")
    assert run(app, settings, "seat.released", world.member.id, world.first.id).delivered
    groups = {g["externalId"]: g for g in vendor_server.groups()}
    assert not groups["scim-first"].get("members")
    assert [m["value"] for m in groups["scim-second"]["members"]] == [held["id"]]
    assert vendor_server.user(world.member.email)["active"] is True


def test_subscription_changes_mean_nothing_over_scim(app, world, vendor_server):
    outcome = run(app, settings_for(app, vendor_server), "subscription.changed", None)
    assert outcome.delivered
    assert vendor_server.requests == []


# ------------------------------------------------------------------ outcomes


def test_a_busy_vendor_is_retried_after_what_it_asked(app, world, vendor_server):
    assign(app, world, "scim-first")
    settings = settings_for(app, vendor_server)

    vendor_server.fail_next(1, 503, Retry_After="7")
    outcome = run(app, settings, "seat.assigned", world.member.id, world.first.id)
    assert not outcome.delivered and outcome.retry
    assert (outcome.status, outcome.retry_after) == (503, 7)

    vendor_server.fail_next(1, 429, Retry_After="120")
    outcome = run(app, settings, "seat.assigned", world.member.id, world.first.id)
    assert not outcome.delivered and outcome.retry and outcome.retry_after == 120
    assert vendor_server.users() == []

    assert run(app, settings, "seat.assigned", world.member.id, world.first.id).delivered


def test_a_refusal_fails_at_once(app, world, vendor_server):
    assign(app, world, "scim-first")
    settings = settings_for(app, vendor_server)
    vendor_server.fail_next(1, 400)
    outcome = run(app, settings, "seat.assigned", world.member.id, world.first.id)
    assert not outcome.delivered and not outcome.retry
    assert outcome.status == 400 and outcome.error

    wrong = settings_for(app, vendor_server, token="not-the-token")
    outcome = run(app, wrong, "seat.assigned", world.member.id, world.first.id)
    assert not outcome.delivered and not outcome.retry and outcome.status == 401
    assert "not-the-token" not in outcome.request


def test_a_vendor_that_does_not_answer_is_retried(app, world, vendor_server):
    assign(app, world, "scim-first")
    settings = settings_for(app, vendor_server)
    vendor_server.down()
    outcome = run(app, settings, "seat.assigned", world.member.id, world.first.id)
    assert not outcome.delivered and outcome.retry
    assert outcome.status is None and outcome.error


def test_no_base_url_fails(app, world):
    settings = SimpleNamespace(
        vendor_id=1,
        scim_base_url=None,
        group_push=False,
        on_release="deactivate",
        scim_token=lambda: None,
    )
    outcome = run(app, settings, "seat.assigned", world.member.id)
    assert not outcome.delivered and not outcome.retry


def test_retry_after_reads_seconds_and_dates(clock):
    import email.utils

    clock.freeze(clock.now)
    moment = clock.now.replace(microsecond=0) + dt.timedelta(seconds=90)
    later = email.utils.format_datetime(moment, usegmt=True)
    assert retry_after({"Retry-After": "30"}) == 30
    assert 89 <= retry_after({"Retry-After": later}) <= 90
    assert retry_after({"Retry-After": "soon"}) is None
    assert retry_after({"Retry-After": "99999999"}) == 6 * 3600
    assert retry_after({}) is None


# ------------------------------------------------------------------ reads


def test_filters_quote_what_they_compare(vendor_server):
    tricky = 'o"brien\\x@vendor.example'
    assert quoted(tricky) == '"o\\"brien\\\\x@vendor.example"'
    made = vendor_server.add_user(tricky)
    vendor_server.add_user("obrien@vendor.example")
    with Directory(vendor_server.base_url, vendor_server.token) as directory:
        found = directory.find(Person(user_id=999, email=tricky))
    assert found is not None and found.id == made["id"]


def test_listing_the_vendors_users_reads_every_page(vendor_server):
    for n in range(7):
        vendor_server.add_user(f"p{n}@vendor.example")
    with Directory(vendor_server.base_url, vendor_server.token) as directory:
        names = sorted(u.user_name for u in directory.users(page_size=3))
    assert names == sorted(f"p{n}@vendor.example" for n in range(7))
    assert sum(1 for method, path in vendor_server.requests if "startIndex" in path) == 3


def test_test_connection_reads_the_service_provider_config(vendor_server):
    settings = SimpleNamespace(
        vendor_id=1,
        scim_base_url=vendor_server.base_url,
        group_push=False,
        on_release="deactivate",
        scim_token=lambda: vendor_server.token,
    )
    check = check_connection(settings)
    assert check.ok and check.patch and check.filter and check.status == 200

    settings.scim_token = lambda: "wrong"
    check = check_connection(settings)
    assert not check.ok and check.status == 401

    vendor_server.down()
    settings.scim_token = lambda: vendor_server.token
    check = check_connection(settings)
    assert not check.ok and check.status is None and check.error
