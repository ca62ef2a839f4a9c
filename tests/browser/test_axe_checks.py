"""The accessibility checks themselves: axe-core, as the browser tests run it, finds a page's
violations (a check that could not fail would pass every page)."""

from __future__ import annotations

import pytest
from playwright.sync_api import Browser

from tests.browser.conftest import PHONE, axe_problems, check_accessibility

BROKEN = """<!doctype html><html lang="en"><head><title>Broken</title></head><body><main>
<h1>Broken</h1><img src="data:image/gif;base64,R0lGODlhAQABAAAAACw=">
<form><input type="text"></form>
</main></body></html>"""

FINE = """<!doctype html><html lang="en"><head><title>Fine</title></head><body><main>
<h1>Fine</h1><img src="data:image/gif;base64,R0lGODlhAQABAAAAACw=" alt="A dot">
<form><label for="q">Search</label><input id="q" type="text"></form>
</main></body></html>"""


def test_axe_finds_the_violations_of_a_broken_page_and_none_on_a_fine_one(browser: Browser):
    context = browser.new_context(viewport=PHONE)
    page = context.new_page()
    try:
        page.set_content(BROKEN)
        problems = axe_problems(page)
        assert any(p.startswith("image-alt (critical)") for p in problems), problems
        assert any(p.startswith("label (critical)") for p in problems), problems
        with pytest.raises(AssertionError, match="image-alt"):
            check_accessibility(page, "the broken page")
        page.set_content(FINE)
        assert axe_problems(page) == []
        check_accessibility(page, "the fine page")
    finally:
        context.close()
