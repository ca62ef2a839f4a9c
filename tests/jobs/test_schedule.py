"""The schedule inside the portal: one job per slot, on the portal's clock, however many tick."""

from __future__ import annotations

import datetime as dt
import threading
import time

import sqlalchemy as sa

from portal.db import db
from portal.jobs.models import Job
from portal.jobs.queue import job
from portal.jobs.schedule import Ticker, schedule_due, slot_start, tick
from portal.kernel.clock import now_utc

EVERY = dt.timedelta(minutes=5)


@job("tests.every_five_minutes", every=EVERY, enabled=lambda config: config.get("TEST_SCHEDULE"))
def _scheduled(session, *, actor) -> None:
    pass


def _ours(names: list[str]) -> list[str]:
    """The test's own scheduled jobs among those a tick enqueued (the portal has others)."""
    return [name for name in names if name.startswith("tests.")]


def _keys(app, name: str = "tests.every_five_minutes") -> list[str]:
    with app.app_context():
        return list(
            db.session.scalars(sa.select(Job.dedupe_key).where(Job.name == name).order_by(Job.id))
        )


def test_slots_are_counted_from_the_epoch_in_utc():
    moment = dt.datetime(2028, 2, 29, 23, 57, 12, tzinfo=dt.UTC)
    assert slot_start(moment, EVERY) == dt.datetime(2028, 2, 29, 23, 55, tzinfo=dt.UTC)
    assert slot_start(moment, dt.timedelta(days=1)) == dt.datetime(2028, 2, 29, tzinfo=dt.UTC)


def test_the_schedule_fires_once_per_slot_as_the_clock_moves(app, clock):
    app.config["TEST_SCHEDULE"] = True
    try:
        clock.freeze("2028-02-29T23:56:30Z")
        assert _ours(tick(app)) == ["tests.every_five_minutes"]
        clock.advance(dt.timedelta(minutes=2))  # 23:58:30, the same slot
        assert _ours(tick(app)) == []
        clock.advance(dt.timedelta(minutes=2))  # 00:00:30 on 1 March: the next slot
        assert _ours(tick(app)) == ["tests.every_five_minutes"]
    finally:
        app.config["TEST_SCHEDULE"] = False
    assert _keys(app) == [
        "tests.every_five_minutes@2028-02-29T23:55:00+00:00",
        "tests.every_five_minutes@2028-03-01T00:00:00+00:00",
    ]
    with app.app_context():
        rows = db.session.scalars(sa.select(Job).where(Job.name.like("tests.%"))).all()
        assert {(r.state, r.enqueued_by) for r in rows} == {("queued", "job:schedule")}
        assert all(r.dispatched_at is not None for r in rows)  # sent after the tick's commit


def test_a_disabled_job_is_not_scheduled(app, clock):
    clock.freeze("2028-02-29T23:56:30Z")
    tick(app)
    assert _keys(app) == []
    # Payment collection runs only where Stripe is configured.
    assert _keys(app, "payments.collect") == []
    app.config["PORTAL_STRIPE_API_KEY"] = "sk_test_schedule"
    try:
        tick(app)
    finally:
        app.config["PORTAL_STRIPE_API_KEY"] = None
    assert _keys(app, "payments.collect") == ["payments.collect@2028-02-29T23:55:00+00:00"]


def test_two_workers_ticking_at_once_make_one_job(app, clock):
    """Each worker runs the schedule; the slot's unique key lets one of them enqueue it."""
    app.config["TEST_SCHEDULE"] = True
    clock.freeze("2028-02-29T23:56:30Z")
    results: list[int] = []
    barrier = threading.Barrier(2)

    def worker_tick() -> None:
        barrier.wait()
        results.append(len(_ours(tick(app))))

    threads = [threading.Thread(target=worker_tick) for _ in range(2)]
    try:
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(30)
    finally:
        app.config["TEST_SCHEDULE"] = False
    assert sorted(results) == [0, 1]
    assert len(_keys(app)) == 1


def test_a_slot_already_taken_is_skipped_not_an_error(app, clock):
    app.config["TEST_SCHEDULE"] = True
    try:
        clock.freeze("2028-02-29T23:56:30Z")
        with app.app_context():
            due = schedule_due(db.session, config=app.config, now=now_utc())
            assert _ours([j.name for j in due]) == ["tests.every_five_minutes"]
            db.session.commit()
            again = schedule_due(db.session, config=app.config, now=now_utc())
            assert _ours([j.name for j in again]) == []
            db.session.commit()
    finally:
        app.config["TEST_SCHEDULE"] = False
    assert len(_keys(app)) == 1


def test_the_worker_s_ticker_thread_runs_the_schedule(app):
    app.config["TEST_SCHEDULE"] = True
    ticker = Ticker(app, seconds=0.05)
    ticker.start()
    try:
        deadline = time.monotonic() + 20
        while not _keys(app) and time.monotonic() < deadline:
            time.sleep(0.05)
    finally:
        ticker.stop()
        ticker.join(10)
        app.config["TEST_SCHEDULE"] = False
    assert len(_keys(app)) == 1 and not ticker.is_alive()


def test_a_message_sent_but_never_started_is_sent_again_after_the_configured_time(app, clock):
    """A process killed between the commit that enqueued a job and the message's send
    leaves the job marked sent; a tick sends it again once it has waited
    ``PORTAL_JOBS_LOST_AFTER_SECONDS`` (default two hours) without starting."""

    def sent_at() -> dt.datetime:
        with app.app_context():
            return db.session.scalar(
                sa.select(Job.dispatched_at).where(Job.name == "tests.every_five_minutes")
            )

    app.config["TEST_SCHEDULE"] = True
    try:
        clock.freeze("2028-02-29T23:56:30Z")
        tick(app)
        first = sent_at()
        clock.advance(dt.timedelta(minutes=3))  # the same slot: nothing new is enqueued
        tick(app)
        assert sent_at() == first  # the default waits two hours
        app.config["PORTAL_JOBS_LOST_AFTER_SECONDS"] = 120
        tick(app)
        assert sent_at() == now_utc()  # sent again, and noted
    finally:
        app.config["TEST_SCHEDULE"] = False
        app.config["PORTAL_JOBS_LOST_AFTER_SECONDS"] = 7200
