"""A failed card payment is told to each org admin in the language they chose (issue 14)."""

from __future__ import annotations

from portal.billing.models import Invoice
from portal.db import db
from portal.identity.models import User
from tests.payments.conftest import finalise, save_card, wait_for
from tests.support import client_for, quick_user


def _speaks(app, user, locale: str | None) -> None:
    with app.app_context():
        db.session.get(User, user.id).locale = locale
        db.session.commit()


def test_each_admin_reads_the_failure_in_their_language(app, card_org, stripe_api, mailbox):
    org, russian = card_org["org"], card_org["admin"]
    english = quick_user(app, "org_admin", org)
    _speaks(app, russian, "ru")
    save_card(app, org, "pm_card_chargeCustomerFail")
    invoice_id = finalise(app, org)
    wait_for(
        lambda: (
            len([m for m in mailbox if "failed" in m["Subject"] or "Оплата" in m["Subject"]]) >= 2
        )
    )
    with app.app_context():
        number = db.session.get(Invoice, invoice_id).number
    subjects = {m["To"]: m["Subject"] for m in mailbox if m["To"] in (russian.email, english.email)}
    assert subjects == {
        russian.email: f"Оплата счёта {number} не прошла",
        english.email: f"Payment of invoice {number} failed",
    }


def test_the_payment_page_translates_the_stored_failure(app, card_org, stripe_api):
    org = card_org["org"]
    finalise(app, org)  # no card saved: the attempt fails with the portal's own message
    page = client_for(app, "org_admin", org)
    english = page.get("/org/payment-method").get_data(as_text=True)
    russian = page.get("/org/payment-method", headers={"Accept-Language": "ru"}).get_data(
        as_text=True
    )
    assert "No card or other payment method is saved for your organisation." in english
    assert "Для вашей организации не сохранена ни карта, ни другой способ оплаты." in russian
