"""Database plumbing: the declarative base, shared column types and time helpers.

Every model imports ``db``, ``Base`` helpers and column types from here, so the
naming convention (stable constraint names in migrations), UTC datetimes and
money columns are defined once.
"""

from __future__ import annotations

import datetime as dt
import time
from typing import Annotated, Any

import sqlalchemy as sa
from flask_sqlalchemy import SQLAlchemy
from sqlalchemy import event
from sqlalchemy.engine import Engine
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, scoped_session
from sqlalchemy.pool import Pool

NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


def now_utc() -> dt.datetime:
    """The current time, timezone-aware in UTC: the only clock the portal reads."""
    return dt.datetime.now(dt.UTC)


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


class TimestampMixin:
    """``created_at`` and ``updated_at`` columns kept in UTC."""

    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime(), default=now_utc, nullable=False)
    updated_at: Mapped[dt.datetime] = mapped_column(
        UTCDateTime(), default=now_utc, onupdate=now_utc, nullable=False
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
        deferred = conn.get_execution_options().get(READ_ONLY, False)
        conn.exec_driver_sql("BEGIN" if deferred else "BEGIN IMMEDIATE")


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
