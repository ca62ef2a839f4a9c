"""An employee signs in through their company's identity provider, in a real browser.

They type their email on /login; the page sees that the domain signs in with
single sign-on, the browser goes to the company's provider (the npm
``oidc-provider`` on 127.0.0.1), they sign in there, and land on "My software"
with an account created for them. Requests to anything but 127.0.0.1 are
blocked (the provider's development pages link a web font).
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from urllib.parse import urlsplit

import pytest
from playwright.sync_api import Page, Route, expect

from tests.oidc.peer import OidcProvider
from tests.sso.conftest import account, connect, verify_domain


@pytest.fixture(scope="module")
def company_idp() -> Iterator[OidcProvider]:
    provider = OidcProvider()
    yield provider
    provider.stop()


def _local_only(route: Route) -> None:
    if urlsplit(route.request.url).hostname == "127.0.0.1":
        route.continue_()
    else:
        route.abort()


def test_an_employee_signs_in_through_their_companys_provider(
    app, page: Page, live_server: str, make_org, company_idp: OidcProvider, screenshot
):
    org = make_org("northwind", name="Northwind Traders")
    verify_domain(app, org, "northwind.example")
    client_id, secret = company_idp.register_client(f"{live_server}/sso/org/northwind/callback")
    connect(
        app, org, {"issuer": company_idp.issuer, "client_id": client_id, "client_secret": secret}
    )
    company_idp.add_account("nina", email="nina@northwind.example", name="Nina North")
    page.route("**/*", _local_only)

    page.goto("/login")
    main = page.get_by_role("main")
    main.get_by_label("Email").fill("nina@northwind.example")
    expect(main.get_by_role("status")).to_contain_text(
        "Northwind Traders signs you in with its own identity provider"
    )
    expect(main.get_by_label("Password")).to_be_hidden()
    screenshot(page, "sso-login-email")
    main.get_by_role("button", name="Continue", exact=True).click()

    expect(page).to_have_url(re.compile(re.escape(company_idp.issuer) + r"/interaction/"))
    page.locator("input[name=login]").fill("nina")
    page.locator("input[name=password]").fill("her password at Northwind")
    page.get_by_role("button", name="Sign-in").click()
    page.get_by_role("button", name="Continue").click()  # the provider's consent page

    expect(page).to_have_url(f"{live_server}/my")
    expect(page.get_by_role("heading", name="My software")).to_be_visible()
    expect(page.get_by_role("main")).to_contain_text("Northwind Traders")
    screenshot(page, "sso-my-software")
    nina = account(app, "nina@northwind.example")
    assert nina["role"] == "member" and nina["organisation_id"] == org.id
