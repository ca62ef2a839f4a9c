"""The org admins' daily digest: one mail per admin per day, in the admin's language, listing
each event that reached their organisation's people once; the digest turned off: none."""

from __future__ import annotations

import datetime as dt

import sqlalchemy as sa

from portal.db import db
from portal.jobs.models import Job
from portal.notifications.models import NotificationDigest
from tests.conftest import SYSTEM
from tests.notifications.test_notify import open_incident
from tests.support import deliver_job

DAY = dt.datetime(2026, 11, 3, 9, 30, tzinfo=dt.UTC)


def run_digest(app, day: dt.date) -> list[int]:
    from portal.notifications.digest import digest_send

    with app.app_context():
        mailed = digest_send(db.session, actor=SYSTEM, day=day)
        db.session.commit()
        return mailed


def test_each_org_admin_gets_one_digest_of_the_day_in_their_language(app, world, clock, mailbox):
    clock.freeze(DAY)
    open_incident(app, title="Mail delivery delayed")
    open_incident(app, title="Logins slow", impact="minor")
    clock.freeze(DAY + dt.timedelta(days=1, minutes=5))  # the schedule's run after midnight
    mailbox.clear()
    mailed = run_digest(app, DAY.date())
    assert sorted(mailed) == sorted([world.acme_admin.id, world.beta_admin.id])
    assert run_digest(app, DAY.date()) == []  # run again: nobody twice
    by_reader = {str(m["To"]): m for m in mailbox}
    assert sorted(by_reader) == sorted([world.acme_admin.email, world.beta_admin.email])
    english = by_reader[world.acme_admin.email]
    assert english["Subject"] == "2 supplier events at Org acme on 2026-11-03"
    text = english.get_content()
    # Each event once, however many of the organisation's people were told (Alice and Dave).
    assert text.count("Incident at Status Soft: Mail delivery delayed") == 1
    assert text.count("Incident at Status Soft: Logins slow") == 1
    assert "2 of your people were told." in text
    russian = by_reader[world.beta_admin.email]
    assert russian["Content-Language"] == "ru"
    assert "Инцидент у Status Soft: Logins slow" in russian.get_content()
    assert "1 ваш сотрудник" in russian.get_content()


def test_the_digest_lists_only_its_own_day_and_organisation(app, world, clock, mailbox):
    clock.freeze(DAY)
    open_incident(app, title="Yesterday's")
    clock.freeze(DAY + dt.timedelta(days=1))
    open_incident(app, title="Today's")
    mailbox.clear()
    run_digest(app, DAY.date())
    text = {str(m["To"]): m.get_content() for m in mailbox}[world.acme_admin.email]
    assert "Yesterday's" in text and "Today's" not in text


def test_no_events_no_digest_and_a_turned_off_digest_is_not_sent(app, world, clock, mailbox):
    from portal.identity.models import User
    from portal.kernel.actor import Actor
    from portal.notifications.services import preferences_update

    clock.freeze(DAY)
    mailbox.clear()
    assert run_digest(app, DAY.date()) == []  # a quiet day
    with app.app_context():
        admin = db.session.get(User, world.acme_admin.id)
        preferences_update(
            db.session,
            actor=Actor.person(admin),
            user=admin,
            mail_incidents=True,
            mail_standing=True,
            mail_operations=True,
            digest=False,
        )
        db.session.commit()
    open_incident(app)
    mailbox.clear()
    assert run_digest(app, DAY.date()) == [world.beta_admin.id]
    assert [str(m["To"]) for m in mailbox] == [world.beta_admin.email]


def test_the_scheduled_job_sends_yesterdays_digest_once_however_often_it_runs(
    app, world, clock, mailbox
):
    from portal.jobs.schedule import SCHEDULER, schedule_due
    from portal.notifications.digest import JOB

    clock.freeze(DAY)
    open_incident(app)
    app.extensions["celery"].conf.task_always_eager = False  # delivered by hand below
    clock.freeze(DAY + dt.timedelta(days=1, minutes=1))
    with app.app_context():
        schedule_due(db.session, config=app.config, now=clock.now)
        schedule_due(db.session, config=app.config, now=clock.now)  # a second worker's tick
        db.session.commit()
        jobs = db.session.scalars(sa.select(Job.id).where(Job.name == JOB)).all()
    assert len(jobs) == 1
    assert deliver_job(app, jobs[0]) == "succeeded"
    with app.app_context():  # another slot's job, or the same delivered again, sends nothing
        from portal.jobs.queue import enqueue

        again = enqueue(db.session, JOB, actor=SCHEDULER)
        db.session.commit()
        again_id = again.id
    assert deliver_job(app, again_id) == "succeeded"
    with app.app_context():
        digests = db.session.execute(
            sa.select(NotificationDigest.user_id, NotificationDigest.day, NotificationDigest.events)
        ).all()
    assert sorted(digests) == sorted(
        [(world.acme_admin.id, DAY.date(), 1), (world.beta_admin.id, DAY.date(), 1)]
    )


def test_the_command_sends_a_days_digest_once_and_refuses_a_bad_day(
    app, world, clock, mailbox, runner
):
    clock.freeze(DAY)
    open_incident(app)
    mailbox.clear()
    result = runner.invoke(args=["notifications", "digest", "--day", DAY.date().isoformat()])
    assert result.exit_code == 0, result.output
    assert result.output.strip() == "2026-11-03: 2 digest(s) queued for mail."
    again = runner.invoke(args=["notifications", "digest", "--day", "2026-11-03"])
    assert again.output.strip() == "2026-11-03: 0 digest(s) queued for mail."
    assert len(mailbox) == 2
    for bad in ("yesterday", "2026-13-01", ""):
        refused = runner.invoke(args=["notifications", "digest", "--day", bad])
        assert refused.exit_code != 0
        assert "is not a day" in refused.output
    clock.freeze(DAY + dt.timedelta(days=1, hours=3))  # default: yesterday
    assert runner.invoke(args=["notifications", "digest"]).output.startswith("2026-11-03: 0")
