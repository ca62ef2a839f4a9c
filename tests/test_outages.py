"""A database that cannot be reached gives 503 with ``Retry-After``, never a 500.

Two levels:

* an app pointed at a PostgreSQL port where nothing listens (runs on either
  suite): the API, SCIM, pages and the entitlement fast path answer 503 in their
  own formats, the page without reading the signed-in person, and the log has
  one line for the outage, no traceback;
* a private PostgreSQL cluster (``initdb`` into a temporary folder, never the
  shared server on 5432, which other test runs use) restarted and stopped under
  traffic from several threads to the portal served by a real threaded server:
  every answer is 2xx or 503, and requests succeed again once it is back.
"""

from __future__ import annotations

import contextlib
import glob
import logging
import os
import re
import shutil
import subprocess
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import requests
import sqlalchemy as sa

from portal import create_app
from portal.db import RETRY_AFTER_SECONDS, db, is_database_unavailable, outage
from tests.conftest import SYSTEM, TEST_PASSWORD, free_port, serve

UNREACHABLE = "postgresql+psycopg://postgres@127.0.0.1:1/portal"
OUTAGE_LOGGER = "portal.db"


@pytest.fixture
def fresh_outage() -> Iterator[None]:
    """Start with no outage noted (another test's may still be open in this process)."""
    outage.since = None
    yield
    outage.since = None


@pytest.fixture
def unreachable_app(tmp_path, monkeypatch, fresh_outage):
    """The portal configured for a database nobody answers on."""
    monkeypatch.setenv("PORTAL_ENV", "test")
    monkeypatch.setenv("PORTAL_INSTANCE_PATH", str(tmp_path / "instance"))
    app = create_app({"SQLALCHEMY_DATABASE_URI": UNREACHABLE, "RATELIMIT_STORAGE_URI": "memory://"})
    yield app
    with app.app_context():
        db.engine.dispose()


def _outage_lines(caplog) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.name == OUTAGE_LOGGER and r.levelno >= logging.WARNING]


class _Recorder(logging.Handler):
    """Every record at INFO and above, from any logger and thread, while attached.

    (Not ``caplog``: the Alembic migrations' ``fileConfig`` replaces the root
    logger's handlers, pytest's among them.)
    """

    def __init__(self) -> None:
        super().__init__(logging.INFO)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)

    @contextlib.contextmanager
    def attached(self) -> Iterator[_Recorder]:
        root = logging.getLogger()
        level = root.level
        root.addHandler(self)
        root.setLevel(logging.INFO)
        try:
            yield self
        finally:
            root.removeHandler(self)
            root.setLevel(level)


def _assert_503(response, mimetype: str) -> None:
    assert response.status_code == 503, response.get_data(as_text=True)
    assert response.headers["Retry-After"] == str(RETRY_AFTER_SECONDS)
    assert response.mimetype == mimetype


# ------------------------------------------------------------------ an unreachable database


def test_api_scim_pages_and_fast_path_answer_503_with_one_log_line(unreachable_app, caplog):
    caplog.set_level(logging.INFO)
    client = unreachable_app.test_client()

    api = client.get("/api/v1/subscriptions", headers={"Authorization": "Bearer pk_c_" + "a" * 43})
    _assert_503(api, "application/problem+json")
    body = api.get_json()
    assert body["status"] == 503
    assert body["code"] == "database_unavailable"
    assert body["type"].endswith("/database_unavailable")
    assert body["title"] and body["detail"]

    # A live-looking vendor token and the three parameters: the fast path tries the
    # database first (its driver's own error), then Flask answers.
    check = client.get(
        "/api/v1/entitlements/check",
        query_string={"organisation": "acme", "user_email": "a@acme.example", "product": "p"},
        headers={"Authorization": "Bearer pk_v_" + "b" * 43},
    )
    _assert_503(check, "application/problem+json")
    assert check.get_json()["code"] == "database_unavailable"

    scim = client.get(
        "/scim/v2/Users",
        headers={"Authorization": "Bearer scim_" + "c" * 43, "Accept": "application/scim+json"},
    )
    _assert_503(scim, "application/scim+json")
    scim_body = scim.get_json(force=True)
    assert scim_body["schemas"] == ["urn:ietf:params:scim:api:messages:2.0:Error"]
    assert scim_body["status"] == "503"

    # A signed-in browser: loading the person needs the database, and so does the
    # layout; the 503 page is drawn without either.
    with client.session_transaction() as session:
        session["_user_id"] = "a-session-token"
    page = client.get("/my")
    _assert_503(page, "text/html")
    html = page.get_data(as_text=True)
    assert "503" in html and "database_unavailable" in html
    assert 'href="/my"' in html  # "Try again"
    # A page that would be a 404: drawing the 404 page needs the person too.
    missing = client.get("/no-such-page")
    _assert_503(missing, "text/html")
    # The same request from a client that wants JSON.
    wants_json = client.get("/my", headers={"Accept": "application/json"})
    _assert_503(wants_json, "application/problem+json")

    assert [r.getMessage() for r in _outage_lines(caplog)] == [
        _outage_lines(caplog)[0].getMessage()
    ], "one line for the outage, however many requests failed"
    assert "Database unreachable" in _outage_lines(caplog)[0].getMessage()
    assert not [r for r in caplog.records if r.exc_info], "no traceback in the log"
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]


def test_a_form_post_during_an_outage_answers_503(unreachable_app):
    client = unreachable_app.test_client()
    with client.session_transaction() as session:
        session["_user_id"] = "a-session-token"
    # CSRF is checked first (without the database) and fails: a 400 page, drawn in
    # the layout, which reads the person: the database is needed, so 503.
    response = client.post("/org/users/1/deactivate", data={"csrf_token": "x"})
    _assert_503(response, "text/html")


def test_is_database_unavailable_tells_outages_from_statement_errors():
    import psycopg

    assert is_database_unavailable(sa.exc.TimeoutError("QueuePool limit reached"))
    assert is_database_unavailable(psycopg.OperationalError("connection failed: refused"))
    assert is_database_unavailable(
        sa.exc.OperationalError("SELECT 1", {}, Exception("gone"), connection_invalidated=True)
    )
    assert not is_database_unavailable(
        sa.exc.IntegrityError("INSERT", {}, Exception("duplicate key"))
    )
    import sqlite3

    assert not is_database_unavailable(
        sa.exc.OperationalError("INSERT", {}, sqlite3.OperationalError("database is locked"))
    )
    assert not is_database_unavailable(ValueError("no"))


# ------------------------------------------------------------------ a private PostgreSQL, restarted


@dataclass
class PrivateCluster:
    directory: Path
    port: int
    bin: Path
    options: str
    log: Path

    def ctl(self, action: str, *args: str) -> None:
        """``pg_ctl`` ``start``, ``stop`` or ``restart`` (the server's output to its log file:
        a server holding the pipes of ``capture_output`` would never let it return)."""
        command = [str(self.bin / "pg_ctl"), "-D", str(self.directory), "-w", *args]
        if action in ("start", "restart"):
            command += ["-o", self.options, "-l", str(self.log)]
        subprocess.run(
            _as_postgres([*command, action]), check=True, capture_output=True, timeout=60
        )

    def url(self, database: str = "postgres") -> str:
        return f"postgresql+psycopg://postgres@127.0.0.1:{self.port}/{database}"


def _as_postgres(command: list[str]) -> list[str]:
    """PostgreSQL refuses to run as root: run its tools as the ``postgres`` user then."""
    if os.geteuid() == 0:
        return ["runuser", "-u", "postgres", "--", *command]
    return command


@pytest.fixture
def private_postgres() -> Iterator[PrivateCluster]:
    """A PostgreSQL cluster of this test's own, on a free port, removed afterwards."""
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb")) or [
        p for p in [shutil.which("initdb")] if p
    ]
    if not found:
        pytest.fail(
            "initdb not found (/usr/lib/postgresql/*/bin or PATH): this test needs the "
            "PostgreSQL server binaries to run a private cluster it may restart."
        )
    bin_dir = Path(found[-1]).parent
    directory = Path(tempfile.mkdtemp(prefix="portal-pg-"))
    if os.geteuid() == 0:
        shutil.chown(directory, "postgres", "postgres")
    data = directory / "data"
    subprocess.run(
        _as_postgres([str(bin_dir / "initdb"), "-D", str(data), "-A", "trust", "-U", "postgres"]),
        check=True,
        capture_output=True,
        timeout=120,
    )
    port = free_port()
    options = f"-p {port} -k {directory} -c listen_addresses=127.0.0.1 -c fsync=off"
    cluster = PrivateCluster(data, port, bin_dir, options, directory / "server.log")
    cluster.ctl("start")
    try:
        admin = sa.create_engine(cluster.url(), isolation_level="AUTOCOMMIT")
        with admin.connect() as connection:
            connection.execute(sa.text('CREATE DATABASE "portal"'))
        admin.dispose()
        yield cluster
    finally:
        subprocess.run(
            _as_postgres(
                [str(bin_dir / "pg_ctl"), "-D", str(data), "-m", "immediate", "-w", "stop"]
            ),
            capture_output=True,
            timeout=60,
        )
        shutil.rmtree(directory, ignore_errors=True)


@dataclass
class Answer:
    kind: str
    at: float
    status: int
    retry_after: str | None
    mimetype: str
    body: str


def _seed(app) -> dict[str, str]:
    """A council admin with a password, a council API token and a vendor token."""
    from portal.api.services import token_create
    from portal.catalogue.models import Vendor
    from portal.identity.accounts import user_create

    with app.app_context():
        user_create(
            db.session,
            actor=SYSTEM,
            email="admin@council.example",
            role="council_admin",
            name="Admin",
            password=TEST_PASSWORD,
        )
        vendor = Vendor(slug="acme-soft", name="Acme Soft", status="active")
        db.session.add(vendor)
        db.session.flush()
        _, council = token_create(db.session, actor=SYSTEM, scope="council", name="ops")
        _, vendor_token = token_create(
            db.session, actor=SYSTEM, scope="vendor", vendor=vendor, name="acme"
        )
        db.session.commit()
    return {"council": council, "vendor": vendor_token}


def _signed_in(base: str) -> requests.Session:
    browser = requests.Session()
    page = browser.get(f"{base}/login", timeout=10)
    token = re.search(r'name="csrf_token"[^>]*value="([^"]+)"', page.text)
    assert token, page.text
    response = browser.post(
        f"{base}/login",
        data={
            "csrf_token": token.group(1),
            "email": "admin@council.example",
            "password": TEST_PASSWORD,
        },
        allow_redirects=False,
        timeout=10,
    )
    assert response.status_code == 302, response.text
    return browser


def _restart_and_stop_under(workers: list[threading.Thread], cluster: PrivateCluster) -> None:
    """Traffic runs through a fast restart, then a stop of a few seconds and a start."""
    for worker in workers:
        worker.start()
    time.sleep(1.0)
    cluster.ctl("restart", "-m", "fast")  # the 0.75 s restart of the issue
    time.sleep(1.5)
    cluster.ctl("stop", "-m", "fast")
    time.sleep(2.5)  # every request in this while finds nobody listening
    cluster.ctl("start")
    time.sleep(2.5)


def test_postgresql_restart_and_stop_under_traffic_give_503s_never_500s(
    private_postgres, tmp_path, monkeypatch, fresh_outage
):
    monkeypatch.setenv("PORTAL_ENV", "test")
    monkeypatch.setenv("PORTAL_INSTANCE_PATH", str(tmp_path / "instance"))
    app = create_app(
        {
            "SQLALCHEMY_DATABASE_URI": private_postgres.url("portal"),
            "RATELIMIT_STORAGE_URI": "memory://",
            "PORTAL_BASE_URL": "http://portal.test",
        }
    )
    from flask_migrate import upgrade

    with app.app_context():
        upgrade()
    tokens = _seed(app)
    server = serve(app)
    serving = threading.Thread(target=server.serve_forever, daemon=True)
    serving.start()
    base = f"http://127.0.0.1:{server.server_port}"

    browser = _signed_in(base)
    requests_by_kind = {
        "api": (
            requests.Session(),
            "/api/v1/subscriptions",
            {"Authorization": f"Bearer {tokens['council']}"},
        ),
        "entitlement": (
            requests.Session(),
            "/api/v1/entitlements/check?organisation=acme&user_email=a%40acme.example&product=p",
            {"Authorization": f"Bearer {tokens['vendor']}"},
        ),
        "page": (browser, "/council/organisations", {}),
    }
    for kind, (session, path, headers) in requests_by_kind.items():
        warm = session.get(base + path, headers=headers, timeout=10)
        assert warm.status_code == 200, (kind, warm.status_code, warm.text[:500])

    log = _Recorder()
    answers: list[Answer] = []
    stop = threading.Event()

    def traffic(kind: str) -> None:
        session, path, headers = requests_by_kind[kind]
        while not stop.is_set():
            try:
                response = session.get(base + path, headers=headers, timeout=20)
            except requests.RequestException as exc:  # the portal must always answer
                answers.append(Answer(kind, time.monotonic(), 0, None, "", repr(exc)))
                continue
            answers.append(
                Answer(
                    kind,
                    time.monotonic(),
                    response.status_code,
                    response.headers.get("Retry-After"),
                    response.headers.get("Content-Type", "").split(";")[0],
                    response.text[:400],
                )
            )
            time.sleep(0.02)

    workers = [
        threading.Thread(target=traffic, args=(kind,), daemon=True)
        for kind in requests_by_kind
        for _ in range(2)
    ]
    try:
        with log.attached():
            _restart_and_stop_under(workers, private_postgres)
            back = time.monotonic() - 2.5
    finally:
        stop.set()
        for worker in workers:
            worker.join(timeout=30)
        server.shutdown()
        serving.join(timeout=10)
        server.server_close()
        with app.app_context():
            db.engine.dispose()

    counts = {
        kind: {
            status: sum(1 for a in answers if a.kind == kind and a.status == status)
            for status in sorted({a.status for a in answers})
        }
        for kind in requests_by_kind
    }
    print(f"answers by kind and status: {counts}")  # shown with -s: the figures of a run
    statuses = sorted({a.status for a in answers})
    assert set(statuses) <= {200, 503}, [a for a in answers if a.status not in (200, 503)][:5]
    unavailable = [a for a in answers if a.status == 503]
    assert unavailable, "the database was down for seconds: some requests must have seen it"
    for answer in unavailable:
        assert answer.retry_after == str(RETRY_AFTER_SECONDS), answer
        wanted = "text/html" if answer.kind == "page" else "application/problem+json"
        assert answer.mimetype == wanted, answer
        if answer.kind != "page":
            assert '"database_unavailable"' in answer.body, answer
    for kind in requests_by_kind:
        late = [a for a in answers if a.kind == kind and a.at > back + 1.0]
        assert late and all(a.status == 200 for a in late), (kind, [a.status for a in late])

    assert log.records, "the recorder saw the log"
    assert not [r for r in log.records if r.exc_info], [
        (r.name, r.getMessage()) for r in log.records if r.exc_info
    ][:3]
    assert not [r for r in log.records if r.levelno >= logging.ERROR], [
        (r.name, r.getMessage()) for r in log.records if r.levelno >= logging.ERROR
    ][:3]
    down = [r.getMessage() for r in _outage_lines(log)]
    up = [
        r.getMessage() for r in log.records if r.name == OUTAGE_LOGGER and r.levelno == logging.INFO
    ]
    # Two outages (the restart, the stop): a line when each began and one when it ended,
    # not one per failed request (hundreds here). A restart may show as two: CI saw a
    # request answered between the old server's AdminShutdown and the new one's "starting
    # up" (logged as the outage's end, then a new one), hence up to two per outage.
    assert 1 <= len(down) <= 4, down
    assert len(up) == len(down), (down, up)
    assert all(m.startswith("Database unreachable") for m in down)
    assert all(m.startswith("Database answers again") for m in up)


def test_an_outage_is_logged_once_and_ends_on_a_fresh_connection(caplog, fresh_outage):
    from portal.db import _Outage

    caplog.set_level(logging.INFO, logger=OUTAGE_LOGGER)
    watch = _Outage()
    lost = sa.exc.OperationalError("SELECT 1", {}, Exception("gone"), connection_invalidated=True)
    watch.failed(lost)
    watch.failed(lost)
    began = watch.since
    assert began is not None
    # A statement finishing on a connection older than the failure proves nothing.
    watch.answered(connected_at=began - 1)
    watch.answered(connected_at=None)
    assert watch.since == began
    watch.answered(connected_at=time.monotonic())
    assert watch.since is None
    watch.answered(connected_at=time.monotonic())
    lines = [(r.levelname, r.getMessage()) for r in caplog.records if r.name == OUTAGE_LOGGER]
    assert [level for level, _ in lines] == ["WARNING", "INFO"], lines
    assert lines[0][1] == ("Database unreachable (Exception: gone); answering 503 until it is back")
    # The pool having no connection to give in time: any success ends it.
    watch.failed(sa.exc.TimeoutError("QueuePool limit of size 5 overflow 10 reached"))
    watch.answered(connected_at=None)
    assert watch.since is None


def test_a_pool_with_no_connection_to_give_answers_503_then_recovers(tmp_path, monkeypatch):
    """Every pooled connection busy past the pool's timeout: 503, not 500; then back."""
    monkeypatch.setenv("PORTAL_ENV", "test")
    monkeypatch.setenv("PORTAL_INSTANCE_PATH", str(tmp_path / "instance"))
    app = create_app(
        {
            "SQLALCHEMY_DATABASE_URI": f"sqlite:///{tmp_path / 'pool.sqlite3'}",
            "SQLALCHEMY_ENGINE_OPTIONS": {"pool_size": 1, "max_overflow": 0, "pool_timeout": 0.2},
            "RATELIMIT_STORAGE_URI": "memory://",
        }
    )
    from flask_migrate import upgrade

    with app.app_context():
        upgrade()
    outage.since = None
    client = app.test_client()
    headers = {"Authorization": "Bearer pk_c_" + "d" * 43}
    log = _Recorder()
    try:
        with log.attached(), app.app_context(), db.engine.connect() as held:
            held.execute(sa.text("SELECT 1"))
            busy = client.get("/api/v1/subscriptions", headers=headers)
        _assert_503(busy, "application/problem+json")
        assert busy.get_json()["code"] == "database_unavailable"
        with log.attached():
            after = client.get("/api/v1/subscriptions", headers=headers)
        assert after.status_code == 401  # the database answers: the token is unknown
        lines = [(r.levelname, r.getMessage()) for r in log.records if r.name == OUTAGE_LOGGER]
        assert [level for level, _ in lines] == ["WARNING", "INFO"], lines
        assert "TimeoutError" in lines[0][1]
    finally:
        outage.since = None
        with app.app_context():
            db.engine.dispose()


def test_readyz_is_ok_at_once_after_a_restart(private_postgres, tmp_path, monkeypatch):
    """The probe's pooled connection died with the old server: it asks again on a new one."""
    monkeypatch.setenv("PORTAL_ENV", "test")
    monkeypatch.setenv("PORTAL_INSTANCE_PATH", str(tmp_path / "instance"))
    app = create_app(
        {
            "SQLALCHEMY_DATABASE_URI": private_postgres.url("portal"),
            "RATELIMIT_STORAGE_URI": "memory://",
        }
    )
    client = app.test_client()
    try:
        # (Other checks registered beside the database, e.g. the job queue's, answer too.)
        first = client.get("/readyz").get_json()
        assert first["status"] == "ok" and first["checks"]["database"] == "ok"
        private_postgres.ctl("restart", "-m", "fast")
        ready = client.get("/readyz")
        assert ready.status_code == 200, ready.get_json()
        private_postgres.ctl("stop", "-m", "fast")
        down = client.get("/readyz")
        assert down.status_code == 503
        assert down.get_json()["checks"]["database"] == "failing"
        private_postgres.ctl("start")
        assert client.get("/readyz").status_code == 200
    finally:
        outage.since = None
        with app.app_context():
            db.engine.dispose()
