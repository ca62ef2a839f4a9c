"""Collecting finalised invoices with PaymentIntents: success, declines, retries, timeouts.

Against localstripe (see conftest): the portal's calls, the PaymentIntents
localstripe creates and charges, and its signed webhooks are all real; only
Stripe's idempotency-key store is played by the test front, as localstripe has
none.
"""

from __future__ import annotations

import datetime as dt

import sqlalchemy as sa

from portal.billing.models import Invoice
from portal.db import db
from portal.kernel.clock import now_utc
from portal.payments.gateway import STRIPE_API_VERSION
from portal.payments.models import PaymentCollection, StripeEvent
from tests.conftest import SYSTEM
from tests.payments.conftest import collect, finalise, make_due, save_card, state, wait_for
from tests.support import client_for, csrf_token


def _invoice(app, invoice_id) -> Invoice:
    with app.app_context():
        invoice = db.session.get(Invoice, invoice_id)
        db.session.expunge(invoice)
        return invoice


def _collection(app, invoice_id) -> PaymentCollection:
    with app.app_context():
        collection = db.session.scalar(
            sa.select(PaymentCollection).where(PaymentCollection.invoice_id == invoice_id)
        )
        db.session.expunge(collection)
        return collection


def _events_processed(app, event_type: str) -> int:
    with app.app_context():
        return db.session.scalar(
            sa.select(sa.func.count())
            .select_from(StripeEvent)
            .where(StripeEvent.type == event_type, StripeEvent.processed_at.is_not(None))
        )


def _mails_to(mailbox, address):
    return [m for m in mailbox if m["To"] == address]


def test_a_finalised_invoice_is_collected_once(app, card_org, stripe_api, mailbox):
    org = card_org["org"]
    save_card(app, org, "pm_card_visa")
    invoice_id = finalise(app, org)

    invoice = _invoice(app, invoice_id)
    assert invoice.status == "paid" and invoice.amount_paid == invoice.total > 0
    (intent,) = stripe_api.objects("payment_intent")
    assert (intent.status, intent.amount, intent.currency) == ("succeeded", invoice.total, "eur")
    assert intent.metadata == {
        "invoice_id": str(invoice_id),
        "invoice_number": invoice.number,
        "organisation_id": str(org.id),
        "attempt": "1",
    }
    (call,) = stripe_api.sent("POST", "/v1/payment_intents")
    assert call["key"] == f"invoice-{invoice_id}"
    assert call["version"] == STRIPE_API_VERSION  # pinned, whatever the library's default
    assert b"payment_method_types[0]=card" in call["body"]
    collection = _collection(app, invoice_id)
    assert (collection.status, collection.attempts, collection.payment_intent_id) == (
        "succeeded",
        1,
        intent.id,
    )
    # localstripe's signed payment_intent.succeeded arrives a second later: stored,
    # applied, and it records nothing more.
    wait_for(lambda: _events_processed(app, "payment_intent.succeeded") == 1)
    stripe_api.drain()
    assert state(app, invoice_id)["payments"] == [(intent.id, invoice.total, "stripe")]
    assert not _mails_to(mailbox, card_org["admin"].email)


def test_a_declined_card_is_retried_on_schedule_and_the_admin_is_told(
    app, card_org, stripe_api, mailbox
):
    org, admin = card_org["org"], card_org["admin"]
    save_card(app, org, "pm_card_chargeCustomerFail")  # 4000 0000 0000 0341
    invoice_id = finalise(app, org)

    collection = _collection(app, invoice_id)
    assert (collection.status, collection.attempts, collection.failure_code) == (
        "scheduled",
        1,
        "card_declined",
    )
    assert collection.last_error == "Your card was declined."
    assert collection.next_attempt_at == collection.last_attempt_at + dt.timedelta(days=1)
    assert _invoice(app, invoice_id).status == "open"
    (intent,) = stripe_api.objects("payment_intent")
    assert intent.status == "requires_payment_method"
    # the webhook of the same failure changes nothing and mails nobody again
    wait_for(lambda: _events_processed(app, "payment_intent.payment_failed") == 1)
    stripe_api.drain()
    (mail,) = _mails_to(mailbox, admin.email)
    assert mail["Subject"] == f"Payment of invoice {_invoice(app, invoice_id).number} failed"
    body = mail.get_content()
    assert "Your card was declined." in body and "attempt 2" in body
    assert "/org/payment-method" in body
    assert _collection(app, invoice_id).payment_intent_id == intent.id

    # Nothing is due before the next attempt's time.
    assert collect(app) == {}
    # The admin replaces the card: the waiting payment is tried again at once.
    page = client_for(app, "org_admin", org)
    response = page.post(
        "/org/payment-method/test-card",
        data={"csrf_token": csrf_token(page, "/org/payment-method"), "test_method": "pm_card_visa"},
    )
    assert response.status_code == 302
    invoice = _invoice(app, invoice_id)
    assert invoice.status == "paid"
    first, second = sorted(stripe_api.objects("payment_intent"), key=lambda i: i.created)
    assert {first.status, second.status} == {"canceled", "succeeded"}
    keys = [c["key"] for c in stripe_api.sent("POST", "/v1/payment_intents")]
    assert keys == [f"invoice-{invoice_id}", f"invoice-{invoice_id}-retry-2"]
    stripe_api.drain()
    final = state(app, invoice_id)
    assert final["collection"]["status"] == "succeeded" and final["collection"]["attempts"] == 2
    assert len(final["payments"]) == 1 and final["payments"][0][1] == invoice.total
    assert len(_mails_to(mailbox, admin.email)) == 1


def test_retries_end_after_the_last_attempt_and_a_person_is_asked(
    app, card_org, stripe_api, mailbox, runner
):
    org, admin = card_org["org"], card_org["admin"]
    save_card(app, org, "pm_card_chargeCustomerFail")
    invoice_id = finalise(app, org)
    delays = []
    for attempt in (2, 3, 4):
        before = _collection(app, invoice_id)
        delays.append(before.next_attempt_at - before.last_attempt_at)
        make_due(app, invoice_id)
        result = runner.invoke(args=["payments", "retry"])
        assert result.exit_code == 0, result.output
        assert "failed: 1" in result.output
        assert _collection(app, invoice_id).attempts == attempt
    assert delays == [dt.timedelta(days=1), dt.timedelta(days=3), dt.timedelta(days=5)]
    collection = _collection(app, invoice_id)
    assert (collection.status, collection.next_attempt_at) == ("abandoned", None)
    assert len(stripe_api.objects("payment_intent")) == 4
    stripe_api.drain()
    mails = _mails_to(mailbox, admin.email)
    assert len(mails) == 4
    assert "That was the last automatic attempt" in mails[-1].get_content()
    result = runner.invoke(args=["payments", "collect"])
    assert "Nothing was due." in result.output
    number = _invoice(app, invoice_id).number
    assert f"needs attention: invoice {number} (abandoned, 4 attempts)" in result.output

    # With a working card the admin asks for one more attempt.
    save_card(app, org, "pm_card_visa")
    assert _invoice(app, invoice_id).status == "open"  # an abandoned payment waits for a person
    page = client_for(app, "org_admin", org)
    response = page.post(
        f"/org/payment-method/payments/{invoice_id}/retry",
        data={"csrf_token": csrf_token(page, "/org/payment-method")},
    )
    assert response.status_code == 302
    assert _invoice(app, invoice_id).status == "paid"
    assert _collection(app, invoice_id).attempts == 5


def test_no_saved_card_is_a_failed_attempt_and_a_bank_payment_ends_the_collection(
    app, card_org, stripe_api, mailbox
):
    from portal.billing.lifecycle import payment_record

    org, admin = card_org["org"], card_org["admin"]
    invoice_id = finalise(app, org)
    collection = _collection(app, invoice_id)
    assert (collection.status, collection.failure_code) == ("scheduled", "no_payment_method")
    (mail,) = _mails_to(mailbox, admin.email)
    assert "No card or other payment method is saved" in mail.get_content()
    assert stripe_api.sent("POST", "/v1/payment_intents") == []

    with app.app_context():  # finance records a bank transfer instead
        invoice = db.session.get(Invoice, invoice_id)
        payment_record(
            db.session,
            actor=SYSTEM,
            invoice=invoice,
            amount=invoice.amount_due,
            method="bank_transfer",
            received_on=now_utc().date(),
        )
        db.session.commit()
    save_card(app, org, "pm_card_visa")  # brings the retry forward: nothing is owed now
    make_due(app, invoice_id)
    collect(app)
    assert _collection(app, invoice_id).status == "cancelled"
    assert stripe_api.objects("payment_intent") == []


def test_a_call_that_times_out_after_succeeding_is_sent_again_and_charges_once(
    app, card_org, stripe_api
):
    org = card_org["org"]
    save_card(app, org, "pm_card_visa")
    stripe_api.capture_webhooks()  # the portal learns only from its own calls here
    app.config["PORTAL_STRIPE_TIMEOUT_SECONDS"] = 1
    stripe_api.stall("POST", "/v1/payment_intents")  # succeeds at Stripe, answers too late

    invoice_id = finalise(app, org)
    collection = _collection(app, invoice_id)
    assert (collection.status, collection.attempts) == ("processing", 1)
    assert "Stripe did not answer" in collection.last_error
    (intent,) = stripe_api.objects("payment_intent")
    assert intent.status == "succeeded"  # charged, though the portal does not know yet
    assert _invoice(app, invoice_id).status == "open"

    assert collect(app) == {"succeeded": 1}  # the job sends the same request again
    calls = stripe_api.sent("POST", "/v1/payment_intents")
    assert [c["key"] for c in calls] == [f"invoice-{invoice_id}"] * 2
    assert calls[0]["body"] == calls[1]["body"]
    assert stripe_api.objects("payment_intent") == [intent]  # one charge
    assert len(stripe_api.objects("charge")) == 1
    final = state(app, invoice_id)
    assert final["invoice"][0] == "paid"
    assert final["payments"] == [(intent.id, final["invoice"][1], "stripe")]


def test_the_librarys_own_retry_after_a_timeout_reuses_the_key(app, card_org, stripe_api):
    org = card_org["org"]
    save_card(app, org, "pm_card_visa")
    stripe_api.capture_webhooks()
    app.config.update(PORTAL_STRIPE_TIMEOUT_SECONDS=1, PORTAL_STRIPE_MAX_NETWORK_RETRIES=1)
    stripe_api.stall("POST", "/v1/payment_intents")

    invoice_id = finalise(app, org)  # the first answer is lost; stripe-python retries
    assert _invoice(app, invoice_id).status == "paid"
    calls = stripe_api.sent("POST", "/v1/payment_intents")
    assert [c["key"] for c in calls] == [f"invoice-{invoice_id}"] * 2
    assert len(stripe_api.objects("payment_intent")) == 1
    assert len(stripe_api.objects("charge")) == 1


def test_without_the_same_key_the_retry_would_charge_twice(app, card_org, stripe_api):
    """The front is a fair stand-in for Stripe: a new key is a new charge."""
    from portal.payments.accounts import account_of, current_gateway

    org = card_org["org"]
    method = save_card(app, org, "pm_card_visa")
    with app.app_context():
        customer = account_of(db.session, organisation_id=org.id).customer_id
        gateway = current_gateway()
        for key in ("k-1", "k-2", "k-1"):
            gateway.payment_intent_create(
                customer_id=customer,
                payment_method_id=method,
                payment_method_type="card",
                amount=500,
                currency="EUR",
                metadata={},
                idempotency_key=key,
            )
    assert len(stripe_api.objects("payment_intent")) == 2


def test_the_job_says_why_it_cannot_run_without_stripe(app, stripe_api, runner, monkeypatch):
    monkeypatch.setitem(app.config, "PORTAL_STRIPE_API_KEY", None)
    result = runner.invoke(args=["payments", "collect"])
    assert result.exit_code == 1
    assert result.output.strip().splitlines()[-1] == (
        "Error: Stripe is not configured: set PORTAL_STRIPE_API_KEY."
    )
