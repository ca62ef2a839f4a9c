"""Request ids, JSON logs and ``/metrics`` (portal.observability, portal.health)."""

from __future__ import annotations

import contextlib
import datetime as dt
import io
import json
import logging
import os
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa
from flask import request_started
from prometheus_client.parser import text_string_to_metric_families

from portal import create_app
from portal.config import ConfigError, load_config
from portal.db import db
from portal.health import JobsCollector
from portal.kernel.actor import Actor, Role
from portal.observability import (
    JsonFormatter,
    TextFormatter,
    configure_logging,
    current_request_id,
    log_context,
    request_id_context,
)
from tests.conftest import post_form, second_step, totp_code

ROOT = Path(__file__).resolve().parent.parent
OUTSIDER = {"REMOTE_ADDR": "203.0.113.9"}
METRICS_TOKEN = "metrics-token-0123456789abcdef"


def scrape(client, **kwargs) -> dict[tuple[str, frozenset], float]:
    """``/metrics`` as {(sample name, labels): value}."""
    response = client.get("/metrics", **kwargs)
    assert response.status_code == 200, response.status_code
    assert response.mimetype == "text/plain"
    assert response.headers["Cache-Control"] == "no-store"
    return parse(response.get_data(as_text=True))


def parse(text: str) -> dict[tuple[str, frozenset], float]:
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def value(samples, name: str, **labels: str) -> float:
    return samples.get((name, frozenset(labels.items())), 0.0)


def requests_seen(samples, endpoint: str, status: str, method: str = "GET") -> float:
    return value(
        samples,
        "portal_http_request_duration_seconds_count",
        endpoint=endpoint,
        method=method,
        status=status,
    )


# ------------------------------------------------------------------ /metrics


def test_metrics_count_requests_by_endpoint_and_status_never_by_raw_path(client):
    before = scrape(client)
    for _ in range(3):
        assert client.get("/healthz").status_code == 200
    assert client.get("/no/such/page/12345").status_code == 404
    assert client.get("/no/such/page/67890").status_code == 404
    after = scrape(client)

    assert (
        requests_seen(after, "health.healthz", "200")
        - requests_seen(before, "health.healthz", "200")
        == 3
    )
    assert requests_seen(after, "unmatched", "404") - requests_seen(before, "unmatched", "404") == 2
    text = client.get("/metrics").get_data(as_text=True)
    assert "/no/such/page" not in text  # bounded labels: no path ever becomes one
    assert "# TYPE portal_http_request_duration_seconds histogram" in text
    bucket = value(
        after,
        "portal_http_request_duration_seconds_bucket",
        endpoint="health.healthz",
        method="GET",
        status="200",
        le="+Inf",
    )
    assert bucket == requests_seen(after, "health.healthz", "200")
    for family in (
        "portal_usage_events_accepted_total",
        "portal_usage_events_rejected_total",
        "portal_invoice_run_duration_seconds",
        "portal_login_failures_total",
    ):
        assert family in text


def test_metrics_refuse_other_addresses_with_the_ordinary_404(client):
    refused = client.get("/metrics", environ_base=OUTSIDER)
    missing = client.get("/no-such-page", environ_base=OUTSIDER)
    assert refused.status_code == missing.status_code == 404
    assert refused.mimetype == missing.mimetype
    assert "portal_" not in refused.get_data(as_text=True)
    # A forwarded address is believed from trusted proxies only (none by default).
    spoofed = client.get(
        "/metrics", environ_base=OUTSIDER, headers={"X-Forwarded-For": "127.0.0.1"}
    )
    assert spoofed.status_code == 404


def test_metrics_token_lets_a_scraper_in_from_anywhere(app, client, monkeypatch):
    monkeypatch.setitem(app.config, "PORTAL_METRICS_TOKEN", METRICS_TOKEN)
    bearer = {"Authorization": f"Bearer {METRICS_TOKEN}"}
    assert client.get("/metrics", environ_base=OUTSIDER, headers=bearer).status_code == 200
    wrong = {"Authorization": f"Bearer {METRICS_TOKEN}x"}
    assert client.get("/metrics", environ_base=OUTSIDER, headers=wrong).status_code == 404
    basic = {"Authorization": f"Basic {METRICS_TOKEN}"}
    assert client.get("/metrics", environ_base=OUTSIDER, headers=basic).status_code == 404
    assert client.get("/metrics", environ_base=OUTSIDER).status_code == 404


def test_metrics_allow_list_is_configurable(app, client, monkeypatch):
    monkeypatch.setitem(app.config, "PORTAL_METRICS_ALLOW", ())
    assert client.get("/metrics").status_code == 404  # not even loopback
    networks = load_config(
        app.instance_path, {"PORTAL_ENV": "test", "PORTAL_METRICS_ALLOW": "203.0.113.0/24"}
    )
    monkeypatch.setitem(app.config, "PORTAL_METRICS_ALLOW", networks["PORTAL_METRICS_ALLOW"])
    assert client.get("/metrics", environ_base=OUTSIDER).status_code == 200
    v6 = {"REMOTE_ADDR": "::ffff:203.0.113.7"}  # an IPv4 client on a dual-stack socket
    assert client.get("/metrics", environ_base=v6).status_code == 200


def test_metrics_are_exempt_from_csrf_and_rate_limits(app, client):
    from portal.extensions import limiter

    assert "health" in limiter._blueprint_exemptions  # noqa: SLF001 (what exempt() records)
    for _ in range(20):
        assert client.get("/metrics").status_code == 200


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"PORTAL_METRICS_TOKEN": "short"}, "at least 16"),
        ({"PORTAL_METRICS_ALLOW": "localhost"}, "PORTAL_METRICS_ALLOW"),
        ({"PORTAL_LOG_FORMAT": "xml"}, "json or text"),
        ({"PORTAL_LOG_LEVEL": "chatty"}, "PORTAL_LOG_LEVEL"),
    ],
)
def test_bad_observability_settings_are_refused(tmp_path, env, message):
    with pytest.raises(ConfigError, match=message):
        load_config(str(tmp_path), {"PORTAL_ENV": "development", **env})


def test_log_format_defaults_json_in_production_text_in_development(tmp_path):
    dev = load_config(str(tmp_path), {"PORTAL_ENV": "development"})
    assert dev["PORTAL_LOG_FORMAT"] == "text"
    assert [str(n) for n in dev["PORTAL_METRICS_ALLOW"]] == ["127.0.0.1/32", "::1/128"]
    test = load_config(str(tmp_path), {"PORTAL_ENV": "test"})
    assert test["PORTAL_LOG_FORMAT"] is None  # logging is pytest's
    from portal.config import observability_settings

    assert observability_settings({}, portal_env="production")["PORTAL_LOG_FORMAT"] == "json"


def test_login_failures_are_counted_by_reason(app, client, make_user):
    user = make_user("council_admin")
    before = scrape(client)
    wrong = [
        post_form(client, "/login", {"email": user.email, "password": "wrong"}).status_code
        for _ in range(6)
    ]
    assert wrong == [401] * 5 + [429]
    after = scrape(client)

    def failures(samples, reason):
        return value(samples, "portal_login_failures_total", reason=reason)

    assert failures(after, "bad_password") - failures(before, "bad_password") == 5
    assert failures(after, "rate_limited") - failures(before, "rate_limited") == 1
    assert (
        requests_seen(after, "auth.login", "429", "POST")
        - requests_seen(before, "auth.login", "429", "POST")
        == 1
    )


def test_a_right_password_for_an_unavailable_account_is_counted_apart(client, make_org, make_user):
    user = make_user("member", make_org(status="suspended"))
    before = scrape(client)
    refused = post_form(client, "/login", {"email": user.email, "password": user.password})
    assert refused.status_code == 401
    after = scrape(client)
    name = "portal_login_failures_total"
    for reason, more in (("account_unavailable", 1), ("bad_password", 0)):
        assert value(after, name, reason=reason) - value(before, name, reason=reason) == more


def test_a_refused_second_factor_is_counted(app, client, make_user):
    user = make_user("council_admin")  # council staff sign in with a second factor
    first = post_form(client, "/login", {"email": user.email, "password": user.password})
    assert first.headers["Location"].endswith("/login/second-factor")
    before = scrape(client)
    code = "000000" if totp_code(app, user_id=user.id) != "000000" else "111111"  # wrong
    assert second_step(client, user, code).status_code == 401
    after = scrape(client)
    name = "portal_login_failures_total"
    assert (
        value(after, name, reason="second_factor") - value(before, name, reason="second_factor")
        == 1
    )
    assert value(after, name, reason="bad_password") == value(before, name, reason="bad_password")


def test_invoice_run_durations_are_observed(app, client, make_org):
    from portal.billing.jobs import invoice_run
    from portal.kernel.clock import now_utc

    make_org()
    before = scrape(client)
    with app.app_context():
        run = invoice_run(
            db.session,
            actor=Actor.api_token("council token", role=Role.COUNCIL_ADMIN),
            period=now_utc().strftime("%Y-%m"),
        )
        status = run.status.value
    after = scrape(client)
    name = "portal_invoice_run_duration_seconds_count"
    assert value(after, name, status=status) - value(before, name, status=status) == 1
    assert value(after, "portal_invoice_run_duration_seconds_sum", status=status) > value(
        before, "portal_invoice_run_duration_seconds_sum", status=status
    )


# ------------------------------------------------------------------ jobs by state and age


def _job_row(table: sa.Table, **values):
    """A row for the jobs table whatever its other columns: each required one gets a value."""
    now = dt.datetime.now(dt.UTC)
    row = dict(values)
    for column in table.columns:
        if column.name in row or column.nullable or column.primary_key:
            continue
        try:
            kind = column.type.python_type
        except NotImplementedError:  # JSON and the like
            kind = dict
        row[column.name] = {int: 0, str: "x", dt.datetime: now, bool: False}.get(kind, {})
    return row


def test_jobs_collector_reports_counts_and_oldest_ages_by_state(app, client, clock):
    now = clock.freeze("2027-03-01T12:00:00Z")
    with app.app_context():
        engine = db.engine
        jobs = sa.Table("jobs", sa.MetaData(), autoload_with=engine)
        rows = [
            _job_row(jobs, state="queued", enqueued_at=now - dt.timedelta(minutes=10)),
            _job_row(jobs, state="queued", enqueued_at=now - dt.timedelta(minutes=2)),
            _job_row(
                jobs,
                state="running",
                enqueued_at=now - dt.timedelta(hours=1),
                started_at=now - dt.timedelta(seconds=90),
            ),
            _job_row(jobs, state="failed", enqueued_at=now - dt.timedelta(days=1)),
        ]
        with engine.begin() as connection:
            for row in rows:
                connection.execute(jobs.insert().values(**row))
    samples = scrape(client)
    assert value(samples, "portal_jobs", state="queued") == 2
    assert value(samples, "portal_jobs", state="running") == 1
    assert value(samples, "portal_jobs", state="failed") == 1
    assert value(samples, "portal_jobs_oldest_age_seconds", state="queued") == 600
    assert value(samples, "portal_jobs_oldest_age_seconds", state="running") == 90


def test_jobs_collector_reports_nothing_without_the_table(tmp_path):
    engine = sa.create_engine(f"sqlite:///{tmp_path / 'empty.sqlite3'}")
    assert list(JobsCollector(engine).collect()) == []
    with engine.begin() as connection:
        connection.exec_driver_sql(
            "CREATE TABLE jobs (id INTEGER PRIMARY KEY, state VARCHAR(16), "
            "enqueued_at DATETIME, started_at DATETIME)"
        )
    families = {family.name: family for family in JobsCollector(engine).collect()}
    assert {s.labels["state"]: s.value for s in families["portal_jobs"].samples} == {
        "queued": 0,
        "running": 0,
    }
    engine.dispose()


# ------------------------------------------------------------------ request ids and logs


def test_request_id_is_generated_returned_and_kept_for_the_request(app, client):
    first = client.get("/healthz").headers["X-Request-Id"]
    second = client.get("/healthz").headers["X-Request-Id"]
    assert first != second
    assert len(first) == 32 and int(first, 16) >= 0

    seen: list[str | None] = []

    def remember(sender, **extra) -> None:
        seen.append(current_request_id())

    with request_started.connected_to(remember, app):
        response = client.get("/healthz", headers={"X-Request-Id": "lb-7f3a.9:trace-1"})
    assert response.headers["X-Request-Id"] == "lb-7f3a.9:trace-1"
    assert seen == ["lb-7f3a.9:trace-1"]
    assert current_request_id() is None  # nothing leaks out of the request
    longest = "b" * 64  # the longest kept (the jobs table stores it with the job)
    assert client.get("/healthz", headers={"X-Request-Id": longest}).headers["X-Request-Id"] == (
        longest
    )


@pytest.mark.parametrize(
    "given",
    ["", "has space", "a" * 65, "<script>", "-starts-with-dash", "ü-unicode", "x\ty"],
)
def test_a_malformed_request_id_is_replaced(client, given):
    response = client.get("/healthz", headers={"X-Request-Id": given})
    returned = response.headers["X-Request-Id"]
    assert returned != given and len(returned) == 32
    assert response.headers.getlist("X-Request-Id") == [returned]


def test_request_id_context_sets_and_restores():
    assert current_request_id() is None
    with request_id_context("job-from-req-1") as inside:
        assert inside == current_request_id() == "job-from-req-1"
        with request_id_context("bad id!"):
            assert current_request_id() is None  # malformed: no id rather than a bad one
        assert current_request_id() == "job-from-req-1"
    assert current_request_id() is None


@contextlib.contextmanager
def captured_requests(log_format: str = "json") -> Iterator[io.StringIO]:
    """The request log lines written meanwhile, formatted as ``configure_logging`` does."""
    root = logging.getLogger()
    level = root.level
    handler = configure_logging(log_format, "INFO")
    root.removeHandler(handler)  # not to stderr: into the stream below
    stream = io.StringIO()
    target = logging.StreamHandler(stream)
    target.setFormatter(handler.formatter)
    for log_filter in handler.filters:
        target.addFilter(log_filter)
    requests_log = logging.getLogger("portal.request")
    requests_log.addHandler(target)
    try:
        yield stream
    finally:
        requests_log.removeHandler(target)
        root.setLevel(level)


def test_the_request_log_line_is_json_with_the_request_id(app, client):
    with captured_requests("json") as stream:
        response = client.get(
            "/healthz?token=pk_c_secret-in-a-query", headers={"X-Request-Id": "trace-42"}
        )
        reset = client.get("/password/reset/not-a-real-but-secret-token")
    assert response.headers["X-Request-Id"] == "trace-42"
    lines = [json.loads(line) for line in stream.getvalue().splitlines()]
    line = next(entry for entry in lines if entry.get("request_id") == "trace-42")
    assert line["level"] == "INFO"
    assert line["logger"] == "portal.request"
    assert line["method"] == "GET"
    assert line["path"] == "/healthz"
    assert line["endpoint"] == "health.healthz"
    assert line["status"] == 200
    assert isinstance(line["duration_ms"], float)
    assert line["timestamp"].endswith("Z")
    assert dt.datetime.fromisoformat(line["timestamp"].replace("Z", "+00:00")).tzinfo
    assert line["message"].startswith("GET /healthz 200 ")
    text = stream.getvalue()
    assert "secret-in-a-query" not in text  # never a query string
    assert "not-a-real-but-secret-token" not in text  # a token in a path: logged as its route
    reset_line = next(
        entry for entry in lines if entry["request_id"] == reset.headers["X-Request-Id"]
    )
    assert reset_line["path"] == "/password/reset/<token>"
    assert "actor" not in line  # nobody signed in


def test_the_actor_label_is_logged_for_pages_that_know_it(app, signed_in, make_org):
    admin = signed_in("org_admin", make_org())
    with captured_requests("text") as stream:
        response = admin.get("/org")
    assert response.status_code == 200
    line = stream.getvalue().splitlines()[-1]
    assert f"[{response.headers['X-Request-Id']}]: GET /org 200 " in line
    with captured_requests("json") as stream:
        admin.get("/org")
    entry = json.loads(stream.getvalue().splitlines()[-1])
    assert entry["actor"] == admin.user.email
    assert entry["status"] == 200


def test_json_and_text_formatters_carry_the_request_id_and_exceptions():
    record = logging.LogRecord("portal.x", logging.ERROR, __file__, 1, "boom %s", ("now",), None)
    try:
        raise ValueError("bad")
    except ValueError:
        record.exc_info = sys.exc_info()
    record.job = "billing.invoice_run"
    with request_id_context("req-9"):
        entry = json.loads(JsonFormatter().format(record))
        text = TextFormatter().format(
            logging.LogRecord("portal.x", 20, __file__, 1, "hi", None, None)
        )
    assert entry["request_id"] == "req-9"
    assert entry["message"] == "boom now"
    assert entry["level"] == "ERROR"
    assert entry["job"] == "billing.invoice_run"
    assert "ValueError: bad" in entry["exception"]
    assert "[req-9]: hi" in text
    plain = logging.LogRecord("portal.jobs", logging.INFO, __file__, 1, "ran", None, None)
    with request_id_context("req-10"), log_context(job="payments.collect", job_id=7):
        inside = json.loads(JsonFormatter().format(plain))
    assert inside["request_id"] == "req-10"
    assert (inside["job"], inside["job_id"]) == ("payments.collect", 7)
    outside = json.loads(JsonFormatter().format(plain))
    assert "job" not in outside and "request_id" not in outside


def test_create_app_installs_one_log_handler_however_often_it_runs(tmp_path, monkeypatch):
    monkeypatch.setenv("PORTAL_ENV", "test")
    monkeypatch.setenv("PORTAL_INSTANCE_PATH", str(tmp_path / "instance"))
    monkeypatch.setenv("PORTAL_LOG_FORMAT", "json")
    root = logging.getLogger()
    level = root.level
    try:
        for _ in range(2):
            create_app(
                {"SQLALCHEMY_DATABASE_URI": "sqlite://", "RATELIMIT_STORAGE_URI": "memory://"}
            )
        ours = [h for h in root.handlers if h.name == "portal-observability"]
        assert len(ours) == 1
        assert isinstance(ours[0].formatter, JsonFormatter)
    finally:
        for handler in [h for h in root.handlers if h.name == "portal-observability"]:
            root.removeHandler(handler)
        root.setLevel(level)


# ------------------------------------------------------------------ several processes


def test_multiprocess_mode_adds_up_every_process(tmp_path):
    """With PROMETHEUS_MULTIPROC_DIR, /metrics in one process reports what two others counted."""
    folder = tmp_path / "prometheus"
    folder.mkdir()
    env = {
        **os.environ,
        "PROMETHEUS_MULTIPROC_DIR": str(folder),
        "PORTAL_ENV": "test",
        "PORTAL_INSTANCE_PATH": str(tmp_path / "instance"),
    }
    program = textwrap.dedent(
        """
        import sys
        from portal import create_app
        app = create_app({"SQLALCHEMY_DATABASE_URI": "sqlite://", "RATELIMIT_STORAGE_URI": "memory://"})
        client = app.test_client()
        for _ in range(int(sys.argv[1])):
            assert client.get("/healthz").status_code == 200
        if sys.argv[2] == "scrape":
            sys.stdout.write(client.get("/metrics").get_data(as_text=True))
        """
    )

    def run(count: int, mode: str) -> str:
        done = subprocess.run(  # noqa: S603 (this interpreter, a fixed program)
            [sys.executable, "-c", program, str(count), mode],
            env=env,
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        assert done.returncode == 0, done.stderr
        return done.stdout

    run(2, "count")
    run(3, "count")
    samples = parse(run(0, "scrape"))
    assert requests_seen(samples, "health.healthz", "200") == 5
    assert len(list(folder.iterdir())) >= 2  # each process kept its own file
