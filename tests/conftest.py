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
import time
from collections.abc import Callable, Iterator
from email import message_from_bytes, policy
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import click
import pytest
import sqlalchemy as sa
from aiosmtpd.controller import Controller
from flask import has_request_context
from sqlalchemy.orm import Session
from werkzeug.serving import WSGIRequestHandler, make_server

from portal import create_app
from portal.db import SCOPE_KEY, db
from portal.extensions import limiter
from portal.kernel import clock as portal_clock
from portal.kernel.actor import Actor
from portal.kernel.clock import now_utc
from portal.kernel.scope import Scope
from portal.seats.counts import recount as seat_counts_recount

TEST_PASSWORD = "correct horse battery"
#: The authenticator-app secret of every test account given one (council admins and
#: finance by default: they must sign in with a second factor). See :func:`totp_code`.
TEST_TOTP_SECRET = "JBSWY3DPEHPK3PXPJBSWY3DPEHPK3PXP"


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
    if not hasattr(config, "workerinput"):  # once, before xdist's workers start
        from portal.i18n import compile_catalogues

        compile_catalogues()  # a catalogue edited since `make install`: compiled now


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
def mailbox(smtp_server, jobs_inline) -> list[EmailMessage]:
    """The messages the portal sent during this test.

    Mail is sent by the ``mail.send`` job: a test watching the mailbox runs jobs inline.
    """
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


#: The login role the portal connects as in PostgreSQL test runs, a member of ``portal_app``
#: (which migration 0011 creates): not superuser, not the tables' owner, no BYPASSRLS.
TEST_APP_ROLE = "portal_test_app"

# Roles belong to the cluster: parallel runs may race to create the role or grant membership.
_CREATE_TEST_ROLE = """
DO $$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'portal_test_app') THEN
        CREATE ROLE portal_test_app LOGIN PASSWORD 'portal_test_app'
            NOSUPERUSER NOBYPASSRLS NOCREATEDB NOCREATEROLE;
    END IF;
EXCEPTION WHEN duplicate_object OR unique_violation THEN
    NULL;
END
$$
"""
_GRANT_APP_ROLE = """
DO $$
BEGIN
    IF NOT pg_has_role('portal_test_app', 'portal_app', 'MEMBER') THEN
        GRANT portal_app TO portal_test_app;
    END IF;
    IF NOT pg_has_role('portal_test_app', 'portal_council_members', 'MEMBER') THEN
        GRANT portal_council_members TO portal_test_app;  -- council-wide as portal_council
    END IF;
EXCEPTION WHEN unique_violation OR internal_error THEN
    NULL;
END
$$
"""


def _as_owner(url: str, statement: str) -> None:
    admin = sa.create_engine(url, isolation_level="AUTOCOMMIT", poolclass=sa.pool.NullPool)
    with admin.connect() as conn:
        conn.execute(sa.text(statement))
    admin.dispose()


def _make_app(url: str, smtp_server):
    """The portal on ``url``. PostgreSQL: migrated as ``url``'s role (the owner,
    ``PORTAL_MIGRATION_DATABASE_URI``) and run as :data:`TEST_APP_ROLE`, so every test
    runs under row-level security; the tables are emptied as the owner."""
    port, _ = smtp_server
    owner_url = app_url = url
    if sa.engine.make_url(url).get_backend_name() == "postgresql":
        _as_owner(url, _CREATE_TEST_ROLE)
        app_url = (
            sa.engine.make_url(url)
            .set(username=TEST_APP_ROLE, password=TEST_APP_ROLE)
            .render_as_string(hide_password=False)
        )
    app = create_app(
        {
            "TESTING": True,
            "SQLALCHEMY_DATABASE_URI": app_url,
            "PORTAL_MIGRATION_DATABASE_URI": owner_url if app_url != owner_url else None,
            "PORTAL_SMTP_HOST": "127.0.0.1",
            "PORTAL_SMTP_PORT": port,
            "PORTAL_BASE_URL": "http://portal.test",
            "RATELIMIT_STORAGE_URI": "memory://",
        }
    )
    from flask_migrate import upgrade

    with app.app_context():
        upgrade()
    if app_url != owner_url:
        _as_owner(owner_url, _GRANT_APP_ROLE)
    owner = None
    if app_url != owner_url:
        # One kept connection (checked before each use: some tests restart PostgreSQL):
        # emptying the tables after every test must not open a new connection each time.
        owner = sa.create_engine(owner_url, pool_size=1, max_overflow=4, pool_pre_ping=True)
    app.extensions["portal_test_owner_engine"] = owner
    _APPS.append(app)
    yield app
    _APPS.remove(app)
    with app.app_context():
        db.engine.dispose()
    if owner is not None:
        owner.dispose()


_APPS: list[Any] = []  # the session's app, for helpers called without fixtures


def give_second_factor(app, user_id: int) -> None:
    """Give an account a confirmed authenticator app with :data:`TEST_TOTP_SECRET`, as if
    the person had set it up (council admins and finance need one to use the portal)."""
    from portal.crypto import encrypt_secret
    from portal.identity.models import TotpFactor, User

    with app.app_context():
        user = db.session.get(User, user_id)
        assert user is not None
        db.session.add(
            TotpFactor(
                user_id=user.id,
                organisation_id=user.organisation_id,
                secret_encrypted=encrypt_secret(TEST_TOTP_SECRET),
                confirmed_at=now_utc(),
            )
        )
        db.session.commit()
        db.session.remove()


def needs_second_factor(role: str) -> bool:
    """Whether accounts of ``role`` get an authenticator app from the factories."""
    return role in ("council_admin", "finance")


def totp_code(
    app=None,
    email: str | None = None,
    *,
    user_id: int | None = None,
    secret: str = TEST_TOTP_SECRET,
) -> str:
    """A current code of the test account's authenticator app (:data:`TEST_TOTP_SECRET`, or
    ``secret``: the demo's), at the portal's time (a run may start at another instant).

    The portal refuses a code of a step already used, and tests sign the same person in
    more often than every 30 seconds: the account's last used step is forgotten first
    (test code only; the rule itself is tested in tests/identity/test_second_factors.py).
    """
    import pyotp

    from portal.identity.models import TotpFactor, User

    app = app or _APPS[-1]
    with app.app_context():
        query = sa.update(TotpFactor).values(last_used_step=None)
        if user_id is None:
            user_id = db.session.scalar(sa.select(User.id).where(User.email == email.lower()))
        db.session.execute(query.where(TotpFactor.user_id == user_id))
        db.session.commit()
        db.session.remove()
    return pyotp.TOTP(secret).at(now_utc())


def owner_engine(app) -> sa.Engine:
    """An engine connecting as the tables' owner (PostgreSQL: past row-level security and the
    application role's grants; SQLite: the app's own). For emptying tables and for tests that
    must do what the application may not (change an audit row, say). Needs an app context."""
    return app.extensions["portal_test_owner_engine"] or db.engine


_create_session = db.session.registry.createfunc


def _test_session() -> Session:
    """Test code's own database work (fixtures, factories, assertions) is council-wide.

    Only the test's own code: a ``db.session`` made in the main thread, outside a request
    and outside a command. Requests, commands and the threads the portal starts bind
    their scope themselves (``portal.db.bind_scope``), as in production; a test that
    wants no scope says ``bind_scope(db.session, None)``.
    """
    session = _create_session()
    if not (
        has_request_context()
        or click.get_current_context(silent=True) is not None
        or threading.current_thread() is not threading.main_thread()
    ):
        session.info[SCOPE_KEY] = Scope.council()
    return session


db.session.registry.createfunc = _test_session


_PROBES: dict[str, str] = {}


def _tables_with_rows(conn: sa.Connection) -> set[str]:
    """The names of the tables holding a row, in one statement (most are empty after a test);
    its SQL is built once per dialect."""
    sql = _PROBES.get(conn.dialect.name)
    if sql is None:
        preparer = conn.dialect.identifier_preparer
        sql = _PROBES[conn.dialect.name] = " UNION ALL ".join(
            f"SELECT '{table.name}' WHERE EXISTS (SELECT 1 FROM {preparer.format_table(table)})"  # noqa: S608
            for table in db.metadata.sorted_tables
        )
    return set(conn.exec_driver_sql(sql).scalars())


@pytest.fixture(autouse=True)
def _clean_database(request) -> Iterator[None]:
    """Empty every table after each test that used the app: one statement finds the tables
    holding rows, and only those are emptied (in the order their references allow)."""
    yield
    if "app" not in request.fixturenames:
        return
    app = request.getfixturevalue("app")
    differing: dict[int, dict[str, tuple[int, int]]] = {}
    with app.app_context():
        db.session.remove()
        with owner_engine(app).begin() as conn:
            filled = _tables_with_rows(conn)
            if "subscriptions" in filled and not request.node.get_closest_marker(
                "seat_rows_written_directly"
            ):
                with Session(bind=conn) as session:
                    differing = seat_counts_recount(session)
            for table in reversed(db.metadata.sorted_tables):
                if table.name in filled:
                    conn.execute(table.delete())
        limiter.reset()
    if differing:
        # Every test is a check of portal.seats.counts: whatever the test did to
        # subscriptions and seats, the figures kept must be their sums.
        pytest.fail(
            "product_seat_counts differ from the subscriptions' sums after this test "
            f"(product id: figure: (kept, counted)): {differing}",
            pytrace=False,
        )


@pytest.fixture
def whole_rate_window() -> None:
    """Start the test where a minute of the machine's clock has 15 seconds or more left.

    The rate limiter (a sliding-window counter, portal.config) counts hits in windows that
    turn on the minute, and weighs the last window's hits less as the new one goes on. A test
    that makes a limit's hits and then expects the next one refused would see it allowed if
    the minute turned in between (the weighted count just under the limit): a test of
    "N per minute" limits takes a few seconds, so it waits for the next minute when the turn
    is near."""
    left = 60 - time.time() % 60
    if left < 15:
        time.sleep(left + 0.05)


@pytest.fixture
def jobs_inline(app) -> Iterator[None]:
    """Jobs run inline (Celery's eager mode): each as the transaction that enqueued it commits.

    Only tests that ask for it; otherwise a job stays queued (the test broker is
    ``memory://`` and no worker runs). ``tests/jobs`` also runs real workers.
    """
    celery = app.extensions["celery"]
    celery.conf.task_always_eager = True
    try:
        yield
    finally:
        celery.conf.task_always_eager = False


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
        second_factor: bool | None = None,
        vendor: str | None = None,
    ) -> UserRef:
        """``second_factor``: give the account an authenticator app (default: for the
        roles that must have one, :func:`needs_second_factor`). ``vendor``: the slug of a
        vendor admin's vendor (an existing vendor)."""
        n = next(counter)
        home = org.slug if org else (vendor or "council")
        email = email or f"{role.replace('_', '-')}-{n}@{home}.example"
        with app.app_context():
            vendor_id = None
            if vendor is not None:
                from portal.catalogue.selectors import vendor_by_slug

                vendor_id = vendor_by_slug(db.session, vendor).id
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
                vendor_id=vendor_id,
            )
            db.session.commit()
            assert isinstance(user, User)
            ref = UserRef(user.id, user.email, user.role, user.organisation_id)
            ref.password = password
        if needs_second_factor(role) if second_factor is None else second_factor:
            give_second_factor(app, ref.id)
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
    """Sign ``user`` in through the real sign-in form, and through the second step with
    a code from the test authenticator app when the account has one."""
    response = post_form(
        client, "/login", {"email": user.email, "password": password or user.password}
    )
    if response.status_code == 302 and response.headers["Location"].endswith(
        "/login/second-factor"
    ):
        response = second_step(client, user)
    return response


def second_step(client, user: UserRef, code: str | None = None):
    """Answer the second sign-in step with ``code`` (default: a current TOTP code)."""
    code = code or totp_code(client.application, user_id=user.id)
    return post_form(client, "/login/second-factor", {"code": code})


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


def _closed_before_sending(app: Any) -> Any:
    """The portal as a WSGI app whose responses are read whole and closed before the server
    writes a byte.

    Werkzeug's development server closes a response only after draining the request; when a
    browser hangs up mid-response (navigating away while a static file is sent) that drain
    raises too, the response's close() is skipped, and its open file is left to the garbage
    collector, whose ResourceWarning then fails whichever test is running. The pages a test
    server sends are small, so reading each whole costs nothing."""

    def closing(environ: dict[str, Any], start_response: Any) -> list[bytes]:
        response = app(environ, start_response)
        try:
            return [b"".join(response)]
        finally:
            if hasattr(response, "close"):
                response.close()

    return closing


def serve(app: Any) -> Any:
    """A threaded development server for the portal on 127.0.0.1 and a free port."""
    return make_server(
        "127.0.0.1", 0, _closed_before_sending(app), threaded=True, request_handler=_QuietHandler
    )


@pytest.fixture(scope="session")
def live_server(app) -> Iterator[str]:
    """The portal served on 127.0.0.1 and a free port (browser tests, Stripe webhooks);
    yields its base URL."""
    server = serve(app)
    thread = threading.Thread(target=server.serve_forever, name="portal-live-server", daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_port}"
    finally:
        server.shutdown()
        thread.join(timeout=10)
        server.server_close()
