"""Partitioned usage events (issue 13, migration 0013).

On PostgreSQL ``usage_events`` is partitioned by the UTC month of ``occurred_at``; each
event is still counted once per (organisation, idempotency key) across the partitions
(``usage_event_keys``), also when copies naming different months arrive at once from
parallel connections; a month without a partition goes to the default partition and
moves into its own when that is made; the scheduled job makes the current month's and
the next three months' partitions, once. The dedup tests run on SQLite too (the events'
primary key is the rule there); the partition tests are PostgreSQL's.
"""

from __future__ import annotations

import datetime as dt
import os
import random
import threading

import pytest
import sqlalchemy as sa

from portal.db import council_wide, db
from portal.jobs.models import Job
from portal.jobs.schedule import schedule_due
from portal.kernel.clock import now_utc
from portal.metering.ingest import usage_ingest
from portal.metering.models import UsageDaily, UsageEvent, UsageEventKey
from portal.metering.partitions import (
    month_starts,
    partitioned,
    usage_partitions_ensure,
    usage_partitions_list,
)
from tests.conftest import SYSTEM, owner_engine
from tests.metering.conftest import COUNCIL, body, event, ingest
from tests.support import deliver_job

POSTGRES = (os.environ.get("PORTAL_TEST_DATABASE_URL") or "").startswith("postgresql")
postgres_only = pytest.mark.skipif(not POSTGRES, reason="partitions are PostgreSQL's")


def _where(app) -> list[tuple[str, str, int]]:
    """(partition, idempotency key, quantity) of every stored event, read as the owner."""
    with app.app_context(), owner_engine(app).connect() as conn:
        if conn.dialect.name != "postgresql":
            rows = conn.execute(
                sa.text("SELECT idempotency_key, quantity_micros FROM usage_events")
            )
            return sorted(("usage_events", key, q) for key, q in rows)
        rows = conn.execute(
            sa.text(
                "SELECT c.relname, e.idempotency_key, e.quantity_micros FROM usage_events e "
                "JOIN pg_class c ON c.oid = e.tableoid"
            )
        )
        return sorted(tuple(row) for row in rows)


def _ensure(app, *months: dt.date) -> None:
    with app.app_context():
        for month in months:
            usage_partitions_ensure(db.session, actor=SYSTEM, now=_utc(month), ahead=0)
        db.session.commit()


def _utc(day: dt.date) -> dt.datetime:
    return dt.datetime(day.year, day.month, day.day, 12, tzinfo=dt.UTC)


def test_the_same_key_in_two_months_is_stored_once(app, mid_month, metered):
    """The key sent with an August time, then with a September time (two partitions on
    PostgreSQL): the second is a duplicate, and only the first is stored and rolled up."""
    august, september = dt.date(2026, 8, 1), dt.date(2026, 9, 1)
    _ensure(app, august, september)
    first = event(idempotency_key="k-1", quantity="3", occurred_at="2026-08-20T10:00:00Z")
    again = dict(first, quantity="5", occurred_at="2026-09-14T10:00:00Z")
    assert ingest(app, [first]).accepted == 1
    result = ingest(app, [again])
    assert (result.accepted, result.duplicates) == (0, 1)
    table = "usage_events_2026_08" if POSTGRES else "usage_events"
    assert _where(app) == [(table, "k-1", 3_000_000)]
    # In one batch, in either order: the first of the batch is the one stored.
    both = ingest(app, [dict(again, idempotency_key="k-2"), dict(first, idempotency_key="k-2")])
    assert (both.accepted, both.duplicates) == (1, 1)
    table = "usage_events_2026_09" if POSTGRES else "usage_events"
    assert (table, "k-2", 5_000_000) in _where(app)
    with app.app_context():
        assert db.session.scalar(sa.select(sa.func.count()).select_from(UsageEvent)) == 2
        assert db.session.scalar(sa.select(sa.func.count()).select_from(UsageEventKey)) == (
            2 if POSTGRES else 0
        )
        assert sum(r.events for r in db.session.scalars(sa.select(UsageDaily))) == 2


def test_copies_in_different_months_sent_at_once_are_stored_once(app, mid_month, metered):
    """Six parallel connections send the same 150 keys, each copy dated in August or in
    September (different partitions) and in its own order: each key is stored once, the
    answers add up to one acceptance per key, and the rollups count each event once."""
    _ensure(app, dt.date(2026, 8, 1), dt.date(2026, 9, 1))
    keys = [f"shared-{i}" for i in range(150)]
    batches = []
    for n in range(6):
        at = "2026-08-25T08:00:00Z" if n % 2 else "2026-09-10T08:00:00Z"
        order = random.Random(n).sample(keys, len(keys))
        batches.append([event(idempotency_key=k, occurred_at=at, quantity="1") for k in order])
    results, errors = [], []
    barrier = threading.Barrier(len(batches))

    def send(batch: list[dict]) -> None:
        barrier.wait()
        try:
            with app.app_context(), council_wide(db.session):  # a thread's own connection
                result = usage_ingest(
                    db.session, actor=COUNCIL, body=body(batch), vendor_id=None, max_age_days=35
                )
                db.session.commit()
                results.append(result)
        except Exception as exc:  # asserted below
            errors.append(exc)

    threads = [threading.Thread(target=send, args=(b,)) for b in batches]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    assert sum(r.accepted for r in results) == len(keys)
    assert sum(r.duplicates for r in results) == len(keys) * (len(batches) - 1)
    stored = _where(app)
    assert sorted(key for _, key, _ in stored) == sorted(keys)
    with app.app_context():
        assert sum(r.events for r in db.session.scalars(sa.select(UsageDaily))) == len(keys)
    # A replay of everything counts nothing.
    replay = ingest(app, batches[0] + batches[1])
    assert (replay.accepted, replay.duplicates) == (0, 2 * len(keys))
    assert _where(app) == stored


def test_month_starts():
    at = dt.datetime(2026, 11, 30, 23, 59, tzinfo=dt.UTC)
    assert month_starts(at) == [
        dt.date(2026, 11, 1),
        dt.date(2026, 12, 1),
        dt.date(2027, 1, 1),
        dt.date(2027, 2, 1),
    ]
    # The UTC month: 00:30 on 1 December in Berlin is still November in UTC.
    berlin = dt.timezone(dt.timedelta(hours=1))
    assert month_starts(dt.datetime(2026, 12, 1, 0, 30, tzinfo=berlin), 0) == [dt.date(2026, 11, 1)]
    with pytest.raises(ValueError):
        month_starts(at, -1)


@postgres_only
def test_the_schedule_fires_the_job_which_makes_the_months_ahead_once(app, clock):
    clock.freeze("2033-06-15T09:00:00Z")
    with app.app_context():
        assert partitioned(db.session)
        before = {p.name for p in usage_partitions_list(db.session)}
        created = schedule_due(db.session, config=app.config, now=now_utc())
        db.session.commit()
        assert "metering.usage_partitions" in [j.name for j in created]
        # One job per day's slot.
        again = schedule_due(db.session, config=app.config, now=now_utc())
        assert "metering.usage_partitions" not in [j.name for j in again]
        db.session.commit()
        (job_id,) = db.session.scalars(
            sa.select(Job.id).where(Job.name == "metering.usage_partitions", Job.state == "queued")
        ).all()
    deliver_job(app, job_id)
    expected = {
        "usage_events_2033_06",
        "usage_events_2033_07",
        "usage_events_2033_08",
        "usage_events_2033_09",
    }
    with app.app_context():
        partitions = {p.name: p for p in usage_partitions_list(db.session)}
        assert expected.isdisjoint(before)
        assert set(partitions) - before == expected
        july = partitions["usage_events_2033_07"]
        assert (july.start, july.end) == (
            dt.datetime(2033, 7, 1, tzinfo=dt.UTC),
            dt.datetime(2033, 8, 1, tzinfo=dt.UTC),
        )
        assert partitions["usage_events_default"].start is None
        # Idempotent: running it again makes nothing and changes nothing.
        assert usage_partitions_ensure(db.session, actor=SYSTEM, now=now_utc()) == []
        db.session.commit()
        assert {p.name for p in usage_partitions_list(db.session)} == set(partitions)


@postgres_only
def test_an_event_of_a_month_without_a_partition_is_kept_and_moves_into_its_partition(
    app, clock, make_org, make_product
):
    """Ingestion never fails for want of a partition: the default partition takes the event;
    making the month's partition moves it there, still counted once."""
    from tests.metering.conftest import subscribe

    clock.freeze("2034-03-10T12:00:00Z")
    make_org("acme")
    make_product(10, sku="cad-suite", vendor="autodraft")
    subscribe(app, "acme", "cad-suite")
    first = event(idempotency_key="late", quantity="2", occurred_at="2034-02-27T10:00:00Z")
    assert ingest(app, [first]).accepted == 1
    assert _where(app) == [("usage_events_default", "late", 2_000_000)]
    # The job (here on 10 March, nothing ahead) finds February in the default partition.
    with app.app_context():
        made = usage_partitions_ensure(db.session, actor=SYSTEM, now=now_utc(), ahead=0)
        db.session.commit()
    assert made == [dt.date(2034, 2, 1), dt.date(2034, 3, 1)]
    assert _where(app) == [("usage_events_2034_02", "late", 2_000_000)]
    again = ingest(app, [dict(first, occurred_at="2034-03-09T10:00:00Z")])
    assert (again.accepted, again.duplicates) == (0, 1)
    assert _where(app) == [("usage_events_2034_02", "late", 2_000_000)]


@postgres_only
def test_the_application_role_reaches_events_only_through_the_partitioned_table(app):
    """Row-level security is the partitioned table's: the portal's role may not read or
    write a partition directly (which would skip it), nor make a table in their schema."""
    from psycopg.errors import InsufficientPrivilege

    with app.app_context():
        for statement in (
            "SELECT count(*) FROM usage_partitions.usage_events_default",
            "DELETE FROM usage_partitions.usage_events_default",
            "CREATE TABLE usage_partitions.mine (x int)",
        ):
            with db.engine.connect() as conn:
                with pytest.raises(sa.exc.ProgrammingError) as caught:
                    conn.execute(sa.text(statement))
                assert isinstance(caught.value.orig, InsufficientPrivilege), statement
        with db.engine.connect() as conn:
            forced = conn.execute(
                sa.text(
                    "SELECT relkind, relrowsecurity, relforcerowsecurity FROM pg_class "
                    "WHERE oid = 'public.usage_events'::regclass"
                )
            ).one()
        assert tuple(forced) == ("p", True, True)


def test_the_command_makes_the_partitions_or_says_there_are_none(app, runner, clock):
    clock.freeze("2035-10-05T09:00:00Z")
    result = runner.invoke(args=["usage", "partitions", "--ahead", "1"])
    assert result.exit_code == 0, result.output
    if not POSTGRES:
        assert "not partitioned" in result.output
        return
    assert "Made 2: 2035-10, 2035-11." in result.output
    assert "usage_events_2035_11\t2035-11" in result.output
    again = runner.invoke(args=["usage", "partitions", "--ahead", "1"])
    assert again.exit_code == 0 and "Made 0: none." in again.output
    bad = runner.invoke(args=["usage", "partitions", "--ahead", "-1"])
    assert bad.exit_code != 0
