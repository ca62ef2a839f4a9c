"""Sessions page in a real browser: sign in twice, end the other session from the first."""

from __future__ import annotations

import re

from playwright.sync_api import Page, expect

from tests.browser.test_membership_flow import PASSWORD, sign_in


def test_signed_in_twice_ends_the_other_session(page: Page, new_context, make_org, make_user):
    member = make_user("member", make_org(), password=PASSWORD)
    other = new_context().new_page()
    for browser in (other, page):
        browser.goto("/")
        sign_in(browser, member.email, PASSWORD)
        expect(browser).to_have_url(re.compile(r"/my$"))

    page.goto("/profile")
    page.get_by_role("link", name="Where you are signed in").click()
    expect(page).to_have_url(re.compile(r"/account/sessions$"))
    main = page.get_by_role("main")
    expect(main.get_by_role("button", name="Sign out", exact=True)).to_have_count(2)
    expect(main.get_by_text("(this session)")).to_have_count(1)

    # The row that is not this session: its "Sign out" button ends the other browser.
    main.get_by_role("row").filter(has_not_text="this session").filter(
        has=page.get_by_role("button", name="Sign out", exact=True)
    ).get_by_role("button", name="Sign out", exact=True).click()
    expect(page.get_by_role("status")).to_have_text("That session is signed out.")
    expect(main.get_by_role("button", name="Sign out", exact=True)).to_have_count(1)

    other.goto("/my")
    expect(other).to_have_url(re.compile(r"/login"))
    page.goto("/my")
    expect(page).to_have_url(re.compile(r"/my$"))
