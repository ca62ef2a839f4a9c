"""Issue 14, organisation forms: every field's problem on the first submit, input kept; the
buyer's invoice details (address, invoice language) shown and edited on the profile pages.

The issue: "a bad tax rate hides the slug and email errors until the next submit" — the
form's own checks (the tax rate's range) refused first, so the service's (slug format, a
taken slug, the email's syntax) never ran.
"""

from __future__ import annotations

import html
import re

import sqlalchemy as sa

from portal.db import db
from portal.tenancy.models import Organisation
from portal.tenancy.services import organisation_problems
from tests.conftest import post_form
from tests.support import db_rows
from tests.tenancy.test_organisations import APPLICATION, NEW_ORG


def _errors(response) -> dict[str, str]:
    """Every field's error shown on the page: {field id: message}."""
    page = html.unescape(response.get_data(as_text=True))
    return dict(re.findall(r'id="([\w-]+)-error" class="field-error">([^<]*)<', page))


def test_a_bad_tax_rate_no_longer_hides_the_slug_and_email_errors(app, make_org, signed_in):
    council = signed_in("council_admin")
    before = db_rows(app)
    bad = {"slug": "Bad Slug!", "billing_email": "nobody-at-example", "tax_rate_percent": "150"}
    response = post_form(council, "/council/organisations/new", {**NEW_ORG, **bad})
    assert response.status_code == 400
    errors = _errors(response)
    assert set(errors) == {"slug", "billing_email", "tax_rate_percent"}, errors
    assert "Use lower-case letters, digits and single hyphens" in errors["slug"]
    assert "Enter a valid email address" in errors["billing_email"]
    assert "Number must be between 0 and 100." in errors["tax_rate_percent"]
    page = response.get_data(as_text=True)
    assert 'value="nobody-at-example"' in page and 'value="Bad Slug!"' in page  # kept
    assert db_rows(app) == before

    # A taken slug is named on the first submit too, beside another field's problem.
    make_org("taken")
    response = post_form(
        council,
        "/council/organisations/new",
        {**NEW_ORG, "slug": "taken", "tax_rate_percent": "abc", "country": "XX"},
    )
    errors = _errors(response)
    assert errors["slug"] == "This slug is taken; choose another."
    assert "tax_rate_percent" in errors and "country" in errors


def test_the_service_reports_every_field_at_once(app, make_org):
    make_org("taken")
    with app.app_context():
        problems = organisation_problems(
            db.session,
            data={
                "slug": "taken",
                "name": "",
                "country": "XX",
                "currency": "EUR",
                "billing_email": "nope",
                "tax_rate_bp": 20000,
            },
        )
    assert set(problems) == {"slug", "name", "country", "billing_email", "tax_rate_bp"}


def test_the_application_shows_every_error_at_once(app, make_org):
    make_org("taken")
    visitor = app.test_client()
    bad = {"slug": "taken", "currency": "ZZZ", "applicant_email": "leyla", "name": ""}
    response = post_form(visitor, "/apply", {**APPLICATION, **bad})
    assert response.status_code == 400
    errors = _errors(response)
    assert {"slug", "currency", "applicant_email", "name"} <= set(errors), errors
    assert 'value="leyla"' in response.get_data(as_text=True)


def test_the_profile_shows_every_error_and_keeps_the_input(app, make_org, signed_in):
    org = make_org("acme")
    admin = signed_in("org_admin", org)
    before = db_rows(app)
    response = post_form(
        admin,
        "/org/profile",
        {"name": "", "tax_id": "", "billing_email": "not-an-email", "billing_address": "x" * 501},
    )
    assert response.status_code == 400
    errors = _errors(response)
    assert {"name", "billing_email", "billing_address"} <= set(errors), errors
    assert 'value="not-an-email"' in response.get_data(as_text=True)
    assert db_rows(app) == before


def test_an_org_admin_edits_the_buyer_details_the_council_sees(app, make_org, signed_in):
    org = make_org("acme")
    admin = signed_in("org_admin", org)
    address = "Acme GmbH\nHauptstraße 1\n10115 Berlin"
    response = post_form(
        admin,
        "/org/profile",
        {
            "name": "Acme GmbH",
            "tax_id": "DE123456789",
            "billing_email": "billing@acme.example",
            "billing_address": address,
            "invoice_language": "ru",
        },
    )
    assert response.status_code == 302
    with app.app_context():
        saved = db.session.scalar(sa.select(Organisation).where(Organisation.id == org.id))
        assert (saved.billing_address, saved.invoice_language, saved.tax_id) == (
            address,
            "ru",
            "DE123456789",
        )
    profile = html.unescape(admin.get("/org/profile").get_data(as_text=True))
    assert "Hauptstraße 1" in profile and '<option selected value="ru">' in profile
    council = signed_in("council_admin")
    detail = html.unescape(council.get("/council/organisations/acme").get_data(as_text=True))
    assert "Hauptstraße 1" in detail and "DE123456789" in detail and "Русский" in detail
    edit = html.unescape(council.get("/council/organisations/acme/edit").get_data(as_text=True))
    assert "Hauptstraße 1" in edit
