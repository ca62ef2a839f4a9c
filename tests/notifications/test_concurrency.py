"""Once each, under real concurrency: the same event's job run by several workers at once,
and the day's digest sent by several at once (threads, each with its own connection).

On PostgreSQL the unique ``(user_id, key)`` and ``(user_id, day)`` indexes with
``ON CONFLICT DO NOTHING`` decide: a second transaction waits for the first and inserts
nothing. On SQLite ``BEGIN IMMEDIATE`` makes the writers queue. Nothing is mocked.
"""

from __future__ import annotations

import collections
import datetime as dt
import threading

import sqlalchemy as sa

from portal.db import bind_scope, db
from portal.kernel.scope import Scope
from portal.mail.models import MailMessage
from portal.notifications import kinds
from portal.notifications.models import Notification, NotificationDigest
from tests.conftest import SYSTEM
from tests.notifications.test_notify import open_incident

WORKERS = 4


def _at_once(app, action) -> list[BaseException]:
    """Run ``action()`` in :data:`WORKERS` threads released together; their errors."""
    errors: list[BaseException] = []
    lock = threading.Lock()
    barrier = threading.Barrier(WORKERS)

    def worker() -> None:
        with app.app_context():
            bind_scope(db.session, Scope.council())  # a job's scope
            barrier.wait()
            try:
                action()
                db.session.commit()
            except BaseException as error:  # reported below
                db.session.rollback()
                with lock:
                    errors.append(error)
            finally:
                db.session.remove()

    threads = [threading.Thread(target=worker) for _ in range(WORKERS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return errors


def test_the_same_events_job_run_by_several_workers_at_once_tells_each_person_once(app, world):
    from portal.notifications.events import seat_holders_job

    params = {"vendor": "Status Soft", "title": "Outage", "impact": "major"}

    def run() -> None:
        seat_holders_job(
            db.session,
            actor=SYSTEM,
            vendor_id=world.vendor_id,
            kind=kinds.INCIDENT_OPENED,
            key="incident:999:opened",
            params=params,
        )

    assert _at_once(app, run) == []
    with app.app_context():
        people = collections.Counter(db.session.scalars(sa.select(Notification.user_id)))
        mail = collections.Counter(
            db.session.scalars(
                sa.select(MailMessage.recipient).where(MailMessage.related_type == "notification")
            )
        )
    assert people == {world.alice.id: 1, world.boris.id: 1, world.dave.id: 1}
    assert mail == {world.alice.email: 1, world.boris.email: 1}


def test_the_days_digest_sent_by_several_workers_at_once_reaches_each_admin_once(app, world, clock):
    from portal.notifications.digest import digest_send

    day = dt.datetime(2026, 11, 3, 9, tzinfo=dt.UTC)
    clock.freeze(day)
    open_incident(app)
    with app.app_context():  # the incident's job has not run (no worker): run it here
        from portal.jobs.models import Job
        from tests.support import deliver_job

        job_id = db.session.scalar(
            sa.select(Job.id).where(Job.name == "notifications.seat_holders")
        )
    deliver_job(app, job_id)
    assert _at_once(app, lambda: digest_send(db.session, actor=SYSTEM, day=day.date())) == []
    with app.app_context():
        digests = collections.Counter(db.session.scalars(sa.select(NotificationDigest.user_id)))
        mail = collections.Counter(
            db.session.scalars(
                sa.select(MailMessage.recipient).where(MailMessage.kind == "notification_digest")
            )
        )
    assert digests == {world.acme_admin.id: 1, world.beta_admin.id: 1}
    assert mail == {world.acme_admin.email: 1, world.beta_admin.email: 1}
