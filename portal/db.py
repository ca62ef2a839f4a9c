"""Database plumbing: the declarative base, shared column types and time helpers.

Every model imports ``db``, ``Base`` helpers and column types from here, so the
naming convention (stable constraint names in migrations), UTC datetimes and
money columns are defined once.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import enum
import logging
import sqlite3
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Annotated, Any, ClassVar

import sqlalchemy as sa
from flask_sqlalchemy import SQLAlchemy
from sqlalchemy import event
from sqlalchemy.engine import Engine
from sqlalchemy.orm import (
    DeclarativeBase,
    Mapped,
    Session,
    declared_attr,
    mapped_column,
    scoped_session,
)
from sqlalchemy.pool import Pool

from portal.kernel.clock import now_utc
from portal.kernel.scope import Scope

NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class UTCDateTime(sa.types.TypeDecorator):
    """A timestamp stored in UTC and always returned timezone-aware.

    PostgreSQL keeps ``timestamptz``; SQLite has no zone, so values are stored as
    naive UTC and given their zone back on load. Naive input is refused: it is a
    bug to let a local wall-clock time into the database.
    """

    impl = sa.DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: dt.datetime | None, dialect: Any) -> dt.datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to a UTC column")
        value = value.astimezone(dt.UTC)
        if dialect.name == "sqlite":
            return value.replace(tzinfo=None)
        return value

    def process_result_value(self, value: dt.datetime | None, dialect: Any) -> dt.datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            return value.replace(tzinfo=dt.UTC)
        return value.astimezone(dt.UTC)


class Base(DeclarativeBase):
    """Declarative base with the naming convention."""

    metadata = sa.MetaData(naming_convention=NAMING_CONVENTION)


db = SQLAlchemy(model_class=Base)


def db_session() -> Session:
    """The current request's (or command's, or job's) session, typed as services take it.

    ``db.session`` is Flask-SQLAlchemy's scoped proxy; calling it gives the
    :class:`~sqlalchemy.orm.Session` of the current application context, which is
    what every service and selector is annotated with.
    """
    return db.session()


# Shared annotated column types.
intpk = Annotated[
    int, mapped_column(sa.BigInteger().with_variant(sa.Integer, "sqlite"), primary_key=True)
]
created_at_col = Annotated[
    dt.datetime, mapped_column(UTCDateTime(), default=now_utc, nullable=False)
]
money_minor = Annotated[int, mapped_column(sa.BigInteger, nullable=False)]
currency_code = Annotated[str, mapped_column(sa.String(3), nullable=False)]
BigIntId = sa.BigInteger().with_variant(sa.Integer, "sqlite")


def enum_column(enum_class: type[enum.StrEnum], length: int) -> sa.Enum:
    """A string enum kept as its values in a plain VARCHAR(``length``).

    No database enum and no CHECK constraint is added (the tables declare their own),
    so the column's database type is unchanged; Python sees the enum's members.
    """
    return sa.Enum(
        enum_class,
        native_enum=False,
        create_constraint=False,
        length=length,
        values_callable=lambda members: [member.value for member in members],
    )


class TimestampMixin:
    """``created_at`` and ``updated_at`` columns kept in UTC."""

    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime(), default=now_utc, nullable=False)
    updated_at: Mapped[dt.datetime] = mapped_column(
        UTCDateTime(), default=now_utc, onupdate=now_utc, nullable=False
    )


# ------------------------------------------------------------------ tenant-owned rows


@dataclass(frozen=True)
class TenantKey:
    """How a tenant-owned table's ``organisation_id`` column is declared.

    The defaults are the common case (``ON DELETE RESTRICT``, indexed); a model
    whose column differs says so in ``__tenant_key__`` so the schema stays what the
    migrations created.
    """

    ondelete: str = "RESTRICT"
    index: bool = True
    unique: bool = False
    primary_key: bool = False


def _tenant_column(key: TenantKey, *, nullable: bool) -> Any:
    return mapped_column(
        sa.ForeignKey("organisations.id", ondelete=key.ondelete),
        nullable=nullable,
        # An indexed, unique or primary-key column needs no index of its own.
        index=key.index and not key.unique and not key.primary_key or None,
        unique=key.unique or None,
        primary_key=key.primary_key,
        # Mixin columns come after the class's own; a key column goes first so a
        # composite primary key reads (organisation_id, ...) as the migrations made it.
        sort_order=-1 if key.primary_key else 0,
    )


class TenantMixin:
    """A table whose every row belongs to one organisation: ``organisation_id`` NOT NULL.

    Selectors of such rows take a :class:`portal.kernel.scope.Scope`; on PostgreSQL
    row-level security limits them to the transaction's organisation as well
    (:func:`tenant_tables` lists them for its policies).
    """

    __tenant_key__: ClassVar[TenantKey] = TenantKey()

    @declared_attr
    def organisation_id(cls) -> Mapped[int]:
        return _tenant_column(cls.__tenant_key__, nullable=False)


class MixedTenantMixin:
    """A table of one organisation's rows and the council's (``organisation_id`` NULL).

    Council staff, council and vendor API tokens, council-wide audit events have no
    organisation; they are visible in council scope only.
    """

    __tenant_key__: ClassVar[TenantKey] = TenantKey()

    @declared_attr
    def organisation_id(cls) -> Mapped[int | None]:
        return _tenant_column(cls.__tenant_key__, nullable=True)


def _table_name(mapper: Any) -> str:
    return str(mapper.local_table.name)


def tenant_tables() -> list[str]:
    """Names of the tables declared with :class:`TenantMixin` or :class:`MixedTenantMixin`.

    Sorted. Every model must be imported (``portal.models``) for the list to be complete.
    """
    return sorted(
        _table_name(mapper)
        for mapper in Base.registry.mappers
        if issubclass(mapper.class_, TenantMixin | MixedTenantMixin)
    )


def required_tenant_tables() -> list[str]:
    """Of :func:`tenant_tables`, those with NOT NULL ``organisation_id`` (:class:`TenantMixin`)."""
    return sorted(
        _table_name(mapper)
        for mapper in Base.registry.mappers
        if issubclass(mapper.class_, TenantMixin)
    )


@event.listens_for(Engine, "connect")
def _sqlite_pragmas(dbapi_connection: Any, connection_record: Any) -> None:
    """Turn on foreign keys, WAL and a busy timeout for SQLite connections."""
    module = type(dbapi_connection).__module__
    if not module.startswith("sqlite3"):
        return
    # Let SQLAlchemy emit BEGIN itself (see _sqlite_begin_immediate).
    dbapi_connection.isolation_level = None
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA busy_timeout=30000")
    cursor.close()


#: A pooled connection unused for this many seconds is checked before it is handed out.
PING_AFTER_IDLE_SECONDS = 10.0


@event.listens_for(Pool, "checkin")
def _note_idle_since(dbapi_connection: Any, connection_record: Any) -> None:
    connection_record.info["portal_idle_since"] = time.monotonic()


@event.listens_for(Pool, "checkout")
def _ping_after_idle(dbapi_connection: Any, connection_record: Any, connection_proxy: Any) -> None:
    """Check a connection that sat unused in the pool before handing it out.

    This replaces SQLAlchemy's ``pool_pre_ping``, which costs a round trip on
    every checkout (a sizeable share of a small API request). A connection the
    server dropped while it was idle (a restart, an idle timeout) is found here
    and replaced: raising ``DisconnectionError`` makes the pool discard it and
    connect afresh. A busy connection was used moments ago and goes out as is;
    if the server goes away under load, the failing request invalidates the pool.
    """
    idle_since = connection_record.info.get("portal_idle_since")
    if idle_since is None or time.monotonic() - idle_since < PING_AFTER_IDLE_SECONDS:
        return
    try:
        cursor = dbapi_connection.cursor()
        try:
            cursor.execute("SELECT 1")
        finally:
            cursor.close()
        dbapi_connection.rollback()
    except Exception as exc:  # any failure: the connection is unusable
        raise sa.exc.DisconnectionError(f"connection dropped while idle: {exc}") from exc


# ------------------------------------------------------------------ outages

log = logging.getLogger("portal.db")

#: What a 503 answer's ``Retry-After`` says while the database is unreachable.
RETRY_AFTER_SECONDS = 5

#: Seconds a new PostgreSQL connection may take before the attempt fails (unless the
#: database URL sets ``connect_timeout``): an unreachable server answers 503 promptly.
CONNECT_TIMEOUT_SECONDS = 5

# SQLSTATEs of a server going away or not yet taking connections: admin_shutdown
# (``pg_ctl stop``/restart), crash_shutdown, cannot_connect_now (starting up or
# shutting down). Class 08 (connection exceptions) is matched as a whole.
_UNAVAILABLE_SQLSTATES = frozenset({"57P01", "57P02", "57P03"})


def _driver_errors() -> tuple[type[BaseException], ...]:
    try:
        import psycopg
    except ImportError:  # SQLite-only installations
        return ()
    return (psycopg.OperationalError, psycopg.InterfaceError)


_DRIVER_ERRORS = _driver_errors()


def is_database_unavailable(error: BaseException) -> bool:
    """Whether ``error`` means the database cannot be reached, rather than a statement failed.

    True for a refused or timed-out connection, a server restarting or shutting down,
    a connection lost mid-request and a pool with no connection to give within its
    timeout; false for errors a statement earns itself (a constraint, a deadlock, a
    cancelled query, SQLite's "database is locked").
    """
    if isinstance(error, sa.exc.TimeoutError | sa.exc.DisconnectionError):
        return True
    if isinstance(error, sa.exc.DBAPIError):
        if error.connection_invalidated or isinstance(error, sa.exc.InterfaceError):
            return True
        if error.orig is None:
            return False
        error = error.orig
    if _DRIVER_ERRORS and isinstance(error, _DRIVER_ERRORS):
        if isinstance(error, _DRIVER_ERRORS[1]):
            return True
        sqlstate = getattr(error, "sqlstate", None)
        # No SQLSTATE: the client library's own failure (refused, timed out, closed).
        return sqlstate is None or sqlstate.startswith("08") or sqlstate in _UNAVAILABLE_SQLSTATES
    return False


# Another transaction holds what this one needs: SQLite's write lock, or PostgreSQL's
# lock_not_available, serialization_failure and deadlock_detected.
_BUSY_SQLSTATES = frozenset({"55P03", "40001", "40P01"})
_BUSY_SQLITE = ("database is locked", "database table is locked")


def is_database_busy(error: BaseException) -> bool:
    """Whether ``error`` means another transaction was in the way (try again), not a fault.

    SQLite's "database is locked" (a writer held the file past the busy timeout) and
    PostgreSQL's lock, serialization and deadlock failures: the transaction is rolled
    back whole, so the client may safely send the same request again.
    """
    if isinstance(error, sa.exc.DBAPIError) and error.orig is not None:
        error = error.orig
    if isinstance(error, sqlite3.OperationalError):
        return str(error).startswith(_BUSY_SQLITE)
    return getattr(error, "sqlstate", None) in _BUSY_SQLSTATES


class _Outage:
    """This process's view of the database: answering, or unreachable since when.

    The first failure of an outage logs one WARNING line and the first statement
    that succeeds afterwards on a connection made since then one INFO line, so a
    restart leaves two lines in the log, not a traceback per request. (A statement
    on an older connection may still finish while the server is shutting down;
    a connection made after the first failure is to a server that is back.) When
    the pool merely had no connection to give in time, any success ends it.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.since: float | None = None
        self._pool_timeout = False

    def failed(self, error: BaseException) -> None:
        with self._lock:
            if self.since is not None:
                return
            self.since = time.monotonic()
            self._pool_timeout = isinstance(error, sa.exc.TimeoutError)
        log.warning(
            "Database unreachable (%s); answering 503 until it is back", describe_error(error)
        )

    def answered(self, *, connected_at: float | None = None) -> None:
        """A statement succeeded on a connection made at ``connected_at`` (monotonic)."""
        if self.since is None:  # the common case: no lock, no work
            return
        with self._lock:
            since = self.since
            if since is None:
                return
            if not self._pool_timeout and (connected_at is None or connected_at <= since):
                return
            self.since = None
        log.info("Database answers again after %.1f s", time.monotonic() - since)


outage = _Outage()


def describe_error(error: BaseException) -> str:
    """A one-line account of a database error: its class and the first line of its message."""
    cause = error.orig if isinstance(error, sa.exc.DBAPIError) and error.orig else error
    message = str(cause).strip().splitlines()
    return f"{type(cause).__name__}: {message[0][:200]}" if message else type(cause).__name__


def remove_session(_error: BaseException | None = None) -> None:
    """End the request's session (a ``teardown_appcontext``), even on a dead connection.

    Closing rolls back the connection's transaction; when the server went away
    after the request's work was done, that rollback fails, and the error would
    turn an answered request into a 500. The connection is dropped instead (the
    outage noted once) and the session removed, so the next request starts clean.
    Registered after Flask-SQLAlchemy's own teardown, so it runs first and
    leaves that one nothing to close.
    """
    try:
        db.session.remove()
    except Exception as exc:
        if not is_database_unavailable(exc):
            raise
        outage.failed(exc)
        with contextlib.suppress(Exception):  # the connection is gone already
            db.session().invalidate()
        db.session.registry.clear()


@event.listens_for(Engine, "handle_error")
def _note_unavailable(context: Any) -> None:
    """Treat a server going away as a disconnect, and note the outage.

    psycopg's dialect calls an error a disconnect only once the connection is
    marked closed or broken; "terminating connection due to administrator
    command" arrives while it still looks open. Marking it a disconnect makes
    SQLAlchemy invalidate the connection and the pool's older ones, so requests
    after the restart get fresh connections instead of dead ones.
    """
    error = context.original_exception
    if context.is_disconnect or is_database_unavailable(error):
        if context.dialect.name == "postgresql":
            context.is_disconnect = True
        outage.failed(context.sqlalchemy_exception or error)


@event.listens_for(Pool, "connect")
def _note_connected(dbapi_connection: Any, connection_record: Any) -> None:
    connection_record.info["portal_connected_at"] = time.monotonic()


@event.listens_for(Engine, "after_cursor_execute")
def _note_answered(conn: Any, *args: Any) -> None:
    """A statement succeeded: if an outage was noted, it may be over."""
    if outage.since is not None:
        outage.answered(connected_at=conn.connection.info.get("portal_connected_at"))


@event.listens_for(Engine, "do_connect")
def _connect_timeout(dialect: Any, conn_rec: Any, cargs: Any, cparams: dict[str, Any]) -> None:
    """Bound how long connecting to an unreachable PostgreSQL server may take."""
    if dialect.name == "postgresql":
        cparams.setdefault("connect_timeout", CONNECT_TIMEOUT_SECONDS)


@event.listens_for(Engine, "begin")
def _sqlite_begin_immediate(conn: Any) -> None:
    """Start SQLite transactions with ``BEGIN IMMEDIATE``.

    SQLite has no row locks. A deferred transaction that read first and writes
    later fails outright if another writer committed in between; taking the
    write lock at BEGIN instead makes writers queue (up to the busy timeout), so
    read-check-write rules such as pool capacity hold as they do on PostgreSQL
    with ``SELECT … FOR UPDATE``. A transaction marked by :func:`read_only`
    begins deferred: it writes nothing that needs a rule checked.
    """
    if conn.dialect.name == "sqlite":
        options = conn.get_execution_options()
        if options.get(FOREIGN_ENGINE, False):  # kombu's queue file begins its own
            return
        conn.exec_driver_sql("BEGIN" if options.get(READ_ONLY, False) else "BEGIN IMMEDIATE")


#: Engine execution option marking an engine that is not the portal's own (the job queue's
#: SQLite file in development, portal.jobs): :func:`_sqlite_begin_immediate` leaves it alone.
FOREIGN_ENGINE = "portal_foreign_engine"


def is_postgres(session: Any) -> bool:
    """Whether the session's database is PostgreSQL (row locks are real there)."""
    return session.get_bind().dialect.name == "postgresql"


#: Connection execution option: this transaction only reads (see :func:`read_only`).
READ_ONLY = "portal_read_only"


def read_only(session: Any) -> None:
    """Run the session's next transaction as a read, for requests that change nothing.

    On PostgreSQL the statements run in autocommit: under READ COMMITTED each
    statement of a transaction sees its own snapshot anyway, so a read sees the
    same rows, without the round trips for ``BEGIN`` and ``ROLLBACK``. On SQLite
    the transaction begins deferred instead of ``IMMEDIATE``: it takes no write
    lock, so in WAL mode it neither waits for writers nor makes them wait.
    A small write is still possible (an API token's time of last use): it
    commits at once on PostgreSQL, and on SQLite it may find that another writer
    came first (``OperationalError``), which the caller must be ready for.
    Does nothing once the session's transaction has begun.
    """
    if isinstance(session, scoped_session):
        session = session()
    if session.in_transaction():
        return
    if is_postgres(session):
        session.connection(execution_options={"isolation_level": "AUTOCOMMIT"})
    else:
        session.connection(execution_options={READ_ONLY: True})


# ------------------------------------------------------------------ row-level security

#: ``session.info`` key of the scope the session's transactions run in (:func:`bind_scope`).
SCOPE_KEY = "portal_scope"
#: Connection-record flag: the scope was set for the connection (autocommit); reset at checkin.
_SESSION_LEVEL_KEY = "portal_scope_session_level"
#: ``session.info`` key: the scope applied to the session's current connection and transaction.
_APPLIED_KEY = "portal_scope_applied"

_SET_SCOPE = sa.text(
    "SELECT set_config('portal.scope', :scope, :local), "
    "set_config('portal.organisation_id', :organisation_id, :local)"
)
#: The same, on a connection that switches to :data:`COUNCIL_ROLE` for council-wide work.
_SET_SCOPE_AND_ROLE = sa.text(
    "SELECT set_config('portal.scope', :scope, :local), "
    "set_config('portal.organisation_id', :organisation_id, :local), "
    "set_config('role', :role, :local)"
)
_RESET_SCOPE = (
    "SELECT set_config('portal.scope', '', false), "
    "set_config('portal.organisation_id', '', false), set_config('role', 'none', false)"
)

#: The role council-wide transactions run as where the login role may switch to it
#: (migration 0032): its policy ``council_scope`` is ``USING (true)``, so the planner sees
#: council-wide queries unfiltered instead of guessing at ``portal.scope``.
COUNCIL_ROLE = "portal_council"
#: Connection-record flag: whether the connection's login role switches to COUNCIL_ROLE.
_SWITCHES_KEY = "portal_switches_to_council_role"
_CAN_SWITCH = sa.text(
    "SELECT CASE WHEN to_regrole(:role) IS NULL THEN false ELSE"
    " pg_has_role(session_user, :role, 'MEMBER')"
    " AND NOT pg_has_role(session_user, :role, 'USAGE')"
    " AND NOT r.rolsuper AND NOT r.rolbypassrls END"
    " FROM pg_roles r WHERE r.rolname = session_user"
)


def _switches_role(connection: Any) -> bool:
    """Whether ``connection`` runs council-wide work as :data:`COUNCIL_ROLE` (asked once per
    connection). Only a login role held by row-level security, a member of the role through
    ``portal_council_members`` (so it may switch to it, and does not hold it otherwise), does:
    a superuser or the tables' owner bypasses the policies anyway, and a login role without
    the grant works as before, the planner guessing at ``portal.scope``."""
    info = connection.info
    if _SWITCHES_KEY not in info:
        info[_SWITCHES_KEY] = bool(connection.scalar(_CAN_SWITCH, {"role": COUNCIL_ROLE}))
    return bool(info[_SWITCHES_KEY])


def _plain_session(session: Any) -> Session:
    return session() if isinstance(session, scoped_session) else session


def _settings(scope: Scope | None) -> dict[str, str]:
    """``portal.scope`` and ``portal.organisation_id`` for ``scope`` (None: no rows at all)."""
    if scope is None:
        return {"scope": "", "organisation_id": ""}
    if scope.is_council:
        return {"scope": "council", "organisation_id": ""}
    return {"scope": "organisation", "organisation_id": str(scope.organisation_id)}


def _apply_scope(session: Session, connection: Any, scope: Scope | None) -> None:
    """Set the PostgreSQL settings the row-level security policies read, on ``connection``
    (and, council-wide, the role :data:`COUNCIL_ROLE` where the connection switches to it).

    Inside a transaction they are transaction-local (``set_config(…, true)``) and vanish at
    its end. A connection in autocommit (:func:`read_only`) has no transaction to hold them,
    so they are set for the connection and reset when it goes back to the pool.
    """
    if connection.dialect.name != "postgresql":
        return
    dbapi_connection = connection.connection.dbapi_connection
    autocommit = bool(getattr(dbapi_connection, "autocommit", False))
    if scope is None:
        was_set = (
            connection.info.get(_SESSION_LEVEL_KEY, False)
            if autocommit
            else session.info.get(_APPLIED_KEY) is not None
        )
        if not was_set:
            return  # nothing set: nothing to clear (a checked-in connection is clear)
    params: dict[str, Any] = {**_settings(scope), "local": not autocommit}
    if _switches_role(connection):
        params["role"] = COUNCIL_ROLE if scope is not None and scope.is_council else "none"
        connection.execute(_SET_SCOPE_AND_ROLE, params)
    else:
        connection.execute(_SET_SCOPE, params)
    if autocommit:
        connection.info[_SESSION_LEVEL_KEY] = True
    session.info[_APPLIED_KEY] = scope


def _open_connection(session: Session) -> Any | None:
    """The connection the session's open transaction holds, or None (none acquired yet)."""
    transaction = session.get_transaction()
    if transaction is None or not transaction.is_active:
        return None  # none, or ending (an after_commit hook): the next one applies the scope
    connections = getattr(transaction, "_connections", None) or {}
    for entry in connections.values():
        return entry[0]
    return None


def bind_scope(session: Any, scope: Scope | None) -> None:
    """Run ``session``'s work in ``scope``: its rows only, on PostgreSQL, by row-level security.

    The scope is kept in ``session.info`` and set (``portal.scope``, ``portal.organisation_id``)
    at the start of every transaction the session begins, and at once on the transaction that
    is open. ``None`` unbinds: no setting, no rows (the policies fail closed). On SQLite it is
    only recorded; there the selectors' own :class:`Scope` filters are the isolation.
    """
    session = _plain_session(session)
    session.info[SCOPE_KEY] = scope
    connection = _open_connection(session)
    if connection is not None and session.info.get(_APPLIED_KEY, None) != scope:
        _apply_scope(session, connection, scope)


def scope_to_send(connection: Any, scope: Scope) -> tuple[sa.TextClause, dict[str, Any]]:
    """For a caller that sends the scope's statement itself, pipelined with its first query
    (the lean seat path: :mod:`portal.api.seat_fastpath`): the statement and values that set
    ``scope`` (and the role, where ``connection`` switches) for the transaction of
    ``connection``, a PostgreSQL connection of ``session`` bound to no scope yet. Once it
    is sent, :func:`scope_sent` records it, as :func:`bind_scope` would have."""
    params: dict[str, Any] = {**_settings(scope), "local": True}
    if _switches_role(connection):
        params["role"] = COUNCIL_ROLE if scope.is_council else "none"
        return _SET_SCOPE_AND_ROLE, params
    return _SET_SCOPE, params


def scope_sent(session: Session, scope: Scope) -> None:
    """``session``'s transaction runs in ``scope``: :func:`scope_to_send`'s statement was sent."""
    session.info[SCOPE_KEY] = scope
    session.info[_APPLIED_KEY] = scope


def bound_scope(session: Any) -> Scope | None:
    """The scope :func:`bind_scope` gave ``session`` (None: none, no rows on PostgreSQL)."""
    return _plain_session(session).info.get(SCOPE_KEY)


@contextlib.contextmanager
def council_wide(session: Any) -> Iterator[Session]:
    """Explicit council-wide work inside whatever scope ``session`` has; restored afterwards.

    For the lookups that must see every organisation's rows before an actor is known (a
    session token, an API or SCIM token, an email signing in, an invitation), and for rules
    that span organisations (a pool's capacity, the waitlist, the audit chain). Use it
    around exactly that work::

        with council_wide(session):
            free = capacity - reserved_seats(session, product_id)

    Pending changes are flushed on the way in (checked in the scope that made them) and on
    the way out (written while council-wide), so none slips into the other scope.
    """
    session = _plain_session(session)
    previous = session.info.get(SCOPE_KEY)
    # Changes made before are checked in their own scope; changes made inside are written
    # before the scope narrows again (a flush is no work when nothing is pending).
    if session.new or session.dirty or session.deleted:
        session.flush()
    bind_scope(session, Scope.council())
    try:
        yield session
        if session.is_active and (session.new or session.dirty or session.deleted):
            session.flush()
    finally:
        if session.is_active:
            bind_scope(session, previous)
        else:  # a failed flush: the transaction is gone; the next one starts from ``previous``
            session.info[SCOPE_KEY] = previous


@event.listens_for(Session, "after_begin")
def _scope_after_begin(session: Session, transaction: Any, connection: Any) -> None:
    """Every transaction of a session starts in the session's scope (:func:`bind_scope`)."""
    session.info.pop(_APPLIED_KEY, None)
    _apply_scope(session, connection, session.info.get(SCOPE_KEY))


@event.listens_for(Pool, "checkin")
def _reset_session_level_scope(dbapi_connection: Any, connection_record: Any) -> None:
    """A connection whose scope was set for the connection goes back to the pool without it."""
    if dbapi_connection is None or not connection_record.info.pop(_SESSION_LEVEL_KEY, False):
        return
    try:
        cursor = dbapi_connection.cursor()
        try:
            cursor.execute(_RESET_SCOPE)
        finally:
            cursor.close()
        # The pool has turned autocommit off again by now: end the transaction the reset
        # began (a session-level setting outlives it), so the connection goes back idle.
        dbapi_connection.commit()
    except Exception as exc:  # cannot be sure it is clear: never hand it out again
        connection_record.invalidate(exc)


def database_role_isolates(engine: Engine) -> bool:
    """Whether the role ``engine`` connects as is held by row-level security.

    True on SQLite (nothing to bypass) and on PostgreSQL for a role that is not a
    superuser, has no BYPASSRLS, owns no table under row-level security (the tables
    force it, but an owner could switch it off) and does not hold :data:`COUNCIL_ROLE`'s
    privileges (granted it directly instead of through the NOINHERIT
    ``portal_council_members``, its policy would show every organisation's rows to every
    transaction). Production's ``/readyz`` asks it (README: "PostgreSQL roles").
    """
    if engine.dialect.name != "postgresql":
        return True
    with engine.connect() as connection:
        row = connection.execute(
            sa.text(
                "SELECT r.rolsuper OR r.rolbypassrls AS bypasses, EXISTS ("
                "  SELECT 1 FROM pg_class c WHERE c.relrowsecurity"
                "  AND pg_has_role(session_user, c.relowner, 'USAGE')) AS owns, "
                "  CASE WHEN to_regrole(:role) IS NULL THEN false"
                "  ELSE pg_has_role(session_user, :role, 'USAGE') END AS council_always "
                "FROM pg_roles r WHERE r.rolname = session_user"
            ),
            {"role": COUNCIL_ROLE},
        ).one()
    return not (row.bypasses or row.owns or row.council_always)
