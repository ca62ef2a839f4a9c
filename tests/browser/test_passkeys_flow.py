"""Passkeys in a real browser (issue 12): Chromium's virtual authenticator (DevTools
protocol ``WebAuthn.*``) registers a passkey on the security page and signs in with it
at the second step; static/js/passkeys.js does the ceremonies. axe checks both pages.

WebAuthn accepts a domain name as relying party, never an IP address, so these tests
open the live server as ``http://localhost:<port>`` (not ``127.0.0.1``) and set
``PORTAL_BASE_URL`` to it: the RP ID is ``localhost``, the origin that address.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from urllib.parse import urlsplit

import pytest
from playwright.sync_api import Page, expect

from tests.browser.conftest import check_accessibility
from tests.browser.test_membership_flow import PASSWORD


@pytest.fixture
def localhost(app, live_server: str, _links_point_at_live_server) -> Iterator[str]:
    """The live server's address under the name ``localhost``, as the portal's base URL."""
    url = f"http://localhost:{urlsplit(live_server).port}"
    app.config["PORTAL_BASE_URL"] = url
    yield url
    app.config["PORTAL_BASE_URL"] = live_server


def _virtual_authenticator(page: Page) -> tuple[object, str]:
    """A platform authenticator (internal transport, resident keys, user verification
    that always succeeds) attached to this tab; its CDP session and id."""
    cdp = page.context.new_cdp_session(page)
    cdp.send("WebAuthn.enable", {"enableUI": False})
    added = cdp.send(
        "WebAuthn.addVirtualAuthenticator",
        {
            "options": {
                "protocol": "ctap2",
                "transport": "internal",
                "hasResidentKey": True,
                "hasUserVerification": True,
                "isUserVerified": True,
                "automaticPresenceSimulation": True,
            }
        },
    )
    return cdp, added["authenticatorId"]


def _main(page: Page):
    return page.get_by_role("main")


def _password(page: Page, base: str, email: str) -> None:
    page.goto(f"{base}/login")
    _main(page).get_by_label("Email").fill(email)
    _main(page).get_by_label("Password").fill(PASSWORD)
    _main(page).get_by_role("button", name="Sign in").click()
    # Wait for the sign-in's redirects to land: a page.goto() while they are in flight can
    # cancel the page that shows (and clears) a message, leaving it for a later page.
    expect(page).not_to_have_url(re.compile(r"/login$"))


def test_register_a_passkey_and_sign_in_with_it(page: Page, localhost: str, make_user, screenshot):
    admin = make_user(
        "council_admin", email="ada@council.example", password=PASSWORD, second_factor=False
    )
    cdp, authenticator_id = _virtual_authenticator(page)

    # A council admin without a second factor is sent to the security page to enrol one.
    _password(page, localhost, admin.email)
    page.goto(f"{localhost}/council")
    expect(page).to_have_url(re.compile(r"/account/security$"))
    section = _main(page).locator("#passkeys")
    expect(section).to_contain_text("You have no passkey yet.")
    expect(section.get_by_text("needs JavaScript")).to_be_hidden()  # the script is running
    section.get_by_label("Name for this passkey").fill("Office laptop")
    section.get_by_role("button", name="Add a passkey").click()
    expect(page.get_by_role("status").first).to_have_text("Passkey “Office laptop” is added.")
    expect(section.get_by_role("cell", name="Office laptop", exact=True)).to_be_visible()
    credentials = cdp.send("WebAuthn.getCredentials", {"authenticatorId": authenticator_id})
    assert len(credentials["credentials"]) == 1
    assert credentials["credentials"][0]["rpId"] == "localhost"
    check_accessibility(page, "security page with a passkey")
    screenshot(page, "passkeys-security-page")

    # The passkey counts as a second factor: the rest of the portal opens.
    page.goto(f"{localhost}/council")
    expect(page).to_have_url(re.compile(r"/council$"))
    page.get_by_role("navigation", name="Main").get_by_role("button", name="Sign out").click()
    expect(page.get_by_role("status")).to_have_text("You are signed out.")

    # Password, then the passkey.
    _password(page, localhost, admin.email)
    expect(page).to_have_url(re.compile(r"/login/second-factor$"))
    option = _main(page).locator("#passkey-sign-in")
    expect(option.get_by_text("needs JavaScript")).to_be_hidden()
    check_accessibility(page, "second step with a passkey option")
    screenshot(page, "passkeys-second-step")
    option.get_by_role("button", name="Use a passkey").click()
    expect(page).to_have_url(re.compile(r"/council$"))

    # The security page shows when it was last used; the passkey can be removed.
    page.goto(f"{localhost}/account/security")
    row = _main(page).locator("#passkeys").get_by_role("row").filter(has_text="Office laptop")
    expect(row).not_to_contain_text("never")
    row.get_by_role("button", name="Remove the passkey “Office laptop”").click()
    expect(page.get_by_role("status").first).to_have_text("The passkey is removed.")
    expect(_main(page).locator("#passkeys")).to_contain_text("You have no passkey yet.")


def test_without_javascript_the_second_step_explains_and_the_code_form_stays(
    app, browser, localhost: str, make_org, make_user
):
    member = make_user(
        "member", make_org(), email="max@nojs.example", password=PASSWORD, second_factor=True
    )
    _give_passkey(app, member.id)  # an authenticator app and a passkey
    context = browser.new_context(java_script_enabled=False)
    page = context.new_page()
    try:
        _password(page, localhost, member.email)
        expect(page).to_have_url(re.compile(r"/login/second-factor$"))
        option = _main(page).locator("#passkey-sign-in")
        expect(option).to_contain_text("Signing in with a passkey needs JavaScript")
        expect(option.get_by_role("button", name="Use a passkey")).to_be_hidden()
        expect(_main(page).get_by_label("Code")).to_be_visible()
    finally:
        context.close()


def _give_passkey(app, user_id: int) -> None:
    """A passkey row for the user (its key is never used here: no JavaScript, no ceremony)."""
    from portal.db import db
    from portal.identity.models import Passkey

    with app.app_context():
        db.session.add(
            Passkey(user_id=user_id, credential_id="bm8tanM", public_key=b"-", name="Phone")
        )
        db.session.commit()
