"""Second factors in a real browser (issue 12): enrol an authenticator app, sign in with
its code, with a recovery code once (never twice), and a council admin without a second
factor is sent to enrol and can do nothing else. axe checks every new page."""

from __future__ import annotations

import datetime as dt
import re

import pyotp
from playwright.sync_api import Page, expect

from portal.kernel.clock import now_utc
from tests.browser.conftest import check_accessibility, pass_second_step
from tests.browser.test_membership_flow import PASSWORD, sign_out


def _main(page: Page):
    return page.get_by_role("main")


def _password(page: Page, email: str) -> None:
    page.goto("/login")
    _main(page).get_by_label("Email").fill(email)
    _main(page).get_by_label("Password").fill(PASSWORD)
    _main(page).get_by_role("button", name="Sign in").click()
    # Wait for the sign-in's redirects to land: a page.goto() while they are in flight can
    # cancel the page that shows (and clears) a message, leaving it for a later page.
    expect(page).not_to_have_url(re.compile(r"/login$"))


def _enrol(page: Page) -> tuple[str, list[str]]:
    """Set up an authenticator app on the open security page; the secret and the codes."""
    _main(page).get_by_role("button", name="Set up an authenticator app").click()
    expect(_main(page).locator("figure svg")).to_be_visible()
    check_accessibility(page, "security page, setting up the app")
    secret = _main(page).locator("#totp-secret").inner_text().replace(" ", "")
    _main(page).get_by_label("Code from the app").fill(pyotp.TOTP(secret).at(now_utc()))
    _main(page).get_by_role("button", name="Confirm").click()
    expect(page.get_by_role("status").first).to_contain_text("authenticator app is set up")
    codes = _main(page).locator("#recovery-codes code").all_inner_texts()
    assert len(codes) == 10
    check_accessibility(page, "security page, recovery codes shown")
    return secret, codes


def test_enrol_sign_in_with_a_code_and_with_a_recovery_code_once(
    page: Page, make_org, make_user, screenshot
):
    org = make_org("brightwater")
    admin = make_user("org_admin", org, email="bea@brightwater.example", password=PASSWORD)

    # An org admin may enrol (nobody requires it): one step signs in today.
    _password(page, admin.email)
    expect(page).to_have_url(re.compile(r"/org$"))
    page.get_by_role("navigation", name="Main").get_by_role("link", name="Security").click()
    expect(page.get_by_role("heading", level=1)).to_have_text("Security")
    check_accessibility(page, "security page")
    secret, codes = _enrol(page)
    screenshot(page, "second-factor-recovery-codes")
    page.reload()  # shown once: not again
    expect(_main(page).locator("#recovery-codes")).to_have_count(0)
    expect(_main(page)).to_contain_text("10 of 10 unused")
    sign_out(page)

    # Password, then the code from the app (the next one: the last was used to confirm)
    _password(page, admin.email)
    expect(page).to_have_url(re.compile(r"/login/second-factor$"))
    expect(page.get_by_role("heading", level=1)).to_have_text("Confirm it is you")
    check_accessibility(page, "second step")
    screenshot(page, "second-factor-step")
    code = pyotp.TOTP(secret).at(now_utc() + dt.timedelta(seconds=30))
    _main(page).get_by_label("Code").fill(code)
    _main(page).get_by_role("button", name="Verify").click()
    expect(page).to_have_url(re.compile(r"/org$"))
    sign_out(page)

    # The same code again is refused
    _password(page, admin.email)
    _main(page).get_by_label("Code").fill(code)
    _main(page).get_by_role("button", name="Verify").click()
    expect(page).to_have_url(re.compile(r"/login/second-factor$"))
    expect(_main(page).locator(".field-error")).to_contain_text("That code is not right")

    # A recovery code, typed in capitals, works once
    _main(page).get_by_label("Code").fill(codes[0].upper())
    _main(page).get_by_role("button", name="Verify").click()
    expect(page).to_have_url(re.compile(r"/org$"))
    expect(page.get_by_role("status").first).to_contain_text("recovery code; 9 left")
    sign_out(page)

    _password(page, admin.email)
    _main(page).get_by_label("Code").fill(codes[0])
    _main(page).get_by_role("button", name="Verify").click()
    expect(page).to_have_url(re.compile(r"/login/second-factor$"))
    expect(_main(page).locator(".field-error")).to_contain_text("That code is not right")


def test_council_admin_without_a_factor_must_enrol_and_can_do_nothing_else(
    page: Page, make_user, screenshot
):
    admin = make_user("council_admin", password=PASSWORD, second_factor=False)
    _password(page, admin.email)
    expect(page).to_have_url(re.compile(r"/account/security$"))
    expect(page.get_by_role("status").first).to_contain_text("must sign in with a second factor")
    check_accessibility(page, "security page, enrolment required")
    screenshot(page, "second-factor-required")

    for path in ("/council", "/council/organisations", "/council/staff", "/finance", "/profile"):
        page.goto(path)
        expect(page).to_have_url(re.compile(r"/account/security$"))

    _enrol(page)
    page.goto("/council")
    expect(page.get_by_role("heading", level=1)).to_have_text("Council dashboard")


def test_council_admin_resets_a_colleagues_factors_and_an_org_admin_requires_them(
    page: Page, make_org, make_user, screenshot
):
    admin = make_user("council_admin", password=PASSWORD)
    finance = make_user("finance", password=PASSWORD)
    _password(page, admin.email)
    pass_second_step(page, admin.email)
    page.goto("/council/staff")
    row = _main(page).get_by_role("row").filter(has_text=finance.email)
    row.get_by_role("link", name="Second factors").click()
    expect(page.get_by_role("heading", level=1)).to_contain_text("Second factors of")
    check_accessibility(page, "a person's second factors")
    screenshot(page, "second-factor-reset")
    _main(page).get_by_role("button", name=f"Reset {finance.email}'s second factors").click()
    expect(page.get_by_role("status").first).to_contain_text("second factors are removed")
    expect(_main(page)).to_contain_text("Nothing to reset.")
    sign_out(page)

    org = make_org("brightwater")
    org_admin = make_user("org_admin", org, email="bea@brightwater.example", password=PASSWORD)
    _password(page, org_admin.email)
    page.goto("/org/profile")
    check_accessibility(page, "organisation profile")
    switch = _main(page).get_by_label("Require a second factor for everyone in")
    switch.check()
    _main(page).get_by_role("button", name="Save").last.click()
    expect(page.get_by_role("status").first).to_contain_text("must now sign in with a second")
    page.goto("/org")  # the admin has none yet: off to enrol
    expect(page).to_have_url(re.compile(r"/account/security$"))
