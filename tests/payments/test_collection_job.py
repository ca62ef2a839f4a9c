"""Payment collection on the workers' schedule (the job ``payments.collect``), not cron."""

from __future__ import annotations

import sqlalchemy as sa

from portal.db import db
from portal.jobs.models import Job
from portal.jobs.schedule import tick
from portal.payments.models import PaymentCollection
from tests.payments.conftest import finalise, make_due, save_card


def _collection(app, invoice_id: int) -> PaymentCollection:
    with app.app_context():
        row = db.session.scalars(
            sa.select(PaymentCollection).where(PaymentCollection.invoice_id == invoice_id)
        ).one()
        db.session.expunge_all()
        return row


def test_the_schedule_retries_a_failed_payment_as_a_job(app, card_org, stripe_api, jobs_inline):
    org = card_org["org"]
    save_card(app, org, "pm_card_chargeCustomerFail")
    invoice_id = finalise(app, org)
    assert _collection(app, invoice_id).attempts == 1  # failed at once; a retry in a day
    assert "payments.collect" in tick(app)  # nothing due yet: the job runs and finds nothing
    assert _collection(app, invoice_id).attempts == 1
    make_due(app, invoice_id)
    with app.app_context():  # the next slot: let the schedule enqueue it again
        db.session.execute(sa.update(Job).values(dedupe_key=None))
        db.session.commit()
    assert "payments.collect" in tick(app)
    collection = _collection(app, invoice_id)  # the job made the due retry (declined again)
    assert collection.attempts == 2 and collection.last_error == "Your card was declined."
    assert [c["key"] for c in stripe_api.sent("POST", "/v1/payment_intents")] == [
        f"invoice-{invoice_id}",
        f"invoice-{invoice_id}-retry-2",
    ]
    with app.app_context():
        jobs = db.session.scalars(
            sa.select(Job).where(Job.name == "payments.collect").order_by(Job.id)
        ).all()
        assert [(j.name, j.state, j.attempts, j.enqueued_by) for j in jobs] == [
            ("payments.collect", "succeeded", 1, "job:schedule")
        ] * 2
