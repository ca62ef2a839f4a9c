"""``/healthz`` (the process serves) and ``/readyz`` (the database; Redis where configured)."""

from __future__ import annotations

import pytest
import sqlalchemy as sa

from portal import create_app
from portal.db import RETRY_AFTER_SECONDS, db, outage
from portal.observability import readiness_checks, register_readiness_check
from tests.conftest import free_port


def _own(app, response) -> dict:
    """The body without the checks other parts registered (the job queue's broker)."""
    body = response.get_json()
    registered = readiness_checks(app)
    body["checks"] = {k: v for k, v in body["checks"].items() if k not in registered}
    return body


def test_healthz_answers_ok_without_authentication(client):
    response = client.get("/healthz")
    assert response.status_code == 200
    assert response.get_json() == {"status": "ok"}
    assert response.headers["Cache-Control"] == "no-store"


def test_readyz_is_ok_when_the_database_answers(app, client, monkeypatch):
    monkeypatch.setitem(app.extensions, "portal_readiness", {})
    response = client.get("/readyz")
    assert response.status_code == 200
    assert response.get_json() == {"status": "ok", "checks": {"database": "ok"}}
    assert "Retry-After" not in response.headers


def test_readyz_reports_redis_when_configured(app, client, monkeypatch):
    """Redis down: limits count per process, so ``degraded`` (still 200); Redis up: ok."""
    monkeypatch.setitem(app.config, "PORTAL_REDIS_URL", f"redis://127.0.0.1:{free_port()}/0")
    monkeypatch.setitem(app.extensions, "portal_readiness", {})
    down = client.get("/readyz")
    assert down.status_code == 200
    assert down.get_json() == {
        "status": "degraded",
        "checks": {"database": "ok", "redis": "degraded"},
    }
    assert "127.0.0.1" not in down.get_data(as_text=True)

    monkeypatch.setitem(app.config, "PORTAL_REDIS_URL", "redis://127.0.0.1:6379/0")
    up = client.get("/readyz")
    assert up.get_json() == {"status": "ok", "checks": {"database": "ok", "redis": "ok"}}


def test_probes_do_not_count_against_rate_limits(app, client):
    from portal.extensions import limiter

    assert "health" in limiter._blueprint_exemptions  # noqa: SLF001 (what exempt() records)
    for _ in range(30):
        assert client.get("/readyz").status_code == 200


@pytest.fixture
def app_without_database(tmp_path, monkeypatch):
    monkeypatch.setenv("PORTAL_ENV", "test")
    monkeypatch.setenv("PORTAL_INSTANCE_PATH", str(tmp_path / "instance"))
    app = create_app(
        {
            "SQLALCHEMY_DATABASE_URI": f"postgresql+psycopg://postgres@127.0.0.1:{free_port()}/x",
            "RATELIMIT_STORAGE_URI": "memory://",
            "PORTAL_REDIS_URL": f"redis://127.0.0.1:{free_port()}/0",
        }
    )
    yield app
    outage.since = None
    with app.app_context():
        db.engine.dispose()


def test_readyz_fails_with_503_when_the_database_is_down_and_healthz_still_answers(
    app_without_database,
):
    client = app_without_database.test_client()
    ready = client.get("/readyz")
    assert ready.status_code == 503
    assert ready.headers["Retry-After"] == str(RETRY_AFTER_SECONDS)
    assert _own(app_without_database, ready) == {
        "status": "failing",
        "checks": {"database": "failing", "redis": "degraded"},
    }
    body = ready.get_data(as_text=True)
    assert "127.0.0.1" not in body and "postgres" not in body  # no hosts, no messages

    alive = client.get("/healthz")
    assert alive.status_code == 200
    assert alive.get_json() == {"status": "ok"}


# ------------------------------------------------------------------ registered checks


def test_registered_checks_are_run_failing_critical_is_503_other_is_degraded(
    app, client, monkeypatch
):
    """A part with a server of its own (the job queue's broker) registers its check."""
    monkeypatch.setitem(app.extensions, "portal_readiness", {})
    calls: list[str] = []

    def answers() -> bool:
        calls.append("broker")
        return True

    register_readiness_check(app, "queue", answers, critical=True)
    ok = client.get("/readyz")
    assert ok.status_code == 200
    assert ok.get_json() == {"status": "ok", "checks": {"database": "ok", "queue": "ok"}}
    assert calls == ["broker"]

    register_readiness_check(app, "mail", lambda: False)  # not critical
    degraded = client.get("/readyz")
    assert degraded.status_code == 200
    assert degraded.get_json()["status"] == "degraded"
    assert degraded.get_json()["checks"]["mail"] == "degraded"

    def broken() -> bool:
        raise ConnectionError("amqp://guest:guest@10.0.0.7:5672 refused")

    register_readiness_check(app, "queue", broken, critical=True)  # replaces the first
    failing = client.get("/readyz")
    assert failing.status_code == 503
    assert failing.headers["Retry-After"] == str(RETRY_AFTER_SECONDS)
    assert failing.get_json() == {
        "status": "failing",
        "checks": {"database": "ok", "queue": "failing", "mail": "degraded"},
    }
    assert "10.0.0.7" not in failing.get_data(as_text=True)  # no addresses, no messages


def test_probes_and_metrics_answer_while_another_transaction_writes(app, client):
    """On SQLite a writer holds the database's write lock: reads must not wait for it."""
    with app.app_context(), db.engine.connect() as writer:
        writer.begin()  # BEGIN IMMEDIATE on SQLite: the write lock, held until the end
        writer.execute(sa.text("UPDATE organisations SET name = name WHERE 1 = 0"))
        ready = client.get("/readyz")
        assert ready.status_code == 200, ready.get_json()
        assert ready.get_json()["checks"]["database"] == "ok"
        assert client.get("/metrics").status_code == 200
        writer.rollback()
