"""The portal's one clock in tests: the ``clock`` fixture, ``PORTAL_TEST_NOW``, and the
offset the suite hands the portal processes it starts (``PORTAL_CLOCK_OFFSET_SECONDS``)."""

from __future__ import annotations

import datetime as dt
import os
import subprocess
import sys

import pytest
from cryptography.fernet import Fernet

from portal import create_app
from portal.db import db
from portal.kernel import clock as kernel_clock
from portal.kernel.clock import now_utc, today


def test_the_clock_fixture_freezes_and_advances_across_a_leap_day(clock):
    moment = clock.freeze("2028-02-29T23:55:00Z")
    assert moment == dt.datetime(2028, 2, 29, 23, 55, tzinfo=dt.UTC)
    assert now_utc() == clock.now == moment and today() == dt.date(2028, 2, 29)
    assert clock.advance(dt.timedelta(minutes=10)) == dt.datetime(2028, 3, 1, 0, 5, tzinfo=dt.UTC)
    assert today() == clock.today == dt.date(2028, 3, 1)


def test_a_naive_moment_is_refused(clock):
    with pytest.raises(ValueError, match="timezone"):
        clock.freeze(dt.datetime(2027, 1, 1))  # noqa: DTZ001 (the point of the test)


def test_the_suite_runs_on_from_portal_test_now():
    """Checked in the run itself when the suite runs at another instant; otherwise in a
    pytest run of its own (a subprocess), so the check never goes unrun."""
    if os.environ.get("PORTAL_TEST_NOW"):
        start = dt.datetime.fromisoformat(os.environ["PORTAL_TEST_NOW"].replace("Z", "+00:00"))
        assert start <= now_utc() < start + dt.timedelta(hours=3)
        offset = float(os.environ[kernel_clock.OFFSET_VARIABLE])
        assert abs(kernel_clock.offset().total_seconds() - offset) < 1
        return
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTEST_XDIST")}
    env.pop(kernel_clock.OFFSET_VARIABLE, None)
    env["PORTAL_TEST_NOW"] = "2028-02-29T23:55Z"
    node = f"{__file__}::test_the_suite_runs_on_from_portal_test_now"
    run = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:xdist", node],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert run.returncode == 0, run.stdout + run.stderr
    assert "1 passed" in run.stdout


def test_a_test_app_takes_the_offset_and_production_ignores_it(app, clock, monkeypatch, tmp_path):
    url = app.config["SQLALCHEMY_DATABASE_URI"]
    kernel_clock.set_offset(dt.timedelta(0))  # the fixture puts the run's offset back
    monkeypatch.setenv(kernel_clock.OFFSET_VARIABLE, str(400 * 86_400))
    monkeypatch.setenv("PORTAL_INSTANCE_PATH", str(tmp_path))

    monkeypatch.setenv("PORTAL_ENV", "production")
    monkeypatch.setenv("PORTAL_SECRET_KEY", "kT3v" + Fernet.generate_key().decode())
    monkeypatch.setenv("PORTAL_ENCRYPTION_KEY", Fernet.generate_key().decode())
    monkeypatch.setenv("PORTAL_SINGLE_PROCESS", "1")
    production = create_app({"SQLALCHEMY_DATABASE_URI": url})
    assert kernel_clock.offset() == dt.timedelta(0)

    monkeypatch.setenv("PORTAL_ENV", "test")
    test = create_app({"SQLALCHEMY_DATABASE_URI": url, "RATELIMIT_STORAGE_URI": "memory://"})
    assert kernel_clock.offset() == dt.timedelta(days=400)
    for built in (production, test):
        with built.app_context():
            db.engine.dispose()
