"""An invoice run on real workers (`portal worker`) over RabbitMQ and Redis, killed mid-run.

The worker running the month is SIGKILLed (its whole process group, as when a
machine or container dies) after it has drafted some organisations; the broker
delivers the unacknowledged message again to a second worker, which runs the
month once more. The run ends ``done``, with one invoice per (organisation,
month, currency), and its job says it took two attempts.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa
from celery import Celery

from portal.billing.models import Invoice, InvoiceRun
from portal.billing.operations import invoice_run_start
from portal.db import FOREIGN_ENGINE, council_wide, db
from portal.jobs.models import Job
from portal.jobs.queue import TASK_NAME
from tests.billing.factories import subscribe
from tests.conftest import SYSTEM

ROOT = Path(__file__).resolve().parents[2]
BROKERS = {
    "rabbitmq": "amqp://guest:guest@127.0.0.1:5672//",
    "redis": "redis://127.0.0.1:6379/15",
}
ORGANISATIONS = 5


def _broker_answers(url: str) -> bool:
    from kombu import Connection

    try:
        with Connection(url, connect_timeout=2) as connection:
            connection.ensure_connection(max_retries=1)
        return True
    except Exception:
        return False


@pytest.fixture(params=sorted(BROKERS))
def broker(request) -> Iterator[tuple[str, str]]:
    """(broker URL, a queue of this test's own); the queue is deleted afterwards."""
    url = BROKERS[request.param]
    if not _broker_answers(url):
        if os.environ.get("PORTAL_TEST_REQUIRE_BROKERS"):  # .ci/run starts both
            pytest.fail(f"{request.param} is not answering at {url}")
        pytest.skip(f"{request.param} is not running at {url} (.ci/run starts it)")
    queue = f"portal-test-{uuid.uuid4().hex[:12]}"
    yield url, queue
    from kombu import Connection

    with Connection(url) as connection, contextlib.suppress(Exception):  # gone already
        connection.default_channel.queue_delete(queue)


@pytest.fixture
def workers(app, tmp_path) -> Iterator[Callable[..., subprocess.Popen]]:
    """``start(broker, queue, pause)``: a `portal worker` process group; all killed afterwards."""
    started: list[subprocess.Popen] = []
    logs: list = []

    def start(broker: str, queue: str, pause: float) -> subprocess.Popen:
        log = (tmp_path / f"worker-{len(started)}.log").open("w")
        logs.append(log)
        environment = {
            **os.environ,
            "PORTAL_ENV": "test",
            "PORTAL_DATABASE_URL": app.config["SQLALCHEMY_DATABASE_URI"],
            "PORTAL_OUTBOX_DIR": str(tmp_path / "outbox"),
            "PORTAL_JOBS_BROKER_URL": broker,
            "PORTAL_JOBS_QUEUE": queue,
            # Redis: an unacknowledged message is delivered again after 5 s (not an hour).
            "PORTAL_JOBS_VISIBILITY_TIMEOUT": "5",
            "PORTAL_TEST_INVOICE_RUN_PAUSE": str(pause),
        }
        environment.pop("PORTAL_SMTP_HOST", None)
        process = subprocess.Popen(  # noqa: S603 (our own worker, fixed arguments)
            [
                str(Path(sys.executable).parent / "portal"),
                "worker",
                "--concurrency=1",
                "--no-schedule",
            ],
            cwd=ROOT,
            env=environment,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # its own process group: SIGKILL takes the pool's child too
        )
        process.log_path = log.name  # type: ignore[attr-defined]
        started.append(process)
        return process

    yield start
    for process in started:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(10)
    for log in logs:
        log.close()


def _state(app, run_id: int) -> tuple[InvoiceRun, Job]:
    with app.app_context():
        with council_wide(db.session):
            run = db.session.get(InvoiceRun, run_id)
            job = db.session.get(Job, run.job_id)
            db.session.expunge_all()
        db.session.remove()
    return run, job


def _wait(condition: Callable[[], bool], seconds: float, why: str, logs: list[str]) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out waiting until {why}\n" + "\n".join(logs))
        time.sleep(0.2)


def _logs(*processes: subprocess.Popen) -> list[str]:
    return [Path(p.log_path).read_text()[-4000:] for p in processes]  # type: ignore[attr-defined]


def test_a_run_whose_worker_is_killed_is_redelivered_and_ends_done_once(
    app, billed, make_org, broker, workers
):
    url, queue = broker
    for i in range(ORGANISATIONS - 1):
        org = make_org(f"member-{i}")
        subscribe(app, org.id, billed["product"].id, 1, billed["first"])
    with app.app_context():
        with council_wide(db.session):
            run = invoice_run_start(db.session, actor=SYSTEM, period=billed["period"])
            run_id, job_id = run.id, run.job_id
            db.session.commit()
        db.session.remove()
    # The test app's own broker is in memory: send the job's message to the real one.
    sender = Celery("portal-test", broker=url, set_as_current=False)
    sender.send_task(TASK_NAME, args=[job_id], queue=queue, routing_key=queue)

    first = workers(url, queue, pause=2.0)
    _wait(
        lambda: _state(app, run_id)[0].organisations_done >= 1,
        90,
        "the first worker drafted an organisation",
        _logs(first),
    )
    os.killpg(first.pid, signal.SIGKILL)
    first.wait(10)
    run, job = _state(app, run_id)
    assert run.status == "running" and 1 <= run.organisations_done < ORGANISATIONS
    assert (job.state, job.attempts) == ("running", 1)

    second = workers(url, queue, pause=0.0)
    _wait(
        lambda: _state(app, run_id)[0].status in ("done", "failed"),
        120,
        "the second worker finished the run",
        _logs(first, second),
    )
    # The job's own record is written as the task returns, just after the run's last commit.
    _wait(
        lambda: _state(app, run_id)[1].state != "running",
        60,
        "the second worker recorded the job's end",
        _logs(first, second),
    )
    run, job = _state(app, run_id)
    assert (run.status, run.error) == ("done", None), _logs(second)
    assert run.organisations_done == run.organisations_total == ORGANISATIONS
    assert run.invoices_created + run.invoices_refreshed == ORGANISATIONS
    assert run.invoices_refreshed >= 1  # what the killed worker drafted was refreshed
    assert (job.state, job.attempts, job.last_error) == ("succeeded", 2, None)
    with app.app_context():
        with council_wide(db.session):
            per_key = db.session.execute(
                sa.select(
                    Invoice.organisation_id, Invoice.period, Invoice.currency, sa.func.count()
                ).group_by(Invoice.organisation_id, Invoice.period, Invoice.currency)
            ).all()
        db.session.remove()
    assert len(per_key) == ORGANISATIONS
    assert {row[3] for row in per_key} == {1}
    assert {row[1] for row in per_key} == {billed["period"]}


# kombu's SQLAlchemy models declare a relationship ``lazy="noload"`` (deprecated in SQLAlchemy
# 2.1; the transport never loads it), warned about when this process first maps them.
@pytest.mark.filterwarnings("ignore:The ``noload`` loader strategy is deprecated")
def test_the_development_queue_needs_no_server(app, billed, workers, tmp_path):
    """`make run`'s worker: kombu's SQLAlchemy transport on a SQLite file (no broker server)."""
    url = f"sqla+sqlite:///{tmp_path / 'jobs.sqlite'}"
    queue = f"portal-test-{uuid.uuid4().hex[:12]}"
    with app.app_context():
        with council_wide(db.session):
            run = invoice_run_start(db.session, actor=SYSTEM, period=billed["period"])
            run_id = run.id
            job_id = run.job_id
            db.session.commit()
        db.session.remove()
    worker = workers(url, queue, pause=0.0)
    sender = Celery("portal-test", broker=url, set_as_current=False)
    sender.conf.broker_transport_options = {"execution_options": {FOREIGN_ENGINE: True}}
    sender.send_task(TASK_NAME, args=[job_id], queue=queue, routing_key=queue)
    sender.close()
    _wait(lambda: _state(app, run_id)[0].status == "done", 90, "the run is done", _logs(worker))
    _wait(lambda: _state(app, run_id)[1].state != "running", 60, "the job ended", _logs(worker))
    run, job = _state(app, run_id)
    assert (run.invoices_created, job.state, job.attempts) == (1, "succeeded", 1)
