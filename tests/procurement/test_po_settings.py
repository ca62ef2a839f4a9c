"""The finance-approval threshold of purchase orders on the council settings page."""

from __future__ import annotations

from portal.db import db
from portal.settings.services import settings_get
from tests.conftest import post_form
from tests.settings.test_settings import VALID
from tests.support import count


def _threshold(app) -> dict[str, int]:
    with app.app_context():
        return settings_get(db.session).purchase_order_finance_threshold


def test_the_threshold_is_shown_and_changed_a_currency_a_line(app, signed_in):
    client = signed_in("council_admin")
    page = client.get("/council/settings").get_data(as_text=True)
    assert "EUR 10000.00" in page
    response = post_form(
        client,
        "/council/settings",
        {**VALID, "purchase_order_finance_threshold": "eur 500\n\nUSD 1,250.50\r\nJPY 90000"},
    )
    assert response.status_code == 302
    assert _threshold(app) == {"EUR": 50000, "USD": 125050, "JPY": 90000}
    assert "USD 1250.50" in client.get("/council/settings").get_data(as_text=True)


def test_a_bad_line_is_refused_beside_the_field_and_nothing_is_saved(app, signed_in):
    from portal.settings.models import CouncilSetting

    client = signed_in("council_admin")
    for text in ("EUR", "EURO 10", "EUR 1.001", "EUR 10\nEUR 20", "EUR ten", "JPY 1.5"):
        response = post_form(
            client, "/council/settings", {**VALID, "purchase_order_finance_threshold": text}
        )
        assert response.status_code == 400, text
        html = response.get_data(as_text=True)
        assert 'id="purchase_order_finance_threshold-error"' in html, text
    assert count(app, CouncilSetting) == 0
    assert _threshold(app) == {"EUR": 1_000_000}


def test_left_out_of_the_form_the_threshold_is_kept(app, signed_in):
    client = signed_in("council_admin")
    assert post_form(client, "/council/settings", VALID).status_code == 302
    assert _threshold(app) == {"EUR": 1_000_000}


def test_po_is_no_invoice_or_credit_note_prefix(app, signed_in):
    client = signed_in("council_admin")
    for field in ("invoice_prefix", "credit_note_prefix"):
        response = post_form(client, "/council/settings", {**VALID, field: "PO"})
        assert response.status_code == 400
        assert "PO numbers purchase orders" in response.get_data(as_text=True)
    with app.app_context():
        assert settings_get(db.session).invoice_prefix == "INV"
