"""Adding a payment method through Stripe Checkout (setup mode).

localstripe has no Checkout, so the two calls that need it are answered by the
test front with response bodies taken from Stripe's API reference
(``stripe_docs/``: "The Checkout Session object", "The SetupIntent object");
everything else (the customer, the payment method, making it the default) is
localstripe's. What is proven here: the portal asks for the right session, sends
the admin to Stripe's page, and on the way back trusts only a complete session
of its own customer.
"""

from __future__ import annotations

from urllib.parse import parse_qs

import sqlalchemy as sa

from portal.db import db
from portal.payments.models import PaymentAccount
from tests.support import client_for, csrf_token, follow_messages


def _account(app, org) -> PaymentAccount:
    with app.app_context():
        account = db.session.scalar(
            sa.select(PaymentAccount).where(PaymentAccount.organisation_id == org.id)
        )
        db.session.expunge(account)
        return account


def _start(app, admin) -> tuple[str, dict]:
    response = admin.post(
        "/org/payment-method/checkout",
        data={"csrf_token": csrf_token(admin, "/org/payment-method")},
    )
    assert response.status_code == 303
    return response.headers["Location"], response


def test_an_org_admin_adds_a_card_on_stripes_checkout_page(app, card_org, stripe_api, monkeypatch):
    org = card_org["org"]
    monkeypatch.setitem(app.config, "PORTAL_BASE_URL", "https://portal.example")
    admin = client_for(app, "org_admin", org)
    location, _ = _start(app, admin)
    (session_id,) = stripe_api.checkout_sessions
    assert location == f"https://checkout.stripe.com/c/pay/{session_id}"
    (call,) = stripe_api.sent("POST", "/v1/checkout/sessions")
    customer = _account(app, org).customer_id
    assert call["form"] == {
        "mode": "setup",
        "customer": customer,
        "currency": "eur",
        "success_url": "https://portal.example/org/payment-method/checkout/return"
        "?session_id={CHECKOUT_SESSION_ID}",
        "cancel_url": "https://portal.example/org/payment-method",
    }

    # At Stripe, the admin enters a card; Stripe attaches it to the customer.
    from portal.payments.accounts import current_gateway

    with app.app_context():
        gateway = current_gateway()
        attached = gateway.client.v1.payment_methods.attach(
            "pm_card_visa", params={"customer": customer}
        )
    stripe_api.checkout_complete(session_id, attached.id)

    response = admin.get(f"/org/payment-method/checkout/return?session_id={session_id}")
    assert follow_messages(admin, response) == [
        "Visa ending 4242 (12/2030) will be charged for your invoices."
    ]
    (retrieve,) = stripe_api.sent("GET", f"/v1/checkout/sessions/{session_id}")
    assert parse_qs(retrieve["query"]) == {"expand[0]": ["setup_intent"]}
    account = _account(app, org)
    assert account.default_payment_method_id == attached.id
    (stored,) = stripe_api.objects("customer")
    assert stored.invoice_settings["default_payment_method"] == attached.id


def test_the_way_back_trusts_only_a_complete_session_of_the_organisations_customer(
    app, card_org, make_org, stripe_api
):
    org = card_org["org"]
    admin = client_for(app, "org_admin", org)
    _start(app, admin)
    (session_id,) = stripe_api.checkout_sessions

    # not completed at Stripe (the admin pressed back)
    response = admin.get(f"/org/payment-method/checkout/return?session_id={session_id}")
    assert follow_messages(admin, response) == ["No payment method was added at Stripe."]

    # another organisation's admin cannot use this organisation's session
    other = make_org("other-co", billing_provider="stripe")
    stranger = client_for(app, "org_admin", other)
    _start(app, stranger)
    response = stranger.get(f"/org/payment-method/checkout/return?session_id={session_id}")
    assert follow_messages(stranger, response) == [
        "That Checkout session belongs to another customer."
    ]
    response = admin.get("/org/payment-method/checkout/return?session_id=cs_test_unknown")
    assert "No such checkout.session" in follow_messages(admin, response)[0]
    response = admin.get("/org/payment-method/checkout/return?session_id=pm_nonsense")
    assert follow_messages(admin, response) == [
        "That is not a Checkout session of this organisation."
    ]
    assert _account(app, org).default_payment_method_id is None


def test_the_page_says_so_when_stripe_is_not_set_up(app, card_org):
    app.config["PORTAL_STRIPE_API_KEY"] = None  # put back by the stripe_api fixture
    admin = client_for(app, "org_admin", card_org["org"])
    page = admin.get("/org/payment-method").get_data(as_text=True)
    assert "Card payments are not set up on this portal yet." in page
    response = admin.post(
        "/org/payment-method/checkout",
        data={"csrf_token": csrf_token(admin, "/org/payment-method")},
    )
    assert follow_messages(admin, response) == ["Card payments are not set up on this portal."]
