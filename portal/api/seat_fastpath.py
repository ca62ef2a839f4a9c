"""A lean path for the API's seat assignment and release (issue 13).

``POST /api/v1/subscriptions/{id}/seats`` and ``DELETE …/seats/{email}`` through
Flask, flask-openapi3, Flask-Limiter and the ORM cost 10–20 times the CPU of one
bare insert (docs/PERFORMANCE.md, "Seat assign + release: where the CPU goes"). This
WSGI middleware answers the common case before Flask sees the request, with a few
Core statements compiled once, in one transaction of an ORM session of its own
(so the session's hooks run as on the Flask path: the row-level security scope,
the provisioning outbox's delivery jobs at commit), and hands everything else to
Flask unchanged.

It answers only when the answer is certain to be the Flask view's:

* a ``Bearer`` council or organisation token that is live (not revoked or expired,
  its organisation active) and used within the last minute (no time of use to write),
  no ``Idempotency-Key``, no trusted proxies configured (the audit's address is then
  the peer's), a canonical path and, for an assignment, a JSON body that is exactly
  ``{"user_email": "…"}`` with a lower-case address;
* **assign**: the subscription is in the token's scope, active and has a free seat
  (``subscriptions.assigned < quantity``, counted in the same ``UPDATE``:
  invariant 2), the person is an active account of its organisation without a
  password (so no mail is due) and holds no seat of the product (the partial unique
  index, ``ON CONFLICT DO NOTHING``);
* **release**: the person holds an active seat of the subscription in scope.

Anything else (an unknown person to invite, a full subscription, a 404, a 409, a
database error, the token's rate limit reached) rolls back and goes to Flask, which
answers it and writes what it writes. What an answer writes is what the services
write: the seat, the subscription's counter, the approved seat request, the audit
event linked to the chain (its head row locked, as :func:`portal.audit.services.
audit_record` does), and the signals ``seat_assigned`` / ``seat_released`` sent with
the seat (a persistent :class:`~portal.seats.models.SeatAssignment` of the session)
so provisioning writes its outbox rows in the same transaction. The token's rate
limit is counted as the entitlement check's fast path counts it
(:class:`portal.api.fastpath.Reservations`), once, just before the commit.
tests/api/test_seat_fastpath.py asks both paths the same questions.

On PostgreSQL the statements go in two round trips (psycopg's pipeline mode): the
transaction's start, its scope, the token, provisioning's settings and what the audit
event needs (the subscription's organisation and product, the new seat's id from its
sequence; for a release, the person's seat), then the seat's statement, the audit event
(linked to the chain's head in the statement that locks it, the hash taken by the
database over :func:`portal.audit.chain.canonical_around_link`'s parts) and the commit.
Nothing of this process runs while the subscription's row and the chain's head are
locked, and every audited change of the council queues on that head. A statement that
writes nothing fails (a division by zero), so the transaction ends with nothing written
and Flask answers. When provisioning has a channel for the product's vendor, the seat
signals are sent after the seat is written and before the event, as on SQLite (one
round trip more, and the outbox's rows flushed).
"""

from __future__ import annotations

import contextlib
import fcntl
import io
import json
import logging
import os
import re
import threading
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, cast

import sqlalchemy as sa
from flask import Flask
from flask.json.provider import DefaultJSONProvider
from psycopg.errors import DivisionByZero
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session
from sqlalchemy.orm.session import make_transient_to_detached

from portal.api.auth import COUNCIL, ORGANISATION, ROLE_OF_SCOPE
from portal.api.fastpath import Reservations, StartResponse, TokenLimit, WSGIApp
from portal.api.models import ApiToken
from portal.api.services import LAST_USED_RESOLUTION, TOKEN_START
from portal.api.subscriptions import SeatOut
from portal.audit import chain
from portal.audit.models import AuditChainHead, AuditEvent
from portal.catalogue.models import Product
from portal.db import bind_scope, db, read_only, scope_sent, scope_to_send
from portal.identity.models import User
from portal.identity.security import token_digest
from portal.kernel.actor import Actor
from portal.kernel.clock import now_utc
from portal.kernel.scope import Scope
from portal.observability import ENVIRON_ACTOR, ENVIRON_ENDPOINT, observe_request
from portal.provisioning.outbox import CONFIGURED, remember_configured, writes_nothing_for
from portal.seats import counts
from portal.seats.models import SeatAssignment, SeatRequest, Subscription
from portal.security import is_production, response_headers
from portal.signals import seat_assigned, seat_released
from portal.tenancy.models import Organisation

log = logging.getLogger(__name__)

ASSIGN_PATH = re.compile(r"/api/v1/subscriptions/([1-9][0-9]{0,17})/seats")
RELEASE_PATH = re.compile(r"/api/v1/subscriptions/([1-9][0-9]{0,17})/seats/([^/]{3,254})")
#: Addresses this path takes as they are (anything else goes to Flask's validation).
PLAIN_EMAIL = re.compile(r"[a-z0-9._+\-]{1,64}@[a-z0-9\-]+(\.[a-z0-9\-]+)+")
#: The largest assignment body read here (``{"user_email": …}`` of 254 characters).
MAX_BODY = 512

_token = cast(sa.Table, ApiToken.__table__)
_organisation = cast(sa.Table, Organisation.__table__)
_subscription = cast(sa.Table, Subscription.__table__)
_seat = cast(sa.Table, SeatAssignment.__table__)
_user = cast(sa.Table, User.__table__)
_product = cast(sa.Table, Product.__table__)
_request = cast(sa.Table, SeatRequest.__table__)
_event = cast(sa.Table, AuditEvent.__table__)
_head = cast(sa.Table, AuditChainHead.__table__)

TOKEN = (
    sa.select(
        _token.c.scope,
        _token.c.organisation_id,
        _token.c.prefix,
        _token.c.revoked_at,
        _token.c.expires_at,
        _token.c.last_used_at,
        _organisation.c.status.label("organisation_status"),
    )
    .select_from(_token.outerjoin(_organisation, _organisation.c.id == _token.c.organisation_id))
    .where(_token.c.token_hash == sa.bindparam("token_hash"))
)

#: The SKU of a seat's product (for the audit event's label), returned with the seat. Written
#: out: in a RETURNING clause the seat's columns must be named with their table's name.
_SKU = sa.literal_column(
    "(SELECT products.sku FROM products WHERE products.id = seat_assignments.product_id)",
    type_=sa.String,
).label("sku")


def _in_scope(organisation_column: Any) -> Any:
    """``organisation_id = :scope_org``, or true when ``:scope_org`` is NULL (council)."""
    scope_org = sa.bindparam("scope_org", type_=sa.BigInteger)
    return sa.or_(scope_org.is_(None), organisation_column == scope_org)


#: The subscription's time of change (its ``onupdate``, given here: nothing is run per row).
_UPDATED_AT = sa.bindparam("b_updated_at", type_=_subscription.c.updated_at.type)

#: One seat of the subscription taken if one is free (invariant 2: the count of active
#: seats and the check in one statement, on the row every seat change of it queues on).
TAKE = (
    sa.update(_subscription)
    .where(
        _subscription.c.id == sa.bindparam("subscription_id"),
        _subscription.c.status == "active",
        _subscription.c.assigned < _subscription.c.quantity,
    )
    .values(assigned=_subscription.c.assigned + 1, updated_at=_UPDATED_AT)
    .returning(_subscription.c.id)
)

#: One seat of the subscription given back (the seat was released in this transaction).
GIVE_BACK = (
    sa.update(_subscription)
    .where(_subscription.c.id == sa.bindparam("subscription_id"))
    .values(assigned=_subscription.c.assigned - 1, updated_at=_UPDATED_AT)
    .returning(_subscription.c.id)
)


def _insert_seat(dialect: str) -> Any:
    """The person's new seat of a live subscription in scope: an active account of its
    organisation, without a password, holding no seat of the product (the partial unique
    index; a conflict inserts nothing). The capacity is :data:`TAKE`'s, run just before."""
    insert = postgresql.insert if dialect == "postgresql" else sqlite.insert
    person = (
        sa.select(
            _subscription.c.organisation_id,
            _subscription.c.id,
            _subscription.c.product_id,
            _user.c.id,
            sa.bindparam("b_now", type_=_seat.c.assigned_at.type),
        )
        .select_from(
            _subscription.join(_user, _user.c.organisation_id == _subscription.c.organisation_id)
        )
        .where(
            _subscription.c.id == sa.bindparam("b_subscription_id", type_=sa.BigInteger),
            _subscription.c.status == "active",
            _in_scope(_subscription.c.organisation_id),
            _user.c.email == sa.bindparam("b_email"),
            _user.c.is_active.is_(True),
            _user.c.password_hash.is_(None),
        )
    )
    return (
        insert(_seat)
        .from_select(
            ["organisation_id", "subscription_id", "product_id", "user_id", "assigned_at"], person
        )
        .on_conflict_do_nothing(
            index_elements=[_seat.c.user_id, _seat.c.product_id],
            index_where=_seat.c.released_at.is_(None),
        )
        .returning(
            _seat.c.id,
            _seat.c.organisation_id,
            _seat.c.product_id,
            _seat.c.user_id,
            _seat.c.assigned_at,
            _SKU,
        )
    )


def _seat_statement(sql: str) -> Any:
    """A PostgreSQL statement of this path written out (a data-modifying WITH): its values
    (the time, the subscription, the token's organisation or NULL, the email) and the seat
    it returns, with its product's SKU."""
    return (
        sa.text(sql)
        .bindparams(
            sa.bindparam("b_now", type_=_seat.c.assigned_at.type),
            sa.bindparam("b_subscription_id", type_=sa.BigInteger),
            sa.bindparam("scope_org", type_=sa.BigInteger),
            sa.bindparam("b_email", type_=sa.String),
        )
        .columns(
            _seat.c.id,
            _seat.c.organisation_id,
            _seat.c.product_id,
            _seat.c.user_id,
            _seat.c.assigned_at,
            sa.column("sku", sa.String),
        )
    )


#: The answer of a PostgreSQL statement of this path: the seat's row with its product's SKU,
#: or, for one that only has to fail when it wrote nothing, a division by zero.
_SEAT_ROW = """SELECT id, organisation_id, product_id, user_id, assigned_at,
       (SELECT products.sku FROM products WHERE products.id = {cte}.product_id) AS sku
FROM {cte}"""
_OR_FAIL = "SELECT 1 / count(*) AS written FROM {cte}"
_RETURNING_SEAT = """RETURNING seat_assignments.id, seat_assignments.organisation_id,
              seat_assignments.product_id, seat_assignments.user_id,
              seat_assignments.assigned_at"""


def _assign_sql(*, seat_id: bool, answer: str) -> str:
    """PostgreSQL, in one statement: a seat of the subscription taken if one is free (the
    counter's ``UPDATE``, which locks the subscription's row first, as the services'
    ``FOR UPDATE`` does), then the seat (with the id ``:b_seat_id`` if ``seat_id``), then
    the answer to the person's pending request and the product's count of seats
    (:mod:`portal.seats.counts`); ``answer`` reads the CTE ``seat``. The seat
    is inserted only from the row the counter's ``UPDATE`` returned, so nothing is written
    before the subscription's lock is held (no deadlock with the services)."""
    return f"""
WITH taken AS (
    UPDATE subscriptions SET assigned = assigned + 1, updated_at = :b_now
    WHERE id = :b_subscription_id AND status = 'active' AND assigned < quantity
    RETURNING id, organisation_id, product_id
), seat AS (
    INSERT INTO seat_assignments
        ({"id, " if seat_id else ""}organisation_id, subscription_id, product_id, user_id,
         assigned_at)
    SELECT {":b_seat_id, " if seat_id else ""}taken.organisation_id, taken.id,
           taken.product_id, users.id, :b_now
    FROM taken JOIN users ON users.organisation_id = taken.organisation_id
    WHERE (CAST(:scope_org AS BIGINT) IS NULL
           OR taken.organisation_id = CAST(:scope_org AS BIGINT))
      AND users.email = :b_email AND users.is_active AND users.password_hash IS NULL
    ON CONFLICT (user_id, product_id) WHERE released_at IS NULL DO NOTHING
    {_RETURNING_SEAT}
), approved AS (
    UPDATE seat_requests
    SET status = 'approved', decided_by_id = NULL, decided_at = :b_now
    FROM seat
    WHERE seat_requests.organisation_id = seat.organisation_id
      AND seat_requests.user_id = seat.user_id
      AND seat_requests.product_id = seat.product_id
      AND seat_requests.status = 'pending'
), counted AS (
    INSERT INTO product_seat_counts (product_id, reserved, waiting, assigned)
    SELECT seat.product_id, 0, 0, 1 FROM seat
)
{answer.format(cte="seat")}
"""  # noqa: S608 (every piece is this module's constant text; the values are bound)


def _release_sql(*, seat: str, answer: str) -> str:
    """PostgreSQL, in one statement: the subscription's counter given back (its row locked
    first, as the services lock it first), then the active seat ``seat`` (a condition on
    ``seat_assignments``) released, in the token's scope, and the product's count of seats;
    ``answer`` reads the CTE
    ``released``. No seat: nothing released, and the counter must be rolled back."""
    return f"""
WITH given AS (
    UPDATE subscriptions SET assigned = assigned - 1, updated_at = :b_now
    WHERE id = :b_subscription_id
    RETURNING id
), released AS (
    UPDATE seat_assignments
    SET released_at = :b_now, release_reason = 'released'
    FROM given
    WHERE seat_assignments.subscription_id = given.id
      AND seat_assignments.released_at IS NULL
      AND (CAST(:scope_org AS BIGINT) IS NULL
           OR seat_assignments.organisation_id = CAST(:scope_org AS BIGINT))
      AND {seat}
    {_RETURNING_SEAT}
), counted AS (
    INSERT INTO product_seat_counts (product_id, reserved, waiting, assigned)
    SELECT released.product_id, 0, 0, -1 FROM released
)
{answer.format(cte="released")}
"""  # noqa: S608 (every piece is this module's constant text; the values are bound)


#: The person's new seat, returned (no seat written: no row, the caller rolls back).
ASSIGN_WITH_REQUEST = _seat_statement(_assign_sql(seat_id=False, answer=_SEAT_ROW))

#: The person's pending request for the product is answered by the seat.
APPROVE_REQUEST = (
    sa.update(_request)
    .where(
        _request.c.organisation_id == sa.bindparam("b_organisation_id"),
        _request.c.user_id == sa.bindparam("b_user_id"),
        _request.c.product_id == sa.bindparam("b_product_id"),
        _request.c.status == "pending",
    )
    .values(
        status="approved",
        decided_by_id=None,
        decided_at=sa.bindparam("b_now", type_=_request.c.decided_at.type),
    )
)

#: The person's active seat of the subscription, released.
RELEASE = (
    sa.update(_seat)
    .where(
        _seat.c.subscription_id == sa.bindparam("b_subscription_id"),
        _seat.c.released_at.is_(None),
        _in_scope(_seat.c.organisation_id),
        _seat.c.user_id
        == sa.select(_user.c.id).where(_user.c.email == sa.bindparam("b_email")).scalar_subquery(),
    )
    .values(
        released_at=sa.bindparam("b_now", type_=_seat.c.released_at.type), release_reason="released"
    )
    .returning(
        _seat.c.id,
        _seat.c.organisation_id,
        _seat.c.product_id,
        _seat.c.user_id,
        _seat.c.assigned_at,
        _SKU,
    )
)

#: The person's active seat released, returned (none: no row, the caller rolls back).
RELEASE_WITH_COUNTER = _seat_statement(
    _release_sql(
        seat="seat_assignments.user_id = (SELECT users.id FROM users WHERE users.email = :b_email)",
        answer=_SEAT_ROW,
    )
)

# ---- PostgreSQL in two round trips (no receiver writes for the product's vendor): what the
# event needs is read with the token, before any lock; the writes, each statement failing
# (a division by zero) when it writes nothing, go with the event and the commit.


def _one_trip(sql: str, *extra: sa.BindParameter[Any]) -> Any:
    return (
        sa.text(sql)
        .bindparams(
            sa.bindparam("b_now", type_=_seat.c.assigned_at.type),
            sa.bindparam("b_subscription_id", type_=sa.BigInteger),
            sa.bindparam("scope_org", type_=sa.BigInteger),
            sa.bindparam("b_seat_id", type_=sa.BigInteger),
            *extra,
        )
        .columns(sa.column("written", sa.Integer))
    )


#: The subscription's organisation and product (they never change), the product's SKU and
#: vendor, and the new seat's id, taken from its sequence now.
ASSIGN_FACTS = (
    sa.text(
        """
SELECT subscriptions.organisation_id, subscriptions.product_id, products.sku,
       products.vendor_id, nextval('seat_assignments_id_seq') AS seat_id
FROM subscriptions JOIN products ON products.id = subscriptions.product_id
WHERE subscriptions.id = :b_subscription_id
"""
    )
    .bindparams(sa.bindparam("b_subscription_id", type_=sa.BigInteger))
    .columns(
        sa.column("organisation_id", sa.BigInteger),
        sa.column("product_id", sa.BigInteger),
        sa.column("sku", sa.String),
        sa.column("vendor_id", sa.BigInteger),
        sa.column("seat_id", sa.BigInteger),
    )
)

#: The person's active seat of the subscription (unlocked: the release checks it again).
RELEASE_FACTS = (
    sa.text(
        """
SELECT seat_assignments.id AS seat_id, seat_assignments.organisation_id,
       seat_assignments.product_id, seat_assignments.assigned_at, products.sku,
       products.vendor_id
FROM seat_assignments JOIN products ON products.id = seat_assignments.product_id
WHERE seat_assignments.subscription_id = :b_subscription_id
  AND seat_assignments.released_at IS NULL
  AND seat_assignments.user_id = (SELECT users.id FROM users WHERE users.email = :b_email)
"""
    )
    .bindparams(
        sa.bindparam("b_subscription_id", type_=sa.BigInteger),
        sa.bindparam("b_email", type_=sa.String),
    )
    .columns(
        sa.column("seat_id", sa.BigInteger),
        sa.column("organisation_id", sa.BigInteger),
        sa.column("product_id", sa.BigInteger),
        _seat.c.assigned_at,
        sa.column("sku", sa.String),
        sa.column("vendor_id", sa.BigInteger),
    )
)

#: :data:`ASSIGN_WITH_REQUEST` with the seat's id given, failing when no seat is written.
ASSIGN_OR_FAIL = _one_trip(
    _assign_sql(seat_id=True, answer=_OR_FAIL), sa.bindparam("b_email", type_=sa.String)
)

#: :data:`RELEASE_WITH_COUNTER` for the seat :data:`RELEASE_FACTS` found, failing when it is
#: no longer active (released meanwhile) or not in the token's scope.
RELEASE_OR_FAIL = _one_trip(_release_sql(seat="seat_assignments.id = :b_seat_id", answer=_OR_FAIL))

HEAD = sa.select(_head.c.seq, _head.c.hash).where(_head.c.id == 1).with_for_update()
MOVE_HEAD = (
    sa.update(_head)
    .where(_head.c.id == 1)
    .values(seq=sa.bindparam("b_seq", type_=sa.BigInteger), hash=sa.bindparam("b_hash"))
)
_EVENT_FIELDS = (*chain.HASHED_FIELDS, "hash")
ADD_EVENT = sa.insert(_event).values(
    {name: sa.bindparam(f"b_{name}", type_=_event.c[name].type) for name in _EVENT_FIELDS}
)

#: The event's own fields (its link, ``seq`` and ``prev_hash``, and ``hash`` come from the head).
_UNLINKED = tuple(name for name in chain.HASHED_FIELDS if name not in ("seq", "prev_hash"))

#: PostgreSQL, in one statement: the chain's head locked and read, the event linked to it
#: (its hash taken by the database over :func:`portal.audit.chain.canonical_around_link`'s
#: parts around the head's hash and the next number: the same bytes as ``canonical``) and
#: inserted, the head moved to it. No head moved (a fresh chain): a division by zero, so the
#: transaction fails and Flask answers. No round trip between the head's lock and the event
#: (the head is held only for this statement and the commit, which follows it unwaited).
CHAIN_EVENT = (
    sa.text(
        f"""
WITH head AS (
    SELECT audit_chain_head.seq + 1 AS seq, audit_chain_head.hash AS prev_hash
    FROM audit_chain_head WHERE audit_chain_head.id = 1 FOR UPDATE
), event AS (
    INSERT INTO audit_events ({", ".join(_UNLINKED)}, seq, prev_hash, hash)
    SELECT {", ".join(f":b_{name}" for name in _UNLINKED)}, head.seq, head.prev_hash,
           encode(sha256(convert_to(:b_link_before || head.prev_hash || :b_link_between
                                    || CAST(head.seq AS TEXT) || :b_link_after, 'UTF8')), 'hex')
    FROM head
    RETURNING audit_events.seq, audit_events.hash
), moved AS (
    UPDATE audit_chain_head SET seq = event.seq, hash = event.hash
    FROM event WHERE audit_chain_head.id = 1
    RETURNING audit_chain_head.seq
)
SELECT 1 / count(*) AS linked FROM moved
"""  # noqa: S608 (the names are the model's columns; every value is bound, and cast to
        # its column's type by the psycopg dialect)
    )
    .bindparams(
        *(sa.bindparam(f"b_{name}", type_=_event.c[name].type) for name in _UNLINKED),
        *(sa.bindparam(f"b_link_{part}", type_=sa.Text) for part in ("before", "between", "after")),
    )
    .columns(sa.column("linked", sa.Integer))
)


class _Compiled:
    """A statement compiled once for a dialect, run on the DB-API cursor of the session's
    connection (inside its transaction). SQLAlchemy still provides the SQL, the values it
    binds itself, each value's conversion (``UTCDateTime``, JSON) and each returned
    column's; what is skipped is its per-execution work, about as much as the statement.
    """

    def __init__(self, statement: Any, dialect: sa.Dialect) -> None:
        compiled = statement.compile(dialect=dialect)
        if compiled.insert_prefetch or compiled.update_prefetch:  # defaults run per execution
            raise ValueError(f"give every column's value: {compiled.string}")
        self.sql = compiled.string
        self.defaults = dict(compiled.params)
        self.order = compiled.positiontup if dialect.positional else None
        self.bind = dict(compiled._bind_processors)  # noqa: SLF001 (the values' conversions)
        if isinstance(statement, sa.Select):
            columns = list(statement.selected_columns)
        elif isinstance(statement, sa.TextClause):  # text without .columns(): none read back
            columns = []
        else:
            columns = list(statement.exported_columns)
        self.names = [str(column.key) for column in columns]
        self.convert = [
            column.type.dialect_impl(dialect).result_processor(dialect, None) for column in columns
        ]

    def run(self, cursor: Any, values: dict[str, Any]) -> dict[str, Any] | None:
        """The statement's first row (or None); every row is read."""
        self.send(cursor, values)
        rows = self.rows(cursor)
        return rows[0] if rows else None

    def send(self, cursor: Any, values: dict[str, Any]) -> None:
        """Execute the statement; in psycopg's pipeline mode, queue it (nothing is waited for
        until a row is read, the pipeline synced or the transaction committed)."""
        params = {**self.defaults, **values}
        for name, process in self.bind.items():
            if name in params:
                params[name] = process(params[name])
        cursor.execute(
            self.sql, tuple(params[name] for name in self.order) if self.order else params
        )

    def rows(self, cursor: Any) -> list[dict[str, Any]]:
        """The rows of the statement last sent on ``cursor``."""
        if not self.names:
            return []
        return [
            {
                name: convert(value) if convert else value
                for name, convert, value in zip(self.names, self.convert, row, strict=True)
            }
            for row in cursor.fetchall()
        ]


class _Statements:
    """This path's statements compiled for the portal's database, run on one cursor."""

    def __init__(self, dialect: sa.Dialect) -> None:
        self.token = _Compiled(TOKEN, dialect)
        self.take = _Compiled(TAKE, dialect)
        self.give_back = _Compiled(GIVE_BACK, dialect)
        self.insert_seat = _Compiled(_insert_seat(dialect.name), dialect)
        self.approve_request = _Compiled(APPROVE_REQUEST, dialect)
        self.count = _Compiled(counts.COUNT, dialect)
        self.release = _Compiled(RELEASE, dialect)
        self.head = _Compiled(HEAD, dialect)
        self.move_head = _Compiled(MOVE_HEAD, dialect)
        self.add_event = _Compiled(ADD_EVENT, dialect)
        # PostgreSQL runs a write inside another statement (a data-modifying WITH): the
        # counter's change with the seat's, the event with the head's move; one round trip
        # each instead of two, while the locks are held.
        # PostgreSQL also takes several statements in one round trip (psycopg's pipeline
        # mode): the scope's settings, the token and provisioning's settings at the start;
        # the audit event (linked to the head in the statement that locks it) and the
        # commit at the end.
        self.combined = dialect.name == "postgresql"
        self.configured = _Compiled(CONFIGURED, dialect)
        self._scope: dict[int, _Compiled] = {}
        self._dialect = dialect
        if self.combined:
            self.take_and_insert_seat = _Compiled(ASSIGN_WITH_REQUEST, dialect)
            self.give_back_and_release = _Compiled(RELEASE_WITH_COUNTER, dialect)
            self.chain_event = _Compiled(CHAIN_EVENT, dialect)
            self.assign_facts = _Compiled(ASSIGN_FACTS, dialect)
            self.release_facts = _Compiled(RELEASE_FACTS, dialect)
            self.assign_or_fail = _Compiled(ASSIGN_OR_FAIL, dialect)
            self.release_or_fail = _Compiled(RELEASE_OR_FAIL, dialect)

    def scope(self, statement: sa.TextClause) -> _Compiled:
        """:func:`portal.db.scope_to_send`'s statement, compiled (one of two)."""
        compiled = self._scope.get(id(statement))
        if compiled is None:
            compiled = self._scope[id(statement)] = _Compiled(statement, self._dialect)
        return compiled


class _Run:
    """The compiled statements on the cursors of a session's connection."""

    def __init__(self, statements: _Statements, connection: sa.Connection) -> None:
        self.statements = statements
        self.connection = connection
        dbapi_connection = connection.connection.driver_connection
        assert dbapi_connection is not None
        self.dbapi_connection = dbapi_connection
        self.cursor = dbapi_connection.cursor()
        # A second cursor, for a statement whose rows are read after the first's (a cursor
        # holds the rows of the last statement it ran).
        self.other = dbapi_connection.cursor()
        self.facts_cursor = dbapi_connection.cursor()
        #: What :meth:`start` read for the audit event (None: nothing found, or not asked).
        self.facts: dict[str, Any] | None = None
        self.receivers_wrote = False

    def __call__(self, name: str, values: dict[str, Any]) -> dict[str, Any] | None:
        return cast(_Compiled, getattr(self.statements, name)).run(self.cursor, values)

    def pipeline(self) -> contextlib.AbstractContextManager[Any]:
        """psycopg's pipeline mode on PostgreSQL: statements sent without waiting for each."""
        return cast(contextlib.AbstractContextManager[Any], self.dbapi_connection.pipeline())

    def start(
        self,
        session: Session,
        digest: str,
        facts: tuple[str, dict[str, Any]] | None = None,
        read: _Read | None = None,
    ) -> dict[str, Any] | None:
        """The token, council-wide, and provisioning's settings for the transaction; on
        PostgreSQL with the transaction's start, its scope and ``facts`` (a statement's
        name and values: what the request's audit event needs, :attr:`facts`) in one
        round trip; on SQLite as ``read`` found them before the writers' queue."""
        council = Scope.council()
        if not self.statements.combined:
            bind_scope(session, council)
            if read is None:
                read = _Read(
                    self("token", {"token_hash": digest}),
                    _values(self.statements.configured, self.cursor, {}),
                )
            remember_configured(session, read.configured)
            return read.token
        statement, values = scope_to_send(self.connection, council)
        with self.pipeline():
            self.statements.scope(statement).send(self.cursor, values)
            self.statements.configured.send(self.other, {})
            facts_statement = None
            if facts is not None:
                facts_statement = cast(_Compiled, getattr(self.statements, facts[0]))
                facts_statement.send(self.facts_cursor, facts[1])
            self.statements.token.send(self.cursor, {"token_hash": digest})
            rows = self.statements.token.rows(self.cursor)
            configured = _values(self.statements.configured, self.other, None)
            if facts_statement is not None:
                found = facts_statement.rows(self.facts_cursor)
                self.facts = found[0] if found else None
        scope_sent(session, council)
        remember_configured(session, configured)
        return rows[0] if rows else None

    def narrow(self, session: Session, scope: Scope) -> None:
        """The transaction's scope narrowed to an organisation's (an organisation's token)."""
        if not self.statements.combined:
            bind_scope(session, scope)
            return
        statement, values = scope_to_send(self.connection, scope)
        self.statements.scope(statement).send(self.cursor, values)
        scope_sent(session, scope)

    def flush(self, session: Session) -> None:
        """Write what the signals' receivers added (provisioning's outbox rows), noting it:
        the commit then has work of its own (the delivery job) and is not pipelined."""
        if session.new or session.dirty or session.deleted:
            self.receivers_wrote = True
            session.flush()

    def close(self) -> None:
        self.cursor.close()
        self.other.close()
        self.facts_cursor.close()


def _values(
    compiled: _Compiled, cursor: Any, values: dict[str, Any] | None
) -> list[tuple[Any, ...]]:
    """The rows of ``compiled`` as tuples (sent now unless ``values`` is None: sent before)."""
    if values is not None:
        compiled.send(cursor, values)
    return [tuple(row.values()) for row in compiled.rows(cursor)]


@dataclass(frozen=True)
class _Read:
    """The token's row (None: no such token) and provisioning's settings (their rows)."""

    token: dict[str, Any] | None
    configured: list[tuple[Any, ...]]


class _Refused(Exception):
    """Not this path's answer: roll back and let Flask answer."""


class SeatFastPath:
    """WSGI middleware: assign or release a seat in a few statements, or pass it on."""

    def __init__(self, app: Flask, wsgi_app: WSGIApp, *, token_limit: TokenLimit) -> None:
        self.app = app
        self.wsgi_app = wsgi_app
        self.reservations = Reservations(token_limit)
        self._engine: sa.Engine | None = None
        self._statements: _Statements | None = None
        self._writers: contextlib.AbstractContextManager[Any] = contextlib.nullcontext()
        self._setting_up = threading.Lock()
        adapter = app.url_map.bind("")
        self.assign_endpoint = adapter.match("/api/v1/subscriptions/1/seats", "POST")[0]
        self.release_endpoint = adapter.match("/api/v1/subscriptions/1/seats/a@b.c", "DELETE")[0]

    def __call__(self, environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        method = environ.get("REQUEST_METHOD")
        if method in ("POST", "DELETE") and environ.get("PATH_INFO", "").startswith(
            "/api/v1/subscriptions/"
        ):
            return observe_request(environ, start_response, self._seat)
        return self.wsgi_app(environ, start_response)

    def _seat(self, environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        answer = self.answer(environ)
        if answer is None:
            return self.wsgi_app(environ, start_response)
        status, body, endpoint, actor_label = answer
        environ[ENVIRON_ENDPOINT] = endpoint
        environ[ENVIRON_ACTOR] = actor_label
        return self._reply(status, body, environ, start_response)

    def _reply(
        self, status: int, body: dict[str, Any], environ: dict[str, Any], start: StartResponse
    ) -> Iterable[bytes]:
        """Flask's JSON response (``jsonify``), with the security headers Flask adds."""
        provider = self.app.json
        security = response_headers(mimetype="application/json", production=is_production(self.app))
        if not isinstance(provider, DefaultJSONProvider) or self.app.debug:
            response = provider.response(body)
            response.status_code = status
            response.headers.extend(security)
            return response(environ, start)  # type: ignore[operator]
        payload = f"{provider.dumps(body, separators=(',', ':'))}\n".encode()
        start(
            "201 CREATED" if status == 201 else "200 OK",
            [
                ("Content-Type", provider.mimetype),
                ("Content-Length", str(len(payload))),
                *security,
            ],
        )
        return [payload]

    # ------------------------------------------------------------ the request

    def _request(self, environ: dict[str, Any]) -> tuple[str, int, str] | None:
        """("assign" | "release", subscription id, email) of a request this path may answer."""
        if environ.get("HTTP_IDEMPOTENCY_KEY") is not None or environ.get("QUERY_STRING"):
            return None
        path = environ.get("PATH_INFO", "")
        if environ["REQUEST_METHOD"] == "POST":
            match = ASSIGN_PATH.fullmatch(path)
            if match is None:
                return None
            email = _assign_body(environ)
            return None if email is None else ("assign", int(match[1]), email)
        match = RELEASE_PATH.fullmatch(path)
        if match is None or not PLAIN_EMAIL.fullmatch(match[2]):
            return None
        return "release", int(match[1]), match[2]

    def answer(self, environ: dict[str, Any]) -> tuple[int, dict[str, Any], str, str] | None:
        """(status, JSON body, endpoint, actor label) of the answer, or None: Flask answers."""
        scheme, _, credentials = environ.get("HTTP_AUTHORIZATION", "").partition(" ")
        credentials = credentials.strip()
        if (
            scheme.lower() != "bearer"
            or not credentials.startswith(TOKEN_START)
            or len(credentials) > 200
            or self.app.config.get("PORTAL_TRUSTED_PROXIES")
        ):
            return None
        asked = self._request(environ)
        if asked is None:
            return None
        kind, subscription_id, email = asked
        digest = token_digest(credentials)
        try:
            engine = self._engine_for_process()
        except Exception:
            return None
        read: _Read | None = None
        if isinstance(self._writers, _SQLiteWriters):
            # SQLite: the token and provisioning's settings are read before the writers'
            # queue, in a read of their own (WAL: it waits for no writer), so the queue
            # holds the writes alone.
            read = self._read_first(engine, digest)
            if read is None or read.token is None or not _live_token(read.token):
                return None
        with self._writers:
            return self._answer(engine, kind, subscription_id, email, digest, environ, read)

    def _read_first(self, engine: sa.Engine, digest: str) -> _Read | None:
        """The token and provisioning's settings, read in a transaction that only reads."""
        session = Session(bind=engine, autoflush=False)
        try:
            read_only(session)
            bind_scope(session, Scope.council())  # the token is looked up council-wide
            assert self._statements is not None
            run = _Run(self._statements, session.connection())
            try:
                token = run("token", {"token_hash": digest})
                configured = _values(self._statements.configured, run.cursor, {})
            finally:
                run.close()
            session.rollback()
            return _Read(token, configured)
        except Exception as error:  # a database error: Flask answers (a 503 if down)
            log.warning("seat lean path: %s; Flask answers", type(error).__name__)
            return None
        finally:
            session.close()

    def _answer(
        self,
        engine: sa.Engine,
        kind: str,
        subscription_id: int,
        email: str,
        digest: str,
        environ: dict[str, Any],
        read: _Read | None = None,
    ) -> tuple[int, dict[str, Any], str, str] | None:
        session = Session(bind=engine, autoflush=False)
        run: _Run | None = None
        try:
            assert self._statements is not None
            run = _Run(self._statements, session.connection())
            facts = None
            if run.statements.combined:
                facts = (
                    ("assign_facts", {"b_subscription_id": subscription_id})
                    if kind == "assign"
                    else ("release_facts", {"b_subscription_id": subscription_id, "b_email": email})
                )
            token = run.start(session, digest, facts, read)  # looked up council-wide
            if token is None or not _live_token(token):
                raise _Refused
            label = f"token {token['prefix']}…"
            scope_org = token["organisation_id"] if token["scope"] == "organisation" else None
            ip = environ.get("REMOTE_ADDR")
            if run.statements.combined and run.facts is None:
                raise _Refused  # no such subscription, or no such seat: Flask's 404
            if run.facts is not None and writes_nothing_for(session, run.facts["vendor_id"]):
                # Nothing for the seat signals' receiver to write: the writes, the event and
                # the commit in one round trip, no wait of this process while locks are held.
                body = self._in_one_trip(
                    run, session, kind, subscription_id, email, scope_org, label, ip, digest
                )
                run = None
            else:
                if scope_org is not None:
                    run.narrow(session, Scope.organisation(scope_org))
                write = self._assign if kind == "assign" else self._release
                body, event = write(session, run, subscription_id, email, scope_org, label, ip)
                if not self.reservations.allow(self.app, digest):
                    raise _Refused  # the token's limit is reached (or Redis in doubt)
                # In the application's context: the jobs the transaction enqueued
                # (provisioning's delivery job) are sent to the queue as it commits, as on
                # the Flask path; outside one they would wait for the schedule's sweep.
                with self.app.app_context():
                    if run.statements.combined and not run.receivers_wrote:
                        # The event and the commit in one round trip.
                        with run.pipeline():
                            run.statements.chain_event.send(run.cursor, _chain_values(event))
                            run.dbapi_connection.commit()
                    else:
                        _audit(run, event)
                    run.close()
                    run = None
                    # The session's end and its hooks. On the pipelined path the database's
                    # transaction has ended already, and the connection has left pipeline
                    # mode before it goes back to the pool.
                    session.commit()
        except Exception as error:  # _Refused, or a database error: Flask answers (a 503 if down)
            if not isinstance(error, _Refused | DivisionByZero):  # a deadlock, a lost
                # connection: worth a line (a statement that wrote nothing divides by zero)
                log.warning("seat lean path: %s; Flask answers", type(error).__name__)
            with contextlib.suppress(Exception):  # the connection is gone: Flask reports it
                if run is not None:
                    run.close()
                session.rollback()
            return None
        finally:
            session.close()
        if kind == "assign":
            return 201, body, self.assign_endpoint, label
        return 200, body, self.release_endpoint, label

    def _in_one_trip(
        self,
        run: _Run,
        session: Session,
        kind: str,
        subscription_id: int,
        email: str,
        scope_org: int | None,
        label: str,
        ip: str | None,
        digest: str,
    ) -> dict[str, Any]:
        """PostgreSQL, when no receiver of the seat signals writes for the product's vendor
        (provisioning's outbox, their only receiver, has no channel configured for it): the
        seat's statement, the audit event and the commit in one round trip. Each statement
        that writes nothing fails (a division by zero), so the transaction ends with nothing
        written and Flask answers. The signals are not sent: they would write nothing."""
        facts = run.facts
        assert facts is not None
        now = now_utc()
        values = {
            "b_now": now,
            "b_subscription_id": subscription_id,
            "scope_org": scope_org,
            "b_seat_id": facts["seat_id"],
            "b_email": email,
        }
        if kind == "assign":
            statement = run.statements.assign_or_fail
            event = _event_fields(
                label=label,
                ip=ip,
                action="seat.assign",
                target_id=facts["seat_id"],
                target_label=f"{facts['sku']} → {email}",
                organisation_id=facts["organisation_id"],
                before=None,
                after={"user_email": email, "subscription": subscription_id},
            )
            body = _body(subscription_id, email, now, None)
        else:
            statement = run.statements.release_or_fail
            event = _event_fields(
                label=label,
                ip=ip,
                action="seat.release",
                target_id=facts["seat_id"],
                target_label=f"{facts['sku']} → {email}",
                organisation_id=facts["organisation_id"],
                before={"user_email": email},
                after={"released": True, "reason": "released"},
            )
            body = _body(subscription_id, email, facts["assigned_at"], now)
        if not self.reservations.allow(self.app, digest):
            raise _Refused  # the token's limit is reached (or Redis in doubt): Flask answers
        with self.app.app_context():
            with run.pipeline():
                if scope_org is not None:
                    run.narrow(session, Scope.organisation(scope_org))
                statement.send(run.cursor, values)
                run.statements.chain_event.send(run.cursor, _chain_values(event))
                run.dbapi_connection.commit()
            run.close()
            session.commit()  # the session's end (the database's transaction has ended)
        return body

    # The locks are taken in the services' order (portal.seats.assignments): the
    # subscription's row (every seat change of it queues there), then the seat's, then the
    # audit chain's head (every audited change queues there), each held until the commit.
    # Taken in another order, a lean assignment and a service's assignment of the same
    # person would each wait for the other and PostgreSQL would abort one (a deadlock).

    def _assign(
        self,
        session: Session,
        run: _Run,
        subscription_id: int,
        email: str,
        scope_org: int | None,
        label: str,
        ip: str | None,
    ) -> tuple[dict[str, Any], dict[str, Any]]:
        now = now_utc()
        values = {
            "b_subscription_id": subscription_id,
            "scope_org": scope_org,
            "b_email": email,
            "b_now": now,
        }
        if run.statements.combined:
            seat = run("take_and_insert_seat", values)
        else:
            if run("take", {"subscription_id": subscription_id, "b_updated_at": now}) is None:
                raise _Refused  # full or not active: Flask's 409
            seat = run("insert_seat", values)
        if seat is None:  # full, no such subscription or person, mail due, or holding a seat
            raise _Refused
        if not run.statements.combined:
            run(
                "approve_request",
                {
                    "b_organisation_id": seat["organisation_id"],
                    "b_user_id": seat["user_id"],
                    "b_product_id": seat["product_id"],
                    "b_now": now,
                },
            )
            run("count", _seat_count(seat["product_id"], 1))
        held = _seat_object(
            session,
            id=seat["id"],
            organisation_id=seat["organisation_id"],
            subscription_id=subscription_id,
            product_id=seat["product_id"],
            user_id=seat["user_id"],
            assigned_at=seat["assigned_at"],
            released_at=None,
            release_reason=None,
        )
        # Provisioning writes its outbox rows in this transaction (SPEC 8.4).
        seat_assigned.send(held, session=session, actor=_actor(label, scope_org, ip))
        run.flush(session)  # what the receivers added
        event = _event_fields(
            label=label,
            ip=ip,
            action="seat.assign",
            target_id=seat["id"],
            target_label=f"{seat['sku']} → {email}",
            organisation_id=seat["organisation_id"],
            before=None,
            after={"user_email": email, "subscription": subscription_id},
        )
        return _body(subscription_id, email, seat["assigned_at"], None), event

    def _release(
        self,
        session: Session,
        run: _Run,
        subscription_id: int,
        email: str,
        scope_org: int | None,
        label: str,
        ip: str | None,
    ) -> tuple[dict[str, Any], dict[str, Any]]:
        now = now_utc()
        values = {
            "b_subscription_id": subscription_id,
            "scope_org": scope_org,
            "b_email": email,
            "b_now": now,
        }
        if run.statements.combined:
            seat = run("give_back_and_release", values)
        else:
            if run("give_back", {"subscription_id": subscription_id, "b_updated_at": now}) is None:
                raise _Refused  # no such subscription: Flask's 404
            seat = run("release", values)
        if seat is None:  # no such seat in scope (the counter is rolled back): Flask's 404
            raise _Refused
        if not run.statements.combined:
            run("count", _seat_count(seat["product_id"], -1))
        held = _seat_object(
            session,
            id=seat["id"],
            organisation_id=seat["organisation_id"],
            subscription_id=subscription_id,
            product_id=seat["product_id"],
            user_id=seat["user_id"],
            assigned_at=seat["assigned_at"],
            released_at=now,
            release_reason="released",
        )
        seat_released.send(held, session=session, actor=_actor(label, scope_org, ip))
        run.flush(session)
        event = _event_fields(
            label=label,
            ip=ip,
            action="seat.release",
            target_id=seat["id"],
            target_label=f"{seat['sku']} → {email}",
            organisation_id=seat["organisation_id"],
            before={"user_email": email},
            after={"released": True, "reason": "released"},
        )
        return _body(subscription_id, email, seat["assigned_at"], now), event

    # ------------------------------------------------------------ set-up

    def _engine_for_process(self) -> sa.Engine:
        if self._engine is None:
            with self._setting_up:
                if self._engine is None:
                    with self.app.app_context():
                        engine = db.engine
                    self._statements = _Statements(engine.dialect)
                    if engine.dialect.name == "sqlite" and engine.url.database not in (
                        None,
                        "",
                        ":memory:",
                    ):
                        self._writers = _SQLiteWriters(f"{engine.url.database}-seat-writers.lock")
                    self._engine = engine
        return self._engine


class _SQLiteWriters:
    """SQLite's writers one at a time, woken as soon as the one before commits.

    SQLite lets one transaction write at a time; a writer that finds the database locked
    sleeps in steps of 1, 2, 5, 10, … ms (its busy handler) and tries again, so under
    contention the lock stands idle while writers sleep. This path's transactions queue
    on a lock file instead (``flock``, across the server's processes; a thread lock
    within one), which hands the turn over at once. Other writers are unaffected: they
    still meet SQLite's own lock, as before.
    """

    def __init__(self, path: str) -> None:
        self.path = path
        self._threads = threading.Lock()
        self._fd: int | None = None
        self._pid = 0

    def __enter__(self) -> None:
        self._threads.acquire()
        try:
            if self._fd is None or self._pid != os.getpid():  # opened after a fork
                self._fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
                self._pid = os.getpid()
            fcntl.flock(self._fd, fcntl.LOCK_EX)
        except OSError:
            pass  # no lock file (a read-only directory): SQLite's own lock still holds
        except BaseException:
            self._threads.release()
            raise

    def __exit__(self, *exc: object) -> None:
        try:
            if self._fd is not None:
                with contextlib.suppress(OSError):
                    fcntl.flock(self._fd, fcntl.LOCK_UN)
        finally:
            self._threads.release()


def _assign_body(environ: dict[str, Any]) -> str | None:
    """The address of a plain assignment body ``{"user_email": "…"}``, or None."""
    if not environ.get("CONTENT_TYPE", "").startswith("application/json"):
        return None
    try:
        length = int(environ.get("CONTENT_LENGTH") or "")
    except ValueError:
        return None
    if not 0 < length <= MAX_BODY:
        return None
    stream = environ["wsgi.input"]
    raw = stream.read(length)
    # Flask reads the body again, from the bytes read here.
    environ["wsgi.input"] = _Replay(raw)
    try:
        data = json.loads(raw)
    except ValueError:
        return None
    if not isinstance(data, dict) or list(data) != ["user_email"]:
        return None
    email = data["user_email"]
    if not isinstance(email, str) or len(email) > 254 or not PLAIN_EMAIL.fullmatch(email):
        return None
    return email


class _Replay:
    """A WSGI input stream over bytes already read."""

    def __init__(self, data: bytes) -> None:
        self._stream = io.BytesIO(data)

    def read(self, size: int = -1) -> bytes:
        return self._stream.read(size)

    def readline(self, size: int = -1) -> bytes:
        return self._stream.readline(size)

    def readlines(self, hint: int = -1) -> list[bytes]:
        return self._stream.readlines(hint)

    def __iter__(self) -> Any:
        return iter(self._stream)


def _live_token(row: dict[str, Any]) -> bool:
    """A council or organisation token Flask would accept without writing its time of use."""
    now = now_utc()
    if row["scope"] == "organisation":
        if row["organisation_id"] is None or row["organisation_status"] != "active":
            return False
    elif row["scope"] != "council":
        return False
    return (
        row["revoked_at"] is None
        and (row["expires_at"] is None or row["expires_at"] > now)
        and row["last_used_at"] is not None
        and now - row["last_used_at"] < LAST_USED_RESOLUTION
    )


def _actor(label: str, scope_org: int | None, ip: str | None) -> Actor:
    scope = COUNCIL if scope_org is None else ORGANISATION
    return Actor.api_token(label, role=ROLE_OF_SCOPE[scope], organisation_id=scope_org, ip=ip)


def _seat_count(product_id: int, assigned: int) -> dict[str, Any]:
    """:data:`portal.seats.counts.COUNT`'s values for ``assigned`` seats more of a product."""
    return {"product_id": product_id, "reserved": 0, "waiting": 0, "assigned": assigned}


def _seat_object(session: Session, **columns: Any) -> SeatAssignment:
    """The seat as a persistent object of the session (no statement): the signals' payload."""
    seat = SeatAssignment(**columns)
    make_transient_to_detached(seat)
    session.add(seat)
    return seat


def _body(subscription_id: int, email: str, assigned_at: Any, released_at: Any) -> dict[str, Any]:
    return SeatOut(
        subscription=subscription_id,
        user_email=email,
        assigned_at=assigned_at,
        released_at=released_at,
    ).model_dump(mode="json")


def _event_fields(
    *,
    label: str,
    ip: str | None,
    action: str,
    target_id: int,
    target_label: str,
    organisation_id: int,
    before: dict[str, Any] | None,
    after: dict[str, Any] | None,
) -> dict[str, Any]:
    """The audit event's fields, as :func:`portal.audit.services.audit_record` writes them,
    but for its link to the chain (``seq``, ``prev_hash``, ``hash``: :func:`_audit`)."""
    return {
        "occurred_at": now_utc(),
        "actor_user_id": None,
        "actor_label": label[:254],
        "organisation_id": organisation_id,
        "action": action,
        "target_type": "seat",
        "target_id": str(target_id),
        "target_label": target_label,
        "before": chain.as_stored_json(before),
        "after": chain.as_stored_json(after),
        "ip": ip,
    }


def _chain_values(event: dict[str, Any]) -> dict[str, Any]:
    """:data:`CHAIN_EVENT`'s values: the event's fields and its document around the link."""
    before, between, after = chain.canonical_around_link(**event)
    return {f"b_{name}": value for name, value in event.items()} | {
        "b_link_before": before,
        "b_link_between": between,
        "b_link_after": after,
    }


def _audit(run: _Run, event: dict[str, Any]) -> None:
    """The audit event linked to the chain, as :func:`portal.audit.services.audit_record`
    links it: the head row locked and read, the event inserted, the head moved (on
    PostgreSQL in one statement, :data:`CHAIN_EVENT`)."""
    if run.statements.combined:
        if run("chain_event", _chain_values(event)) is None:  # pragma: no cover (it divides)
            raise _Refused
        return
    head = run("head", {})
    if head is None:
        raise _Refused  # pragma: no cover (a fresh chain: the services set its head up)
    fields = {**event, "seq": int(head["seq"]) + 1, "prev_hash": str(head["hash"])}
    digest = chain.event_hash(**fields)
    run("add_event", {f"b_{name}": value for name, value in fields.items()} | {"b_hash": digest})
    run("move_head", {"b_seq": fields["seq"], "b_hash": digest})
