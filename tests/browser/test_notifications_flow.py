"""Notifications in a real browser at 390 px: a supplier's incident reaches a seat holder,
the phone menu shows the unread count, the list shows it, marking read clears it; axe on
every page on the way, in English and in Russian."""

from __future__ import annotations

import re

import pytest
from playwright.sync_api import Browser, Page, expect

from portal.db import db
from tests.browser.conftest import PHONE, axe_problems, choose_language, open_menu, sign_in_by_form
from tests.browser.test_membership_flow import PASSWORD
from tests.conftest import SYSTEM
from tests.notifications.conftest import VENDOR, hold_seat


@pytest.fixture
def phone(browser: Browser, base_url: str):
    context = browser.new_context(base_url=base_url, viewport=PHONE)
    yield context.new_page()
    context.close()


def fits(page: Page, name: str) -> None:
    page.wait_for_load_state()
    assert page.evaluate("() => document.documentElement.scrollWidth") <= PHONE["width"], name
    assert axe_problems(page) == [], name


def open_incidents(app, *titles: str) -> None:
    from portal.catalogue.selectors import vendor_by_slug
    from portal.suppliers.services import open_incident

    with app.app_context():
        vendor = vendor_by_slug(db.session, VENDOR)
        for title in titles:
            open_incident(db.session, SYSTEM, vendor, title=title, impact="major", body="Looking.")
        db.session.commit()


def test_a_seat_holder_sees_the_count_reads_the_list_and_marks_read_on_a_phone(
    app, phone: Page, make_org, make_user, make_product, jobs_inline, screenshot
):
    org = make_org("acme")
    make_product(10, sku="mail-suite", vendor=VENDOR, vendor_name="Status Soft")
    member = make_user("member", org, email="alice@acme.example", password=PASSWORD)
    hold_seat(app, org, "mail-suite", member)
    open_incidents(app, "Mail delivery delayed", "Logins slow")

    page = phone
    sign_in_by_form(page, member.email, PASSWORD)
    summary = page.locator("header details.nav-menu > summary")
    expect(summary).to_have_text(re.compile(r"Menu\s*2"))  # the count shows on the folded menu
    fits(page, "my software")
    menu = open_menu(page)
    link = menu.get_by_role("link", name=re.compile(r"^Notifications\s*\(2 unread\)$"))
    expect(link).to_be_visible()
    link.click()
    expect(page).to_have_url(re.compile(r"/notifications$"))
    main = page.get_by_role("main")
    expect(main.get_by_role("heading", name="Notifications", level=1)).to_be_visible()
    items = main.locator("ol.notifications > li")
    expect(items).to_have_count(2)
    expect(items.first).to_contain_text("Incident at Status Soft: Logins slow")
    fits(page, "notifications")
    screenshot(page, "en-390-notifications")

    items.first.get_by_role("button", name="Mark read").click()
    expect(page.get_by_role("status")).to_have_text("Marked read.")
    expect(summary).to_have_text(re.compile(r"Menu\s*1"))
    expect(main.locator("ol.notifications > li.unread")).to_have_count(1)
    main.get_by_role("button", name="Mark all read").click()
    expect(page.get_by_role("status")).to_have_text("1 notification marked read.")
    expect(summary).to_have_text(re.compile(r"^\s*Menu\s*$"))

    main.get_by_role("link", name="Choose what is mailed").click()
    expect(page).to_have_url(re.compile(r"/notifications/settings$"))
    fits(page, "choices")
    page.get_by_label("Incidents at suppliers whose software you use").uncheck()
    page.get_by_role("button", name="Save the choices").click()
    expect(page.get_by_role("status")).to_have_text("Your notification choices are saved.")
    expect(page.get_by_label("Incidents at suppliers whose software you use")).not_to_be_checked()

    choose_language(page, "ru")
    page.goto("/notifications")
    expect(page.get_by_role("main")).to_contain_text("Инцидент у Status Soft")
    fits(page, "notifications ru")
    screenshot(page, "ru-390-notifications")
    page.goto("/notifications/settings")
    fits(page, "choices ru")
