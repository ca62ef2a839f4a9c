"""Invoice runs started from the finance page, executed in a background thread.

The page records the run (:func:`portal.billing.operations.invoice_run_start`),
commits, and hands its id here. The thread gets its own app context and its own
database session, and executes the run with
:func:`portal.billing.jobs.invoice_run_execute`, which commits after each
batch of organisations: the run's row is the progress the page shows, refreshing itself
with ``<meta http-equiv="refresh">`` (no JavaScript needed).

A thread lives in one server process: if that process stops mid-run, the row
stays ``running``. The page then calls the run stalled after
:data:`STALLED_AFTER` without an end, and says to start it again (runs refresh
drafts, never duplicate them). A job queue would survive a restart; the
portal has none yet (SPEC section 8).
"""

from __future__ import annotations

import datetime as dt
import threading

from flask import current_app
from sqlalchemy.orm import Session

from portal.billing.jobs import invoice_run_execute
from portal.billing.models import InvoiceRun, InvoiceRunStatus
from portal.db import db
from portal.kernel.actor import Actor
from portal.kernel.clock import now_utc

REFRESH_SECONDS = 2
STALLED_AFTER = dt.timedelta(minutes=30)

_threads: dict[int, threading.Thread] = {}
_threads_lock = threading.Lock()


def invoice_run_in_background(*, run_id: int, actor: Actor) -> threading.Thread:
    """Execute the recorded run ``run_id`` in a new thread; returns the thread."""
    app = current_app._get_current_object()  # type: ignore[attr-defined]

    def work() -> None:
        with app.app_context():
            session = Session(bind=db.engine, expire_on_commit=True)
            try:
                invoice_run_execute(session, actor=actor, run_id=run_id)
            except Exception as error:  # anything unexpected: the run must not stay "running"
                app.logger.exception("Invoice run %s failed", run_id)
                session.rollback()
                run = session.get(InvoiceRun, run_id)
                if run is not None:
                    run.status = InvoiceRunStatus.FAILED
                    run.error = f"The run stopped: {type(error).__name__}: {error}"[:10_000]
                    run.finished_at = now_utc()
                    session.commit()
            finally:
                session.close()
                with _threads_lock:
                    _threads.pop(run_id, None)

    thread = threading.Thread(target=work, name=f"invoice-run-{run_id}", daemon=True)
    with _threads_lock:
        _threads[run_id] = thread
    thread.start()
    return thread


def wait_for_runs(timeout: float = 60) -> None:
    """Wait for this process's background runs to end (tests, and a graceful shutdown)."""
    deadline = now_utc() + dt.timedelta(seconds=timeout)
    while True:
        with _threads_lock:
            threads = list(_threads.values())
        if not threads:
            return
        for thread in threads:
            thread.join(max(0.0, (deadline - now_utc()).total_seconds()))
        if now_utc() >= deadline:
            return


def run_stalled(run: InvoiceRun, now: dt.datetime) -> bool:
    """Whether a ``running`` run has gone on so long that its process has likely stopped."""
    return run.status == InvoiceRunStatus.RUNNING and now - run.started_at > STALLED_AFTER
