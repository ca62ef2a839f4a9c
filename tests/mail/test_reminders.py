"""Overdue reminders and idle-seat prompts: the portal's schedule enqueues them, their jobs
queue the mail (each recorded), and running them again reminds nobody twice."""

from __future__ import annotations

import datetime as dt

import pytest
import sqlalchemy as sa

from portal.db import db
from portal.jobs.models import Job
from portal.jobs.schedule import schedule_due
from portal.kernel.clock import now_utc
from portal.mail.models import MailMessage
from portal.mail.services import unseal
from portal.seats import services as seats
from portal.seats.models import SeatAssignment, Subscription
from tests.billing.conftest import billed  # noqa: F401  (the fixture ``issued`` needs)
from tests.billing.factories import issued, make_due  # noqa: F401  (a fixture, a helper)
from tests.conftest import SYSTEM
from tests.metering.conftest import metered, subscribe  # noqa: F401  (a fixture, a helper)
from tests.support import deliver_job


def _tick(app) -> list[str]:
    """The schedule's work at the clock's now: the names of the jobs it enqueued."""
    with app.app_context():
        created = schedule_due(db.session, config=app.config, now=now_utc())
        db.session.commit()
        return [job.name for job in created]


def _run_scheduled(app, name: str) -> None:
    with app.app_context():
        ids = db.session.scalars(
            sa.select(Job.id).where(Job.name == name, Job.state == "queued")
        ).all()
    for job_id in ids:
        deliver_job(app, job_id)


def _messages(app, kind: str) -> list[tuple[str, int | None, str]]:
    with app.app_context():
        rows = db.session.scalars(
            sa.select(MailMessage).where(MailMessage.kind == kind).order_by(MailMessage.id)
        ).all()
        return [(m.recipient, m.related_id, unseal(m).get_content()) for m in rows]


def test_the_schedule_enqueues_overdue_reminders_once_a_day_and_each_invoice_weekly(
    app,
    issued,  # noqa: F811  (the fixture)
    clock,
):
    clock.freeze("2026-12-01T06:00:00Z")
    make_due(app, issued["invoice_id"], dt.date(2026, 11, 1))  # 30 days late, grace 14
    assert "billing.overdue_reminders" in _tick(app)
    assert "billing.overdue_reminders" not in _tick(app)  # one job per day's slot
    _run_scheduled(app, "billing.overdue_reminders")
    [(to, invoice_id, body)] = _messages(app, "invoice_overdue")
    assert invoice_id == issued["invoice_id"]
    assert f"Invoice {issued['number']}" in body and "30 days late" in body
    assert f"/org/invoices/{invoice_id}" in body

    clock.advance(dt.timedelta(days=1))  # the next day's job: reminded this week already
    assert "billing.overdue_reminders" in _tick(app)
    _run_scheduled(app, "billing.overdue_reminders")
    assert len(_messages(app, "invoice_overdue")) == 1

    clock.advance(dt.timedelta(days=7))  # a week on, still unpaid: reminded again
    _tick(app)
    _run_scheduled(app, "billing.overdue_reminders")
    assert len(_messages(app, "invoice_overdue")) == 2


def test_an_invoice_within_its_grace_days_gets_no_reminder(
    app,
    issued,  # noqa: F811  (the fixture)
    clock,
):
    clock.freeze("2026-12-01T06:00:00Z")
    make_due(app, issued["invoice_id"], dt.date(2026, 11, 25))  # 6 days late, grace 14
    _tick(app)
    _run_scheduled(app, "billing.overdue_reminders")
    assert _messages(app, "invoice_overdue") == []


@pytest.fixture
def idle_seat(app, metered, make_user):  # noqa: F811
    """acme's admin, and a member holding a seat for 60 days with no usage."""
    admin = make_user("org_admin", metered["org"])
    idle = make_user("member", metered["org"])
    sub_id = subscribe(app, metered["org"].slug, metered["product"].sku, quantity=2)
    with app.app_context():
        sub = db.session.get(Subscription, sub_id)
        seat = seats.seat_assign(db.session, actor=SYSTEM, subscription=sub, user_email=idle.email)
        db.session.flush()
        db.session.get(SeatAssignment, seat.id).assigned_at = now_utc() - dt.timedelta(days=60)
        db.session.commit()
    return {"admin": admin, "idle": idle}


def test_the_schedule_prompts_admins_about_idle_seats_once_a_week(app, idle_seat, clock):
    assert "metering.idle_seat_prompts" in _tick(app)
    _run_scheduled(app, "metering.idle_seat_prompts")
    [(to, _, body)] = _messages(app, "idle_seats")
    assert to == idle_seat["admin"].email
    assert idle_seat["idle"].email in body and "/org/idle-seats" in body
    # Run again in the same week (a second worker, a redelivery): nobody is prompted twice.
    with app.app_context():
        from portal.metering.prompts import idle_seat_prompts_send

        assert idle_seat_prompts_send(db.session, actor=SYSTEM, now=now_utc()) == []
        db.session.rollback()
    clock.advance(dt.timedelta(days=7))
    assert "metering.idle_seat_prompts" in _tick(app)
    _run_scheduled(app, "metering.idle_seat_prompts")
    assert len(_messages(app, "idle_seats")) == 2
