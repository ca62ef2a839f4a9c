"""Background jobs on a queue (Celery), recorded in the ``jobs`` table, and a schedule.

* :mod:`portal.jobs.queue`: declaring a job (``@job``), enqueueing it in the
  caller's transaction, the Celery app and its one task that runs every job.
* :mod:`portal.jobs.schedule`: jobs that run every so often, and the sweep.
* :mod:`portal.jobs.worker` and :mod:`portal.jobs.cli`: ``portal worker``.
* :mod:`portal.jobs.services` / :mod:`portal.jobs.selectors`: the Jobs page's
  retry and cancel, and its reads.

The package sits just above ``audit``: any domain may declare and enqueue jobs
(billing's invoice run, payments' collection); the jobs themselves live in
their domains. See docs/ARCHITECTURE.md ("Jobs").
"""

from __future__ import annotations

from flask import Flask


def init_app(app: Flask) -> None:
    """Create the Celery instance, register its readiness check, add the commands."""
    from portal.jobs import queue
    from portal.jobs.cli import jobs, worker
    from portal.observability import register_readiness_check

    queue.init_app(app)
    # /readyz: a broker that does not answer degrades the instance (pages still serve;
    # jobs enqueued meanwhile are recorded and sent by the sweep once it is back).
    register_readiness_check(app, "queue", lambda: queue.broker_answers(app))
    app.cli.add_command(worker)
    app.cli.add_command(jobs)
