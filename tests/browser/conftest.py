"""Browser tests: the real portal on a live server, driven by Playwright in Debian's chromium.

The session's ``app`` (tests/conftest.py) is served by werkzeug on 127.0.0.1 and
a free port in a background thread. Pages are opened with paths relative to it
(``page.goto("/apply")``), and mailed links point at it, so a test can follow an
invitation from the ``mailbox`` into the browser. Playwright never downloads a
browser: it drives ``/usr/bin/chromium`` (``make browser`` installs it).
"""

from __future__ import annotations

import os
import re
import time
from collections.abc import Callable, Iterator
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import pytest

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--headless",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
HERE = Path(__file__).resolve().parent
MAIL_WAIT_SECONDS = 10


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Every test in tests/browser carries the ``browser`` marker (``-m "not browser"`` skips)."""
    for item in items:
        if HERE in Path(item.path).resolve().parents:
            item.add_marker(pytest.mark.browser)


# ------------------------------------------------------------------ chromium


@pytest.fixture(scope="session")
def browser_type_launch_args(browser_type_launch_args: dict[str, Any]) -> dict[str, Any]:
    """Debian's chromium, headless, quiet on the network; a missing browser fails the tests."""
    if not (CHROMIUM.is_file() and os.access(CHROMIUM, os.X_OK)):
        pytest.fail(
            f"Debian's chromium is not installed at {CHROMIUM}; the browser tests need it. "
            "Install it with `make browser` (apt-get install chromium). "
            "Do not run `playwright install`.",
            pytrace=False,
        )
    return {**browser_type_launch_args, "executable_path": str(CHROMIUM), "args": CHROMIUM_ARGS}


# ------------------------------------------------------------------ the live server


@pytest.fixture(scope="session")
def base_url(live_server: str) -> str:
    """pytest-playwright's base URL: ``page.goto("/login")`` opens the live server."""
    return live_server


@pytest.fixture(autouse=True)
def _links_point_at_live_server(app, live_server: str) -> Iterator[None]:
    """Mailed links lead to the live server during a browser test, and back afterwards."""
    before = app.config["PORTAL_BASE_URL"]
    app.config["PORTAL_BASE_URL"] = live_server
    yield
    app.config["PORTAL_BASE_URL"] = before


# ------------------------------------------------------------------ mail


@pytest.fixture
def mail_to(mailbox: list[EmailMessage]) -> Callable[[str], EmailMessage]:
    """Wait for the newest message to an address (mail is sent right after the commit)."""

    def wait(address: str) -> EmailMessage:
        deadline = time.monotonic() + MAIL_WAIT_SECONDS
        while True:
            found = [m for m in mailbox if m["To"].addresses[0].addr_spec == address.lower()]
            if found:
                return found[-1]
            if time.monotonic() > deadline:
                sent = [str(m["To"]) for m in mailbox]
                pytest.fail(f"no mail to {address} within {MAIL_WAIT_SECONDS}s; sent: {sent}")
            time.sleep(0.05)

    return wait


def link_in(message: EmailMessage) -> str:
    """The first link in a plain-text message, in full."""
    body = message.get_body(preferencelist=("plain",)).get_content()
    match = re.search(r"https?://\S+", body)
    assert match, body
    return match.group(0)


# ------------------------------------------------------------------ accessibility

AXE = HERE / "axe" / "node_modules" / "axe-core" / "axe.min.js"
#: The rules checked: WCAG 2.1 A and AA (axe's tags), and axe's best practices.
AXE_TAGS = ["wcag2a", "wcag2aa", "wcag21a", "wcag21aa", "best-practice"]


def _axe_violations(page: Any) -> list[dict]:
    """axe-core's violations on the open page. axe is evaluated through the DevTools
    protocol, so the page's Content-Security-Policy (no inline script) stays as it is."""
    if not AXE.is_file():
        pytest.fail(f"axe-core is not installed at {AXE}; run `make axe`.", pytrace=False)
    if not page.evaluate("() => typeof window.axe !== 'undefined'"):
        page.evaluate(AXE.read_text(encoding="utf-8") + "\n;undefined")
    # Only the violations are read: axe then skips building selectors for every node that
    # passed (the same violations; the every-page walk takes a quarter less time).
    result = page.evaluate(
        "async (tags) => await window.axe.run(document,"
        " {runOnly: {type: 'tag', values: tags}, resultTypes: ['violations']})",
        AXE_TAGS,
    )
    return list(result["violations"])


def _violation_lines(violations: list[dict]) -> list[str]:
    return [
        f"{v['id']} ({v['impact']}): {v['help']} — "
        + "; ".join(" ".join(node["target"]) for node in v["nodes"][:5])
        for v in violations
    ]


def check_accessibility(page: Any, name: str = "") -> None:
    """Run axe-core on the open page and fail on any violation, listing each rule, its
    impact and the elements."""
    problems = _violation_lines(_axe_violations(page))
    assert not problems, f"axe on {name or page.url}:\n" + "\n".join(problems)


#: The impacts that fail a page in the every-page checks (issue 14: 0 critical, 0 serious).
SERIOUS = ("critical", "serious")


def axe_problems(page: Any, impacts: tuple[str, ...] = SERIOUS) -> list[str]:
    """axe-core's violations of ``impacts`` on the open page, one line each (rule, impact,
    the first elements); an empty list when there are none."""
    return _violation_lines([v for v in _axe_violations(page) if v["impact"] in impacts])


# ------------------------------------------------------------------ signing in


def pass_second_step(page: Any, email: str) -> None:
    """After the password: when the portal asks for the second factor (council staff's
    accounts have the test authenticator app), type a current code from it."""
    from playwright.sync_api import expect

    from tests.conftest import totp_code

    # The password form's answer first (a redirect away from /login), then its page loaded.
    expect(page).not_to_have_url(re.compile(r"/login$"))
    page.wait_for_load_state()
    if "/login/second-factor" not in page.url:
        return
    main = page.get_by_role("main")
    main.get_by_label("Code").fill(totp_code(email=email))
    main.get_by_role("button", name="Verify").click()
    expect(page).not_to_have_url(re.compile(r"/login/second-factor$"))


# ------------------------------------------------------------------ screenshots


#: Where the test run saves its screenshots: PORTAL_SCREENSHOTS, else test-results/screenshots
#: under the repository (ignored by git; CI may keep it as an artifact).
SCREENSHOTS = Path(
    os.environ.get("PORTAL_SCREENSHOTS") or HERE.parents[1] / "test-results" / "screenshots"
)


@pytest.fixture
def screenshot() -> Callable[[Any, str], None]:
    """``screenshot(page, name)`` saves a full-page PNG in :data:`SCREENSHOTS` (``name.png``)."""

    def take(page: Any, name: str) -> None:
        SCREENSHOTS.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(SCREENSHOTS / f"{name}.png"), full_page=True)

    return take


# ------------------------------------------------------------------ phones and languages

#: A phone's viewport (issue 14: every page checked at 390 px).
PHONE = {"width": 390, "height": 844}


def sign_in_by_form(page: Any, email: str, password: str, totp_secret: str | None = None) -> None:
    """Sign in from /login in any language (fields found by name, not by their label), and
    answer the second step with a code from ``totp_secret`` when the portal asks for one."""
    from playwright.sync_api import expect

    from tests.conftest import totp_code

    page.goto("/login")
    form = page.locator("#login-form")
    form.locator("input[name=email]").fill(email)
    form.locator("input[name=password]").fill(password)
    form.locator("input[type=submit][name=submit]").click()
    page.wait_for_load_state()
    if "/login/second-factor" in page.url:
        assert totp_secret, f"{email} is asked for a second factor"
        main = page.locator("main")
        # At the portal's time (the run may start at another instant), its last step forgotten.
        main.locator("input[name=code]").fill(totp_code(email=email, secret=totp_secret))
        main.locator("form [type=submit]").first.click()
    expect(page).not_to_have_url(re.compile(r"/login(/second-factor)?$"))


def open_menu(page: Any) -> Any:
    """On a phone: open the header's "Menu" disclosure (no JavaScript) and return its list."""
    menu = page.locator("header details.nav-menu")
    if menu.get_attribute("open") is None:
        menu.locator("summary").click()
    return menu


def choose_language(page: Any, code: str) -> None:
    """Switch the language with the header's switcher, from the phone menu when it shows."""
    from playwright.sync_api import expect

    menu = page.locator("header details.nav-menu")
    where = open_menu(page) if menu.is_visible() else page.locator("header .nav-wide")
    where.locator(f"button[name=language][value={code}]").click()
    expect(page.locator("html")).to_have_attribute("lang", code)
