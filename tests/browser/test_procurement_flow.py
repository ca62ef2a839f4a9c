"""Demand to seats in a real browser (issue 16): a member asks for a product the catalogue
does not have (on a phone) → the council sees it on the demand board → adds the product
to the catalogue, links the request and drafts a purchase order from it → a council admin
and finance approve → it is sent, confirmed and received → the product is subscribable and
the member's organisation (its org admin) subscribes; the member reads the council's
answer.

The accounts and the vendor are made directly; everything else is clicks and typing.
"""

from __future__ import annotations

import datetime as dt
import re

import sqlalchemy as sa
from playwright.sync_api import Page, expect

from portal.catalogue.services import vendor_create
from portal.db import db
from portal.kernel.clock import now_utc
from portal.procurement.models import ProductRequest, PurchaseOrder
from tests.browser.conftest import PHONE, check_accessibility
from tests.browser.test_catalogue_flow import _article, _main, _status, sign_in
from tests.conftest import SYSTEM

PASSWORD = "a long enough passphrase"


def test_a_members_request_becomes_seats_the_organisation_subscribes_to(
    app, page: Page, new_context, make_org, make_user, mailbox, screenshot
):
    with app.app_context():
        vendor_create(
            db.session,
            actor=SYSTEM,
            data={
                "slug": "northwind",
                "name": "Northwind",
                "contact_email": "po@northwind.example",
            },
        )
        db.session.commit()
    admin = make_user("council_admin", password=PASSWORD)
    finance = make_user("finance", password=PASSWORD)
    org = make_org("brightwater")
    member = make_user("member", org, email="carl@brightwater.example", password=PASSWORD)
    org_admin = make_user("org_admin", org, email="bea@brightwater.example", password=PASSWORD)
    today = now_utc().date()
    number = f"PO-{today.year}-000001"

    # ---- On a phone, the member searches the catalogue, does not find it, asks the council.
    member_page = new_context(viewport=PHONE).new_page()
    sign_in(member_page, member.email, PASSWORD)
    member_page.goto("/catalogue?q=Atlas")
    _main(member_page).get_by_role("link", name="Ask the council").click()
    expect(member_page.get_by_role("heading", level=1)).to_have_text("Ask for a product")
    form = _main(member_page)
    expect(form.get_by_label("Product")).to_have_value("Atlas")
    form.get_by_label("Product").fill("Atlas GIS")
    form.get_by_label("Vendor", exact=True).select_option(label="Northwind")
    form.get_by_label("Seats").fill("6")
    form.get_by_label("Note for the council").fill("Mapping for the planning team.")
    form.get_by_role("button", name="Ask the council").click()
    expect(_status(member_page)).to_have_text("Your request for Atlas GIS is sent to the council.")
    check_accessibility(member_page, "product request")
    screenshot(member_page, "procurement-01-request-phone")

    # ---- The council admin sees it on the demand board.
    sign_in(page, admin.email, PASSWORD)
    page.goto("/demand")
    expect(page.get_by_role("heading", level=1)).to_have_text("Demand")
    waiting = page.locator("table").filter(has_text="Product asked for")
    row = waiting.get_by_role("row").filter(has_text="Atlas GIS")
    expect(row).to_contain_text("Northwind")
    expect(row).to_contain_text("6")
    screenshot(page, "procurement-02-demand-board")
    row.get_by_role("link", name="Atlas GIS").click()
    request_url = page.url

    # ---- ... answers it, adds the product to the catalogue, with a price ...
    answer = page.locator("form").filter(has=page.get_by_role("button", name="Send the answer"))
    answer.get_by_label("State").select_option("planned")
    answer.get_by_label("Reply to the requesters").fill("We are ordering it from Northwind.")
    answer.get_by_role("button", name="Answer").click()
    expect(_status(page)).to_have_text("The answer is saved; the requesters see it.")
    _main(page).get_by_role("link", name="Add the product to the catalogue").click()
    form = _main(page)
    form.get_by_label("Vendor").select_option("northwind")
    form.get_by_label("SKU").fill("atlas-gis")
    form.get_by_label("Name", exact=True).fill("Atlas GIS")
    form.get_by_label("Launch URL").fill("https://atlas.northwind.example/start")
    form.get_by_role("button", name="Create product").click()
    expect(page).to_have_url(re.compile(r"/council/products/atlas-gis$"))
    price_form = _article(page, "Add a price")
    price_form.get_by_label("Currency").select_option("EUR")
    price_form.get_by_label("Charged").select_option("seat")
    price_form.get_by_label("Unit price", exact=True).fill("30")
    price_form.get_by_role("button", name="Add price").click()
    expect(_status(page)).to_have_text("The seat price in EUR is added.")

    # ---- ... links the request to it and drafts a purchase order from it.
    page.goto(request_url)
    link = page.locator("form").filter(has=page.get_by_role("button", name="Link"))
    link.get_by_label("Catalogue product").select_option(label="Atlas GIS (Northwind)")
    link.get_by_role("button", name="Link").click()
    expect(_status(page)).to_have_text("The request is linked to the catalogue product.")
    _main(page).get_by_role("button", name="Draft a purchase order").click()
    form = _main(page)
    expect(form.get_by_label("Seats")).to_have_value("6")
    form.get_by_label("Unit cost per seat-month").fill("200")
    form.get_by_label("Currency").select_option("EUR")
    form.get_by_label("Term starts on").fill(today.isoformat())
    form.get_by_label("Term ends on").fill((today + dt.timedelta(days=364)).isoformat())
    form.get_by_role("button", name="Draft the purchase order").click()
    expect(_status(page)).to_have_text("The draft is saved. It needs approval before it is sent.")
    expect(_main(page)).to_contain_text("€14,400.00")
    order_url = page.url
    _main(page).get_by_role("button", name="Approve").click()
    expect(_status(page)).to_have_text(
        "Your approval is recorded; the order waits for another approval."
    )

    # ---- Finance approves too (four eyes): the order is numbered.
    finance_page = new_context().new_page()
    sign_in(finance_page, finance.email, PASSWORD)
    finance_page.goto(order_url)
    _main(finance_page).get_by_role("button", name="Approve").click()
    expect(_status(finance_page)).to_have_text(f"Purchase order {number} is approved.")

    # ---- Sent, confirmed, received: the seats are in a pool.
    page.goto(order_url)
    _main(page).get_by_role("button", name="Send to the vendor").click()
    expect(_status(page)).to_have_text(f"Purchase order {number} is sent to po@northwind.example.")
    _main(page).get_by_label("The vendor's reference").fill("NW-77")
    _main(page).get_by_role("button", name="Record the vendor's confirmation").click()
    _main(page).get_by_role("button", name="Receive into pools").click()
    expect(_status(page)).to_have_text(
        f"Purchase order {number} is received: its seats are in the pools."
    )
    with app.app_context():
        po = db.session.scalars(sa.select(PurchaseOrder)).one()
        assert (str(po.state), po.source) == ("received", "demand")
        request = db.session.scalars(sa.select(ProductRequest)).one()
        assert (str(request.state), request.purchase_order_id) == ("ordered", po.id)
        db.session.remove()

    # ---- The member reads the answer; the org admin subscribes to the new seats.
    member_page.goto("/requests/products")
    expect(_main(member_page)).to_contain_text("ordered")
    expect(_main(member_page)).to_contain_text("We are ordering it from Northwind.")
    screenshot(member_page, "procurement-03-answer-phone")
    admin_page = new_context().new_page()
    sign_in(admin_page, org_admin.email, PASSWORD)
    admin_page.goto("/catalogue")
    card = _main(admin_page).get_by_role("article").filter(has_text="Atlas GIS")
    expect(card).to_contain_text(re.compile(r"Seats available\s*6"))
    card.get_by_role("button", name="Subscribe to Atlas GIS").click()
    admin_page.get_by_label("Seats", exact=True).fill("6")
    admin_page.get_by_role("button", name="Subscribe").click()
    expect(_status(admin_page)).to_have_text(
        "You have 6 seats of Atlas GIS. Assign them to people below."
    )
