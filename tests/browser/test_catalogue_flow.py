"""The catalogue end to end in a real browser: the council stocks it, an organisation
subscribes and gives out seats, a member finds the software under "My software".

Only the accounts are made directly (``make_user``), as an invitation or
``portal create-admin`` would; everything else is clicks and typing.
"""

from __future__ import annotations

import datetime as dt
import re

import sqlalchemy as sa
from playwright.sync_api import Page, expect

from portal.catalogue.models import LicencePool, Price, Product, Vendor
from portal.catalogue.services import product_create, vendor_create
from portal.db import db
from portal.kernel.clock import now_utc
from portal.seats.models import SeatAssignment, Subscription
from tests.browser.conftest import pass_second_step
from tests.conftest import SYSTEM

PASSWORD = "a long enough passphrase"
TODAY = now_utc().date()


def _main(page: Page):
    return page.get_by_role("main")


def _nav(page: Page):
    return page.get_by_role("navigation", name="Main")


def _article(page: Page, heading: str):
    """The article (card or form box) whose heading is ``heading``."""
    return (
        _main(page)
        .get_by_role("article")
        .filter(has=page.get_by_role("heading", name=heading, exact=True))
    )


def sign_in(page: Page, email: str, password: str) -> None:
    page.goto("/login")
    _main(page).get_by_label("Email").fill(email)
    _main(page).get_by_label("Password").fill(password)
    _main(page).get_by_role("button", name="Sign in").click()
    pass_second_step(page, email)


def _status(page: Page):
    return page.locator("p.flash-success, p.flash-info").first


def test_council_stocks_a_product_and_a_member_launches_it(
    app, page: Page, new_context, make_org, make_user, mail_to, screenshot
):
    council_admin = make_user("council_admin", password=PASSWORD)
    org = make_org("brightwater")
    org_admin = make_user("org_admin", org, email="bea@brightwater.example", password=PASSWORD)
    member = make_user("member", org, email="carl@brightwater.example", password=PASSWORD)

    # ---- The council admin adds a vendor.
    sign_in(page, council_admin.email, PASSWORD)
    expect(page).to_have_url(re.compile(r"/council$"))
    _nav(page).get_by_role("link", name="Vendors").click()
    expect(page.get_by_role("heading", level=1)).to_have_text("Vendors")
    _main(page).get_by_role("button", name="New vendor").click()
    form = _main(page)
    form.get_by_label("Name", exact=True).fill("Northwind Software")
    form.get_by_label("Slug").fill("northwind")
    form.get_by_label("Contact email").fill("sales@northwind.example")
    form.get_by_label("Status", exact=True).select_option("active")
    form.get_by_role("button", name="Save vendor").click()
    expect(page).to_have_url(re.compile(r"/council/vendors$"))
    expect(_status(page)).to_have_text("Northwind Software is added.")
    expect(_main(page).get_by_role("row").filter(has_text="Northwind Software")).to_contain_text(
        "active"
    )
    screenshot(page, "catalogue-01-vendors")

    # ---- ... a product of that vendor.
    _nav(page).get_by_role("link", name="Catalogue").click()
    expect(page.get_by_role("heading", level=1)).to_have_text("Catalogue")
    _main(page).get_by_role("button", name="New product").click()
    form = _main(page)
    form.get_by_label("Vendor").select_option("northwind")
    form.get_by_label("SKU").fill("cad-suite")
    form.get_by_label("Name", exact=True).fill("CAD Suite")
    form.get_by_label("Description").fill("2D and 3D design for engineering teams.")
    form.get_by_label("Launch URL").fill("https://cad.northwind.example/start")
    form.get_by_role("button", name="Create product").click()
    expect(page).to_have_url(re.compile(r"/council/products/cad-suite$"))
    expect(page.get_by_role("heading", level=1)).to_have_text("CAD Suite")
    expect(_status(page)).to_contain_text("CAD Suite is created.")

    # ---- ... a pool of 10 seats bought at 12.50 EUR a seat-month.
    pool_form = _article(page, "Add a pool")
    pool_form.get_by_label("Seats").fill("10")
    pool_form.get_by_label("Starts on").fill(TODAY.isoformat())
    pool_form.get_by_label("Ends on").fill((TODAY + dt.timedelta(days=364)).isoformat())
    pool_form.get_by_label("Unit cost per seat-month").fill("12.50")
    pool_form.get_by_label("Currency").select_option("EUR")
    pool_form.get_by_role("button", name="Add pool").click()
    expect(_status(page)).to_have_text("A pool of 10 seats is added.")
    pools = page.locator("#pools table").first
    expect(pools).to_contain_text("€12.50")
    expect(page.get_by_role("region", name="Seats today")).to_contain_text("10capacity in force")

    # ---- ... and a seat price of 19.90 EUR a month.
    price_form = _article(page, "Add a price")
    price_form.get_by_label("Currency").select_option("EUR")
    price_form.get_by_label("Charged").select_option("seat")
    price_form.get_by_label("Unit price", exact=True).fill("19.90")
    price_form.get_by_role("button", name="Add price").click()
    expect(_status(page)).to_have_text("The seat price in EUR is added.")
    expect(page.locator("#prices table").first).to_contain_text("€19.90")
    screenshot(page, "catalogue-02-product")

    # ---- The org admin finds it in the catalogue and subscribes to 3 seats.
    admin_page = new_context().new_page()
    sign_in(admin_page, org_admin.email, PASSWORD)
    expect(admin_page).to_have_url(re.compile(r"/org$"))
    _nav(admin_page).get_by_role("link", name="Catalogue").click()
    card = _main(admin_page).get_by_role("article").filter(has_text="CAD Suite")
    expect(card).to_contain_text("by Northwind Software")
    expect(card).to_contain_text("€19.90 per seat per month")
    expect(card).to_contain_text(re.compile(r"Seats available\s*10"))
    screenshot(admin_page, "catalogue-03-members-catalogue")
    card.get_by_role("button", name="Subscribe to CAD Suite").click()
    expect(admin_page.get_by_role("heading", level=1)).to_have_text("Subscribe to CAD Suite")
    admin_page.get_by_label("Seats", exact=True).fill("3")
    admin_page.get_by_label("All or nothing").check()
    admin_page.get_by_role("button", name="Subscribe").click()
    expect(admin_page).to_have_url(re.compile(r"/org/subscriptions/\d+$"))
    expect(_status(admin_page)).to_have_text(
        "You have 3 seats of CAD Suite. Assign them to people below."
    )

    # ---- ... and gives seats to two people at once: a colleague and a newcomer.
    bulk = _article(admin_page, "Assign seats to several people")
    bulk.get_by_label("Emails").fill("carl@brightwater.example\ndana@brightwater.example")
    bulk.get_by_role("button", name="Assign seats").click()
    results = _article(admin_page, "Results")
    expect(results.get_by_role("row", name=re.compile("carl@brightwater.example"))).to_contain_text(
        "assigned"
    )
    expect(results.get_by_role("row", name=re.compile("dana@brightwater.example"))).to_contain_text(
        "assigned"
    )
    stats = admin_page.get_by_role("region", name="Seats", exact=True)
    expect(stats).to_contain_text("2assigned")
    expect(stats).to_contain_text("1free")
    screenshot(admin_page, "catalogue-04-subscription")

    # The newcomer is invited; the colleague is told.
    assert "/invitations/" in mail_to("dana@brightwater.example").get_content()
    assert "CAD Suite" in mail_to("carl@brightwater.example")["Subject"]

    # The subscriptions list shows the figures.
    _nav(admin_page).get_by_role("link", name="Subscriptions").click()
    row = _main(admin_page).get_by_role("row").filter(has_text="CAD Suite")
    expect(row).to_contain_text("active")
    expect(row.get_by_role("cell")).to_have_text(
        [re.compile("CAD Suite"), "3", "2", "1", "0", "active", re.compile(TODAY.isoformat())]
    )

    # ---- The member signs in and finds the software with its launch link.
    member_page = new_context().new_page()
    sign_in(member_page, member.email, PASSWORD)
    expect(member_page).to_have_url(re.compile(r"/my$"))
    expect(member_page.get_by_role("heading", level=1)).to_have_text("My software")
    seats = member_page.get_by_role("region", name="Your seats")
    expect(seats.get_by_role("heading", name="CAD Suite")).to_be_visible()
    expect(seats).to_contain_text("by Northwind Software")
    launch = seats.get_by_role("button", name="Launch CAD Suite")
    expect(launch).to_have_attribute("href", "https://cad.northwind.example/start")
    screenshot(member_page, "catalogue-05-my-software")

    # ---- The council's catalogue now shows the reservation.
    page.goto("/council/catalogue")
    row = _main(page).get_by_role("row").filter(has_text="CAD Suite")
    expect(row.get_by_role("img")).to_have_attribute(
        "aria-label", "3 of 10 seats reserved, 2 assigned, 7 available"
    )
    screenshot(page, "catalogue-06-council-catalogue")

    with app.app_context():
        assert db.session.scalar(sa.select(Vendor.status).where(Vendor.slug == "northwind")) == (
            "active"
        )
        product = db.session.scalar(sa.select(Product).where(Product.sku == "cad-suite"))
        pool = db.session.scalar(sa.select(LicencePool))
        price = db.session.scalar(sa.select(Price))
        assert (pool.capacity, pool.unit_cost_amount, pool.unit_cost_currency) == (10, 1250, "EUR")
        assert (price.model, price.unit_amount, price.currency) == ("seat", 1990, "EUR")
        sub = db.session.scalar(sa.select(Subscription))
        assert (sub.organisation_id, sub.product_id, sub.quantity) == (org.id, product.id, 3)
        seats_held = db.session.scalar(
            sa.select(sa.func.count())
            .select_from(SeatAssignment)
            .where(SeatAssignment.released_at.is_(None))
        )
        assert seats_held == 2
        db.session.remove()


def test_bad_pool_input_is_shown_beside_the_field(app, page: Page, make_user):
    admin = make_user("council_admin", password=PASSWORD)
    with app.app_context():
        vendor_create(db.session, actor=SYSTEM, data={"slug": "northwind", "name": "Northwind"})
        product_create(
            db.session,
            actor=SYSTEM,
            data={"sku": "cad-suite", "vendor": "northwind", "name": "CAD Suite"},
        )
        db.session.commit()
        db.session.remove()
    sign_in(page, admin.email, PASSWORD)
    page.goto("/council/products/cad-suite")
    pool_form = _article(page, "Add a pool")
    pool_form.get_by_label("Seats").fill("5")
    pool_form.get_by_label("Starts on").fill(TODAY.isoformat())
    pool_form.get_by_label("Ends on").fill((TODAY - dt.timedelta(days=1)).isoformat())
    pool_form.get_by_label("Unit cost per seat-month").fill("1500")
    pool_form.get_by_label("Currency").select_option("JPY")
    pool_form.get_by_role("button", name="Add pool").click()

    pool_form = _article(page, "Add a pool")
    ends_on = pool_form.get_by_label("Ends on")
    expect(ends_on).to_have_attribute("aria-invalid", "true")
    expect(ends_on).to_have_accessible_description(
        "The pool must end on or after the day it starts."
    )
    # What was typed is kept.
    expect(pool_form.get_by_label("Seats")).to_have_value("5")
    expect(pool_form.get_by_label("Currency")).to_have_value("JPY")
    with app.app_context():
        assert db.session.scalar(sa.select(sa.func.count()).select_from(LicencePool)) == 0
        db.session.remove()
