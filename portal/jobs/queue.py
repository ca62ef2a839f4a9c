"""Jobs on Celery: recording, enqueueing after commit, and running them in a worker.

* A domain declares a job with :func:`job` (``@job("billing.invoice_run")`` over a
  function ``run(session, *, actor, **arguments)``); declaring registers it, so
  importing the module is enough (``create_app`` imports them all).
* :func:`enqueue` writes the :class:`~portal.jobs.models.Job` row in the caller's
  transaction. The message (just the row's id) goes to the queue once that
  transaction commits; a rolled-back change leaves neither row nor message. A
  message that could not be sent (the broker was down) is sent again by the
  schedule's sweep (:mod:`portal.jobs.schedule`).
* A worker receives one Celery task, ``portal.run_job(job_id)``: it claims the
  row (skipping a cancelled or finished job whose message came again), runs the
  job council-wide as ``Actor.system("job:<name>")``, and records the outcome.
  A failure is retried with backoff up to the job's ``max_attempts``, then the
  row says ``failed`` with the error's message (never a stack trace).
* Messages are acknowledged late (after the job returns) and rejected when the
  worker process is lost, so a job killed mid-way (SIGKILL, a machine gone) is
  delivered again: every job must end as if it ran once (invoice runs refresh
  drafts, payment attempts carry idempotency keys).
"""

from __future__ import annotations

import contextlib
import datetime as dt
import logging
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import sqlalchemy as sa
from celery import Celery, Task
from celery.signals import worker_process_init
from flask import Flask, current_app, has_app_context
from sqlalchemy import event
from sqlalchemy.orm import Session

from portal.db import FOREIGN_ENGINE, council_wide, db, db_session
from portal.jobs.models import FINISHED, Job, JobState
from portal.kernel.actor import Actor
from portal.kernel.clock import now_utc
from portal.observability import current_request_id, log_context, request_id_context

log = logging.getLogger("portal.jobs")

#: The one Celery task every job runs through.
TASK_NAME = "portal.run_job"
#: Seconds before a job is tried again when its row could not be read or written.
INFRASTRUCTURE_RETRY_SECONDS = 60

JobFunction = Callable[..., None]


@dataclass(frozen=True)
class JobSpec:
    """A declared job: its function, how often it may be tried and how long to wait between."""

    name: str
    run: JobFunction
    max_attempts: int = 3
    #: Seconds before the 2nd, 3rd, … attempt (the last value repeats).
    backoff: tuple[int, ...] = (30, 300, 1800)
    #: Called (in a fresh transaction) when the job gives up, with the arguments and the error.
    on_give_up: Callable[..., None] | None = None
    #: A schedule: enqueue every ``every`` (see :mod:`portal.jobs.schedule`).
    every: dt.timedelta | None = None
    #: A scheduled job runs only while this says so (given the app's config).
    enabled: Callable[[Any], bool] = field(default=lambda config: True)

    def delay_before(self, attempt: int) -> int:
        """Seconds to wait before attempt number ``attempt`` (2 or more)."""
        return self.backoff[min(attempt - 2, len(self.backoff) - 1)]


#: Every declared job by name.
REGISTRY: dict[str, JobSpec] = {}


def job(
    name: str,
    *,
    max_attempts: int = 3,
    backoff: tuple[int, ...] = (30, 300, 1800),
    on_give_up: Callable[..., None] | None = None,
    every: dt.timedelta | None = None,
    enabled: Callable[[Any], bool] | None = None,
) -> Callable[[JobFunction], JobFunction]:
    """Declare ``run(session, *, actor, **arguments)`` as the job ``name``."""

    def register(run: JobFunction) -> JobFunction:
        if name in REGISTRY and REGISTRY[name].run is not run:
            raise RuntimeError(f"job {name!r} is declared twice")
        REGISTRY[name] = JobSpec(
            name=name,
            run=run,
            max_attempts=max_attempts,
            backoff=backoff,
            on_give_up=on_give_up,
            every=every,
            enabled=enabled or (lambda config: True),
        )
        return run

    return register


# ------------------------------------------------------------------ enqueueing

_PENDING_KEY = "portal_jobs_to_dispatch"


def enqueue(
    session: Session,
    name: str,
    arguments: dict[str, Any] | None = None,
    *,
    actor: Actor,
    dedupe_key: str | None = None,
    request_id: str | None = None,
) -> Job:
    """Record the job ``name`` in ``session``'s transaction; it is queued once that commits.

    ``arguments`` must be JSON (ids and periods; never a secret: the Jobs page shows them).
    """
    spec = REGISTRY.get(name)
    if spec is None:
        raise LookupError(f"no job is declared as {name!r}")
    row = Job(
        name=name,
        arguments=dict(arguments or {}),
        state=JobState.QUEUED,
        attempts=0,
        max_attempts=spec.max_attempts,
        dedupe_key=dedupe_key,
        enqueued_by=actor.label[:254],
        request_id=request_id if request_id is not None else current_request_id(),
        enqueued_at=now_utc(),
        # Sent as this transaction commits (undone if the broker refuses; then the sweep
        # sends it): noted here, so sending after the commit writes nothing more.
        dispatched_at=now_utc(),
    )
    session.add(row)
    session.flush()
    dispatch_after_commit(session, row.id)
    return row


def dispatch_after_commit(session: Session, job_id: int) -> None:
    """Send ``job_id``'s message once ``session`` commits (nothing if it rolls back)."""
    session.info.setdefault(_PENDING_KEY, []).append(job_id)


@event.listens_for(Session, "after_commit")
def _dispatch_after_commit(session: Session) -> None:
    if session.in_nested_transaction():  # a savepoint released: the real commit is to come
        return
    ids = session.info.pop(_PENDING_KEY, None)
    if not ids or not has_app_context() or "celery" not in current_app.extensions:
        return  # the sweep sends them
    dispatch(current_app._get_current_object(), list(dict.fromkeys(ids)))  # type: ignore[attr-defined]


@event.listens_for(Session, "after_soft_rollback")
def _forget_after_rollback(session: Session, previous_transaction: Any) -> None:
    # Only the whole transaction's rollback: a savepoint rolled back (one refused row of a
    # bulk change) must not drop the jobs the rest of the transaction enqueued. A job
    # enqueued inside that savepoint has no row any more; dispatch skips it.
    if previous_transaction.parent is None:
        session.info.pop(_PENDING_KEY, None)


def dispatch(app: Flask, job_ids: list[int], *, note_sent: bool = False) -> list[int]:
    """Send each job's message to the queue; returns the ids sent.

    Never raises: a job whose message could not be sent is noted unsent
    (``dispatched_at`` cleared) and the sweep tries again. Rows already say they
    were sent (:func:`enqueue`, a retry), so sending costs no second write (50
    finalisations at once on SQLite, each with its mail's job, queue on one write
    lock); the sweep passes ``note_sent``. A job enqueued in a savepoint that was
    rolled back has no row: its message is dropped by the worker.
    """
    celery: Celery = app.extensions["celery"]
    task = celery.tasks[TASK_NAME]
    sent: list[int] = []
    for job_id in job_ids:
        if note_sent:  # first: a worker (or an eager run) may start it before we return
            _note_dispatched(app, job_id, sent=True)
        try:
            task.apply_async(args=[job_id])
        except Exception as error:  # the broker is unreachable: the sweep sends it later
            if celery.conf.task_always_eager:
                raise
            log.warning("Could not queue job %s: %s", job_id, _describe(error))
            _note_dispatched(app, job_id, sent=False)
            continue
        sent.append(job_id)
    return sent


def _note_dispatched(app: Flask, job_id: int, *, sent: bool) -> None:
    """Note that the job's message went out now, or did not. Never raises: this runs after
    a commit, and the change is saved whatever happens here."""
    try:
        with _own_session(app) as session:
            session.execute(
                sa.update(Job)
                .where(Job.id == job_id)
                .values(dispatched_at=now_utc() if sent else None)
            )
            session.commit()
    except Exception as error:  # the database went away: at worst the sweep sends it again
        log.warning("Could not note job %s as sent: %s", job_id, _describe(error))


@contextlib.contextmanager
def _own_session(app: Flask) -> Iterator[Session]:
    """A session of its own (not the request's), council-wide, closed afterwards."""
    with app.app_context():
        session = Session(bind=db.engine)
        try:
            with council_wide(session):
                yield session
        finally:
            session.close()


# ------------------------------------------------------------------ running


def _describe(error: BaseException) -> str:
    """A job's error as the page shows it: its type and the first line of its message."""
    lines = str(error).strip().splitlines()
    message = f"{type(error).__name__}: {lines[0]}" if lines else type(error).__name__
    return message[:2000]


def _claim(session: Session, job_id: int) -> Job | None:
    """Mark the job running (one more attempt) unless it is finished or cancelled."""
    row = session.scalars(sa.select(Job).where(Job.id == job_id).with_for_update()).one_or_none()
    if row is None or row.state in FINISHED:
        session.rollback()
        return None
    row.state = JobState.RUNNING
    row.attempts += 1
    row.started_at = now_utc()
    row.finished_at = None
    row.retry_at = None
    session.commit()
    return row


def execute(app: Flask, task: Task, job_id: int) -> str:
    """Run one job in a worker (or inline when eager); returns what became of it."""
    session = db_session()
    with council_wide(session):
        row = _claim(session, job_id)
        if row is None:
            log.info("Job %s is finished or cancelled; its message is dropped", job_id)
            return "skipped"
        name, arguments, attempt = row.name, dict(row.arguments), row.attempts
        request_id, max_attempts = row.request_id, row.max_attempts
        spec = REGISTRY.get(name)
        with request_id_context(request_id), log_context(job=name, job_id=job_id):
            return _run(app, task, session, job_id, spec, name, arguments, attempt, max_attempts)


def _run(
    app: Flask,
    task: Task,
    session: Session,
    job_id: int,
    spec: JobSpec | None,
    name: str,
    arguments: dict[str, Any],
    attempt: int,
    max_attempts: int,
) -> str:
    """Run the claimed job, inside its request id's and name's log context."""
    log.info("Job %s %s starts (attempt %s of %s)", job_id, name, attempt, max_attempts)
    try:
        if spec is None:
            raise LookupError(f"no job is declared as {name!r} in this worker")
        spec.run(session, actor=Actor.system(f"job:{name}"), **arguments)
        session.commit()
    except Exception as error:
        session.rollback()
        message = _describe(error)
        log.exception("Job %s %s failed (attempt %s)", job_id, name, attempt)
        return _record_failure(
            app, task, session, job_id, spec, arguments, message, attempt, max_attempts
        )
    _record(session, job_id, state=JobState.SUCCEEDED, last_error=None)
    log.info("Job %s %s succeeded", job_id, name)
    return "succeeded"


def _record(session: Session, job_id: int, *, state: JobState, **values: Any) -> None:
    """Write the job's outcome, unless a person cancelled it meanwhile."""
    now = now_utc()
    finished = now if state in FINISHED else None
    session.execute(
        sa.update(Job)
        .where(Job.id == job_id, Job.state != JobState.CANCELLED)
        .values(state=state, finished_at=finished, **values)
    )
    session.commit()


def _record_failure(
    app: Flask,
    task: Task,
    session: Session,
    job_id: int,
    spec: JobSpec | None,
    arguments: dict[str, Any],
    message: str,
    attempt: int,
    max_attempts: int,
) -> str:
    if spec is not None and attempt < max_attempts:
        delay = spec.delay_before(attempt + 1)
        _record(
            session,
            job_id,
            state=JobState.QUEUED,
            last_error=message,
            retry_at=now_utc() + dt.timedelta(seconds=delay),
            dispatched_at=now_utc(),
        )
        if task.app.conf.task_always_eager:  # tests asking for inline jobs: the retry runs now
            return execute(app, task, job_id)
        task.apply_async(args=[job_id], countdown=delay)
        return "retrying"
    _record(session, job_id, state=JobState.FAILED, last_error=message)
    if spec is not None and spec.on_give_up is not None:
        try:
            spec.on_give_up(session, error=message, **arguments)
            session.commit()
        except Exception:
            session.rollback()
            log.exception("Job %s %s: recording that it gave up failed", job_id, spec.name)
    return "failed"


# ------------------------------------------------------------------ the Celery app


def celery_config(config: Any) -> dict[str, Any]:
    """Celery's settings from the portal's (``PORTAL_JOBS_*``, see portal.config)."""
    queue = config["PORTAL_JOBS_QUEUE"]
    broker = config["PORTAL_JOBS_BROKER_URL"]
    options: dict[str, Any] = {}
    if broker.startswith(("redis://", "rediss://")):
        # Redis: an unacknowledged message (its worker was killed) is delivered again after
        # this many seconds; longer than any job runs. (RabbitMQ redelivers when the dead
        # worker's connection closes.)
        options["visibility_timeout"] = config["PORTAL_JOBS_VISIBILITY_TIMEOUT"]
        # A running worker looks for such messages every 10 s (at most every half timeout),
        # not kombu's default of every 10th look (~100 s): a dead worker's job goes to a
        # live worker soon after its timeout, without waiting for a worker to start.
        options["unacked_restore_interval"] = max(
            1, min(10, config["PORTAL_JOBS_VISIBILITY_TIMEOUT"] // 2)
        )
        options["unacked_restore_throttle"] = 1
    elif broker.startswith("sqla+"):
        # kombu's SQLAlchemy transport (development) begins its own SQLite transactions.
        options["execution_options"] = {FOREIGN_ENGINE: True}
    return {
        "broker_url": broker,
        "broker_transport_options": options,
        "broker_connection_retry_on_startup": True,
        "broker_connection_timeout": 2,
        # A request that queues a job must not hang on a broker that is down (a few seconds
        # at worst): its job is recorded, and the sweep sends the message later.
        "task_publish_retry_policy": {
            "max_retries": 1,
            "interval_start": 0,
            "interval_step": 0.5,
            "interval_max": 0.5,
        },
        "task_default_queue": queue,
        "task_default_exchange": queue,
        "task_default_routing_key": queue,
        "task_acks_late": True,
        "task_reject_on_worker_lost": True,
        "worker_prefetch_multiplier": 1,
        "task_ignore_result": True,
        "task_always_eager": config["PORTAL_JOBS_EAGER"],
        "task_eager_propagates": True,
        "task_serializer": "json",
        "accept_content": ["json"],
        "enable_utc": True,
        "timezone": "UTC",
        "worker_hijack_root_logger": False,
        "worker_send_task_events": False,
    }


def init_app(app: Flask) -> Celery:
    """Create the app's Celery instance (``app.extensions["celery"]``) and its one task."""
    celery = Celery(app.import_name, set_as_current=False)
    celery.conf.update(celery_config(app.config))

    @celery.task(name=TASK_NAME, bind=True, shared=False)
    def run_job(self: Task, job_id: int) -> str:
        try:
            with app.app_context():
                return execute(app, self, int(job_id))
        except Exception as error:  # the database did not answer: the job's row says nothing
            if self.app.conf.task_always_eager:
                raise
            log.warning(
                "Job %s could not be run or recorded (%s); again in a minute", job_id, error
            )
            raise self.retry(countdown=INFRASTRUCTURE_RETRY_SECONDS, max_retries=None) from error

    def forget_parent_connections(**_: Any) -> None:
        """A forked worker child must not share the parent's database connections."""
        with app.app_context():
            db.engine.dispose(close=False)

    worker_process_init.connect(forget_parent_connections, weak=False)
    app.extensions["celery"] = celery
    return celery


def broker_answers(app: Flask, timeout: float = 1.0) -> bool:
    """Whether the queue's broker accepts a connection within ``timeout`` seconds."""
    celery: Celery = app.extensions["celery"]
    try:
        with celery.connection_for_write() as connection:
            connection.ensure_connection(max_retries=1, timeout=timeout)
        return True
    except Exception:  # refused, timed out, bad credentials: not ready
        return False
