"""Council settings: defaults, the page, validation and who may change them."""

from portal.db import db
from portal.settings.services import settings_get
from tests.conftest import flashes, post_form

VALID = {
    "default_tax_rate_percent": "19.5",
    "idle_seat_days": "21",
    "invoice_prefix": "BC",
    "credit_note_prefix": "BCN",
    "payment_terms_days": "14",
    "overdue_grace_days": "7",
    "suspend_subscriptions_when_overdue": "y",
    "bank_details": "IBAN XX00 1234",
}


def test_defaults(app):
    with app.app_context():
        settings = settings_get(db.session)
    assert (settings.idle_seat_days, settings.invoice_prefix, settings.default_tax_rate_bp) == (
        30,
        "INV",
        0,
    )


def test_council_admin_changes_settings(app, signed_in):
    client = signed_in("council_admin")
    response = post_form(client, "/council/settings", VALID)
    assert response.status_code == 302
    with app.app_context():
        settings = settings_get(db.session)
    assert settings.default_tax_rate_bp == 1950
    assert (settings.idle_seat_days, settings.invoice_prefix, settings.credit_note_prefix) == (
        21,
        "BC",
        "BCN",
    )
    assert settings.suspend_subscriptions_when_overdue is True
    assert "19.50" in client.get("/council/settings").get_data(as_text=True)


def test_bad_settings_are_explained_and_change_nothing(app, signed_in):
    client = signed_in("council_admin")
    for field, value, message in (
        ("invoice_prefix", "inv-2026", "Use 1 to 12 capital letters and digits"),
        ("idle_seat_days", "0", "Number must be between 1 and 365"),
        ("default_tax_rate_percent", "120", "Number must be between 0 and 100"),
    ):
        response = post_form(client, "/council/settings", {**VALID, field: value})
        assert response.status_code == 400, field
        assert any(message in m for m in flashes(response)), (field, flashes(response))
    with app.app_context():
        assert settings_get(db.session).invoice_prefix == "INV"


def test_only_council_admins(app, signed_in, make_org):
    org = make_org()
    for role, org_ref in (("finance", None), ("org_admin", org), ("member", org)):
        assert signed_in(role, org_ref).get("/council/settings").status_code == 403
