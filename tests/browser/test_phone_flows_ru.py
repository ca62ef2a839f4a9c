"""Each role's main flow on a phone (390 px), in Russian (issue 14), on the demo council.

* council admin: approves the pending membership application (Caspian Energy);
* finance: runs this month's invoices, then finalises all drafts through the confirm step;
* org admin: releases a person's seat through the confirm step;
* member: asks for a seat from the catalogue.

Each chooses Russian with the header's switcher, finds its way through the phone menu,
and every page on the way is checked: no wider than 390 px, ``<html lang="ru">``, 0
critical and 0 serious axe violations. Elements are found by address and form, not by
their words (the words are Russian); the confirm step's words, and the menu's, are
checked in Russian. Screenshots of every step are saved by the run in
``test-results/screenshots/`` (or PORTAL_SCREENSHOTS): ``ru-390-<role>-<step>.png``.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

import pytest
import sqlalchemy as sa
from playwright.sync_api import Browser, Page, expect

from portal.billing.models import Invoice
from portal.db import db, db_session
from portal.demo import COUNCIL_ADMIN, COUNCIL_FINANCE, DEMO_PASSWORD, DEMO_TOTP_SECRET, load_demo
from portal.identity.models import User
from portal.kernel.clock import now_utc
from portal.kernel.periods import period_of
from portal.seats.models import SeatAssignment, SeatRequest
from portal.tenancy.models import Organisation
from tests.browser.conftest import (
    PHONE,
    axe_problems,
    choose_language,
    open_menu,
    sign_in_by_form,
)


@pytest.fixture
def demo(app) -> None:
    with app.app_context():
        load_demo(db_session())
        db_session().commit()


@pytest.fixture
def phone_ru(browser: Browser, base_url: str):
    """A phone-sized browser page; the caller signs in and chooses Russian."""
    context = browser.new_context(base_url=base_url, viewport=PHONE)
    yield context.new_page()
    context.close()


def on_phone_in_russian(page: Page, screenshot: Callable[[Any, str], None], name: str) -> None:
    """The open page is in Russian, fits the phone and has no serious axe violation; saved."""
    page.wait_for_load_state()
    expect(page.locator("html")).to_have_attribute("lang", "ru")
    assert page.evaluate("() => document.documentElement.scrollWidth") <= PHONE["width"], name
    assert axe_problems(page) == [], name
    screenshot(page, f"ru-390-{name}")


def start(page: Page, email: str, screenshot, role: str) -> None:
    """Sign in, then switch to Russian from the phone menu (its summary says «Меню»)."""
    sign_in_by_form(page, email, DEMO_PASSWORD, DEMO_TOTP_SECRET)
    expect(page.locator("header .nav-wide")).to_be_hidden()  # the row of links is folded
    choose_language(page, "ru")
    expect(page.locator("header details.nav-menu > summary")).to_have_text(re.compile("Меню"))
    on_phone_in_russian(page, screenshot, f"{role}-1-home")


def go(page: Page, href: str) -> None:
    """Follow the phone menu's link to ``href``."""
    open_menu(page).locator(f'a[href="{href}"]').click()
    expect(page).to_have_url(re.compile(re.escape(href) + "$"))


def test_council_admin_approves_an_application(app, demo, phone_ru: Page, screenshot):
    page = phone_ru
    start(page, COUNCIL_ADMIN, screenshot, "council-admin")
    go(page, "/council/organisations")
    on_phone_in_russian(page, screenshot, "council-admin-2-organisations")
    page.locator('main a[href="/council/organisations/caspian-energy"]').first.click()
    on_phone_in_russian(page, screenshot, "council-admin-3-application")
    page.locator('form[action$="/caspian-energy/status/approve"] [type=submit]').click()
    expect(page.locator(".flash-success")).to_be_visible()
    on_phone_in_russian(page, screenshot, "council-admin-4-approved")
    with app.app_context():
        status = db.session.scalar(
            sa.select(Organisation.status).where(Organisation.slug == "caspian-energy")
        )
    assert status == "active"


def test_finance_runs_the_month_and_finalises_every_draft(
    app, demo, phone_ru: Page, screenshot, jobs_inline
):
    page = phone_ru
    period = period_of(now_utc().date())
    start(page, COUNCIL_FINANCE, screenshot, "finance")
    go(page, "/finance")
    on_phone_in_russian(page, screenshot, "finance-2-finance")
    run = page.locator('form[action="/finance/runs"]')
    run.locator("input[name=period]").fill(period)
    run.locator("[type=submit]").click()
    expect(page).to_have_url(re.compile(r"/finance/runs/\d+$"))
    on_phone_in_russian(page, screenshot, "finance-3-run")

    page.goto(f"/finance?period={period}")
    finalise = page.locator('form[action="/finance/finalize-all"] [type=submit]')
    expect(finalise).to_be_visible(timeout=30_000)  # the run's drafts are there
    with app.app_context():
        drafts = db.session.scalar(
            sa.select(sa.func.count())
            .select_from(Invoice)
            .where(Invoice.period == period, Invoice.status == "draft")
        )
    assert drafts > 0
    finalise.click()

    confirm = page.locator("article.confirm")
    expect(confirm).to_contain_text("Это нельзя отменить.")
    expect(confirm.locator("h1")).to_contain_text(period)
    expect(confirm).to_contain_text(str(drafts))
    on_phone_in_russian(page, screenshot, "finance-4-confirm")
    with app.app_context():  # asking changed nothing
        assert (
            db.session.scalar(
                sa.select(sa.func.count()).select_from(Invoice).where(Invoice.status == "draft")
            )
            == drafts
        )
    confirm.locator("[type=submit]").click()
    expect(page.locator(".flash-success")).to_be_visible()
    on_phone_in_russian(page, screenshot, "finance-5-finalised")
    with app.app_context():
        left = db.session.scalar(
            sa.select(sa.func.count())
            .select_from(Invoice)
            .where(Invoice.period == period, Invoice.status == "draft")
        )
    assert left == 0


def test_org_admin_releases_a_seat(app, demo, phone_ru: Page, screenshot):
    page = phone_ru
    start(page, "admin@acme-gmbh.example", screenshot, "org-admin")
    go(page, "/org/subscriptions")
    on_phone_in_russian(page, screenshot, "org-admin-2-subscriptions")
    page.locator('main a[href^="/org/subscriptions/"]').first.click()
    on_phone_in_russian(page, screenshot, "org-admin-3-subscription")
    release = page.locator('form[action$="/seats/release"]').first
    email = release.locator("input[name=user_email]").get_attribute("value")
    release.locator("[type=submit]").click()

    confirm = page.locator("article.confirm")
    expect(confirm).to_contain_text("Это нельзя отменить.")
    expect(confirm).to_contain_text(email)
    expect(confirm.locator("[type=submit]")).to_have_text("Освободить место")
    on_phone_in_russian(page, screenshot, "org-admin-4-confirm")
    with app.app_context():  # asking changed nothing
        user_id = db.session.scalar(sa.select(User.id).where(User.email == email))
    held = _active_seats(app, user_id)
    assert held > 0
    confirm.locator("[type=submit]").click()
    expect(page.locator(".flash-success")).to_be_visible()
    on_phone_in_russian(page, screenshot, "org-admin-5-released")
    assert _active_seats(app, user_id) == held - 1


def _active_seats(app, user_id: int) -> int:
    with app.app_context():
        return db.session.scalar(
            sa.select(sa.func.count())
            .select_from(SeatAssignment)
            .where(SeatAssignment.user_id == user_id, SeatAssignment.released_at.is_(None))
        )


def test_member_asks_for_a_seat(app, demo, phone_ru: Page, screenshot):
    page = phone_ru
    email = "jonas@acme-gmbh.example"
    start(page, email, screenshot, "member")
    go(page, "/catalogue")
    on_phone_in_russian(page, screenshot, "member-2-catalogue")
    ask = page.locator('form[action$="/request"]').first
    expect(ask).to_be_visible()
    ask.locator("input[name=note]").fill("Нужно для проекта")
    ask.locator("[type=submit]").click()
    expect(page.locator(".flash-success, .flash-info").first).to_be_visible()
    on_phone_in_russian(page, screenshot, "member-3-requested")
    with app.app_context():
        user_id = db.session.scalar(sa.select(User.id).where(User.email == email))
        notes = db.session.scalars(
            sa.select(SeatRequest.note).where(SeatRequest.user_id == user_id)
        ).all()
    assert "Нужно для проекта" in notes
