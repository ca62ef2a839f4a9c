"""Shared fixtures: one migrated database per test run, emptied after each test.

The database is SQLite (a file in a temporary folder) unless
``PORTAL_TEST_DATABASE_URL`` names another, e.g. PostgreSQL in CI. The schema
is built by running the Alembic migrations, as in production, so every run
also proves the migrations. Mail goes to a real SMTP server (aiosmtpd) on
127.0.0.1.

Time: the portal reads one clock (``portal.kernel.clock``). A test that depends
on the day or the month takes the ``clock`` fixture and freezes it. The whole
suite runs from another instant with ``PORTAL_TEST_NOW=2027-01-01T00:10Z``: the
clock then runs on from that instant, and the offset is exported as
``PORTAL_CLOCK_OFFSET_SECONDS`` so the portal processes the tests start
(gunicorn, the CLI) read the same time. External servers (PostgreSQL, Stripe's
stand-in, the OpenID provider) keep the machine's time.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import os
import re
import secrets
import socket
import tempfile
import threading
from collections.abc import Callable, Iterator
from email import message_from_bytes, policy
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from aiosmtpd.controller import Controller
from werkzeug.serving import WSGIRequestHandler, make_server

from portal import create_app
from portal.db import db
from portal.extensions import limiter
from portal.kernel import clock as portal_clock
from portal.kernel.actor import Actor
from portal.kernel.clock import now_utc

TEST_PASSWORD = "correct horse battery"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# ------------------------------------------------------------------ time


def _parse_instant(text: str) -> dt.datetime:
    moment = dt.datetime.fromisoformat(text.replace("Z", "+00:00"))
    if moment.tzinfo is None:
        raise pytest.UsageError(f"PORTAL_TEST_NOW needs a timezone (e.g. a final Z): {text!r}")
    return moment


def pytest_configure(config: pytest.Config) -> None:
    """``PORTAL_TEST_NOW``: run the portal's clock on from that instant, once per run.

    The first process (the xdist controller, or the only one) works out the offset
    from the machine's clock and exports it; workers and the portal processes tests
    start inherit the variable, so every process of the run reads the same time.
    """
    start = os.environ.get("PORTAL_TEST_NOW")
    if start and not os.environ.get(portal_clock.OFFSET_VARIABLE):
        offset = _parse_instant(start) - dt.datetime.now(dt.UTC)
        os.environ[portal_clock.OFFSET_VARIABLE] = repr(offset.total_seconds())
    portal_clock.offset_from_environment()


class Clock:
    """The portal's clock in a test: ``freeze(moment)``, ``advance(delta)``, ``now``."""

    @property
    def now(self) -> dt.datetime:
        return portal_clock.now_utc()

    @property
    def today(self) -> dt.date:
        return portal_clock.today()

    def freeze(self, moment: dt.datetime | str) -> dt.datetime:
        """Stop the clock at ``moment`` (aware, or ISO 8601 with an offset); returns it."""
        if isinstance(moment, str):
            moment = _parse_instant(moment)
        portal_clock.freeze(moment)
        return self.now

    def advance(self, delta: dt.timedelta) -> dt.datetime:
        """Move the clock on (a frozen clock stays frozen there); returns the new now."""
        portal_clock.advance(delta)
        return self.now


@pytest.fixture
def clock() -> Iterator[Clock]:
    """The portal's clock, running as the run started it again after the test."""
    offset = portal_clock.offset()
    yield Clock()
    portal_clock.thaw()
    portal_clock.set_offset(offset)


#: A fixed instant in the middle of a month, for tests whose data is dated from "now".
MID_MONTH = dt.datetime(2026, 9, 15, 12, tzinfo=dt.UTC)


@pytest.fixture
def mid_month(clock) -> dt.datetime:
    """The clock frozen at :data:`MID_MONTH`; request it before the fixtures that date
    their rows from now (a test's arguments are set up in order)."""
    return clock.freeze(MID_MONTH)


# ------------------------------------------------------------------ mail


class _Mailbox:
    """An aiosmtpd handler keeping every message it receives."""

    def __init__(self) -> None:
        self.messages: list[EmailMessage] = []

    async def handle_DATA(self, server, session, envelope):  # noqa: N802 (aiosmtpd's name)
        self.messages.append(message_from_bytes(envelope.content, policy=policy.default))
        return "250 OK"


@pytest.fixture(scope="session")
def smtp_server() -> Iterator[tuple[int, _Mailbox]]:
    handler = _Mailbox()
    port = free_port()
    controller = Controller(handler, hostname="127.0.0.1", port=port)
    controller.start()
    yield port, handler
    controller.stop()


@pytest.fixture
def mailbox(smtp_server) -> list[EmailMessage]:
    """The messages the portal sent during this test."""
    _, handler = smtp_server
    handler.messages.clear()
    return handler.messages


def mail_link(message: EmailMessage) -> str:
    """The first portal link in a message, as a path."""
    body = message.get_body(preferencelist=("plain",)).get_content()
    match = re.search(r"https?://[^/\s]+(/\S+)", body)
    assert match, body
    return match.group(1)


# ------------------------------------------------------------------ database and app


def _database_url(tmp: Path) -> str:
    return os.environ.get("PORTAL_TEST_DATABASE_URL") or f"sqlite:///{tmp / 'portal-test.sqlite3'}"


@contextlib.contextmanager
def _own_database(url: str) -> Iterator[str]:
    """On PostgreSQL, a fresh database of this run's own (dropped afterwards).

    Runs in parallel (developers, helpers, CI) then never share tables. The
    URL given names the server and a database to start from.
    """
    parsed = sa.engine.make_url(url)
    if parsed.get_backend_name() != "postgresql":
        yield url
        return
    name = f"{parsed.database}_{os.getpid()}_{secrets.token_hex(3)}"
    admin = sa.create_engine(parsed, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
    try:
        yield parsed.set(database=name).render_as_string(hide_password=False)
    finally:
        with admin.connect() as conn:
            conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


@pytest.fixture(scope="session")
def app(smtp_server, tmp_path_factory):
    """The portal, configured for tests, on a freshly migrated database."""
    tmp = tmp_path_factory.mktemp("portal")
    os.environ["PORTAL_ENV"] = "test"
    os.environ["PORTAL_INSTANCE_PATH"] = str(tmp / "instance")
    url = _database_url(tmp)
    if url.startswith("postgresql://"):
        url = "postgresql+psycopg://" + url[len("postgresql://") :]
    with _own_database(url) as own_url:
        yield from _make_app(own_url, smtp_server)


def _make_app(url: str, smtp_server):
    port, _ = smtp_server
    app = create_app(
        {
            "TESTING": True,
            "SQLALCHEMY_DATABASE_URI": url,
            "PORTAL_SMTP_HOST": "127.0.0.1",
            "PORTAL_SMTP_PORT": port,
            "PORTAL_BASE_URL": "http://portal.test",
            "RATELIMIT_STORAGE_URI": "memory://",
        }
    )
    from flask_migrate import upgrade

    with app.app_context():
        upgrade()
    yield app
    with app.app_context():
        db.engine.dispose()


@pytest.fixture(autouse=True)
def _clean_database(request) -> Iterator[None]:
    """Empty every table after each test that used the app (cheap: tests make few rows)."""
    yield
    if "app" not in request.fixturenames:
        return
    app = request.getfixturevalue("app")
    with app.app_context():
        db.session.remove()
        with db.engine.begin() as conn:
            for table in reversed(db.metadata.sorted_tables):
                conn.execute(table.delete())
        limiter.reset()


@pytest.fixture
def db_session(app):
    """The request-style session inside an app context (services take it)."""
    with app.app_context():
        yield db.session
        db.session.remove()


@pytest.fixture
def client(app):
    return app.test_client()


@pytest.fixture
def runner(app):
    return app.test_cli_runner()


# ------------------------------------------------------------------ factories


SYSTEM = Actor.system("test")


@pytest.fixture
def make_org(app) -> Callable[..., Any]:
    """Create an organisation (active unless told otherwise); returns its slug and id."""
    from portal.tenancy.services import organisation_create, organisation_transition

    counter = iter(range(1, 10_000))

    def make(slug: str | None = None, *, status: str = "active", **fields: Any):
        n = next(counter)
        slug = slug or f"org-{n}"
        data = {
            "slug": slug,
            "name": f"Org {slug}",
            "country": "DE",
            "currency": "EUR",
            "billing_email": f"billing@{slug}.example",
        }
        data.update(fields)
        with app.app_context():
            org = organisation_create(db.session, actor=SYSTEM, data=data)
            if status == "suspended" or status == "closed":
                organisation_transition(
                    db.session, actor=SYSTEM, organisation=org, to_status=status
                )
            db.session.commit()
            return OrgRef(org.id, org.slug, org.name)

    return make


class OrgRef:
    """What tests need of an organisation after its session is gone."""

    def __init__(self, id: int, slug: str, name: str) -> None:
        self.id, self.slug, self.name = id, slug, name


class UserRef:
    def __init__(self, id: int, email: str, role: str, organisation_id: int | None) -> None:
        self.id, self.email, self.role, self.organisation_id = id, email, role, organisation_id
        self.password = TEST_PASSWORD


@pytest.fixture
def make_user(app) -> Callable[..., UserRef]:
    """Create an account with a password (``TEST_PASSWORD``)."""
    from portal.identity.accounts import user_create
    from portal.identity.models import User

    counter = iter(range(1, 10_000))

    def make(
        role: str = "member",
        org: OrgRef | None = None,
        email: str | None = None,
        password: str = TEST_PASSWORD,
    ) -> UserRef:
        n = next(counter)
        email = email or f"{role.replace('_', '-')}-{n}@{org.slug if org else 'council'}.example"
        with app.app_context():
            organisation = None
            if org is not None:
                from portal.tenancy.models import Organisation

                organisation = db.session.get(Organisation, org.id)
            user = user_create(
                db.session,
                actor=SYSTEM,
                email=email,
                role=role,
                organisation=organisation,
                name=f"Person {n}",
                password=password,
            )
            db.session.commit()
            assert isinstance(user, User)
            ref = UserRef(user.id, user.email, user.role, user.organisation_id)
            ref.password = password
            return ref

    return make


# ------------------------------------------------------------------ signing in and forms


CSRF_RE = re.compile(r'name="csrf_token"[^>]*value="([^"]+)"')


@pytest.fixture
def make_product(app) -> Callable[..., ProductRef]:
    """A vendor (created once per slug), a product (with an ``api_calls`` meter unless
    ``meters=False``), a pool of ``capacity`` seats in force and a seat price (unless
    ``price=None``)."""
    from portal.catalogue.models import Vendor
    from portal.catalogue.services import pool_create, price_create, product_create, vendor_create

    counter = iter(range(1, 10_000))

    def make(
        capacity: int = 10,
        *,
        sku: str | None = None,
        vendor: str = "acme-soft",
        vendor_status: str = "active",
        price: int | None = 1000,
        currency: str = "EUR",
        meters: bool = True,
        vendor_name: str | None = None,
    ) -> ProductRef:
        n = next(counter)
        sku = sku or f"product-{n}"
        today = now_utc().date()
        with app.app_context():
            import sqlalchemy as sa

            if db.session.scalar(sa.select(Vendor).where(Vendor.slug == vendor)) is None:
                vendor_create(
                    db.session,
                    actor=SYSTEM,
                    data={
                        "slug": vendor,
                        "name": vendor_name or vendor.title(),
                        "status": vendor_status,
                    },
                )
            product = product_create(
                db.session,
                actor=SYSTEM,
                data={
                    "sku": sku,
                    "vendor": vendor,
                    "name": f"Product {sku}",
                    "launch_url": f"https://{sku}.example/launch",
                    "meters": [
                        {
                            "key": "api_calls",
                            "name": "API calls",
                            "unit": "call",
                            "aggregation": "sum",
                        }
                    ]
                    if meters
                    else [],
                },
            )
            if capacity:
                pool_create(
                    db.session,
                    actor=SYSTEM,
                    data={
                        "product": sku,
                        "capacity": capacity,
                        "starts_on": (today - dt.timedelta(days=30)).isoformat(),
                        "ends_on": (today + dt.timedelta(days=335)).isoformat(),
                        "unit_cost": {"amount": 500, "currency": "EUR"},
                    },
                )
            if price is not None:
                price_create(
                    db.session,
                    actor=SYSTEM,
                    data={
                        "product": sku,
                        "currency": currency,
                        "model": "seat",
                        "unit_amount": price,
                    },
                )
            db.session.commit()
            return ProductRef(product.id, product.sku)

    return make


class ProductRef:
    def __init__(self, id: int, sku: str) -> None:
        self.id, self.sku = id, sku


def csrf_token(client, path: str = "/login") -> str:
    """A CSRF token for the client's session, read from a page with a form."""
    response = client.get(path)
    match = CSRF_RE.search(response.get_data(as_text=True))
    assert match, f"no CSRF token on {path} ({response.status_code})"
    return match.group(1)


def post_form(client, path: str, data: dict[str, Any], *, token_from: str | None = None, **kwargs):
    """POST a form with a valid CSRF token taken from ``token_from`` (default: the same path)."""
    data = dict(data)
    data.setdefault("csrf_token", csrf_token(client, token_from or path))
    return client.post(path, data=data, **kwargs)


def login(client, user: UserRef, password: str | None = None):
    """Sign ``user`` in through the real sign-in form."""
    return post_form(client, "/login", {"email": user.email, "password": password or user.password})


@pytest.fixture
def signed_in(app, make_user) -> Callable[..., Any]:
    """A test client signed in as a new account with ``role`` (in ``org`` for org roles)."""

    def make(role: str, org: OrgRef | None = None):
        user = make_user(role, org)
        client = app.test_client()
        response = login(client, user)
        assert response.status_code == 302, response.get_data(as_text=True)
        client.user = user
        return client

    return make


def flashes(response) -> list[str]:
    """The flash messages and field errors on a page."""
    html = response.get_data(as_text=True)
    return re.findall(r'class="(?:flash[^"]*|field-error)"[^>]*>([^<]*)<', html)


@pytest.fixture(scope="session")
def tmpdir_session() -> Iterator[Path]:
    with tempfile.TemporaryDirectory() as tmp:
        yield Path(tmp)


# ------------------------------------------------------------------ the portal, served


class _QuietHandler(WSGIRequestHandler):
    """Werkzeug's handler, quiet, and not waiting forever on an idle keep-alive connection."""

    timeout = 10

    def log_request(self, *args: Any, **kwargs: Any) -> None:
        pass


@pytest.fixture(scope="session")
def live_server(app) -> Iterator[str]:
    """The portal served on 127.0.0.1 and a free port (browser tests, Stripe webhooks);
    yields its base URL."""
    server = make_server("127.0.0.1", 0, app, threaded=True, request_handler=_QuietHandler)
    thread = threading.Thread(target=server.serve_forever, name="portal-live-server", daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_port}"
    finally:
        server.shutdown()
        thread.join(timeout=10)
        server.server_close()
