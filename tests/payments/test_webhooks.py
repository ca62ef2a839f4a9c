"""POST /webhooks/stripe: signatures on the raw body, stored then applied once, in any order.

The deliveries are localstripe's own, signed by it with the webhook secret
(``capture_webhooks`` keeps them from the portal so a test can deliver them
itself: ten at once, out of order, altered).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import json
import time
from concurrent.futures import ThreadPoolExecutor

import pytest
import sqlalchemy as sa

from portal.db import db
from portal.kernel.clock import now_utc
from portal.payments.models import StripeEvent
from tests.conftest import SYSTEM
from tests.payments.conftest import (
    WEBHOOK_SECRET,
    collect,
    deliver,
    finalise,
    save_card,
    state,
)

# A delivery is stored and its job (payments.webhook_apply) enqueued; these tests run the
# job inline so the answer says what applying did (tests/payments/test_webhook_job.py runs
# it as a worker would).
pytestmark = pytest.mark.usefixtures("jobs_inline")


def _sign(body: bytes, *, secret: str = WEBHOOK_SECRET, at: float | None = None) -> str:
    """A Stripe-Signature header as Stripe computes it: HMAC-SHA256 of ``t.body``."""
    t = int(time.time() if at is None else at)
    mac = hmac.new(secret.encode(), f"{t}.".encode() + body, hashlib.sha256).hexdigest()
    return f"t={t},v1={mac}"


def _events(app) -> list[StripeEvent]:
    with app.app_context():
        rows = db.session.scalars(sa.select(StripeEvent).order_by(StripeEvent.id)).all()
        for row in rows:
            db.session.expunge(row)
        return list(rows)


def _customer_created(app, org, stripe_api) -> dict:
    from portal.payments.accounts import account_ensure, current_gateway
    from portal.tenancy.models import Organisation

    stripe_api.capture_webhooks()
    with app.app_context():
        account_ensure(
            db.session,
            actor=SYSTEM,
            organisation=db.session.get(Organisation, org.id),
            gateway=current_gateway(),
        )
        db.session.commit()
    (delivery,) = stripe_api.deliveries("customer.created")
    return delivery


def test_forged_altered_stale_and_unsigned_deliveries_are_refused(app, card_org, stripe_api):
    genuine = _customer_created(app, card_org["org"], stripe_api)
    body = genuine["body"]
    altered = body.replace(b'"livemode": false', b'"livemode": true')
    assert altered != body
    refused = {
        "forged": {"body": body, "signature": _sign(body, secret="whsec_somebody_else")},
        "altered": {"body": altered, "signature": genuine["signature"]},
        "stale": {"body": body, "signature": _sign(body, at=time.time() - 301)},
        "from the future": {"body": body, "signature": _sign(body, at=time.time() + 400)},
        "unsigned": {"body": body, "signature": ""},
        "garbled": {"body": body, "signature": "t=soon,v1=nonsense"},
        "not json": {"body": b"{nope", "signature": _sign(b"{nope")},
    }
    for name, delivery in refused.items():
        response = deliver(stripe_api.live_server, delivery)
        assert response.status_code == 400, name
        assert response.headers["Content-Type"] == "application/problem+json", name
        problem = response.json()
        assert (problem["status"], problem["code"]) == (400, "invalid_signature"), name
    assert _events(app) == []

    # localstripe's own delivery, and one re-signed 290 s ago, are inside the window.
    assert deliver(stripe_api.live_server, genuine).json()["outcome"] == "ignored"
    resigned = {"body": body, "signature": _sign(body, at=time.time() - 290)}
    response = deliver(stripe_api.live_server, resigned)
    assert (response.status_code, response.json()["outcome"]) == (200, "duplicate")
    (event,) = _events(app)
    assert (event.type, event.deliveries, event.outcome) == ("customer.created", 2, "ignored")
    assert event.organisation_id is None and event.payload == json.loads(body)


def _answer_lost(app, stripe_api) -> None:
    """The next PaymentIntent call succeeds at Stripe but its answer never arrives."""
    app.config["PORTAL_STRIPE_TIMEOUT_SECONDS"] = 1
    stripe_api.stall("POST", "/v1/payment_intents")


def test_one_event_delivered_ten_times_at_once_is_applied_once(app, card_org, stripe_api):
    org = card_org["org"]
    save_card(app, org, "pm_card_visa")
    stripe_api.capture_webhooks()
    _answer_lost(app, stripe_api)
    invoice_id = finalise(app, org)
    assert state(app, invoice_id)["invoice"][0] == "open"  # only the webhook can tell now
    (delivery,) = stripe_api.deliveries("payment_intent.succeeded")

    with ThreadPoolExecutor(max_workers=10) as pool:
        responses = list(pool.map(lambda _: deliver(stripe_api.live_server, delivery), range(10)))
    assert [r.status_code for r in responses] == [200] * 10
    assert sorted(r.json()["outcome"] for r in responses) == ["applied"] + ["duplicate"] * 9
    (event,) = [e for e in _events(app) if e.type == "payment_intent.succeeded"]
    assert (event.deliveries, event.outcome, event.organisation_id) == (10, "applied", org.id)
    final = state(app, invoice_id)
    (intent,) = stripe_api.objects("payment_intent")
    assert final["invoice"][0] == "paid"
    assert final["payments"] == [(intent.id, final["invoice"][1], "stripe")]
    assert final["collection"]["status"] == "succeeded"
    # the job has nothing left to send: no second charge
    assert collect(app) == {}
    assert len(stripe_api.sent("POST", "/v1/payment_intents")) == 1


ORDERS = {
    "failed, succeeded": ["failed", "succeeded"],
    "succeeded, failed": ["succeeded", "failed"],
    "each twice, interleaved": ["succeeded", "failed", "succeeded", "failed"],
    "failed twice, then succeeded": ["failed", "failed", "succeeded"],
}


@pytest.mark.parametrize("order", list(ORDERS.values()), ids=list(ORDERS))
def test_related_events_in_any_order_end_in_the_same_state(
    app, card_org, stripe_api, mailbox, order
):
    """Attempt 1 is declined; attempt 2 (a new card) succeeds but its answer is lost.

    Stripe's payment_intent.payment_failed (attempt 1) and
    payment_intent.succeeded (attempt 2) then arrive in any order, some twice.
    """
    org, admin = card_org["org"], card_org["admin"]
    save_card(app, org, "pm_card_chargeCustomerFail")
    stripe_api.capture_webhooks()
    invoice_id = finalise(app, org)  # declined: known from the API's answer
    _answer_lost(app, stripe_api)
    save_card(app, org, "pm_card_visa")  # the retry runs at once, and its answer is lost
    before = state(app, invoice_id)
    assert before["collection"]["status"] == "processing"
    assert before["collection"]["attempts"] == 2

    deliveries = {
        "failed": stripe_api.deliveries("payment_intent.payment_failed")[0],
        "succeeded": stripe_api.deliveries("payment_intent.succeeded")[0],
    }
    for name in order:
        assert deliver(stripe_api.live_server, deliveries[name]).status_code == 200
    collect(app)  # and the job runs afterwards, as cron would

    declined, paid = sorted(stripe_api.objects("payment_intent"), key=lambda i: i.created)
    assert paid.status == "succeeded"
    final = state(app, invoice_id)
    total = final["invoice"][1]
    assert final == {
        "invoice": ("paid", total, 0),
        "payments": [(paid.id, total, "stripe")],
        "collection": {
            "status": "succeeded",
            "attempts": 2,
            "next_attempt_at": None,
            "payment_intent_id": paid.id,
            "failure_code": None,  # cleared when attempt 2 started
        },
        "events": sorted(
            [
                ("payment_intent.payment_failed", declined.id),
                ("payment_intent.succeeded", paid.id),
            ]
        ),
    }
    assert len([m for m in mailbox if m["To"] == admin.email]) == 1  # attempt 1's decline
    assert len(stripe_api.sent("POST", "/v1/payment_intents")) == 2


def test_a_failure_known_only_from_its_webhook_schedules_the_retry(
    app, card_org, stripe_api, mailbox
):
    org, admin = card_org["org"], card_org["admin"]
    save_card(app, org, "pm_card_chargeCustomerFail")
    stripe_api.capture_webhooks()
    _answer_lost(app, stripe_api)
    invoice_id = finalise(app, org)
    assert state(app, invoice_id)["collection"]["status"] == "processing"
    (failed,) = stripe_api.deliveries("payment_intent.payment_failed")
    first = deliver(stripe_api.live_server, failed).json()["outcome"]
    again = deliver(stripe_api.live_server, failed).json()["outcome"]
    assert (first, again) == ("applied", "duplicate")
    collection = state(app, invoice_id)["collection"]
    assert (collection["status"], collection["attempts"]) == ("scheduled", 1)
    assert collection["next_attempt_at"] > now_utc() + dt.timedelta(hours=23)
    assert collection["payment_intent_id"] == failed["event"]["data"]["object"]["id"]
    assert len([m for m in mailbox if m["To"] == admin.email]) == 1
    assert collect(app) == {}  # the retry is not due yet


def _resigned(delivery: dict, change) -> dict:
    event = json.loads(delivery["body"])
    change(event)
    body = json.dumps(event).encode()
    return {"body": body, "signature": _sign(body)}


def test_events_the_portal_does_not_own_are_stored_and_ignored(app, card_org, stripe_api):
    org = card_org["org"]
    save_card(app, org, "pm_card_visa")
    stripe_api.capture_webhooks()
    invoice_id = finalise(app, org)
    (succeeded,) = stripe_api.deliveries("payment_intent.succeeded")
    before = state(app, invoice_id)

    def other_customer(event):  # e.g. another portal sharing the Stripe account
        event["id"] += "x"
        event["data"]["object"]["customer"] = "cus_someone_else"

    def no_metadata(event):
        event["id"] += "y"
        event["data"]["object"]["metadata"] = {}

    def unknown_type(event):
        event["id"] += "z"
        event["type"] = "charge.dispute.created"

    for change in (other_customer, no_metadata, unknown_type):
        response = deliver(stripe_api.live_server, _resigned(succeeded, change))
        assert (response.status_code, response.json()["outcome"]) == (200, "ignored")
    notes = {e.event_id[-1]: e.note for e in _events(app) if e.event_id[-1] in "xyz"}
    assert "for another Stripe customer" in notes["x"]
    assert "not the payment of a portal invoice" in notes["y"]
    assert notes["z"] == "charge.dispute.created is not used by the portal"
    after = state(app, invoice_id)
    assert {k: after[k] for k in ("invoice", "payments", "collection")} == {
        k: before[k] for k in ("invoice", "payments", "collection")
    }


def test_an_event_that_fails_to_apply_stays_stored_and_is_applied_later(
    app, card_org, stripe_api, monkeypatch
):
    from portal.payments import webhooks
    from portal.payments.webhooks import event_process_commit, events_unprocessed

    org = card_org["org"]
    save_card(app, org, "pm_card_visa")
    stripe_api.capture_webhooks()
    _answer_lost(app, stripe_api)
    invoice_id = finalise(app, org)
    (succeeded,) = stripe_api.deliveries("payment_intent.succeeded")
    real = webhooks.outcome_apply

    def broken(*args, **kwargs):
        raise RuntimeError("database hiccup")

    monkeypatch.setattr(webhooks, "outcome_apply", broken)
    response = deliver(stripe_api.live_server, succeeded)
    # Stored and answered; its job tried (inline: every try at once) and gave up.
    assert (response.status_code, response.json()["outcome"]) == (200, "queued")
    (event,) = [e for e in _events(app) if e.type == "payment_intent.succeeded"]
    assert event.processed_at is None and "database hiccup" in event.error
    assert state(app, invoice_id)["invoice"][0] == "open"

    monkeypatch.setattr(webhooks, "outcome_apply", real)
    with app.app_context():  # the job picks up what was stored and not applied
        later = now_utc() + dt.timedelta(minutes=2)
        assert events_unprocessed(db.session, now=later) == [event.event_id]
        assert event_process_commit(db.session, event_id=event.event_id) == "applied"
    assert state(app, invoice_id)["invoice"][0] == "paid"
    assert deliver(stripe_api.live_server, succeeded).json()["outcome"] == "duplicate"


def test_without_a_webhook_secret_the_endpoint_refuses(app, stripe_api):
    app.config["PORTAL_STRIPE_WEBHOOK_SECRET"] = None
    body = b'{"id": "evt_1", "type": "customer.created"}'
    response = deliver(stripe_api.live_server, {"body": body, "signature": _sign(body)})
    assert response.status_code == 503
    assert response.json()["code"] == "webhooks_not_configured"
