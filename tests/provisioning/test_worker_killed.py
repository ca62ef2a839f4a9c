"""A real worker killed mid-delivery (SIGKILL), not a simulation: the delivery is sent again
by the next worker with the same ``webhook-id``, and is never lost.

A ``portal worker`` process (Celery on Redis, late acknowledgement) runs the schedule; its
sweep enqueues the vendor's delivery job, which sends ``seat.assigned`` to the test's
receiver. The receiver holds that request unanswered; the test SIGKILLs the worker's
whole process group while it waits. A second worker then gets the dead worker's
unacknowledged message again (Redis: after the 5 s visibility timeout), takes the
delivery up under the same lease and sends it again: the receiver sees the same
``webhook-id`` twice (once unanswered) and the delivery ends ``delivered``.

Needs Redis (skipped without it, like tests/test_several_servers.py).
"""

from __future__ import annotations

import os
import secrets
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import redis
import sqlalchemy as sa

from portal.db import db
from portal.provisioning.models import Delivery

ROOT = Path(__file__).resolve().parents[2]
REDIS_URL = "redis://127.0.0.1:6379/12"


@pytest.fixture
def redis_queue():
    client = redis.Redis.from_url(REDIS_URL)
    try:
        client.ping()
    except redis.ConnectionError as exc:
        if os.environ.get("PORTAL_TEST_REQUIRE_BROKERS"):
            pytest.fail(f"Redis is not answering at {REDIS_URL} ({exc})")
        pytest.skip(f"Redis is not running at {REDIS_URL}")
    name = f"provisioning-{os.getpid()}-{secrets.token_hex(4)}"
    yield name
    for key in client.scan_iter(match=f"*{name}*"):
        client.delete(key)
    client.close()


def _worker(app, tmp_path: Path, queue: str, name: str) -> tuple[subprocess.Popen, Path]:
    environment = {
        **os.environ,
        "PORTAL_ENV": "test",
        "PORTAL_DATABASE_URL": app.config["SQLALCHEMY_DATABASE_URI"],
        "PORTAL_OUTBOX_DIR": str(tmp_path / "outbox"),
        "PORTAL_JOBS_BROKER_URL": REDIS_URL,
        "PORTAL_JOBS_QUEUE": queue,
        "PORTAL_JOBS_VISIBILITY_TIMEOUT": "5",
        "PORTAL_JOBS_TICK_SECONDS": "2",
    }
    for variable in ("PORTAL_SMTP_HOST", "PROMETHEUS_MULTIPROC_DIR"):
        environment.pop(variable, None)
    log = tmp_path / f"{name}.log"
    with log.open("w") as output:
        popen = subprocess.Popen(  # noqa: S603 (our own worker, fixed arguments)
            [str(Path(sys.executable).parent / "portal"), "worker", "--concurrency=1"],
            cwd=ROOT,
            env=environment,
            stdout=output,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    return popen, log


def _kill(popen: subprocess.Popen) -> None:
    if popen.poll() is None:
        os.killpg(popen.pid, signal.SIGKILL)
        popen.wait(10)


def _wait(condition, seconds: float, what: str, logs: list[Path]) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        if time.monotonic() > deadline:
            tails = "\n".join(
                f"--- {p.name}\n{p.read_text(errors='replace')[-3000:]}" for p in logs
            )
            pytest.fail(f"{what} did not happen within {seconds} s\n{tails}")
        time.sleep(0.2)


def _state(app) -> str:
    with app.app_context():
        return str(
            db.session.scalar(sa.select(Delivery.state).where(Delivery.event == "seat.assigned"))
        )


def test_a_worker_killed_while_sending_is_replaced_and_the_delivery_is_sent_again(
    app, world, receiver, redis_queue, tmp_path
):
    from tests.provisioning.test_webhooks import _assign

    receiver.hold_type = "seat.assigned"
    with app.app_context():
        _assign(world, "kim@buyer.example")  # pending: no worker of the test app's queue
    first, first_log = _worker(app, tmp_path, redis_queue, "worker-1")
    second = None
    logs = [first_log]
    try:
        # The first worker's schedule sweeps (once a minute) and sends; the receiver holds it.
        _wait(receiver.held.is_set, 150, "the seat.assigned request", logs)
        _kill(first)
        receiver.release.set()
        with app.app_context():
            row = db.session.scalar(sa.select(Delivery).where(Delivery.event == "seat.assigned"))
            assert row.state == "pending" and row.attempts == 0 and row.leased_by
        second, second_log = _worker(app, tmp_path, redis_queue, "worker-2")
        logs.append(second_log)
        _wait(lambda: "seat.assigned" in receiver.types, 90, "the delivery again", logs)
        _wait(lambda: _state(app) == "delivered", 30, "the delivery recorded", logs)
    finally:
        _kill(first)
        if second is not None:
            _kill(second)
    assert receiver.held_ids == [
        r.webhook_id for r in receiver.received if r.type == "seat.assigned"
    ]
    assert receiver.refused == []
    with app.app_context():
        db.session.expire_all()
        row = db.session.scalar(sa.select(Delivery).where(Delivery.event == "seat.assigned"))
        assert row.state == "delivered" and row.attempts == 1
        assert row.message_id == receiver.held_ids[0]
