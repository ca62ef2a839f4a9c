"""``portal worker``: a Celery worker for the portal's queue, with the schedule.

Run as many as you like, on as many machines: they share the broker
(``PORTAL_JOBS_BROKER_URL``) and the database; each runs the schedule too
(:mod:`portal.jobs.schedule`; a slot gets one job whichever worker enqueues it).
"""

from __future__ import annotations

import os
import socket

from celery import Celery
from flask import Flask

from portal.jobs.schedule import Ticker


def worker_argv(
    app: Flask, *, concurrency: int | None, pool: str, loglevel: str = "INFO"
) -> list[str]:
    """The Celery worker's arguments: the portal's queue, this process's node name."""
    argv = [
        "worker",
        f"--queues={app.config['PORTAL_JOBS_QUEUE']}",
        f"--pool={pool}",
        f"--loglevel={loglevel}",
        f"--hostname=portal-{os.getpid()}@{socket.gethostname()}",
        # Workers need not know of each other: no start-up exchange, no gossip.
        "--without-mingle",
        "--without-gossip",
    ]
    if concurrency:
        argv.append(f"--concurrency={concurrency}")
    return argv


def run_worker(
    app: Flask,
    *,
    concurrency: int | None = None,
    pool: str = "prefork",
    schedule: bool = True,
) -> None:
    """Consume the portal's queue until stopped (SIGTERM or Ctrl-C: finish the running jobs)."""
    celery: Celery = app.extensions["celery"]
    ticker = Ticker(app, app.config["PORTAL_JOBS_TICK_SECONDS"]) if schedule else None
    if ticker is not None:
        ticker.start()
    try:
        celery.worker_main(worker_argv(app, concurrency=concurrency, pool=pool))
    finally:
        if ticker is not None:
            ticker.stop()
