"""Every role's main pages under the Content-Security-Policy, in a real browser.

Chromium enforces the portal's CSP (no ``unsafe-inline``): each page must load
and work with no ``securitypolicyviolation`` event and no CSP message on the
console, and its scripts must still run (the sign-in page's home-realm
discovery, the Swagger UI of the API docs). The listener itself is proved to
work: an inline style injected into a page is reported.
"""

from __future__ import annotations

import re
from collections.abc import Callable

import pytest
from playwright.sync_api import Page, expect

from portal.catalogue.models import Product
from portal.db import db
from portal.seats import services as seats
from portal.tenancy.models import Organisation
from tests.browser.test_membership_flow import sign_in
from tests.conftest import SYSTEM

# Runs before any of the page's own scripts (and outside its CSP): keeps every report.
LISTEN = """
window.__cspViolations = [];
document.addEventListener("securitypolicyviolation", function (e) {
  window.__cspViolations.push(e.violatedDirective + " blocked " + (e.blockedURI || "inline")
    + " at " + e.sourceFile + ":" + e.lineNumber);
});
"""


@pytest.fixture
def watched(page: Page) -> Callable[[str], None]:
    """``visit(path)``: open a page and fail on any CSP violation or CSP console message."""
    console: list[str] = []
    page.on(
        "console",
        lambda message: (
            console.append(message.text)
            if "Content Security Policy" in message.text or "Refused to" in message.text
            else None
        ),
    )
    page.add_init_script(LISTEN)

    def visit(path: str) -> None:
        response = page.goto(path)
        assert response is not None and response.ok, (path, response and response.status)
        csp = response.headers["content-security-policy"]
        assert "frame-ancestors 'none'" in csp and "unsafe-inline" not in csp, path
        page.wait_for_load_state("networkidle")
        assert page.evaluate("window.__cspViolations") == [], path
        assert console == [], path

    visit.console = console  # type: ignore[attr-defined]
    return visit


@pytest.fixture
def estate(app, make_org, make_user, make_product):
    """An organisation with an admin and a member holding a seat of cad-suite; council staff."""
    org = make_org("acme")
    people = {
        "council_admin": make_user("council_admin"),
        "finance": make_user("finance"),
        "org_admin": make_user("org_admin", org),
        "member": make_user("member", org),
    }
    product = make_product(4, sku="cad-suite", vendor="autodraft")
    with app.app_context():
        outcome = seats.subscription_create(
            db.session,
            actor=SYSTEM,
            organisation=db.session.get(Organisation, org.id),
            product=db.session.get(Product, product.id),
            quantity=3,
        )
        seats.seat_assign(
            db.session,
            actor=SYSTEM,
            subscription=outcome.subscription,
            user_email=people["member"].email,
        )
        db.session.commit()
    return people


def _sign_out(page: Page) -> None:
    page.get_by_role("navigation", name="Main").get_by_role("button", name="Sign out").click()
    expect(
        page.get_by_role("navigation", name="Main").get_by_role("button", name="Sign in")
    ).to_be_visible()


def test_every_roles_pages_load_and_work_under_the_policy(page: Page, watched, estate, screenshot):
    # The sign-in page: its script hides the explicit SSO button and asks the portal
    # (fetch, connect-src 'self') whether the typed email signs in elsewhere.
    watched("/login")
    main = page.get_by_role("main")
    expect(main.get_by_role("button", name="Continue with single sign-on")).to_be_hidden()
    with page.expect_response(re.compile(r"/login/realm\?email=")) as realm:
        main.get_by_label("Email").fill("someone@acme.example")
    assert realm.value.ok
    expect(main.get_by_label("Password")).to_be_visible()  # no SSO for this domain

    pages = {
        "council_admin": [
            "/council",
            "/council/catalogue",  # seat bars (SVG)
            "/council/utilisation/cad-suite",  # the line chart and its legend
            "/council/organisations",
            "/council/organisations/acme",
            "/council/tokens",
            "/audit",
        ],
        "finance": ["/finance", "/finance/exports"],
        "org_admin": ["/org", "/org/subscriptions", "/org/users", "/org/tokens", "/org/sso"],
        "member": ["/my", "/catalogue"],
    }
    for role, paths in pages.items():
        watched("/")
        sign_in(page, estate[role].email, estate[role].password)
        nav = page.get_by_role("navigation", name="Main")
        expect(nav.get_by_role("button", name="Sign out")).to_be_visible()
        for path in paths:
            watched(path)
            screenshot(page, "csp" + path.replace("/", "-"))
        _sign_out(page)


def test_the_api_docs_render_their_operations_under_the_policy(page: Page, watched):
    watched("/api/v1/docs")
    operations = page.locator(".opblock")
    expect(operations.first).to_be_visible(timeout=15_000)
    assert operations.count() > 10
    expect(page.get_by_text("/api/v1/entitlements/check").first).to_be_visible()
    # Opening an operation renders its parameters (React, no inline code needed).
    operations.filter(has_text="/api/v1/entitlements/check").first.locator(
        ".opblock-summary"
    ).click()
    expect(page.get_by_text("user_email").first).to_be_visible()
    page.wait_for_timeout(200)
    assert page.evaluate("window.__cspViolations") == []
    assert watched.console == []


def test_the_listener_sees_a_violation(page: Page, watched):
    """Without this, "no violations" could mean "not listening"."""
    watched("/login")
    page.evaluate("document.body.insertAdjacentHTML('beforeend', '<p style=\"color: red\">x</p>')")
    page.wait_for_function("window.__cspViolations.length > 0")
    assert "style-src" in page.evaluate("window.__cspViolations")[0]
