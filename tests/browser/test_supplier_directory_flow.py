"""The supplier directory in a browser, on a phone (390 px), checked with axe at each step
(issue 15): a member finds a vendor by search and by the service status filter (a GET form,
no JavaScript needed) and reads its incidents; a council admin uploads a certificate that
expires soon and sees it flagged, and downloads it."""

from __future__ import annotations

import datetime as dt

import sqlalchemy as sa
from playwright.sync_api import Browser, expect

from portal.catalogue.models import Vendor
from portal.db import db
from portal.kernel.actor import Actor
from portal.kernel.clock import now_utc
from portal.suppliers import services
from tests.browser.conftest import PHONE, axe_problems, open_menu, sign_in_by_form
from tests.conftest import TEST_TOTP_SECRET
from tests.suppliers.compliance_support import pdf_bytes

COUNCIL = Actor.system("test:council")


def _fits_and_passes_axe(page, name: str) -> None:
    page.wait_for_load_state()  # after a form's navigation: the stylesheet is in force
    width = page.evaluate("() => document.documentElement.scrollWidth")
    assert width <= PHONE["width"], f"{name}: {width} px wide"
    assert not axe_problems(page, ("critical", "serious", "moderate")), name


def _world(app, make_org, make_product):
    org = make_org("buyer-org")
    make_product(sku="secure-mail", vendor="securemail", vendor_name="SecureMail")
    make_product(sku="bi-studio", vendor="datalake", vendor_name="DataLake Analytics")
    make_product(sku="cad-suite", vendor="autodraft", vendor_name="AutoDraft")
    with app.app_context():
        vendors = {v.slug: v for v in db.session.scalars(sa.select(Vendor))}
        vendors["datalake"].country = "FI"
        vendors["datalake"].legal_name = "DataLake Analytics Oy"
        vendors["autodraft"].country = "DE"
        vendors["securemail"].country = "CH"
        services.set_service_status(
            db.session, COUNCIL, vendors["datalake"], "degraded", "Report exports are slow"
        )
        services.open_incident(
            db.session,
            COUNCIL,
            vendors["datalake"],
            title="Report exports are slow",
            impact="minor",
            body="Exports take minutes instead of seconds; we are on it.",
        )
        db.session.commit()
    return org


def test_a_member_searches_and_filters_the_directory_on_a_phone(
    app, browser: Browser, base_url: str, make_org, make_product, make_user
):
    org = _world(app, make_org, make_product)
    member = make_user("member", org)
    context = browser.new_context(base_url=base_url, viewport=PHONE)
    page = context.new_page()
    try:
        sign_in_by_form(page, member.email, member.password)
        open_menu(page).get_by_role("link", name="Suppliers").click()
        expect(page.get_by_role("heading", level=1)).to_have_text("Supplier directory")
        cards = page.locator("article.vendor-card h2")
        expect(cards).to_have_text(["AutoDraft", "DataLake Analytics", "SecureMail"])
        _fits_and_passes_axe(page, "directory")

        # Search by the legal name.
        page.get_by_label("Search", exact=True).fill("oy")
        page.get_by_role("button", name="Show suppliers").click()
        expect(cards).to_have_text(["DataLake Analytics"])
        expect(page).to_have_url(f"{base_url}/suppliers?q=oy&country=&status=&product=")

        # Clear, then filter by the service status and a country.
        page.get_by_role("link", name="Clear filters").click()
        page.get_by_label("Service status").select_option("operational")
        page.get_by_label("Country").select_option("DE")
        page.get_by_role("button", name="Show suppliers").click()
        expect(cards).to_have_text(["AutoDraft"])
        _fits_and_passes_axe(page, "filtered")
        page.get_by_label("Service status").select_option("major_outage")
        page.get_by_role("button", name="Show suppliers").click()
        expect(page.get_by_text("No supplier matches these filters.")).to_be_visible()

        # A vendor's page: status, incident and its update, no council controls.
        page.goto("/suppliers?status=degraded")
        page.get_by_role("link", name="DataLake Analytics").click()
        main = page.get_by_role("main")
        expect(main).to_contain_text("Service: Degraded performance")
        expect(main.get_by_role("heading", name="Report exports are slow")).to_be_visible()
        expect(main).to_contain_text("Exports take minutes instead of seconds")
        expect(main.get_by_text("Set the service status")).to_have_count(0)
        _fits_and_passes_axe(page, "vendor page")
    finally:
        context.close()


def test_a_council_admin_uploads_an_expiring_certificate_on_a_phone(
    app, browser: Browser, base_url: str, make_org, make_product, make_user, tmp_path
):
    _world(app, make_org, make_product)
    admin = make_user("council_admin")
    pdf = tmp_path / "iso-27001.pdf"
    pdf.write_bytes(pdf_bytes())
    not_pdf = tmp_path / "photo.pdf"
    not_pdf.write_bytes(b"\x89PNG\r\n\x1a\n not a pdf at all")
    today = now_utc().date()
    context = browser.new_context(base_url=base_url, viewport=PHONE, accept_downloads=True)
    page = context.new_page()
    try:
        sign_in_by_form(page, admin.email, admin.password, TEST_TOTP_SECRET)
        page.goto("/suppliers/autodraft")
        _fits_and_passes_axe(page, "vendor page, council")
        page.get_by_role("button", name="Upload a document").click()
        _fits_and_passes_axe(page, "upload form")
        form = page.get_by_role("main").locator("form")
        form.get_by_label("Title").fill("ISO/IEC 27001 certificate")
        form.get_by_label("Issued on").fill((today - dt.timedelta(days=340)).isoformat())
        form.get_by_label("Expires on").fill((today + dt.timedelta(days=20)).isoformat())
        form.get_by_label("PDF file").set_input_files(str(not_pdf))
        form.get_by_role("button", name="Upload document").click()
        expect(page.locator(".field-error")).to_have_text("This file is not a PDF.")
        _fits_and_passes_axe(page, "upload refused")

        form.get_by_label("PDF file").set_input_files(str(pdf))
        form.get_by_role("button", name="Upload document").click()
        expect(page).to_have_url(f"{base_url}/suppliers/autodraft#documents")
        documents = page.locator("#documents")
        expect(documents).to_contain_text("expires in 20 days")
        _fits_and_passes_axe(page, "uploaded")
        with page.expect_download() as caught:
            documents.get_by_role("link", name="ISO/IEC 27001 certificate").click()
        download = caught.value
        assert download.suggested_filename == "iso-27001.pdf"
        assert download.path().read_bytes() == pdf.read_bytes()
    finally:
        context.close()
