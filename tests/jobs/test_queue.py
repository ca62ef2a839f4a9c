"""The job queue with the real library (Celery, kombu's in-memory transport, eager mode).

Enqueueing writes the row in the caller's transaction and sends the message only
after commit; jobs retry with backoff, give up with the error's message, skip a
cancelled job's message, carry the request id of the request that started them,
and run council-wide as ``Actor.system("job:<name>")``.
"""

from __future__ import annotations

import datetime as dt
import time
from typing import Any

import pytest
import sqlalchemy as sa
from celery.exceptions import Retry

from portal.db import bound_scope, db
from portal.jobs.models import Job
from portal.jobs.queue import REGISTRY, TASK_NAME, dispatch, enqueue, job
from portal.jobs.schedule import unsent
from portal.kernel.clock import now_utc
from portal.kernel.scope import Scope
from portal.observability import current_request_id, request_id_context
from tests.conftest import SYSTEM
from tests.support import deliver_job

#: What the test jobs saw, by job name: (actor label, request id, scope, arguments) per call.
SEEN: dict[str, list[tuple[str, str | None, Any, dict[str, Any]]]] = {}
#: How many times ``tests.flaky`` fails before it succeeds.
FLAKY_FAILURES = 2


def _note(name: str, session, actor, arguments) -> int:
    calls = SEEN.setdefault(name, [])
    calls.append((actor.label, current_request_id(), bound_scope(session), arguments))
    return len(calls)


@job("tests.ok", max_attempts=2)
def _ok(session, *, actor, **arguments) -> None:
    _note("tests.ok", session, actor, arguments)


@job("tests.flaky", max_attempts=3, backoff=(1, 2))
def _flaky(session, *, actor, **arguments) -> None:
    if _note("tests.flaky", session, actor, arguments) <= FLAKY_FAILURES:
        raise ConnectionError("the other system did not answer\n  File 'secret.py', line 1")


GAVE_UP: list[tuple[str, dict[str, Any]]] = []


def _gave_up(session, *, error: str, **arguments) -> None:
    GAVE_UP.append((error, arguments))


@job("tests.broken", max_attempts=2, backoff=(5,), on_give_up=_gave_up)
def _broken(session, *, actor, **arguments) -> None:
    _note("tests.broken", session, actor, arguments)
    raise ValueError("no such thing: 42")


@pytest.fixture(autouse=True)
def _forget_calls():
    SEEN.clear()
    GAVE_UP.clear()
    yield


def _job(app, job_id: int) -> Job:
    with app.app_context():
        row = db.session.get(Job, job_id)
        db.session.expunge_all()
        return row


def _enqueue(app, name: str, **arguments: Any) -> int:
    with app.app_context():
        row = enqueue(db.session, name, arguments, actor=SYSTEM)
        db.session.commit()
        return row.id


def test_a_job_is_recorded_and_its_message_sent_only_after_commit(app):
    with app.app_context():
        row = enqueue(db.session, "tests.ok", {"n": 1}, actor=SYSTEM)
        job_id = row.id
        assert row.state == "queued"
        db.session.commit()
    row = _job(app, job_id)
    assert (row.name, row.arguments, row.state, row.attempts) == ("tests.ok", {"n": 1}, "queued", 0)
    assert row.dispatched_at is not None and row.enqueued_by == "test"
    assert SEEN == {}  # sent to the (in-memory) queue; no worker ran it


def test_a_rolled_back_change_leaves_no_job_and_sends_nothing(app, jobs_inline):
    with app.app_context():
        enqueue(db.session, "tests.ok", {"n": 1}, actor=SYSTEM)
        db.session.rollback()
        db.session.commit()  # nothing pending any more: nothing runs
        assert db.session.scalars(sa.select(Job)).all() == []
    assert SEEN == {}


def test_an_unknown_job_is_refused_when_enqueued(app):
    with app.app_context(), pytest.raises(LookupError, match="tests.nope"):
        enqueue(db.session, "tests.nope", actor=SYSTEM)


def test_a_job_runs_council_wide_as_the_system_with_its_request_id(app, jobs_inline):
    with app.app_context(), request_id_context("req-1234"):
        row = enqueue(db.session, "tests.ok", {"n": 7}, actor=SYSTEM)
        assert row.request_id == "req-1234"
        db.session.commit()
        job_id = row.id
    assert SEEN["tests.ok"] == [("job:tests.ok", "req-1234", Scope.council(), {"n": 7})]
    row = _job(app, job_id)
    assert (row.state, row.attempts, row.last_error) == ("succeeded", 1, None)
    assert row.started_at <= row.finished_at


def test_a_failing_job_is_retried_with_backoff_until_it_succeeds(app, jobs_inline):
    job_id = _enqueue(app, "tests.flaky", invoice=3)
    assert len(SEEN["tests.flaky"]) == 3
    row = _job(app, job_id)
    assert (row.state, row.attempts, row.last_error) == ("succeeded", 3, None)


def test_a_job_that_keeps_failing_gives_up_with_the_message_and_no_stack_trace(app, jobs_inline):
    job_id = _enqueue(app, "tests.broken", thing=42)
    assert len(SEEN["tests.broken"]) == 2
    row = _job(app, job_id)
    assert (row.state, row.attempts) == ("failed", 2)
    assert row.last_error == "ValueError: no such thing: 42"
    assert row.finished_at is not None and row.retry_at is None
    assert GAVE_UP == [("ValueError: no such thing: 42", {"thing": 42})]


def test_a_retry_waits_for_its_backoff_on_a_real_queue(app):
    """Without eager mode: the retry is a new message with a countdown, the row says when."""
    with app.app_context():
        row = enqueue(db.session, "tests.flaky", actor=SYSTEM)
        db.session.commit()
        job_id = row.id
    celery = app.extensions["celery"]
    celery.tasks[TASK_NAME].apply(args=[job_id])  # a worker's delivery, in this process
    row = _job(app, job_id)
    assert (row.state, row.attempts) == ("queued", 1)
    assert row.last_error == "ConnectionError: the other system did not answer"
    assert dt.timedelta(0) < row.retry_at - now_utc() <= dt.timedelta(seconds=1)


def test_a_cancelled_or_finished_jobs_message_is_dropped(app, jobs_inline):
    job_id = _enqueue(app, "tests.ok")
    assert len(SEEN["tests.ok"]) == 1
    assert deliver_job(app, job_id) == "skipped"  # delivered again
    with app.app_context():
        row = enqueue(db.session, "tests.ok", actor=SYSTEM)
        row.state = "cancelled"
        db.session.commit()
        cancelled = row.id
    assert deliver_job(app, cancelled) == "skipped"
    assert len(SEEN["tests.ok"]) == 1
    assert _job(app, cancelled).attempts == 0


def test_a_message_the_broker_refused_is_sent_again_by_the_sweep(app, clock):
    """A broker that refuses connections: the change commits at once, the job waits unsent."""
    from portal.jobs import queue

    working = app.extensions["celery"]
    app.config["PORTAL_JOBS_BROKER_URL"] = "amqp://guest:guest@127.0.0.1:1//"  # nothing there
    try:
        queue.init_app(app)
        started = time.monotonic()
        job_id = _enqueue(app, "tests.ok")  # committed; sending failed (logged, not raised)
        assert time.monotonic() - started < 5
    finally:
        app.extensions["celery"].close()
        app.extensions["celery"] = working
        app.config["PORTAL_JOBS_BROKER_URL"] = working.conf.broker_url
    assert _job(app, job_id).dispatched_at is None
    with app.app_context():
        assert job_id not in unsent(db.session, now=now_utc())  # give it a minute
        clock.advance(dt.timedelta(minutes=2))
        assert job_id in unsent(db.session, now=now_utc())
    assert dispatch(app, [job_id], note_sent=True) == [job_id]
    assert _job(app, job_id).dispatched_at is not None
    with app.app_context():
        assert job_id not in unsent(db.session, now=now_utc())
        clock.advance(dt.timedelta(hours=3))  # sent, never started: the message seems lost
        assert job_id in unsent(db.session, now=now_utc())


def test_every_declared_job_has_a_sane_retry_policy():
    for name, spec in REGISTRY.items():
        assert spec.max_attempts >= 1 and spec.backoff, name
        assert all(seconds > 0 for seconds in spec.backoff), name
    assert {"billing.invoice_run", "payments.collect"} <= set(REGISTRY)


def test_a_job_whose_row_cannot_be_read_is_tried_again_later(app, monkeypatch):
    """The database did not answer when the worker claimed the job: Celery retries the task."""
    from portal.jobs import queue

    job_id = _enqueue(app, "tests.ok")

    def database_away(session, job_id):
        raise sa.exc.OperationalError("SELECT", {}, Exception("server closed the connection"))

    monkeypatch.setattr(queue, "_claim", database_away)
    with pytest.raises(Retry, match="Retry in 60s"):
        app.extensions["celery"].tasks[TASK_NAME].apply(args=[job_id])
    monkeypatch.undo()
    assert SEEN == {} and _job(app, job_id).state == "queued"
