"""Database plumbing: the declarative base, shared column types and time helpers.

Every model imports ``db``, ``Base`` helpers and column types from here, so the
naming convention (stable constraint names in migrations), UTC datetimes and
money columns are defined once.
"""

from __future__ import annotations

import datetime as dt
from typing import Annotated, Any

import sqlalchemy as sa
from flask_sqlalchemy import SQLAlchemy
from sqlalchemy import event
from sqlalchemy.engine import Engine
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

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


@event.listens_for(Engine, "begin")
def _sqlite_begin_immediate(conn: Any) -> None:
    """Start SQLite transactions with ``BEGIN IMMEDIATE``.

    SQLite has no row locks. A deferred transaction that read first and writes
    later fails outright if another writer committed in between; taking the
    write lock at BEGIN instead makes writers queue (up to the busy timeout), so
    read-check-write rules such as pool capacity hold as they do on PostgreSQL
    with ``SELECT … FOR UPDATE``.
    """
    if conn.dialect.name == "sqlite":
        conn.exec_driver_sql("BEGIN IMMEDIATE")


def is_postgres(session: Any) -> bool:
    """Whether the session's database is PostgreSQL (row locks are real there)."""
    return session.get_bind().dialect.name == "postgresql"
