"""Idle seats in a browser: an org admin releases an idle seat; the waitlisted member gets it."""

from __future__ import annotations

import datetime as dt

from playwright.sync_api import Page, expect

from portal.catalogue.models import Product
from portal.db import db
from portal.kernel.clock import now_utc
from portal.seats import services as seats
from portal.seats.models import SeatAssignment, Subscription
from portal.tenancy.models import Organisation
from tests.browser.conftest import check_accessibility
from tests.browser.test_membership_flow import sign_in
from tests.conftest import SYSTEM


def test_releasing_an_idle_seat_gives_it_to_the_waitlisted_organisation(
    app,
    page: Page,
    make_org,
    make_user,
    make_product,  # noqa: F811
    mailbox,
):
    holder_org, waiting_org = make_org("holder"), make_org("waiting")
    admin = make_user("org_admin", holder_org)
    idle_person = make_user("member", holder_org)
    waiting_admin = make_user("org_admin", waiting_org)
    product = make_product(1, sku="cad-suite", vendor="autodraft")
    with app.app_context():
        item = db.session.get(Product, product.id)
        mine = seats.subscription_create(
            db.session,
            actor=SYSTEM,
            organisation=db.session.get(Organisation, holder_org.id),
            product=item,
            quantity=1,
        ).subscription
        seat = seats.seat_assign(
            db.session, actor=SYSTEM, subscription=mine, user_email=idle_person.email
        )
        seat.assigned_at = now_utc() - dt.timedelta(days=45)  # held for 45 days, never used
        theirs = seats.subscription_create(
            db.session,
            actor=SYSTEM,
            organisation=db.session.get(Organisation, waiting_org.id),
            product=item,
            quantity=1,
            on_shortage="waitlist",
        ).subscription
        assert theirs.status == "waitlisted"
        db.session.commit()
        seat_id, theirs_id = seat.id, theirs.id

    page.goto("/")
    sign_in(page, admin.email, admin.password)
    page.get_by_role("navigation", name="Main").get_by_role("link", name="Usage").click()
    page.get_by_role("link", name="Idle seats: keep or release").click()
    row = page.get_by_role("row").filter(has_text=idle_person.email)
    expect(row).to_contain_text("never")
    row.get_by_role("button", name="Release").click()
    # the confirm step says what will happen; nothing is released until it is confirmed
    confirm = page.get_by_role("article").filter(has_text="This cannot be undone.")
    expect(confirm).to_contain_text("It is the subscription's only seat")
    expect(confirm).to_contain_text("organisations on the waitlist get it first")
    check_accessibility(page, "confirm step of an idle seat's release")
    confirm.get_by_role("button", name="Release the seat").click()
    expect(page.get_by_role("status")).to_contain_text("back in the council's pool")
    expect(page.get_by_role("row").filter(has_text=idle_person.email)).to_have_count(0)

    with app.app_context():
        assert db.session.get(SeatAssignment, seat_id).release_reason == "idle"
        granted = db.session.get(Subscription, theirs_id)
        assert (granted.status, granted.quantity) == ("active", 1)
    assert any(m["To"] == waiting_admin.email and "granted" in m["Subject"] for m in mailbox)
