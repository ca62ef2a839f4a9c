"""A Stripe webhook is received, verified and stored by the request, and applied by its job.

The job runs here as a worker would run it (one delivery at a time, not inline),
so the test sees each step: the answer ``queued``, the invoice still open, the
job applying the event once however often it (or a redelivery's job) runs, and a
failing apply written on the event and retried with backoff.
"""

from __future__ import annotations

import sqlalchemy as sa

from portal.db import db
from portal.jobs.models import Job
from portal.payments.models import StripeEvent
from tests.payments.conftest import deliver, finalise, save_card, state
from tests.payments.test_webhooks import _answer_lost
from tests.support import deliver_job


def _apply_jobs(app) -> list[Job]:
    with app.app_context():
        rows = db.session.scalars(
            sa.select(Job).where(Job.name == "payments.webhook_apply").order_by(Job.id)
        ).all()
        db.session.expunge_all()
        return list(rows)


def _run(app, job_id: int) -> str:
    return deliver_job(app, job_id)


def _event(app, event_id: str) -> StripeEvent:
    with app.app_context():
        row = db.session.scalar(sa.select(StripeEvent).where(StripeEvent.event_id == event_id))
        db.session.expunge_all()
        return row


def test_a_webhook_is_answered_at_once_and_applied_once_by_its_job(app, card_org, stripe_api):
    org = card_org["org"]
    save_card(app, org, "pm_card_visa")
    stripe_api.capture_webhooks()
    _answer_lost(app, stripe_api)
    invoice_id = finalise(app, org)
    (succeeded,) = stripe_api.deliveries("payment_intent.succeeded")
    event_id = succeeded["event"]["id"]

    response = deliver(stripe_api.live_server, succeeded)
    assert (response.status_code, response.json()["outcome"]) == (200, "queued")
    assert state(app, invoice_id)["invoice"][0] == "open"  # stored, not applied yet
    (first,) = _apply_jobs(app)
    assert (first.state, first.arguments) == ("queued", {"event_id": event_id})

    # Stripe delivers again before a worker ran: counted, and the job asked for again.
    assert deliver(stripe_api.live_server, succeeded).json()["outcome"] == "duplicate"
    first, second = _apply_jobs(app)

    assert _run(app, first.id) == "succeeded"
    after = state(app, invoice_id)
    assert after["invoice"][0] == "paid" and len(after["payments"]) == 1
    assert _event(app, event_id).outcome == "applied"
    # The redelivery's job, and the first job's message coming again, apply nothing more.
    assert _run(app, second.id) == "succeeded"
    with app.app_context():
        db.session.execute(sa.update(Job).where(Job.id == first.id).values(state="queued"))
        db.session.commit()
    _run(app, first.id)
    assert state(app, invoice_id)["payments"] == after["payments"]
    assert _event(app, event_id).deliveries == 2
    # A delivery after it was applied is a duplicate and asks for no job.
    assert deliver(stripe_api.live_server, succeeded).json()["outcome"] == "duplicate"
    assert len(_apply_jobs(app)) == 2


def test_a_failing_apply_is_written_on_the_event_and_retried_by_the_job(
    app, card_org, stripe_api, monkeypatch
):
    from portal.payments import webhooks

    org = card_org["org"]
    save_card(app, org, "pm_card_visa")
    stripe_api.capture_webhooks()
    _answer_lost(app, stripe_api)
    invoice_id = finalise(app, org)
    (succeeded,) = stripe_api.deliveries("payment_intent.succeeded")
    event_id = succeeded["event"]["id"]
    assert deliver(stripe_api.live_server, succeeded).json()["outcome"] == "queued"
    (job,) = _apply_jobs(app)

    real = webhooks.outcome_apply

    def broken(*args, **kwargs):
        raise RuntimeError("database hiccup")

    monkeypatch.setattr(webhooks, "outcome_apply", broken)
    assert _run(app, job.id) == "retrying"
    (job,) = _apply_jobs(app)
    assert (job.state, job.attempts) == ("queued", 1) and job.retry_at is not None
    assert job.last_error == "RuntimeError: database hiccup"
    event = _event(app, event_id)
    assert event.processed_at is None and "database hiccup" in event.error
    assert state(app, invoice_id)["invoice"][0] == "open"

    monkeypatch.setattr(webhooks, "outcome_apply", real)
    assert _run(app, job.id) == "succeeded"
    assert state(app, invoice_id)["invoice"][0] == "paid"
    assert _event(app, event_id).outcome == "applied"
