"""The audit chain page in a real browser: a council admin reaches it from the audit log and
verifies the chain; finance from the navigation. axe checks the page."""

from __future__ import annotations

import re

from playwright.sync_api import Page, expect

from tests.browser.conftest import check_accessibility, pass_second_step
from tests.browser.test_membership_flow import PASSWORD, sign_in, sign_out


def _main(page: Page):
    return page.get_by_role("main")


def test_council_staff_verify_the_chain(page: Page, make_org, make_user, screenshot):
    admin = make_user("council_admin", email="ada@council.example", password=PASSWORD)
    finance = make_user("finance", email="fin@council.example", password=PASSWORD)
    make_org("brightwater")  # a few events to chain

    page.goto("/")
    sign_in(page, admin.email, PASSWORD)
    pass_second_step(page, admin.email)
    page.goto("/audit")
    _main(page).get_by_role("link", name="Audit chain: is the log intact?").click()
    expect(page).to_have_url(re.compile(r"/audit/chain$"))
    expect(page.get_by_role("heading", level=1)).to_have_text("Audit chain")
    expect(_main(page)).to_contain_text("not verified yet")
    check_accessibility(page, "audit chain, never verified")

    _main(page).get_by_role("button", name="Verify now").click()
    expect(page).to_have_url(re.compile(r"/audit/chain$"))
    expect(page.get_by_role("status").first).to_contain_text(
        re.compile(r"Chain intact: \d+ events")
    )
    expect(_main(page)).to_contain_text("intact")
    expect(_main(page)).to_contain_text(f"by {admin.email}")
    check_accessibility(page, "audit chain, verified")
    screenshot(page, "audit-chain")
    sign_out(page)

    sign_in(page, finance.email, PASSWORD)
    pass_second_step(page, finance.email)
    page.get_by_role("navigation", name="Main").get_by_role("link", name="Audit chain").click()
    expect(page.get_by_role("heading", level=1)).to_have_text("Audit chain")
    expect(_main(page)).to_contain_text(f"by {admin.email}")
