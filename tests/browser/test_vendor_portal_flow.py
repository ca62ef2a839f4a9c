"""The vendor portal in a browser, on a phone (390 px), checked with axe at each step: a vendor
admin signs in, sees its seat counts, sets the service status, opens an incident and resolves
it, and creates an API token (shown once) that works against the API (issue 15)."""

from __future__ import annotations

import datetime as dt

from playwright.sync_api import Browser, expect

from portal.catalogue.models import Product, Vendor
from portal.db import db
from portal.kernel.clock import now_utc
from portal.seats import services as seats
from portal.tenancy.models import Organisation
from tests.browser.conftest import PHONE, axe_problems, open_menu, sign_in_by_form
from tests.conftest import SYSTEM


def _fits_and_passes_axe(page, name: str) -> None:
    page.wait_for_load_state()  # after a form's navigation: the stylesheet is in force
    width = page.evaluate("() => document.documentElement.scrollWidth")
    wide = page.evaluate(
        """(limit) => Array.from(document.querySelectorAll('body *'))
             .filter(e => e.getBoundingClientRect().right > limit + 1)
             .slice(0, 5)
             .map(e => e.tagName.toLowerCase() + (e.className ? '.' + e.className : '')
                  + ' ' + (e.textContent || '').slice(0, 40))""",
        PHONE["width"],
    )
    assert width <= PHONE["width"], f"{name}: {width} px wide: {wide}"
    assert not axe_problems(page, ("critical", "serious", "moderate")), name


def test_a_vendor_admin_keeps_its_status_incidents_and_tokens_on_a_phone(
    app, browser: Browser, base_url: str, make_org, make_user, make_product, screenshot
):
    org = make_org("buyer-org")
    product = make_product(12, sku="cad-suite", vendor="autodraft", vendor_name="AutoDraft")
    member = make_user("member", org)
    admin = make_user("vendor_admin", vendor="autodraft")
    with app.app_context():
        subscription = seats.subscription_create(
            db.session,
            actor=SYSTEM,
            organisation=db.session.get(Organisation, org.id),
            product=db.session.get(Product, product.id),
            quantity=4,
            starts_on=now_utc().date() - dt.timedelta(days=3),
        ).subscription
        seats.seat_assign(
            db.session, actor=SYSTEM, subscription=subscription, user_email=member.email
        )
        db.session.commit()

    context = browser.new_context(base_url=base_url, viewport=PHONE)
    page = context.new_page()
    try:
        sign_in_by_form(page, admin.email, admin.password)
        expect(page).to_have_url(f"{base_url}/vendor")
        expect(page.get_by_role("heading", level=1)).to_have_text("AutoDraft")
        _fits_and_passes_axe(page, "overview")
        screenshot(page, "vendor-portal-overview")

        # Seat counts: capacity 12, reserved 4, assigned 1, free 8; never who.
        open_menu(page).get_by_role("link", name="Products").click()
        row = page.get_by_role("row").filter(has_text="cad-suite")
        expect(row.get_by_role("cell")).to_have_text(["12", "4", "1", "8", "0"])
        expect(page.get_by_text(member.email)).to_have_count(0)
        _fits_and_passes_axe(page, "products")
        screenshot(page, "vendor-portal-products")

        # The service status, then an incident opened and resolved.
        open_menu(page).get_by_role("link", name="Service status").click()
        main = page.get_by_role("main")
        now = main.locator("form").filter(has=page.get_by_role("button", name="Set status"))
        now.get_by_label("Service status").select_option("partial_outage")
        now.get_by_label("Message").fill("Rendering is slow in the EU")
        now.get_by_role("button", name="Set status").click()
        expect(page.get_by_role("status")).to_contain_text("Partial outage")
        _fits_and_passes_axe(page, "status set")

        report = main.locator("form").filter(has=page.get_by_role("button", name="Open incident"))
        report.get_by_label("Title").fill("Rendering queue stalled")
        report.get_by_label("Impact").select_option("major")
        report.get_by_label("First update").fill("Jobs wait in the queue; we are restarting it.")
        report.get_by_role("button", name="Open incident").click()
        incident = main.get_by_role("article").filter(has_text="Rendering queue stalled")
        expect(incident).to_contain_text("Jobs wait in the queue")
        _fits_and_passes_axe(page, "incident open")
        screenshot(page, "vendor-portal-status")

        incident.get_by_role("textbox", name="Update", exact=True).fill(
            "The queue is running again."
        )
        incident.get_by_label("State").select_option("resolved")
        incident.get_by_role("button", name="Post update").click()
        expect(page.get_by_role("status")).to_contain_text("is resolved")
        resolved = main.locator("details").filter(has_text="Rendering queue stalled")
        resolved.locator("summary").click()
        expect(resolved).to_contain_text("The queue is running again.")
        _fits_and_passes_axe(page, "incident resolved")

        # A token, shown once, that works.
        open_menu(page).get_by_role("link", name="API tokens").click()
        page.get_by_label("Name").fill("Usage sync")
        page.get_by_role("button", name="Create token").click()
        plaintext = page.locator("#new-token").input_value()
        assert plaintext.startswith("pk_v_")
        _fits_and_passes_axe(page, "token created")
        page.get_by_role("button", name="Done").or_(page.get_by_role("link", name="Done")).click()
        expect(page.get_by_role("row").filter(has_text="Usage sync")).to_be_visible()
        expect(page.get_by_text(plaintext)).to_have_count(0)
        _fits_and_passes_axe(page, "tokens")
        answer = page.request.get(
            "/api/v1/catalogue", headers={"Authorization": f"Bearer {plaintext}"}
        )
        assert answer.status == 200
    finally:
        context.close()

    with app.app_context():
        vendor = db.session.query(Vendor).filter_by(slug="autodraft").one()
        assert (vendor.service_status, vendor.service_status_source) == (
            "partial_outage",
            "vendor",
        )
