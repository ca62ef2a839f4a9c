"""Purchase orders end to end in a real browser: a council admin drafts an order for a
product the council has no seats of, approves it, finance approves it too (above the
threshold: four eyes), it is sent, confirmed and received, and an organisation subscribes
to the seats it brought.

The accounts, the vendor and the product (with its price, without a pool) are made
directly; everything about the order is clicks and typing.
"""

from __future__ import annotations

import datetime as dt
import re

import sqlalchemy as sa
from playwright.sync_api import Page, expect

from portal.catalogue.models import LicencePool, Vendor
from portal.catalogue.services import price_create, product_create, vendor_create
from portal.db import db
from portal.kernel.clock import now_utc
from portal.procurement.models import PurchaseOrder
from tests.browser.test_catalogue_flow import _main, _status, sign_in
from tests.conftest import SYSTEM

PASSWORD = "a long enough passphrase"


def _stock(app) -> tuple[int, int]:
    """A vendor with a contact and a priced product of which the council has no seats."""
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
        product = product_create(
            db.session,
            actor=SYSTEM,
            data={"sku": "flow-cad", "vendor": "northwind", "name": "Flow CAD", "meters": []},
        )
        price_create(
            db.session,
            actor=SYSTEM,
            data={"product": "flow-cad", "currency": "EUR", "model": "seat", "unit_amount": 2500},
        )
        db.session.commit()
        vendor_id = db.session.scalar(sa.select(Vendor.id).where(Vendor.slug == "northwind"))
        return vendor_id, product.id


def test_an_order_is_drafted_approved_twice_sent_received_and_subscribed(
    app, page: Page, new_context, make_org, make_user, mailbox, screenshot
):
    vendor_id, product_id = _stock(app)
    admin = make_user("council_admin", password=PASSWORD)
    finance = make_user("finance", password=PASSWORD)
    org = make_org("brightwater")
    org_admin = make_user("org_admin", org, email="bea@brightwater.example", password=PASSWORD)
    today = now_utc().date()
    number = f"PO-{today.year}-000001"

    # ---- The council admin drafts an order: 6 seats at €200.00 a seat-month for a year.
    sign_in(page, admin.email, PASSWORD)
    page.goto("/council/purchase-orders")
    expect(page.get_by_role("heading", level=1)).to_have_text("Purchase orders")
    _main(page).get_by_role("link", name="New draft").click()
    form = _main(page)
    form.get_by_label("Vendor").select_option(str(vendor_id))
    form.get_by_label("Currency").select_option("EUR")
    form.get_by_label("Term starts on").fill(today.isoformat())
    form.get_by_label("Term ends on").fill((today + dt.timedelta(days=364)).isoformat())
    form.get_by_label("Line 1: product").select_option(str(product_id))
    form.get_by_label("Line 1: seats").fill("6")
    form.get_by_label("Line 1: unit cost per seat-month").fill("200")
    form.get_by_role("button", name="Save the draft").click()
    expect(_status(page)).to_have_text("The draft is saved. It needs approval before it is sent.")
    expect(_main(page)).to_contain_text("Waiting for: Council admin, Finance.")
    expect(_main(page)).to_contain_text("€14,400.00")
    screenshot(page, "purchase-order-01-draft")

    _main(page).get_by_role("button", name="Approve").click()
    expect(_status(page)).to_have_text(
        "Your approval is recorded; the order waits for another approval."
    )
    expect(_main(page).get_by_role("button", name="Approve")).to_have_count(0)
    order_url = page.url

    # ---- Finance approves it too: it is numbered.
    finance_page = new_context().new_page()
    sign_in(finance_page, finance.email, PASSWORD)
    finance_page.goto(order_url)
    _main(finance_page).get_by_role("button", name="Approve").click()
    expect(_status(finance_page)).to_have_text(f"Purchase order {number} is approved.")
    expect(_main(finance_page).get_by_role("button", name="Send to the vendor")).to_have_count(0)

    # ---- The council admin sends it, records the vendor's confirmation and receives it.
    page.goto(order_url)
    _main(page).get_by_role("button", name="Send to the vendor").click()
    expect(_status(page)).to_have_text(f"Purchase order {number} is sent to po@northwind.example.")
    assert [m["To"] for m in mailbox] == ["po@northwind.example"]
    _main(page).get_by_label("The vendor's reference").fill("NW-SO-77")
    _main(page).get_by_role("button", name="Record the vendor's confirmation").click()
    expect(_status(page)).to_have_text(f"The vendor's confirmation of {number} is recorded.")
    _main(page).get_by_role("button", name="Receive into pools").click()
    expect(_status(page)).to_have_text(
        f"Purchase order {number} is received: its seats are in the pools."
    )
    screenshot(page, "purchase-order-02-received")
    with app.app_context():
        pool = db.session.scalar(sa.select(LicencePool).where(LicencePool.product_id == product_id))
        assert (pool.capacity, pool.reference, pool.unit_cost_amount) == (6, number, 20000)
        assert db.session.scalar(sa.select(PurchaseOrder.state)) == "received"

    # ---- The organisation subscribes to the seats the order brought.
    admin_page = new_context().new_page()
    sign_in(admin_page, org_admin.email, PASSWORD)
    admin_page.goto("/catalogue")
    card = _main(admin_page).get_by_role("article").filter(has_text="Flow CAD")
    expect(card).to_contain_text(re.compile(r"Seats available\s*6"))
    card.get_by_role("button", name="Subscribe to Flow CAD").click()
    admin_page.get_by_label("Seats", exact=True).fill("4")
    admin_page.get_by_role("button", name="Subscribe").click()
    expect(_status(admin_page)).to_have_text(
        "You have 4 seats of Flow CAD. Assign them to people below."
    )
