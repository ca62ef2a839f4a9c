"""Finance closes a month in a real browser; the organisation's admin sees the invoice."""

from __future__ import annotations

import re
from pathlib import Path

from playwright.sync_api import Browser, Page, expect

from portal.billing.models import Invoice
from portal.db import db
from tests.billing.conftest import billed  # noqa: F401  (fixture re-export)
from tests.browser.test_membership_flow import sign_in


def _main(page: Page):
    return page.get_by_role("main")


def test_finance_runs_reviews_finalises_and_downloads_then_the_org_admin_sees_it(
    app,
    page: Page,
    browser: Browser,
    base_url: str,
    billed,  # noqa: F811
    make_user,
    mailbox,
    tmp_path: Path,
    screenshot,
    jobs_inline,  # the run's job runs as the page's transaction commits (no worker here)
):
    finance = make_user("finance")
    org_admin = make_user("org_admin", billed["org"])
    period = billed["period"]

    page.goto("/")
    sign_in(page, finance.email, finance.password)
    page.get_by_role("navigation", name="Main").get_by_role("link", name="Invoices").click()
    expect(page.get_by_role("heading", level=1)).to_have_text(f"Finance · {period}")
    expect(_main(page).get_by_label("Month to invoice")).to_have_value(period)
    _main(page).get_by_role("button", name="Run invoices").click()

    # the run page refreshes itself (no JavaScript) until the run is done
    expect(page).to_have_url(re.compile(r"/finance/runs/\d+$"))
    expect(page.get_by_text("The run is done")).to_be_visible(timeout=30_000)
    expect(_main(page)).to_contain_text("1 created")
    screenshot(page, "finance-run-done")
    _main(page).get_by_role("link", name=f"Review the invoices of {period}").click()

    _main(page).get_by_role("link", name="Org acme").click()
    expect(_main(page).get_by_role("heading", name="What produced each line")).to_be_visible()
    # 10 seats × the month's 28–31 days
    expect(_main(page)).to_contain_text(re.compile(r"seat days: (280|290|300|310)\b"))
    expect(_main(page).get_by_role("article", name="Invoice")).to_contain_text("Draft invoice")
    screenshot(page, "finance-draft-review")
    _main(page).get_by_role("button", name="Finalise and send").click()
    expect(page.get_by_role("status")).to_contain_text("issued; the PDF is stored and its mail")
    with app.app_context():
        invoice = db.session.scalars(db.select(Invoice)).one()
        number, invoice_id, stored = invoice.number, invoice.id, invoice.pdf
    expect(_main(page).get_by_role("article", name="Invoice")).to_contain_text(f"Invoice {number}")
    screenshot(page, "finance-invoice-open")

    # the PDF, as finance downloads it, is the stored one
    pdf = page.request.get(
        _main(page).get_by_role("button", name="Download PDF").get_attribute("href")
    )
    assert pdf.ok and pdf.headers["content-type"] == "application/pdf"
    assert pdf.body() == stored and stored.startswith(b"%PDF")
    assert any(m["To"] == "billing@acme.example" for m in mailbox)

    # the month's CSV from the exports page
    page.get_by_role("navigation", name="Main").get_by_role("link", name="Exports").click()
    expect(_main(page)).to_contain_text("€357.00")
    with page.expect_download() as download:
        _main(page).get_by_role("button", name="Download CSV").click()
    csv_path = tmp_path / "invoices.csv"
    download.value.save_as(csv_path)
    assert download.value.suggested_filename == f"invoices-{period}.csv"
    lines = csv_path.read_text().splitlines()
    assert lines[0].startswith("organisation,") and number in lines[1]

    # the organisation's admin, in a browser of their own
    context = browser.new_context(base_url=base_url)
    theirs = context.new_page()
    theirs.goto("/")
    sign_in(theirs, org_admin.email, org_admin.password)
    theirs.get_by_role("navigation", name="Main").get_by_role("link", name="Invoices").click()
    theirs.get_by_role("link", name=number, exact=True).click()
    expect(theirs).to_have_url(re.compile(rf"/org/invoices/{invoice_id}$"))
    document = theirs.get_by_role("article", name="Invoice")
    expect(document).to_contain_text(f"Invoice {number}")
    expect(document).to_contain_text("€357.00")
    # acme is billed manually: the council's bank details and the payment reference
    expect(document).to_contain_text("IBAN")
    expect(document.locator(".invoice-reference")).to_have_text(number)
    screenshot(theirs, "org-admin-invoice")
    own_pdf = theirs.request.get(f"/org/invoices/{invoice_id}.pdf")
    assert own_pdf.body() == stored
    context.close()
