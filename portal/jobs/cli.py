"""``portal worker`` (a worker and the schedule) and ``portal jobs tick`` (one tick, by hand)."""

from __future__ import annotations

import click
from flask import current_app
from flask.cli import with_appcontext

from portal.jobs.schedule import tick
from portal.jobs.worker import run_worker


@click.command("worker")
@click.option(
    "--concurrency",
    "-c",
    type=click.IntRange(1, 64),
    default=None,
    help="Jobs run at once (default: one per CPU core).",
)
@click.option(
    "--pool",
    type=click.Choice(["prefork", "threads", "solo"]),
    default="prefork",
    show_default=True,
    help="Celery's execution pool: processes, threads, or one job at a time in this process.",
)
@click.option(
    "--schedule/--no-schedule",
    default=True,
    show_default=True,
    help="Also enqueue the scheduled jobs (safe on every worker: one job per slot).",
)
@with_appcontext
def worker(concurrency: int | None, pool: str, schedule: bool) -> None:
    """Run a worker and the schedule: take jobs until stopped (Ctrl-C, SIGTERM: finish first)."""
    app = current_app._get_current_object()  # type: ignore[attr-defined]
    run_worker(app, concurrency=concurrency, pool=pool, schedule=schedule)


@click.group("jobs")
def jobs() -> None:
    """Background jobs."""


@jobs.command("tick")
@with_appcontext
def tick_command() -> None:
    """Enqueue the scheduled jobs that are due and send unsent messages, once."""
    app = current_app._get_current_object()  # type: ignore[attr-defined]
    created = tick(app)
    click.echo(f"{len(created)} scheduled job(s) enqueued.")
