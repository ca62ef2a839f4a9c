"""The schedule inside the portal (instead of cron), and the sweep of unsent messages.

A job declared with ``every=`` (``@job("payments.collect", every=timedelta(minutes=5))``)
is enqueued once per slot of that length, slots counted from the Unix epoch in
UTC on the portal's clock. Every worker runs the schedule (``portal worker``,
unless ``--no-schedule``): each tick tries to enqueue the current slot's job
under a unique ``dedupe_key`` (``payments.collect@2026-12-01T10:05:00+00:00``),
so however many workers tick, on however many machines, a slot gets one job.
Nothing keeps state outside the database (unlike celery beat's schedule file),
and a slot missed while no worker ran is not made up: the next slot's job
does the work (scheduled jobs do whatever is due when they run).

Each tick also sweeps: a queued job whose message was never sent (the broker
was down when its transaction committed) is sent again, and finished jobs
older than :data:`KEEP_FINISHED` are deleted (failed ones are kept until a
person retries or cancels them).
"""

from __future__ import annotations

import datetime as dt
import logging
import threading

import sqlalchemy as sa
from flask import Flask
from sqlalchemy.orm import Session

from portal.db import council_wide, db
from portal.jobs.models import Job, JobState
from portal.jobs.queue import REGISTRY, dispatch, enqueue
from portal.kernel.actor import Actor
from portal.kernel.clock import now_utc

log = logging.getLogger("portal.jobs.schedule")

EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)
#: A queued job with no message sent this long after it was enqueued is sent again.
SEND_AGAIN_AFTER = dt.timedelta(minutes=1)
#: A queued job whose message was sent this long ago (or this long after its retry time)
#: without starting is sent again (``PORTAL_JOBS_LOST_AFTER_SECONDS`` overrides). Its
#: message may have been lost: a development queue file loses what a killed worker had
#: taken, and a process killed between the commit that enqueued a job and the message's
#: send leaves the job marked sent (:func:`portal.jobs.queue.enqueue` marks it first, so
#: that sending costs no second write). Longer than a busy queue's wait: a duplicate
#: message of a job still queued may run it on two workers at once (jobs may run again,
#: but once at a time is what a council's queue should see).
LOST_AFTER = dt.timedelta(hours=2)
#: Succeeded and cancelled jobs are deleted after this long.
KEEP_FINISHED = dt.timedelta(days=30)
#: Seconds between a worker's ticks (``PORTAL_JOBS_TICK_SECONDS`` overrides).
TICK_SECONDS = 30

SCHEDULER = Actor.system("job:schedule")


def slot_start(moment: dt.datetime, every: dt.timedelta) -> dt.datetime:
    """The start of the slot of length ``every`` that ``moment`` falls in."""
    slots = (moment - EPOCH) // every
    return EPOCH + slots * every


def schedule_due(session: Session, *, config: object, now: dt.datetime) -> list[Job]:
    """Enqueue each scheduled job's current slot unless it is enqueued already."""
    created: list[Job] = []
    for spec in sorted(REGISTRY.values(), key=lambda s: s.name):
        if spec.every is None or not spec.enabled(config):
            continue
        key = f"{spec.name}@{slot_start(now, spec.every).isoformat()}"
        if session.scalar(sa.select(Job.id).where(Job.dedupe_key == key)) is not None:
            continue
        try:
            with session.begin_nested():
                created.append(enqueue(session, spec.name, actor=SCHEDULER, dedupe_key=key))
        except sa.exc.IntegrityError:  # another worker's tick enqueued this slot first
            continue
    return created


def unsent(
    session: Session, *, now: dt.datetime, lost_after: dt.timedelta = LOST_AFTER
) -> list[int]:
    """Queued jobs whose message was never sent (or could not be), or seems lost.

    A message sent over ``lost_after`` ago (after its retry time, for a retry) whose job
    never started is sent again (see :data:`LOST_AFTER`). A duplicate of a job that
    finished or was cancelled is dropped by the worker, and every job may run again.
    """
    waiting = sa.func.coalesce(Job.retry_at, Job.dispatched_at)
    return list(
        session.scalars(
            sa.select(Job.id)
            .where(
                Job.state == JobState.QUEUED,
                sa.or_(
                    sa.and_(Job.dispatched_at.is_(None), Job.enqueued_at < now - SEND_AGAIN_AFTER),
                    waiting < now - lost_after,
                ),
            )
            .order_by(Job.id)
            .limit(500)
        )
    )


def purge_finished(session: Session, *, now: dt.datetime) -> int:
    """Delete succeeded and cancelled jobs that finished over :data:`KEEP_FINISHED` ago."""
    result = session.execute(
        sa.delete(Job).where(
            Job.state.in_((JobState.SUCCEEDED, JobState.CANCELLED)),
            Job.finished_at < now - KEEP_FINISHED,
        )
    )
    return int(getattr(result, "rowcount", 0) or 0)


def tick(app: Flask) -> list[str]:
    """One tick: enqueue what the schedule says is due, send unsent messages, purge old jobs.

    Returns the names of the jobs it enqueued.
    """
    with app.app_context():
        session = Session(bind=db.engine)
        try:
            with council_wide(session):
                now = now_utc()
                created = [j.name for j in schedule_due(session, config=app.config, now=now)]
                purge_finished(session, now=now)
                session.commit()  # the new jobs' messages are sent after this commit
                lost_after = dt.timedelta(seconds=app.config["PORTAL_JOBS_LOST_AFTER_SECONDS"])
                again = unsent(session, now=now, lost_after=lost_after)
                session.rollback()
        finally:
            session.close()
        if again:
            log.info("Sending %d queued job(s) whose message was not sent", len(again))
            dispatch(app, again, note_sent=True)
        return created


class Ticker(threading.Thread):
    """Runs :func:`tick` every ``seconds`` until stopped (inside ``portal worker``)."""

    def __init__(self, app: Flask, seconds: float = TICK_SECONDS) -> None:
        super().__init__(name="portal-schedule", daemon=True)
        self.app = app
        self.seconds = seconds
        self.stopped = threading.Event()

    def run(self) -> None:
        while not self.stopped.is_set():
            try:
                tick(self.app)
            except Exception:  # the database or broker is away: try again next tick
                log.exception("The schedule's tick failed")
            self.stopped.wait(self.seconds)

    def stop(self) -> None:
        self.stopped.set()
