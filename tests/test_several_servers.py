"""Several servers: two app servers and two workers on one PostgreSQL and one Redis.

Issue 13, "Several servers". The test starts two gunicorn servers (the portal's
``gunicorn.conf.py``, ``wsgi:app``) on free ports and two ``portal worker``
processes (with the schedule, as in production), all on the test run's
PostgreSQL database as the application role (row-level security in force, as in
production) and on one Redis: the job queue (a queue of this test's own, in Redis
database 13) and the rate limits (a key prefix of its own). Then, from several
threads at once, it sends to both servers:

* sign-ins (right and wrong passwords; a session made on one server is used on
  the other);
* subscriptions racing for a small pool, each sent to both servers with the same
  ``Idempotency-Key``;
* seat assignments, every person asking on both servers at once;
* usage batches, each sent to both servers (the same idempotency keys twice);
* two invoice runs of last month with ``finalize``, one per server.

While both runs are running, one worker and one server are SIGKILLed (their
process groups, as when a machine dies). The traffic goes on against the
survivors: requests the dead server cannot answer are sent to the live one,
seats are released and taken again, the same usage is sent again. The killed
worker's run is delivered again to the surviving worker (Redis: after the
visibility timeout, 5 s here). When every job has finished, a third run and
late usage of the invoiced month must leave the finalised invoices as they were.

Then every invariant of SPEC section 4 that this traffic touches is checked in
the database (as its owner, past row-level security), and no response was a 5xx.
PostgreSQL and Redis only: on SQLite the test is skipped (one file cannot be
shared by servers on several machines); ``.ci/run``'s PostgreSQL run runs it, and
with ``PORTAL_TEST_REQUIRE_BROKERS`` a missing Redis fails it.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import hashlib
import os
import secrets
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import redis
import requests
import sqlalchemy as sa

from portal.db import db
from portal.kernel.clock import now_utc
from tests.conftest import CSRF_RE, SYSTEM, free_port, owner_engine

ROOT = Path(__file__).resolve().parent.parent
REDIS_URL = "redis://127.0.0.1:6379/13"  # this test's own Redis database
ORGANISATIONS = 4
MEMBERS = 4  # per organisation, for 3 seats
SEATS = 3
SMALL_POOL = 10  # organisations ask for 3 seats each: 3 of the 4 get them
BATCHES = 4  # usage batches per organisation, each sent to both servers
EVENTS = 10  # per batch; consecutive batches share half their keys
RUN_PAUSE = "0.5"  # seconds a worker pauses after each organisation of a run

pytestmark = pytest.mark.skipif(
    not (os.environ.get("PORTAL_TEST_DATABASE_URL") or "").startswith("postgresql"),
    reason="several servers share one PostgreSQL database (and Redis); SQLite is one "
    "machine's file (run with PORTAL_TEST_DATABASE_URL=postgresql+psycopg://…, as .ci/run does)",
)


# ------------------------------------------------------------------ processes


class Process:
    """A server or worker started in a process group of its own, with its log."""

    def __init__(self, name: str, popen: subprocess.Popen, log: Path, url: str = "") -> None:
        self.name, self.popen, self.log, self.url = name, popen, log, url
        self.killed = False

    def kill(self) -> None:
        """SIGKILL the whole group (gunicorn's master and workers; Celery's pool too)."""
        os.killpg(self.popen.pid, signal.SIGKILL)
        self.popen.wait(10)
        self.killed = True

    def tail(self) -> str:
        text = self.log.read_text(errors="replace") if self.log.exists() else ""
        return f"--- {self.name} ---\n{text[-3000:]}"


@pytest.fixture
def shared_redis() -> Iterator[tuple[str, str]]:
    """(a job queue name, a rate-limit key prefix) of this test's own; deleted afterwards."""
    client = redis.Redis.from_url(REDIS_URL)
    try:
        client.ping()
    except redis.ConnectionError as exc:
        if os.environ.get("PORTAL_TEST_REQUIRE_BROKERS"):  # .ci/run starts Redis
            pytest.fail(f"Redis is not answering at {REDIS_URL} ({exc})")
        pytest.skip(f"Redis is not running at {REDIS_URL} (.ci/run starts it)")
    name = f"servers-{os.getpid()}-{secrets.token_hex(4)}"
    yield name, name
    for key in client.scan_iter(match=f"*{name}*"):
        client.delete(key)
    client.close()


@pytest.fixture
def cluster(app, tmp_path, shared_redis) -> Iterator[Callable[[], tuple[list, list]]]:
    """``start()``: two servers and two workers, all ready; every one killed afterwards."""
    queue, prefix = shared_redis
    started: list[Process] = []
    environment = {
        **os.environ,
        "PORTAL_ENV": "test",  # secrets from the test run's instance folder, plain cookies
        "PORTAL_DATABASE_URL": app.config["SQLALCHEMY_DATABASE_URI"],  # the application role
        "PORTAL_OUTBOX_DIR": str(tmp_path / "outbox"),
        "PORTAL_REDIS_URL": REDIS_URL,
        "PORTAL_RATELIMIT_KEY_PREFIX": prefix,
        "PORTAL_JOBS_BROKER_URL": REDIS_URL,
        "PORTAL_JOBS_QUEUE": queue,
        # An unacknowledged message (its worker killed) is delivered again after 5 s.
        "PORTAL_JOBS_VISIBILITY_TIMEOUT": "5",
        "PORTAL_JOBS_TICK_SECONDS": "5",
        # A worker is killed mid-way: a job it enqueued and committed but whose message it
        # had not sent yet is sent again by a survivor's tick after this (default 2 hours).
        "PORTAL_JOBS_LOST_AFTER_SECONDS": "45",
        "PORTAL_TEST_INVOICE_RUN_PAUSE": RUN_PAUSE,
        "WEB_CONCURRENCY": "1",
        "GUNICORN_THREADS": "4",
    }
    for name in ("PORTAL_SMTP_HOST", "PROMETHEUS_MULTIPROC_DIR"):
        environment.pop(name, None)
    bin_dir = Path(sys.executable).parent

    def spawn(name: str, argv: list[str], url: str = "") -> Process:
        log = tmp_path / f"{name}.log"
        with log.open("w") as output:
            popen = subprocess.Popen(  # noqa: S603 (our own gunicorn and worker, fixed arguments)
                argv,
                cwd=ROOT,
                env=environment,
                stdout=output,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # a process group: SIGKILL takes every process of it
            )
        process = Process(name, popen, log, url)
        started.append(process)
        return process

    def start() -> tuple[list[Process], list[Process]]:
        servers = []
        for n in range(2):
            port = free_port()
            argv = [str(bin_dir / "gunicorn"), "-c", "gunicorn.conf.py"]
            argv += ["--bind", f"127.0.0.1:{port}", "--no-control-socket", "wsgi:app"]
            servers.append(spawn(f"server-{n}", argv, f"http://127.0.0.1:{port}"))
        workers = [
            spawn(f"worker-{n}", [str(bin_dir / "portal"), "worker", "--concurrency=1"])
            for n in range(2)
        ]
        deadline = time.monotonic() + 60
        waiting = list(servers) + list(workers)
        while waiting:
            for process in list(waiting):
                assert process.popen.poll() is None, process.tail()
                if process.url:
                    with contextlib.suppress(requests.RequestException):
                        if requests.get(process.url + "/healthz", timeout=5).status_code == 200:
                            waiting.remove(process)
                elif " ready." in process.log.read_text(errors="replace"):
                    waiting.remove(process)  # Celery's "celery@… ready."
            assert time.monotonic() < deadline, "\n".join(p.tail() for p in waiting)
            time.sleep(0.1)
        return servers, workers

    yield start
    for process in started:
        if process.popen.poll() is None:
            os.killpg(process.popen.pid, signal.SIGKILL)
            process.popen.wait(10)


# ------------------------------------------------------------------ traffic


class Traffic:
    """Requests to the servers from many threads; every status is kept.

    A request to a server that is dead (or dies while answering) is sent to a live
    one instead, as a load balancer would; ``lost`` counts, by server, the requests
    whose answer never came (they may or may not have taken effect).
    """

    def __init__(self, servers: list[Process]) -> None:
        self.servers = servers
        self.statuses: Counter[int] = Counter()
        self.by_kind: dict[str, Counter[int]] = {}
        self.lost: Counter[str] = Counter()  # requests left unanswered, by server
        self.five_hundreds: list[str] = []
        self._lock = threading.Lock()

    def live(self) -> list[Process]:
        return [s for s in self.servers if not s.killed]

    def send(
        self, kind: str, server: int, method: str, path: str, **kwargs: Any
    ) -> requests.Response:
        """One request to ``servers[server]``, or to a live one when that one is dead."""
        target = self.servers[server % len(self.servers)]
        session = kwargs.pop("session", None) or requests.Session()
        for _ in range(3):
            if target.killed:
                target = self.live()[0]
            try:
                response = session.request(
                    method, target.url + path, timeout=60, allow_redirects=False, **kwargs
                )
            except (requests.ConnectionError, requests.exceptions.ChunkedEncodingError):
                # No answer, or half of one: only from the server the test kills.
                with self._lock:
                    self.lost[target.name] += 1
                if not target.killed:
                    time.sleep(0.2)  # it may be dying: the next try sees it killed
                target = self.live()[0]
                continue
            with self._lock:
                self.statuses[response.status_code] += 1
                self.by_kind.setdefault(kind, Counter())[response.status_code] += 1
                if response.status_code >= 500:
                    self.five_hundreds.append(f"{method} {path}: {response.text[:500]}")
            return response
        raise AssertionError(f"{method} {path}: no server answered")

    def api(
        self, kind: str, server: int, method: str, path: str, token: str, **kwargs: Any
    ) -> requests.Response:
        headers = {"Authorization": f"Bearer {token}", **kwargs.pop("headers", {})}
        return self.send(kind, server, method, "/api/v1" + path, headers=headers, **kwargs)

    def sign_in(self, server: int, email: str, password: str) -> int:
        """Sign in on one server (a form with its CSRF token); then, when signed in,
        open the page it leads to on the other server with the same cookie."""
        browser = requests.Session()
        page = self.send("sign-in", server, "GET", "/login", session=browser)
        token = CSRF_RE.search(page.text)
        assert token, page.text[:500]
        answer = self.send(
            "sign-in",
            server,
            "POST",
            "/login",
            session=browser,
            data={"email": email, "password": password, "csrf_token": token.group(1)},
        )
        if answer.status_code == 302:
            landing = urlsplit(answer.headers["Location"])
            landing = landing._replace(scheme="", netloc="").geturl() or "/"
            after = self.send("signed-in page", server + 1, "GET", landing, session=browser)
            assert after.status_code == 200, (landing, after.status_code)
        return answer.status_code


# ------------------------------------------------------------------ the council


def _token(scope: str, *, organisation: Any = None, vendor: Any = None) -> str:
    from portal.api.services import token_create

    _, plaintext = token_create(
        db.session,
        actor=SYSTEM,
        scope=scope,
        organisation=organisation,
        vendor=vendor,
        name=f"{scope} token for the servers test",
    )
    return plaintext


@pytest.fixture
def council(app, make_org, make_product, make_user) -> dict[str, Any]:
    """Organisations subscribed to 3 seats of ``cad-suite`` since the 1st of last month
    (seat and metered prices), each with 4 members and a token; a small pool of
    ``viewer`` to race for; a vendor token, a council token, two people with passwords."""
    from portal.catalogue.models import Product, Vendor
    from portal.catalogue.services import price_create
    from portal.identity.accounts import user_create
    from portal.seats.services import subscription_create
    from portal.tenancy.models import Organisation

    first_this = now_utc().date().replace(day=1)
    first_last = (first_this - dt.timedelta(days=1)).replace(day=1)
    product = make_product(ORGANISATIONS * SEATS + 2, sku="cad-suite", vendor="autodraft")
    viewer = make_product(SMALL_POOL, sku="viewer", vendor="autodraft", meters=False)
    organisations = [make_org(f"council-{n}") for n in range(ORGANISATIONS)]
    people = {"signers": [make_user("member", organisations[n]) for n in range(2)]}
    with app.app_context():
        price_create(
            db.session,
            actor=SYSTEM,
            data={
                "product": "cad-suite",
                "currency": "EUR",
                "model": "metered",
                "meter": "api_calls",
                "unit_amount": 2,
            },
        )
        tokens, subscriptions, members = {}, {}, {}
        for org in organisations:
            organisation = db.session.get(Organisation, org.id)
            outcome = subscription_create(
                db.session,
                actor=SYSTEM,
                organisation=organisation,
                product=db.session.get(Product, product.id),
                quantity=SEATS,
                starts_on=first_last,
            )
            subscriptions[org.slug] = outcome.subscription.id
            members[org.slug] = [f"m{i}@{org.slug}.example" for i in range(MEMBERS)]
            for email in members[org.slug]:  # no password: no hashing, quick
                user_create(
                    db.session, actor=SYSTEM, email=email, role="member", organisation=organisation
                )
            tokens[org.slug] = _token("organisation", organisation=organisation)
        vendor = db.session.scalar(sa.select(Vendor).where(Vendor.slug == "autodraft"))
        vendor_token = _token("vendor", vendor=vendor)
        council_token = _token("council")
        db.session.commit()
        db.session.remove()
    return {
        "period": f"{first_last:%Y-%m}",
        # The last day of last month, noon: within the 35 days the API accepts.
        "occurred_at": dt.datetime.combine(first_this, dt.time(0), dt.UTC) - dt.timedelta(hours=12),
        "product": product,
        "viewer": viewer,
        "organisations": organisations,
        "subscriptions": subscriptions,
        "members": members,
        "tokens": tokens,
        "vendor_token": vendor_token,
        "council_token": council_token,
        **people,
    }


# ------------------------------------------------------------------ the database


def _rows(app, query: str, **params: Any) -> list[sa.Row]:
    with app.app_context(), owner_engine(app).connect() as connection:
        return list(connection.execute(sa.text(query), params))


def _jobs(app) -> list[sa.Row]:
    return _rows(app, "SELECT id, name, state, attempts, last_error FROM jobs ORDER BY id")


def _runs(app) -> list[sa.Row]:
    return _rows(app, "SELECT id, status, error, job_id FROM invoice_runs ORDER BY id")


def _finalised(app) -> dict[str, tuple]:
    """Every finalised invoice by number: its fields, lines and PDF's digest."""
    invoices = _rows(
        app,
        "SELECT id, number, organisation_id, period, currency, status, subtotal, tax, total,"
        " tax_rate_bp, note, payment_reference, finalised_at, due_on, pdf"
        " FROM invoices WHERE number IS NOT NULL",
    )
    out = {}
    for row in invoices:
        lines = _rows(
            app, "SELECT * FROM invoice_lines WHERE invoice_id = :id ORDER BY id", id=row.id
        )
        pdf = hashlib.sha256(row.pdf).hexdigest() if row.pdf is not None else None
        out[row.number] = (tuple(row)[:-1], pdf, [tuple(line) for line in lines])
    return out


def _jobs_done(app, logs: Callable[[], str]) -> None:
    """Wait until every job has ended (a job that failed an attempt and waits for its next,
    its backoff being long, has ended too); then every one must have succeeded."""

    def ended(job: sa.Row) -> bool:
        return job.state in ("succeeded", "failed") or bool(job.last_error)

    _wait(lambda: all(ended(j) for j in _jobs(app)), 90, "every job ended", logs)
    assert [j for j in _jobs(app) if j.state != "succeeded"] == []


def _wait(condition: Callable[[], bool], seconds: float, why: str, logs: Callable[[], str]):
    deadline = time.monotonic() + seconds
    while not condition():
        if time.monotonic() > deadline:
            # The reason first and last: a long log between is cut in CI's excerpt.
            pytest.fail(f"timed out waiting until {why}\n{logs()}\n(timed out: {why})")
        time.sleep(0.1)


# ------------------------------------------------------------------ the test


def test_two_servers_and_two_workers_keep_every_invariant_when_one_of_each_dies(
    app, council, cluster
):
    servers, workers = cluster()
    processes = servers + workers

    def logs() -> str:
        # The runs last: CI shows a failure's end, and a run's error says why it failed.
        return (
            "\n".join(p.tail() for p in processes)
            + f"\njobs: {_jobs(app)}\ninvoice runs: {_runs(app)}"
        )

    traffic = Traffic(servers)
    c = council
    outcomes: dict[str, list] = {"usage": [], "subscribe": [], "runs": []}
    olock = threading.Lock()

    def keep(kind: str, value: Any) -> None:
        with olock:
            outcomes[kind].append(value)

    def usage_batch(org: str, batch: int, *, late: bool = False) -> list[dict]:
        # Batch b holds keys b*E/2 … b*E/2+E-1: each half is also in a neighbouring batch.
        first = batch * EVENTS // 2
        return [
            {
                "idempotency_key": f"{org}-{'late' if late else 'event'}-{n}",
                "organisation": org,
                "product": "cad-suite",
                "meter": "api_calls",
                "quantity": "3",
                "occurred_at": c["occurred_at"].isoformat(),
            }
            for n in range(first, first + EVENTS)
        ]

    def send_usage(server: int, events: list[dict]) -> None:
        answer = traffic.api(
            "usage", server, "POST", "/usage", c["vendor_token"], json={"events": events}
        )
        assert answer.status_code == 200, answer.text
        body = answer.json()
        assert body["rejected"] == [] and body["accepted"] + body["duplicates"] == len(events)
        keep("usage", body["accepted"])

    def subscribe(server: int, org: str, key: str) -> None:
        answer = traffic.api(
            "subscribe",
            server,
            "POST",
            "/subscriptions",
            c["tokens"][org],
            json={"product": "viewer", "quantity": SEATS},
            headers={"Idempotency-Key": key},
        )
        assert answer.status_code in (201, 409), answer.text
        keep("subscribe", (org, answer.status_code, answer.json().get("code")))

    def assign(server: int, org: str, email: str) -> int:
        answer = traffic.api(
            "seat",
            server,
            "POST",
            f"/subscriptions/{c['subscriptions'][org]}/seats",
            c["tokens"][org],
            json={"user_email": email},
        )
        assert answer.status_code == 201 or (
            answer.status_code == 409
            and answer.json()["code"] in ("no_free_seat", "already_assigned")
        ), answer.text
        return answer.status_code

    def release(server: int, org: str, email: str) -> None:
        answer = traffic.api(
            "seat",
            server,
            "DELETE",
            f"/subscriptions/{c['subscriptions'][org]}/seats/{email}",
            c["tokens"][org],
        )
        assert answer.status_code in (200, 404), answer.text

    def start_run(server: int) -> None:
        # With a key, as a script that may resend must: a start whose answer was lost with
        # its server (the run made, the job running) is resent to the other server and
        # replays that run instead of starting another (CI saw a third run without it).
        answer = traffic.api(
            "invoice run",
            server,
            "POST",
            "/invoice-runs",
            c["council_token"],
            json={"period": c["period"], "finalize": True},
            headers={"Idempotency-Key": str(uuid.uuid4())},
        )
        assert answer.status_code == 201, answer.text
        keep("runs", answer.json()["id"])

    slugs = [org.slug for org in c["organisations"]]
    with ThreadPoolExecutor(max_workers=12) as pool:
        # ---- both servers, both workers: everything at once
        first: list[Future] = [pool.submit(start_run, 0), pool.submit(start_run, 1)]
        for n, org in enumerate(slugs):
            key = str(uuid.uuid4())
            first += [pool.submit(subscribe, s, org, key) for s in (n, n + 1)]
        signer, other = c["signers"]
        first += [
            pool.submit(traffic.sign_in, 0, signer.email, signer.password),
            pool.submit(traffic.sign_in, 1, other.email, other.password),
            pool.submit(traffic.sign_in, 1, signer.email, "not the password"),
        ]
        for org in slugs:
            for batch in range(BATCHES // 2):
                events = usage_batch(org, batch)
                first += [pool.submit(send_usage, s, events) for s in (0, 1)]
            for n, email in enumerate(c["members"][org][:2]):
                first += [pool.submit(assign, s, org, email) for s in (n, n + 1)]

        # ---- while both runs are running and more traffic is in flight: one of each dies
        _wait(
            lambda: sum(r.status == "running" for r in _runs(app)) == 2,
            30,
            "both invoice runs are running (one on each worker)",
            logs,
        )
        during: list[Future] = [pool.submit(traffic.sign_in, 1, other.email, other.password)]
        for org in slugs:
            for batch in range(BATCHES // 2, BATCHES):
                events = usage_batch(org, batch)
                during += [pool.submit(send_usage, s, events) for s in (1, 0)]
            for n, email in enumerate(c["members"][org][2:]):
                during += [pool.submit(assign, s, org, email) for s in (n + 1, n)]
        workers[0].kill()
        servers[1].kill()
        assert sum(f.done() for f in during) < len(during)  # the kill came mid-way
        first += during
        for future in first:
            future.result()

        # ---- the survivors: seats released and taken again, the same usage again
        def turnover(org: str) -> None:
            for email in c["members"][org][:2]:
                release(1, org, email)
            for email in c["members"][org]:
                assign(1, org, email)

        second = [pool.submit(turnover, org) for org in slugs]
        second += [pool.submit(send_usage, 1, usage_batch(org, 0)) for org in slugs]
        for future in second:
            future.result()

    # ---- the killed worker's run is delivered again to the survivor; both end done
    def settled() -> bool:
        runs = _runs(app)
        return len(runs) == 2 and all(r.status in ("done", "failed") for r in runs)

    _wait(settled, 120, "both invoice runs ended", logs)
    assert [(r.status, r.error) for r in _runs(app)] == [("done", None)] * 2, logs()
    assert sorted(outcomes["runs"]) == [r.id for r in _runs(app)]  # each start answered once

    # A run is done when its job's work commits; the job's own end is the worker's next
    # commit, a moment later.
    def runs_jobs_ended() -> bool:
        states = {j.id: j.state for j in _jobs(app)}
        return all(states[r.job_id] in ("succeeded", "failed") for r in _runs(app))

    _wait(runs_jobs_ended, 60, "both runs' jobs recorded their end", logs)
    jobs = {j.id: j for j in _jobs(app)}
    runs = [jobs[r.job_id] for r in _runs(app)]
    assert [j.state for j in runs] == ["succeeded"] * 2, runs
    assert sorted(j.attempts for j in runs) == [1, 2], runs  # the killed one ran twice

    # ---- a finalised invoice never changes: a third run, and late usage of the month
    _jobs_done(app, logs)  # each finalised invoice's document (its PDF) and mail
    before = _finalised(app)
    assert len(before) == ORGANISATIONS, before.keys()
    assert all(pdf is not None for _, pdf, _ in before.values())
    for org in slugs:
        send_usage(0, usage_batch(org, 0, late=True) + usage_batch(org, 1))
    start_run(0)
    _wait(
        lambda: all(r.status in ("done", "failed") for r in _runs(app)),
        90,
        "the third run ended",
        logs,
    )
    assert [r.status for r in _runs(app)] == ["done"] * 3, logs()
    _jobs_done(app, logs)
    assert _finalised(app) == before

    # ---- SPEC section 4, in the database
    # No 5xx, ever; the survivors answered everything after the kill.
    assert traffic.five_hundreds == [], traffic.five_hundreds
    assert all(status < 500 for status in traffic.statuses), traffic.statuses
    assert traffic.by_kind["sign-in"][302] >= 3 and traffic.by_kind["sign-in"][401] == 1

    # 1. Active subscriptions of a product never exceed its pool.
    capacity = {c["product"].id: ORGANISATIONS * SEATS + 2, c["viewer"].id: SMALL_POOL}
    held = _rows(
        app,
        "SELECT product_id, SUM(quantity) AS seats FROM subscriptions"
        " WHERE status = 'active' GROUP BY product_id",
    )
    for row in held:
        assert row.seats <= capacity[row.product_id], (row, capacity)
    viewers = _rows(
        app,
        "SELECT organisation_id, COUNT(*) AS n FROM subscriptions"
        " WHERE product_id = :p AND status = 'active' GROUP BY organisation_id",
        p=c["viewer"].id,
    )
    assert len(viewers) == SMALL_POOL // SEATS  # the pool was filled, by 3 organisations
    assert {row.n for row in viewers} == {1}  # each key made one subscription, on either server
    # The same request on both servers got the same answer (the idempotency key).
    per_org = Counter(org for org, status, _ in outcomes["subscribe"] if status == 201)
    assert set(per_org.values()) <= {2} and len(per_org) == len(viewers), outcomes["subscribe"]

    # 2. Seats ≤ quantity (every subscription is full again after the turnover), and one
    # active seat per person per product.
    seats = _rows(
        app,
        "SELECT s.id, s.quantity, COUNT(a.id) AS active FROM subscriptions s"
        " LEFT JOIN seat_assignments a ON a.subscription_id = s.id AND a.released_at IS NULL"
        " WHERE s.product_id = :p GROUP BY s.id, s.quantity",
        p=c["product"].id,
    )
    assert [(row.quantity, row.active) for row in seats] == [(SEATS, SEATS)] * ORGANISATIONS
    doubles = _rows(
        app,
        "SELECT user_id, product_id FROM seat_assignments WHERE released_at IS NULL"
        " GROUP BY user_id, product_id HAVING COUNT(*) > 1",
    )
    assert doubles == []

    # 3. Each event counted once: the keys sent, each once, whichever server took it.
    events = _rows(
        app,
        "SELECT o.slug, COUNT(*) AS n, COUNT(DISTINCT e.idempotency_key) AS keys,"
        " SUM(e.quantity_micros) AS micros FROM usage_events e"
        " JOIN organisations o ON o.id = e.organisation_id GROUP BY o.slug ORDER BY o.slug",
    )
    sent = (BATCHES + 1) * EVENTS // 2 + EVENTS  # the month's keys, and the late ones
    assert [(r.slug, r.n, r.keys, r.micros) for r in events] == [
        (org, sent, sent, sent * 3_000_000) for org in sorted(slugs)
    ]
    assert sum(outcomes["usage"]) <= ORGANISATIONS * sent  # an answer lost is not a count

    # 4. Numbers unique and gapless (per prefix and year, up to the counter); finalised
    # invoices unchanged (above).
    numbers = [row.number for row in _rows(app, "SELECT number FROM invoices")]
    assert None not in numbers and len(set(numbers)) == len(numbers) == ORGANISATIONS
    series: dict[str, list[int]] = {}
    for number in numbers:
        prefix, _, value = number.rpartition("-")
        series.setdefault(prefix, []).append(int(value))
    counters = {
        f"{row.prefix}-{row.year:04d}": row.last_value
        for row in _rows(app, "SELECT prefix, year, last_value FROM document_counters")
    }
    for prefix, values in series.items():
        assert sorted(values) == list(range(1, len(values) + 1)), (prefix, values)
        assert counters[prefix] == len(values), (prefix, counters)

    # 5. One invoice per (organisation, period, currency), three runs (two at once) later.
    keys = _rows(
        app,
        "SELECT organisation_id, period, currency, COUNT(*) AS n FROM invoices"
        " GROUP BY organisation_id, period, currency",
    )
    assert len(keys) == ORGANISATIONS and {row.n for row in keys} == {1}
    assert {row.period for row in keys} == {c["period"]}
    # …and each mailed once, whichever run or worker finalised it.
    mailed = _rows(
        app,
        "SELECT related_id, COUNT(*) AS n FROM mail_messages"
        " WHERE kind = 'invoice_issued' GROUP BY related_id",
    )
    assert len(mailed) == ORGANISATIONS and {row.n for row in mailed} == {1}, mailed

    # Only the killed server left requests unanswered; the survivors logged no traceback.
    assert set(traffic.lost) <= {servers[1].name}, traffic.lost
    assert workers[0].killed and servers[1].killed
    for process in (servers[0], workers[1]):
        assert process.popen.poll() is None, process.tail()
        assert "Traceback" not in process.log.read_text(errors="replace"), process.tail()
