"""Usage events name an existing organisation, product and meter, always (migration 0035).

On PostgreSQL the references of ``usage_events`` and ``usage_event_keys`` are kept per
statement by triggers instead of per row by foreign keys
(``portal.metering.models.STATEMENT_CHECKED_REFERENCES``); on SQLite they are foreign keys.
Either way: an event naming a row that does not exist is refused with an integrity error,
a row named by an event cannot be deleted, and, on PostgreSQL with two real connections,
a delete racing a batch never leaves an event naming nothing, whichever starts first. The
checks see every row whatever the transaction's row-level security scope.
"""

from __future__ import annotations

import datetime as dt
import os
import threading
import time
import uuid

import pytest
import sqlalchemy as sa
from sqlalchemy.exc import DBAPIError, IntegrityError

from portal.catalogue.models import Meter, Product
from portal.catalogue.services import meter_create
from portal.db import bind_scope, db
from portal.kernel.clock import now_utc
from portal.kernel.scope import Scope
from portal.metering.models import UsageEvent, UsageEventKey
from portal.tenancy.models import Organisation
from tests.conftest import SYSTEM, owner_engine
from tests.metering.conftest import event, ingest

POSTGRES = (os.environ.get("PORTAL_TEST_DATABASE_URL") or "").startswith("postgresql")
postgres_only = pytest.mark.skipif(
    not POSTGRES, reason="the statement triggers and row-level security are PostgreSQL's"
)
FOREIGN_KEY_VIOLATION = "23503"


def _spare_meter(app, product_id: int, key: str = "spare") -> int:
    """A meter nothing else names (no price, no rollup), which may be deleted."""
    with app.app_context():
        product = db.session.get(Product, product_id)
        meter = meter_create(
            db.session,
            actor=SYSTEM,
            product=product,
            data={"key": key, "name": key, "unit": "unit", "aggregation": "sum", "property": None},
        )
        db.session.commit()
        return meter.id


def _row(org_id: int, product_id: int, meter_id: int) -> dict:
    return {
        "organisation_id": org_id,
        "product_id": product_id,
        "meter_id": meter_id,
        "idempotency_key": str(uuid.uuid4()),
        "quantity_micros": 1_000_000,
        "occurred_at": now_utc() - dt.timedelta(hours=1),
        "received_at": now_utc(),
    }


def _insert(app, row: dict, scope: Scope) -> None:
    """Insert one event (and its key) as the application does, in ``scope``."""
    with app.app_context():
        session = db.session
        bind_scope(session, scope)
        try:
            session.execute(
                sa.insert(UsageEventKey.__table__).values(
                    organisation_id=row["organisation_id"], idempotency_key=row["idempotency_key"]
                )
            )
            session.execute(sa.insert(UsageEvent.__table__).values(**row))
            session.commit()
        finally:
            session.rollback()
            session.remove()


def _events(app) -> list[tuple]:
    columns = (UsageEvent.organisation_id, UsageEvent.product_id, UsageEvent.meter_id)
    with app.app_context(), owner_engine(app).connect() as conn:
        return sorted(map(tuple, conn.execute(sa.select(*columns))))


def _assert_foreign_key_violation(error: BaseException) -> None:
    assert isinstance(error, IntegrityError), repr(error)
    if POSTGRES:
        assert error.orig.sqlstate == FOREIGN_KEY_VIOLATION, error.orig  # type: ignore[union-attr]


def test_an_event_naming_no_organisation_product_or_meter_is_refused(app, metered):
    org_id, product_id = metered["org"].id, metered["product"].id
    meter_id = _spare_meter(app, product_id)
    missing = 10**9
    for row in (
        _row(missing, product_id, meter_id),
        _row(org_id, missing, meter_id),
        _row(org_id, product_id, missing),
    ):
        with pytest.raises(IntegrityError) as refused:
            _insert(app, row, Scope.council())
        _assert_foreign_key_violation(refused.value)
    assert _events(app) == []
    # The same row with every reference in place is stored: the check refuses only what
    # names nothing.
    _insert(app, _row(org_id, product_id, meter_id), Scope.council())
    assert _events(app) == [(org_id, product_id, meter_id)]


def test_a_key_naming_no_organisation_is_refused(app, metered):
    with app.app_context():
        bind_scope(db.session, Scope.council())
        with pytest.raises(IntegrityError) as refused:
            db.session.execute(
                sa.insert(UsageEventKey.__table__).values(
                    organisation_id=10**9, idempotency_key="k-1"
                )
            )
            db.session.flush()
        db.session.rollback()
        db.session.remove()
    _assert_foreign_key_violation(refused.value)


def _delete(app, model: type, row_id: int, scope: Scope | None = None) -> None:
    with app.app_context():
        session = db.session
        if scope is not None:
            bind_scope(session, scope)
        try:
            session.execute(sa.delete(model).where(model.id == row_id))
            session.commit()
        finally:
            session.rollback()
            session.remove()


def test_an_organisation_product_or_meter_named_by_events_cannot_be_deleted(app, make_org, metered):
    org_id, product_id = metered["org"].id, metered["product"].id
    meter_id = _spare_meter(app, product_id)
    _insert(app, _row(org_id, product_id, meter_id), Scope.council())
    for model, row_id in ((Meter, meter_id), (Product, product_id), (Organisation, org_id)):
        with pytest.raises(IntegrityError) as refused:
            _delete(app, model, row_id, Scope.council())
        _assert_foreign_key_violation(refused.value)
    assert _events(app) == [(org_id, product_id, meter_id)]
    # A meter no event names is deleted as before.
    unused = _spare_meter(app, product_id, key="unused")
    _delete(app, Meter, unused, Scope.council())
    with app.app_context():
        assert db.session.get(Meter, unused) is None


@postgres_only
def test_the_checks_see_every_row_whatever_the_scope(app, make_org, metered):
    """Deleting a meter in another organisation's scope (whose rows row-level security
    hides) is refused all the same: the check reads every organisation's events."""
    org_id, product_id = metered["org"].id, metered["product"].id
    other = make_org("globex")
    meter_id = _spare_meter(app, product_id)
    _insert(app, _row(org_id, product_id, meter_id), Scope.council())
    with pytest.raises(IntegrityError) as refused:
        _delete(app, Meter, meter_id, Scope.organisation(other.id))
    _assert_foreign_key_violation(refused.value)
    assert _events(app) == [(org_id, product_id, meter_id)]


@postgres_only
def test_ids_named_by_events_never_change(app, metered):
    with app.app_context(), owner_engine(app).connect() as conn:
        for table in ("organisations", "products", "meters"):
            with pytest.raises(DBAPIError) as refused:
                conn.execute(sa.text(f"UPDATE {table} SET id = id + 1000"))  # noqa: S608
            conn.rollback()
            assert refused.value.orig.sqlstate == FOREIGN_KEY_VIOLATION  # type: ignore[union-attr]


def _race(app, *, batch_first: bool) -> BaseException | None:
    """A batch (an event naming a spare meter) and a delete of that meter on two
    connections of the application role; the one started first holds its transaction open
    until the other is waiting on it. The error of whichever fails (None: neither)."""
    with app.app_context():
        org_id = db.session.scalar(sa.select(Organisation.id).where(Organisation.slug == "acme"))
        product_id = db.session.scalar(sa.select(Product.id).where(Product.sku == "cad-suite"))
    meter_id = _spare_meter(app, product_id, key="race_" + ("batch" if batch_first else "delete"))
    row = _row(org_id, product_id, meter_id)
    errors: list[BaseException] = []
    waiting = threading.Event()

    with app.app_context():
        engine = db.engine

        def council(conn) -> None:
            conn.execute(sa.text("SELECT set_config('portal.scope', 'council', true)"))

        def insert(conn) -> None:
            council(conn)
            conn.execute(
                sa.insert(UsageEventKey.__table__).values(
                    organisation_id=org_id, idempotency_key=row["idempotency_key"]
                )
            )
            conn.execute(sa.insert(UsageEvent.__table__).values(**row))

        def delete(conn) -> None:
            council(conn)
            conn.execute(sa.delete(Meter).where(Meter.id == meter_id))

        first, second = (insert, delete) if batch_first else (delete, insert)

        def run_second() -> None:
            with app.app_context(), engine.connect() as conn:
                try:
                    waiting.set()
                    second(conn)
                    conn.commit()
                except BaseException as error:  # noqa: BLE001 (reported to the test)
                    errors.append(error)

        with engine.connect() as conn:
            first(conn)
            thread = threading.Thread(target=run_second)
            thread.start()
            waiting.wait(10)
            # The second is blocked on the row the first locked or deleted.
            blocked = _blocked_backends(app)
            conn.commit()
        thread.join(30)
        assert not thread.is_alive()
    assert blocked >= 1, "the second transaction did not wait for the first"
    return errors[0] if errors else None


def _blocked_backends(app) -> int:
    """How many backends of this test database (the cluster is shared with other runs) wait on a
    lock, waiting a little for the second to get there."""
    with owner_engine(app).connect() as conn:
        for _ in range(100):
            count = conn.scalar(
                sa.text(
                    "SELECT count(*) FROM pg_stat_activity "
                    "WHERE datname = current_database() AND wait_event_type = 'Lock'"
                )
            )
            if count:
                return int(count)
            time.sleep(0.05)
    return 0


@postgres_only
@pytest.mark.parametrize("batch_first", [True, False], ids=["batch-first", "delete-first"])
def test_a_delete_racing_a_batch_never_leaves_an_event_naming_nothing(app, metered, batch_first):
    error = _race(app, batch_first=batch_first)
    assert error is not None, "both committed: an event names a deleted meter"
    _assert_foreign_key_violation(error)
    with app.app_context(), owner_engine(app).connect() as conn:
        orphans = conn.scalar(
            sa.text(
                "SELECT count(*) FROM usage_events e "
                "WHERE NOT EXISTS (SELECT 1 FROM meters m WHERE m.id = e.meter_id)"
            )
        )
    assert orphans == 0
    # Whichever committed first won: the event is there (batch first) or the meter is gone.
    assert len(_events(app)) == (1 if batch_first else 0)


def test_ingestion_still_stores_what_names_existing_rows(app, metered):
    """The API's path (COPY, the keys, the events, the rollups in one statement on
    PostgreSQL) passes the checks."""
    result = ingest(app, [event(), event(meter="sessions")])
    assert (result.accepted, result.rejected) == (2, [])
    assert len(_events(app)) == 2
