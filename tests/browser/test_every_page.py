"""Every page of every role, on a phone (390 px), in English and in Russian (issue 14).

The demo council is loaded (portal.demo: six organisations, invoices, usage, a pending
application); each role signs in (council admin and finance with the demo's
authenticator app), chooses the language with the header's switcher from the phone
menu, then walks every page it can reach by following the links the pages show (one
page per route and query shape, at most :data:`MAX_PAGES`). Every page must:

* answer without a server error;
* be no wider than the phone: ``document.documentElement.scrollWidth`` ≤ 390;
* have 0 critical and 0 serious axe-core violations (WCAG 2.1 A/AA and best practices);
* say it is in the chosen language (``<html lang>``; under /api/ the browser's language).

All problems of a walk are listed together when the test fails. The pages visited are
printed (``-s``) so a reader sees what was covered.
"""

from __future__ import annotations

from collections import Counter
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import pytest
from playwright.sync_api import Browser
from playwright.sync_api import Error as PlaywrightError
from werkzeug.exceptions import HTTPException

from portal.db import db_session
from portal.demo import (
    COUNCIL_ADMIN,
    COUNCIL_FINANCE,
    DEMO_PASSWORD,
    DEMO_TOTP_SECRET,
    VENDOR_ADMIN,
    load_demo,
)
from tests.browser.conftest import AXE, PHONE, axe_problems, choose_language, sign_in_by_form

#: Who walks, and from where (besides the links their pages show).
ROLES: dict[str, tuple[str | None, list[str]]] = {
    "anonymous": (None, ["/", "/login", "/apply", "/password/forgot", "/api/v1/docs"]),
    "council_admin": (COUNCIL_ADMIN, ["/api/v1/docs", "/council/purchase-orders", "/demand"]),
    "finance": (
        COUNCIL_FINANCE,
        ["/finance/overdue", "/finance/bank-import", "/council/purchase-orders"],
    ),
    "org_admin": ("admin@acme-gmbh.example", ["/org/scim/groups"]),
    "member": ("jonas@acme-gmbh.example", ["/requests/products"]),
    "vendor_admin": (VENDOR_ADMIN, []),
}
LANGUAGES = ["en", "ru"]
#: At most this many pages per walk, and this many of one route with path arguments
#: (two invoices, two organisations: the same template with other data).
MAX_PAGES = 90
PER_ROUTE = 2
#: Never followed: files and feeds, the machines' APIs, identity providers, development pages.
SKIPPED_PREFIXES = (
    "/static/",
    "/scim/",
    "/sso/",
    "/login/realm",
    "/healthz",
    "/readyz",
    "/metrics",
    "/dev/",
    "/org/payment-method/checkout",
)
SKIPPED_SUFFIXES = (".csv", ".json", ".pdf")


@pytest.fixture
def demo(app) -> None:
    """The demo council, as `portal demo` loads it."""
    with app.app_context():
        load_demo(db_session())
        db_session().commit()


def _route(app, path: str) -> tuple[str, bool] | None:
    """The endpoint serving GET ``path`` and whether it takes path arguments; None: no page."""
    adapter = app.url_map.bind("localhost")
    try:
        endpoint, arguments = adapter.match(path, method="GET")
    except HTTPException:
        return None
    return endpoint, bool(arguments)


def _followed(path: str, language: str) -> bool:
    if path.startswith("/api/"):
        # The API docs page speaks the browser's language, English, whatever the switcher
        # chose (docs/I18N.md): the same page in every walk, so the English walks check it
        # (Swagger UI is the slowest page to render and check).
        return path == "/api/v1/docs" and language == "en"
    return not path.startswith(SKIPPED_PREFIXES) and not path.endswith(SKIPPED_SUFFIXES)


def _check(page: Any, language: str) -> list[str]:
    """The open page's problems (width, accessibility, language)."""
    problems = []
    if urlsplit(page.url).path == "/api/v1/docs":
        # Swagger UI renders the OpenAPI document after loading it.
        page.locator("#swagger-ui .opblock").first.wait_for(timeout=15_000)
    width = page.evaluate("() => document.documentElement.scrollWidth")
    if width > PHONE["width"]:
        wide = page.evaluate(
            """(limit) => Array.from(document.querySelectorAll('body *'))
                 .filter(e => e.getBoundingClientRect().right > limit + 1)
                 .filter(e => !e.closest('.table-scroll'))
                 .slice(0, 3)
                 .map(e => e.tagName.toLowerCase() + (e.className ? '.' + e.className : ''))""",
            PHONE["width"],
        )
        problems.append(f"{width} px wide (widest: {', '.join(wide)})")
    problems += axe_problems(page)
    # Under /api/ the portal speaks the browser's Accept-Language (English here), not the
    # switcher's choice (docs/I18N.md): the API docs page follows its API.
    expected = "en" if urlsplit(page.url).path.startswith("/api/") else language
    lang = page.locator("html").get_attribute("lang")
    if lang != expected:
        problems.append(f'<html lang="{lang}">, not {expected}')
    return problems


def walk(app, page: Any, base_url: str, starts: list[str], language: str) -> dict[str, list[str]]:
    """Visit every page reachable from ``starts`` (same site, GET, pages only); each one's
    problems by path (an empty list: none)."""
    queue = [urlsplit(page.url).path, *starts]
    seen_urls: set[str] = set()
    seen_shapes: set[tuple] = set()
    per_route: Counter[str] = Counter()
    results: dict[str, list[str]] = {}
    while queue and len(results) < MAX_PAGES:
        url = queue.pop(0)
        parts = urlsplit(url)
        if parts.netloc and f"{parts.scheme}://{parts.netloc}" != base_url:
            continue
        path = parts.path or "/"
        target = path + (f"?{parts.query}" if parts.query else "")
        if target in seen_urls or not _followed(path, language):
            continue
        seen_urls.add(target)
        route = _route(app, path)
        if route is None:
            continue
        endpoint, has_arguments = route
        shape = (endpoint, tuple(sorted(k for k, _ in parse_qsl(parts.query))))
        if shape in seen_shapes and not has_arguments:
            continue
        if has_arguments and per_route[shape] >= PER_ROUTE:
            continue
        seen_shapes.add(shape)
        per_route[shape] += 1
        try:
            response = page.goto(target)
        except PlaywrightError as error:
            if "Download is starting" in str(error):
                continue  # a file (?format=csv), not a page
            raise
        if response is None or "text/html" not in (response.headers.get("content-type") or ""):
            continue
        if urlsplit(page.url).path != path and urlsplit(page.url).path in results:
            continue  # a redirect to a page already checked
        problems = [] if response.status < 500 else [f"answered {response.status}"]
        problems += _check(page, language)
        results[target] = problems
        links = page.eval_on_selector_all(
            "a[href]:not([download])", "links => links.map(a => a.href)"
        )
        queue += [link.split("#")[0] for link in links]
    return results


@pytest.mark.parametrize("language", LANGUAGES)
@pytest.mark.parametrize("role", list(ROLES))
def test_every_page_fits_a_phone_and_passes_axe(
    app, demo, browser: Browser, base_url: str, role: str, language: str
):
    email, starts = ROLES[role]
    context = browser.new_context(base_url=base_url, viewport=PHONE)
    # axe-core is in every page the walk opens, loaded by the browser itself (not sent
    # through the DevTools protocol page by page).
    context.add_init_script(path=str(AXE))
    page = context.new_page()
    try:
        if email:
            sign_in_by_form(page, email, DEMO_PASSWORD, DEMO_TOTP_SECRET)
        else:
            page.goto("/")
        if language != "en":
            choose_language(page, language)
        results = walk(app, page, base_url, starts, language)
    finally:
        context.close()
    print(f"\n{role} ({language}): {len(results)} pages: {', '.join(sorted(results))}")
    assert len(results) >= (5 if email else 4), sorted(results)  # the walk really walked
    failures = {path: problems for path, problems in results.items() if problems}
    assert not failures, f"{role} ({language}) at {PHONE['width']} px:\n" + "\n".join(
        f"{path}\n    " + "\n    ".join(problems) for path, problems in sorted(failures.items())
    )
