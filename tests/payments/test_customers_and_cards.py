"""The organisation's Stripe customer and payment method, against localstripe."""

from __future__ import annotations

import sqlalchemy as sa

from portal.audit.models import AuditEvent
from portal.db import db
from portal.payments.models import PaymentAccount
from portal.tenancy.models import Organisation
from tests.conftest import SYSTEM
from tests.payments.conftest import save_card
from tests.support import client_for, count, follow_messages


def _account(app, org) -> PaymentAccount | None:
    with app.app_context():
        account = db.session.scalar(
            sa.select(PaymentAccount).where(PaymentAccount.organisation_id == org.id)
        )
        if account is not None:
            db.session.expunge(account)
        return account


def test_one_customer_per_organisation(app, card_org, stripe_api):
    from portal.payments.accounts import account_ensure, current_gateway

    org = card_org["org"]
    with app.app_context():
        organisation = db.session.get(Organisation, org.id)
        first = account_ensure(
            db.session, actor=SYSTEM, organisation=organisation, gateway=current_gateway()
        )
        db.session.commit()
        again = account_ensure(
            db.session, actor=SYSTEM, organisation=organisation, gateway=current_gateway()
        )
        assert again.customer_id == first.customer_id
    (customer,) = stripe_api.objects("customer")
    assert customer.id == first.customer_id
    assert customer.email == "billing@acme.example"
    assert customer.metadata == {"organisation_id": str(org.id)}
    (call,) = stripe_api.sent("POST", "/v1/customers")
    assert call["key"] == f"customer-{org.id}"


def test_an_org_admin_saves_a_card_and_stripe_charges_it_by_default(app, card_org, stripe_api):
    org = card_org["org"]
    admin = client_for(app, "org_admin", org)
    page = admin.get("/org/payment-method").get_data(as_text=True)
    assert "No payment method is saved yet" in page
    assert "Add a payment method at Stripe" in page and "pm_card_chargeCustomerFail" in page

    form = admin.get("/org/payment-method").get_data(as_text=True)
    token = form.split('name="csrf_token" type="hidden" value="')[1].split('"')[0]
    response = admin.post(
        "/org/payment-method/test-card",
        data={"csrf_token": token, "test_method": "pm_card_visa"},
    )
    assert follow_messages(admin, response) == [
        "Visa ending 4242 (12/2030) will be charged for your invoices."
    ]
    account = _account(app, org)
    assert (account.method_brand, account.method_last4) == ("visa", "4242")
    (customer,) = stripe_api.objects("customer")
    assert customer.invoice_settings["default_payment_method"] == account.default_payment_method_id
    (method,) = [m for m in stripe_api.objects("payment_method") if m.customer == customer.id]
    assert method.id == account.default_payment_method_id
    assert count(app, AuditEvent, AuditEvent.action == "payment_method.set") == 1

    # Replacing it: the declining test card (4000 0000 0000 0341) attaches fine.
    replaced = save_card(app, org, "pm_card_chargeCustomerFail")
    assert _account(app, org).method_last4 == "0341"
    assert customer.invoice_settings["default_payment_method"] == replaced


def test_bank_transfer_organisations_have_no_card_page_actions(app, make_org, stripe_api):
    org = make_org("banked")
    admin = client_for(app, "org_admin", org)
    page = admin.get("/org/payment-method").get_data(as_text=True)
    assert "pays its invoices by bank transfer" in page
    assert "Add a payment method at Stripe" not in page
    token = admin.get("/org/profile").get_data(as_text=True)
    token = token.split('name="csrf_token" type="hidden" value="')[1].split('"')[0]
    response = admin.post(
        "/org/payment-method/test-card", data={"csrf_token": token, "test_method": "pm_card_visa"}
    )
    assert "pays by bank transfer" in follow_messages(admin, response)[0]
    assert stripe_api.objects("customer") == []
    assert _account(app, org) is None


def test_only_org_admins_see_the_page(app, card_org, stripe_api):
    org = card_org["org"]
    assert client_for(app, "member", org).get("/org/payment-method").status_code == 403
    assert client_for(app, "finance").get("/org/payment-method").status_code == 403
    assert app.test_client().get("/org/payment-method").status_code == 302
