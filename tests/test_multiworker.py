"""Rate limits hold across gunicorn workers (shared Redis), and degrade when Redis is gone.

Each test starts the real portal under gunicorn (``gunicorn.conf.py``, ``wsgi:app``)
against the test run's own database, on a free port, with a Redis key prefix of its
own so parallel runs never share counts. Redis must be running on 127.0.0.1:6379
(``.ci/run`` starts it); without it these tests fail, they do not skip.
"""

from __future__ import annotations

import os
import re
import secrets
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis
import requests
from cryptography.fernet import Fernet

from tests.conftest import CSRF_RE, free_port

ROOT = Path(__file__).resolve().parent.parent
REDIS_URL = "redis://127.0.0.1:6379/0"


class Portal:
    """A gunicorn serving the portal: its URL, access log (``<pid> METHOD path status``)
    and error log."""

    def __init__(self, url: str, access_log: Path, error_log: Path) -> None:
        self.url, self.access_log, self.error_log = url, access_log, error_log

    def served(self, method: str, path: str) -> list[tuple[str, str]]:
        """(worker pid, status) of each request of ``method`` to ``path``, in order."""
        lines = self.access_log.read_text().splitlines() if self.access_log.exists() else []
        return [
            (pid, status)
            for pid, m, p, status in (line.split() for line in lines if line.strip())
            if m == method and p == path
        ]

    def sign_in(self, email: str, password: str, **headers: str) -> int:
        """One sign-in on a new connection (so any worker may take it); its status."""
        with requests.Session() as browser:
            browser.headers.update({"Connection": "close", **headers})
            page = browser.get(self.url + "/login", timeout=30)
            token = CSRF_RE.search(page.text)
            assert token, page.text[:500]
            answer = browser.post(
                self.url + "/login",
                data={"email": email, "password": password, "csrf_token": token.group(1)},
                allow_redirects=False,
                timeout=30,
            )
            return answer.status_code

    def forgot(self, email: str) -> requests.Response:
        with requests.Session() as browser:
            page = browser.get(self.url + "/password/forgot", timeout=30)
            token = CSRF_RE.search(page.text)
            assert token, page.text[:500]
            return browser.post(
                self.url + "/password/forgot",
                data={"email": email, "csrf_token": token.group(1)},
                allow_redirects=False,
                timeout=30,
            )


@pytest.fixture
def redis_prefix() -> Iterator[str]:
    """A key prefix of this test's own in the real Redis; its keys are deleted afterwards."""
    client = redis.Redis.from_url(REDIS_URL)
    try:
        client.ping()
    except redis.ConnectionError as exc:
        pytest.fail(f"these tests need Redis on 127.0.0.1:6379 ({exc})")
    prefix = f"test-{os.getpid()}-{secrets.token_hex(4)}"
    yield prefix
    for key in client.scan_iter(match=f"*{prefix}*"):
        client.delete(key)
    client.close()


@pytest.fixture
def serve(app, tmp_path) -> Iterator:
    """``serve(workers=…, **env)``: start gunicorn on the test database; stopped afterwards."""
    started: list[subprocess.Popen] = []
    logs: list = []

    def start(workers: int, **env: str) -> Portal:
        port = free_port()
        access_log, error_log = tmp_path / f"access-{port}.log", tmp_path / f"error-{port}.log"
        environment = {
            **os.environ,
            "PORTAL_ENV": "test",  # secrets from the test run's instance folder, plain cookies
            "PORTAL_DATABASE_URL": app.config["SQLALCHEMY_DATABASE_URI"],
            "PORTAL_OUTBOX_DIR": str(tmp_path / "outbox"),
            **env,
        }
        environment.pop("PORTAL_SMTP_HOST", None)
        output = error_log.open("w")
        logs.append(output)
        process = subprocess.Popen(  # noqa: S603 (our own gunicorn, fixed arguments)
            [
                str(Path(sys.executable).parent / "gunicorn"),
                "-c",
                "gunicorn.conf.py",
                "--workers",
                str(workers),
                "--bind",
                f"127.0.0.1:{port}",
                "--access-logfile",
                str(access_log),
                "--access-logformat",
                "%(p)s %(m)s %(U)s %(s)s",
                "--no-control-socket",  # parallel runs would share one path
                "wsgi:app",
            ],
            cwd=ROOT,
            env=environment,
            stdout=output,  # gunicorn's log and the app's stderr
            stderr=subprocess.STDOUT,
        )
        started.append(process)
        portal = Portal(f"http://127.0.0.1:{port}", access_log, error_log)
        deadline = time.monotonic() + 60
        while True:
            assert process.poll() is None, error_log.read_text()
            try:
                if requests.get(portal.url + "/login", timeout=5).status_code == 200:
                    break
            except requests.RequestException:
                pass  # not listening yet, or a worker still booting
            assert time.monotonic() < deadline, error_log.read_text()
            time.sleep(0.2)
        # One worker answering is not all of them: on a busy machine the second may still be
        # loading the app (gunicorn.conf.py's post_worker_init logs each one that is ready).
        while len(re.findall(r"Worker ready \(pid: \d+", error_log.read_text())) < workers:
            assert process.poll() is None, error_log.read_text()
            assert time.monotonic() < deadline, error_log.read_text()
            time.sleep(0.2)
        # Each worker froze the loaded app's objects for the garbage collector.
        frozen = re.findall(r"Worker ready \(pid: \d+; (\d+) objects", error_log.read_text())
        assert len(frozen) == workers and all(int(n) > 100_000 for n in frozen), frozen
        return portal

    yield start
    for process in started:
        process.terminate()
        process.wait(timeout=30)
    for output in logs:
        output.close()


def test_failed_sign_ins_are_counted_across_workers_whatever_x_forwarded_for_says(
    serve, make_user, redis_prefix
):
    """Two servers sharing one Redis, as two machines would: one gunicorn with two workers
    and another with one. The tries alternate between the servers, so they are certainly
    counted by different processes (which of the first server's two workers takes a
    connection is the kernel's choice, so the test does not depend on it)."""
    shared = {"PORTAL_REDIS_URL": REDIS_URL, "PORTAL_RATELIMIT_KEY_PREFIX": redis_prefix}
    servers = [serve(2, **shared), serve(1, **shared)]
    user = make_user("council_admin")
    other = make_user("council_admin")
    statuses = [
        servers[n % 2].sign_in(user.email, f"wrong {n}", **{"X-Forwarded-For": f"203.0.113.{n}"})
        for n in range(8)
    ]
    assert statuses == [401] * 5 + [429] * 3
    counted_by = {pid for server in servers for pid, _ in server.served("POST", "/login")}
    assert len(counted_by) >= 2, counted_by  # more than one process counted them
    # The right password waits for that email from this address; another person's does not.
    assert servers[1].sign_in(user.email, user.password) == 429
    assert servers[0].sign_in(user.email, user.password) == 429
    assert servers[0].sign_in(other.email, other.password) == 302
    keys = redis.Redis.from_url(REDIS_URL).keys(f"*{redis_prefix}*")
    assert keys  # the counts are in Redis, not in the workers


def test_behind_a_trusted_proxy_the_forwarded_client_is_counted(serve, make_user, redis_prefix):
    """``PORTAL_TRUSTED_PROXIES=127.0.0.1``: the test plays the proxy in front of gunicorn."""
    portal = serve(
        1,
        PORTAL_REDIS_URL=REDIS_URL,
        PORTAL_RATELIMIT_KEY_PREFIX=redis_prefix,
        PORTAL_TRUSTED_PROXIES="127.0.0.1",
    )
    user = make_user("council_admin")
    office = {"X-Forwarded-For": "192.0.2.1, 198.51.100.7"}  # the left-hand part is the client's
    assert [portal.sign_in(user.email, "wrong", **office) for _ in range(6)] == [401] * 5 + [429]
    assert portal.sign_in(user.email, user.password, **office) == 429
    home = {"X-Forwarded-For": "198.51.100.8"}
    assert portal.sign_in(user.email, user.password, **home) == 302


def test_with_redis_unreachable_sign_in_works_and_limits_count_in_process(
    serve, make_user, tmp_path
):
    """One worker, so that counting in the process is exact; then Redis comes back."""
    port = free_port()
    portal = serve(1, PORTAL_REDIS_URL=f"redis://127.0.0.1:{port}/0")  # nothing listens there
    user = make_user("council_admin")
    assert portal.sign_in(user.email, user.password) == 302
    wrong = [portal.sign_in("someone@x.example", f"wrong {n}") for n in range(6)]
    assert wrong == [401] * 5 + [429]
    assert portal.sign_in(user.email, user.password) == 302
    assert portal.forgot(user.email).status_code == 302
    log = portal.error_log.read_text()
    assert "Traceback" not in log, log
    assert len(re.findall("falling back to in-memory storage", log)) == 1, log

    # Redis starts: the limiter finds it again (it retries with a growing pause) and
    # counts there from then on.
    server = subprocess.Popen(  # noqa: S603 (Debian's redis-server, fixed arguments)
        ["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", ""]
        + ["--appendonly", "no", "--dir", str(tmp_path)],
        stdout=subprocess.DEVNULL,
    )
    try:
        back = redis.Redis(port=port)
        deadline = time.monotonic() + 90
        while not _answers(back):
            assert time.monotonic() < deadline
            time.sleep(0.1)
        while not back.keys("*"):
            assert time.monotonic() < deadline, portal.error_log.read_text()
            portal.sign_in("again@x.example", "wrong")
            time.sleep(0.5)
        assert "Rate limit storage recovered" in portal.error_log.read_text()
        back.close()
    finally:
        server.terminate()
        server.wait(timeout=30)


def _answers(client: redis.Redis) -> bool:
    try:
        return bool(client.ping())
    except redis.ConnectionError:
        return False


def test_production_refuses_to_start_without_shared_storage(tmp_path):
    environment = {
        **os.environ,
        "PORTAL_ENV": "production",
        "PORTAL_SECRET_KEY": secrets.token_urlsafe(48),
        "PORTAL_ENCRYPTION_KEY": Fernet.generate_key().decode(),
        "PORTAL_INSTANCE_PATH": str(tmp_path),
        "PORTAL_BIND": f"127.0.0.1:{free_port()}",
    }
    for name in ("PORTAL_REDIS_URL", "PORTAL_SINGLE_PROCESS"):
        environment.pop(name, None)
    command = [
        str(Path(sys.executable).parent / "gunicorn"),
        "-c",
        "gunicorn.conf.py",
        "--no-control-socket",
    ]
    refused = subprocess.run(  # noqa: S603 (our own gunicorn, fixed arguments)
        [*command, "--workers", "1", "wsgi:app"],
        cwd=ROOT,
        env=environment,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert refused.returncode != 0
    assert "ConfigError: PORTAL_REDIS_URL is required in production" in refused.stderr
    # Told "one process" while starting two workers without Redis: refused as well.
    contradiction = subprocess.run(  # noqa: S603
        [*command, "--workers", "2", "wsgi:app"],
        cwd=ROOT,
        env={**environment, "PORTAL_SINGLE_PROCESS": "1"},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert contradiction.returncode != 0
    assert "PORTAL_SINGLE_PROCESS is set but gunicorn would start 2 workers" in (
        contradiction.stderr
    )


def test_metrics_add_up_every_worker_and_logs_are_json_lines(serve, tmp_path):
    """PROMETHEUS_MULTIPROC_DIR: whichever worker answers /metrics reports every worker's
    requests (portal.observability); PORTAL_LOG_FORMAT=json: the app's log is JSON lines."""
    import json

    from prometheus_client.parser import text_string_to_metric_families

    folder = tmp_path / "prometheus"
    folder.mkdir()
    (folder / "counter_999999.db").write_bytes(b"")  # a previous server's: removed at start
    portal = serve(2, PROMETHEUS_MULTIPROC_DIR=str(folder), PORTAL_LOG_FORMAT="json")
    assert not (folder / "counter_999999.db").exists()
    sent, deadline = 0, time.monotonic() + 120
    # New connections until both workers have answered some (the kernel picks the worker;
    # both are serving, see ``serve``, and a short pause lets the other one be the idle one).
    while sent < 20 or len({pid for pid, _ in portal.served("GET", "/healthz")}) < 2:
        assert time.monotonic() < deadline, f"one worker took all {sent} connections"
        if sent >= 20:
            time.sleep(0.05)
        response = requests.get(
            portal.url + "/healthz",
            headers={"Connection": "close", "X-Request-Id": f"probe-{sent}"},
            timeout=30,
        )
        assert response.headers["X-Request-Id"] == f"probe-{sent}"
        sent += 1

    def healthz_count() -> float:
        text = requests.get(portal.url + "/metrics", headers={"Connection": "close"}, timeout=30)
        assert text.status_code == 200
        return sum(
            sample.value
            for family in text_string_to_metric_families(text.text)
            for sample in family.samples
            if sample.name == "portal_http_request_duration_seconds_count"
            and sample.labels.get("endpoint") == "health.healthz"
        )

    assert {healthz_count() for _ in range(6)} == {sent}  # the same from either worker
    lines = [line for line in portal.error_log.read_text().splitlines() if line.startswith("{")]
    entries = [json.loads(line) for line in lines]
    probes = [e for e in entries if e.get("request_id", "").startswith("probe-")]
    assert len(probes) == sent
    assert {e["endpoint"] for e in probes} == {"health.healthz"}
    assert all(e["logger"] == "portal.request" and e["status"] == 200 for e in probes)
