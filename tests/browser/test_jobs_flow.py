"""The Jobs page in a real browser: a council admin retries a failed job and cancels a queued
one; finance reads it from the navigation. axe checks the page."""

from __future__ import annotations

import re

from playwright.sync_api import Page, expect

from portal.db import db
from portal.jobs.models import Job
from portal.kernel.clock import now_utc
from tests.browser.conftest import check_accessibility
from tests.browser.test_membership_flow import PASSWORD, sign_in, sign_out


def _main(page: Page):
    return page.get_by_role("main")


def _jobs(app) -> tuple[int, int]:
    with app.app_context():
        failed = Job(
            name="payments.collect",
            arguments={},
            state="failed",
            attempts=1,
            max_attempts=1,
            last_error="ConnectionError: Stripe did not answer",
            enqueued_by="job:schedule",
            enqueued_at=now_utc(),
            finished_at=now_utc(),
        )
        queued = Job(
            name="billing.invoice_run",
            arguments={"run_id": 7},
            state="queued",
            attempts=0,
            max_attempts=3,
            enqueued_by="finance@council.example",
            enqueued_at=now_utc(),
        )
        db.session.add_all([failed, queued])
        db.session.commit()
        return failed.id, queued.id


def test_council_staff_see_retry_and_cancel_jobs(app, page: Page, make_user, screenshot):
    failed, queued = _jobs(app)
    admin = make_user("council_admin", email="ada@council.example", password=PASSWORD)
    finance = make_user("finance", email="fin@council.example", password=PASSWORD)

    page.goto("/")
    sign_in(page, admin.email, PASSWORD)
    nav = page.get_by_role("navigation", name="Main")
    nav.locator("summary", has_text="Admin").click()  # the wide menu's group (a phone's is hidden)
    nav.get_by_role("link", name="Jobs").click()
    expect(page).to_have_url(re.compile(r"/council/jobs$"))
    expect(page.get_by_role("heading", level=1)).to_have_text("Jobs")
    expect(_main(page)).to_contain_text("ConnectionError: Stripe did not answer")
    check_accessibility(page, "jobs")
    screenshot(page, "jobs")

    _main(page).get_by_role("button", name=f"Retry job {failed}").click()
    expect(page.get_by_role("status").first).to_contain_text(
        f"Job {failed} (Card payment collection)"
    )
    _main(page).get_by_role("button", name=f"Cancel job {queued}").click()
    expect(page.get_by_role("status").first).to_contain_text("cancelled")
    _main(page).get_by_role("link", name=re.compile(r"^Cancelled")).click()
    expect(page).to_have_url(re.compile(r"show=cancelled"))
    expect(_main(page)).to_contain_text("billing.invoice_run")
    expect(_main(page).get_by_role("button", name=f"Retry job {queued}")).to_be_visible()
    check_accessibility(page, "jobs, cancelled")
    sign_out(page)

    sign_in(page, finance.email, PASSWORD)
    page.get_by_role("navigation", name="Main").get_by_role("link", name="Jobs").click()
    expect(page.get_by_role("heading", level=1)).to_have_text("Jobs")
    expect(_main(page).get_by_role("button")).to_have_count(0)
    check_accessibility(page, "jobs, finance")
