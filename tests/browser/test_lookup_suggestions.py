"""An organisation filter box in a real browser: the page lists the first names; typing
asks the portal for the matching ones (static/js/lookup.js), and choosing one filters."""

from __future__ import annotations

import re

from playwright.sync_api import Page, expect

from tests.browser.conftest import check_accessibility, pass_second_step
from tests.browser.test_membership_flow import PASSWORD, sign_in


def _options(page: Page) -> list[str]:
    return page.locator("#organisation-choices option").evaluate_all(
        "options => options.map(o => o.value)"
    )


def test_typing_a_name_lists_the_organisations_that_match(page: Page, make_org, make_user):
    for n in range(55):
        make_org(f"member-{n:02d}", name=f"Member {n:02d}")
    make_org("zeta-tools", name="Zeta Tools")
    make_org("zetland", name="Zetland Housing")
    admin = make_user("council_admin", email="ada@council.example", password=PASSWORD)

    page.goto("/")
    sign_in(page, admin.email, PASSWORD)
    pass_second_step(page, admin.email)
    page.goto("/council/usage")
    assert len(_options(page)) == 50 and "Zeta Tools" not in _options(page)

    box = page.get_by_role("combobox", name="Organisation")
    box.press_sequentially("zet")
    expect(page.locator("#organisation-choices option")).to_have_count(2)
    assert _options(page) == ["Zeta Tools", "Zetland Housing"]
    box.press_sequentially("a")  # "zeta": the list follows
    expect(page.locator("#organisation-choices option")).to_have_count(1)
    box.press("Backspace")  # "zet" again
    expect(page.locator("#organisation-choices option")).to_have_count(2)
    check_accessibility(page, "council usage, organisations suggested")

    box.fill("Zeta Tools")
    page.get_by_role("button", name="Show").click()
    expect(page).to_have_url(re.compile(r"organisation=Zeta\+Tools"))
    expect(page.get_by_role("heading", level=1)).to_contain_text("Zeta Tools")
