"""Usage rollups kept at ingest (usage_daily, usage_daily_people, usage_last_use: issue 13).

Every figure the pages read from the rollups equals the same figure computed from the
events themselves, for random data; duplicates add nothing; parallel batches lose no
update; the migration's backfill rolls up events stored before it.
"""

from __future__ import annotations

import datetime as dt
import os
import random
import threading
from decimal import Decimal

import pytest
import sqlalchemy as sa

from portal.catalogue.models import Product
from portal.catalogue.services import meter_create
from portal.db import council_wide, db
from portal.kernel.clock import now_utc
from portal.kernel.scope import Scope
from portal.metering import selectors
from portal.metering.ingest import IngestResult, usage_ingest
from portal.metering.models import UsageDaily, UsageDailyPerson, UsageEvent, UsageLastUse
from tests.conftest import SYSTEM
from tests.metering.conftest import COUNCIL, body, event, ingest, person, subscribe
from tests.support import migration

METERS = ("api_calls", "storage_gb", "sessions", "active_users", "regions")


def _random_events(
    rng: random.Random, emails: list[str], now: dt.datetime, n: int, meters: tuple[str, ...]
) -> list[dict]:
    out = []
    for _ in range(n):
        at = now - dt.timedelta(seconds=rng.randint(60, 34 * 86400))
        out.append(
            event(
                organisation=rng.choice(("acme", "globex")),
                meter=rng.choice(meters),
                quantity=str(Decimal(rng.randint(0, 5_000_000)) / 1000),
                occurred_at=at.isoformat(),
                user_email=rng.choice([*emails, None]),
                properties={"region": rng.choice(("eu", "us", "ap"))}
                if rng.random() < 0.8
                else None,
            )
        )
    return out


def _key(aggregates: list[selectors.Aggregate]) -> list[tuple]:
    return sorted(
        (a.organisation_id, a.product_id, a.meter_id, a.aggregation, a.value, a.events)
        for a in aggregates
    )


def _seed(
    app, make_org, metered, *, seed: int, n: int, meters: tuple[str, ...] = METERS
) -> dt.datetime:
    make_org("globex")
    subscribe(app, "globex", "cad-suite")
    emails = [person(app, org, f"p{i}@{org}.example") for org in ("acme",) for i in range(4)]
    emails += [person(app, "globex", f"p{i}@globex.example") for i in range(3)]
    rng = random.Random(seed)
    now = now_utc()
    events = _random_events(rng, emails, now, n, meters)
    # People belong to one organisation: an event of another's person is rejected, fine.
    first = ingest(app, events[: n // 2])
    second = ingest(app, events[n // 3 :])  # overlaps the first: duplicates add nothing
    assert first.accepted > n // 4 and second.duplicates > 0
    return now


def test_rollup_figures_equal_the_events_figures_for_random_data(app, make_org, metered):
    # A second meter counting people: every such meter is counted by one statement.
    with app.app_context():
        meter_create(
            db.session,
            actor=SYSTEM,
            product=db.session.get(Product, metered["product"].id),
            data={
                "key": "logins",
                "name": "logins",
                "unit": "unit",
                "aggregation": "unique_count",
                "property": "user_email",
            },
        )
        db.session.commit()
    now = _seed(app, make_org, metered, seed=13, n=1200, meters=(*METERS, "logins"))
    month_start = now.replace(day=1, hour=0, minute=0, second=0, microsecond=0)
    previous_start = (month_start - dt.timedelta(days=1)).replace(day=1)
    windows = [
        (month_start, (month_start + dt.timedelta(days=32)).replace(day=1)),  # this month
        (previous_start, month_start),  # last month
        (month_start, now),  # cost so far: up to now (a partial day at the end)
        (now - dt.timedelta(days=10, hours=5, minutes=7), now - dt.timedelta(hours=30)),
        (now - dt.timedelta(hours=5), now),  # inside one day: no whole day
        (now - dt.timedelta(days=40), now + dt.timedelta(minutes=10)),
    ]
    with app.app_context():
        session = db.session
        org_ids = [metered["org"].id, *session.scalars(sa.text("SELECT id FROM organisations"))]
        scopes = [Scope.council(), *(Scope.organisation(i) for i in set(org_ids))]
        for start, end in windows:
            for scope in scopes:
                rolled = selectors.usage_aggregates(session, start=start, end=end, scope=scope)
                raw = selectors.usage_aggregates_from_events(
                    session, start=start, end=end, scope=scope
                )
                assert _key(rolled) == _key(raw), (start, end, scope)
        # An event a few minutes ahead of now (allowed): the day so far can no longer be
        # read whole from the rollups; the figures up to now stay the events' own.
        future = event(occurred_at=(now + dt.timedelta(minutes=3)).isoformat(), quantity="7")
    assert ingest(app, [future]).accepted == 1
    with app.app_context():
        session = db.session
        for start, end in windows:
            for scope in scopes:
                rolled = selectors.usage_aggregates(session, start=start, end=end, scope=scope)
                raw = selectors.usage_aggregates_from_events(
                    session, start=start, end=end, scope=scope
                )
                assert _key(rolled) == _key(raw), (start, end, scope)
            product_id = metered["product"].id
            assert _key(
                selectors.usage_aggregates(
                    session, start=start, end=end, scope=Scope.council(), product_id=product_id
                )
            ) == _key(
                selectors.usage_aggregates_from_events(
                    session, start=start, end=end, scope=Scope.council(), product_id=product_id
                )
            )
            for org_id in set(org_ids):
                raw_people = {
                    (p, e)
                    for p, e in session.execute(
                        sa.select(UsageEvent.product_id, UsageEvent.user_email).where(
                            UsageEvent.organisation_id == org_id,
                            UsageEvent.occurred_at >= start,
                            UsageEvent.occurred_at < end,
                            UsageEvent.user_email.is_not(None),
                        )
                    )
                }
                assert (
                    selectors.people_with_usage(
                        session, organisation_id=org_id, start=start, end=end
                    )
                    == raw_people
                )
        # Some figures are not trivially empty.
        assert any(
            a.aggregation == "unique_count" and a.value > 1
            for a in selectors.usage_aggregates(
                session, start=windows[-1][0], end=windows[-1][1], scope=Scope.council()
            )
        )
        # The rollup rows are the events' GROUP BY per day.
        daily = {
            (r.organisation_id, r.product_id, r.meter_id, r.day): (
                int(r.quantity_micros),
                r.max_micros,
                r.events,
            )
            for r in session.scalars(sa.select(UsageDaily))
        }
        expected: dict[tuple, list[int]] = {}
        for e in session.scalars(sa.select(UsageEvent)):
            k = (e.organisation_id, e.product_id, e.meter_id, e.occurred_at.date())
            total = expected.setdefault(k, [0, 0, 0])
            total[0] += e.quantity_micros
            total[1] = max(total[1], e.quantity_micros)
            total[2] += 1
        assert daily == {k: tuple(v) for k, v in expected.items()}
        last_use: dict[tuple, dt.datetime] = {}
        for e in session.scalars(sa.select(UsageEvent).where(UsageEvent.user_email.is_not(None))):
            k = (e.organisation_id, e.product_id, e.user_email)
            last_use[k] = max(last_use.get(k, e.occurred_at), e.occurred_at)
        rolled_last = {
            (o, p, u): selectors._aware(at)
            for o, p, u, at in session.execute(
                sa.select(
                    UsageDailyPerson.organisation_id,
                    UsageDailyPerson.product_id,
                    UsageDailyPerson.user_email,
                    sa.func.max(UsageDailyPerson.last_occurred_at),
                ).group_by(
                    UsageDailyPerson.organisation_id,
                    UsageDailyPerson.product_id,
                    UsageDailyPerson.user_email,
                )
            )
        }
        assert rolled_last == last_use


def test_the_pool_chart_counts_people_as_the_events_do(app, make_org, metered):
    now = _seed(app, make_org, metered, seed=7, n=400)
    last = now.date()
    first = last - dt.timedelta(days=34)
    with app.app_context():
        session = db.session
        _, series = selectors.pool_utilisation_series(
            session, product_id=metered["product"].id, first=first, last=last
        )
        people: dict[dt.date, set[str]] = {}
        for at, email in session.execute(
            sa.select(UsageEvent.occurred_at, UsageEvent.user_email).where(
                UsageEvent.user_email.is_not(None)
            )
        ):
            people.setdefault(at.date(), set()).add(email)
        days = [first + dt.timedelta(days=i) for i in range((last - first).days + 1)]
        assert series["People with usage"] == [len(people.get(d, ())) for d in days]
        assert sum(series["People with usage"]) > 0


def test_duplicates_add_nothing_to_the_rollups(app, metered):
    events = [event(quantity="2.5", user_email=None) for _ in range(20)]
    assert ingest(app, events).accepted == 20
    assert ingest(app, events + [dict(events[0])]).accepted == 0
    with app.app_context():
        rows = db.session.scalars(sa.select(UsageDaily)).all()
        assert sum(r.events for r in rows) == 20
        assert sum(int(r.quantity_micros) for r in rows) == 50_000_000


def test_a_batch_of_stored_and_new_events_rolls_up_only_the_new(app, metered):
    """On PostgreSQL such a batch takes the slower way (back to the savepoint, the events
    whose keys are new inserted by a join): only those reach the rollups."""
    at = (now_utc() - dt.timedelta(hours=2)).isoformat()  # one day's row, whatever the hour
    stored = [event(occurred_at=at, quantity="1", user_email=None) for _ in range(10)]
    assert ingest(app, stored).accepted == 10
    new = [event(occurred_at=at, quantity="2", user_email=None) for _ in range(5)]
    result = ingest(app, stored[::2] + new + stored[1::2])
    assert (result.accepted, result.duplicates) == (5, 10)
    with app.app_context():
        (row,) = db.session.scalars(sa.select(UsageDaily)).all()
        assert (row.events, int(row.quantity_micros)) == (15, 20_000_000)
        assert db.session.scalar(sa.select(sa.func.count()).select_from(UsageEvent)) == 15


def test_parallel_batches_sharing_some_keys_count_and_roll_up_each_event_once(app, metered):
    """Six batches at once, each with 40 events of its own and the same 40 shared ones: a
    batch meeting a shared key another has stored (or is storing) keeps only its new events."""
    at = (now_utc() - dt.timedelta(hours=2)).isoformat()
    shared = [event(occurred_at=at, quantity="1") for _ in range(40)]
    batches = [shared + [event(occurred_at=at, quantity="1") for _ in range(40)] for _ in range(6)]
    results = _ingest_at_once(app, batches)
    assert sum(r.accepted for r in results) == 40 + 6 * 40
    assert sum(r.duplicates for r in results) == 5 * 40
    with app.app_context():
        (row,) = db.session.scalars(sa.select(UsageDaily)).all()
        assert (row.events, int(row.quantity_micros)) == (280, 280_000_000)
        assert db.session.scalar(sa.select(sa.func.count()).select_from(UsageEvent)) == 280


@pytest.mark.skipif(
    not (os.environ.get("PORTAL_TEST_DATABASE_URL") or "").startswith("postgresql"),
    reason="fillfactor is PostgreSQL's",
)
def test_the_rollups_rewritten_by_every_batch_leave_room_on_their_pages(app):
    """Migration 0039: each batch rewrites the day's rows; with half of each page free the
    new version stays on its page and no index changes (a HOT update)."""
    with app.app_context():
        options = dict(
            db.session.execute(
                sa.text(
                    "SELECT relname, reloptions FROM pg_class "
                    "WHERE relname IN ('usage_daily', 'usage_daily_people')"
                )
            ).all()
        )
    assert options == {
        "usage_daily": ["fillfactor=50"],
        "usage_daily_people": ["fillfactor=50"],
    }


def _ingest_at_once(app, batches: list[list[dict]]) -> list[IngestResult]:
    """Each batch from its own thread (and session), all started together: their results,
    in the batches' order. None may fail."""
    results: list[IngestResult | None] = [None] * len(batches)
    errors: list[BaseException] = []
    barrier = threading.Barrier(len(batches))

    def send(n: int) -> None:
        barrier.wait()
        try:
            with app.app_context(), council_wide(db.session):  # a thread's own session
                results[n] = usage_ingest(
                    db.session,
                    actor=COUNCIL,
                    body=body(batches[n]),
                    vendor_id=None,
                    max_age_days=35,
                )
                db.session.commit()
        except Exception as exc:  # asserted below
            errors.append(exc)

    threads = [threading.Thread(target=send, args=(n,)) for n in range(len(batches))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    return [result for result in results if result is not None]


def _send_at_once(app, batches: list[list[dict]]) -> None:
    """Each batch from its own thread (and session), all started together; each must be
    accepted whole."""
    for batch, result in zip(batches, _ingest_at_once(app, batches), strict=True):
        assert result.accepted == len(batch), result.rejected[:1]


def test_parallel_batches_lose_no_update(app, metered):
    """Six batches of different events for the same rollup rows at once: every one counts
    (ON CONFLICT DO UPDATE adds; PostgreSQL locks the row, SQLite has one writer)."""
    at = (now_utc() - dt.timedelta(hours=2)).isoformat()
    batches = [[event(occurred_at=at, quantity="1") for _ in range(100)] for _ in range(6)]
    _send_at_once(app, batches)
    with app.app_context():
        (row,) = db.session.scalars(sa.select(UsageDaily)).all()
        assert (row.events, int(row.quantity_micros)) == (600, 600_000_000)


def test_idle_seats_read_the_last_use_from_the_rollup(app, metered):
    """A holder's last use is the latest event's time, whichever batch brought it."""
    email = person(app, "acme", "holder@acme.example")
    old = now_utc() - dt.timedelta(days=20)
    ingest(app, [event(user_email=email, occurred_at=old.isoformat())])
    with app.app_context():
        from portal.seats.models import Subscription
        from portal.seats.services import seat_assign
        from tests.conftest import SYSTEM

        sub = db.session.get(Subscription, metered["subscription"])
        seat = seat_assign(db.session, actor=SYSTEM, subscription=sub, user_email=email)
        seat.assigned_at = now_utc() - dt.timedelta(days=30)
        db.session.commit()
        org_id = metered["org"].id
        flagged = selectors.idle_seats(
            db.session, organisation_id=org_id, idle_days=14, now=now_utc()
        )
        assert [f.seat.id for f in flagged] == [seat.id]
        assert flagged[0].last_used_at is not None
        assert abs(selectors._aware(flagged[0].last_used_at) - old) < dt.timedelta(seconds=1)
    # A late event (sent after a newer one) does not move the last use back.
    ingest(
        app, [event(user_email=email, occurred_at=(now_utc() - dt.timedelta(days=2)).isoformat())]
    )
    ingest(app, [event(user_email=email, occurred_at=(old - dt.timedelta(days=5)).isoformat())])
    with app.app_context():
        assert (
            selectors.idle_seats(db.session, organisation_id=org_id, idle_days=14, now=now_utc())
            == []
        )


def test_the_migrations_backfill_rolls_up_stored_events_as_ingestion_does(app, make_org, metered):
    """Migration 0014 rolls up the events stored before it with the same figures that
    ingestion keeps from then on."""
    from tests.conftest import owner_engine

    _seed(app, make_org, metered, seed=3, n=500)
    tables = (UsageDaily.__table__, UsageDailyPerson.__table__)
    with app.app_context():
        engine = owner_engine(app)
        with engine.connect() as conn:
            kept = {t.name: sorted(map(tuple, conn.execute(sa.select(t)))) for t in tables}
        assert all(kept.values())
        with engine.begin() as conn:
            for table in tables:
                conn.execute(table.delete())
            for statement in migration("0014_usage_rollups.py").backfill_statements(
                engine.dialect.name == "postgresql"
            ):
                conn.execute(sa.text(statement))
        with engine.connect() as conn:
            backfilled = {t.name: sorted(map(tuple, conn.execute(sa.select(t)))) for t in tables}
    assert backfilled == kept


def _last_days_of_events(conn) -> list[tuple]:
    """Each person's last UTC day of use per product, from the events themselves."""
    last: dict[tuple, dt.date] = {}
    for org, product, email, occurred in conn.execute(
        sa.select(
            UsageEvent.organisation_id,
            UsageEvent.product_id,
            UsageEvent.user_email,
            UsageEvent.occurred_at,
        ).where(UsageEvent.user_email.is_not(None))
    ):
        day = selectors._aware(occurred).astimezone(dt.UTC).date()
        key = (org, product, email)
        last[key] = max(day, last.get(key, day))
    return sorted((*key, day) for key, day in last.items())


def test_the_last_day_of_use_is_the_events_own_and_the_backfills(app, make_org, metered):
    """usage_last_use (migration 0033) holds each person's last day of use per product as
    the events say, across batches sent out of order and duplicates; migration 0033's
    backfill from usage_daily_people writes the same rows."""
    from tests.conftest import owner_engine

    _seed(app, make_org, metered, seed=7, n=600)
    table = UsageLastUse.__table__
    with app.app_context():
        engine = owner_engine(app)
        with engine.connect() as conn:
            kept = sorted(map(tuple, conn.execute(sa.select(table))))
            assert kept and kept == _last_days_of_events(conn)
        with engine.begin() as conn:
            conn.execute(table.delete())
            conn.execute(sa.text(migration("0033_usage_last_use.py").BACKFILL))
        with engine.connect() as conn:
            assert sorted(map(tuple, conn.execute(sa.select(table)))) == kept


def test_the_last_day_is_written_once_a_day_not_once_a_batch(app, metered):
    """A second batch of the same day leaves the person's row as it was (not updated: its
    version is unchanged on PostgreSQL); a later day moves it, an earlier one does not."""
    email = person(app, "acme", "daily@acme.example")
    today = now_utc().replace(hour=0, minute=30, second=0, microsecond=0)
    if today > now_utc() - dt.timedelta(minutes=5):  # just after midnight: yesterday's
        today -= dt.timedelta(days=1)

    def row() -> tuple:
        with app.app_context():
            # PostgreSQL's row version (a new one per update); SQLite keeps none: the
            # day alone is checked there.
            version = "xmin::text" if db.engine.dialect.name == "postgresql" else "NULL"
            return tuple(
                db.session.execute(
                    sa.text(
                        f"SELECT last_day, {version} FROM usage_last_use WHERE user_email = :e"  # noqa: S608
                    ),
                    {"e": email},
                ).one()
            )

    ingest(app, [event(user_email=email, occurred_at=today.isoformat())])
    first = row()
    assert str(first[0]) == today.date().isoformat()
    ingest(
        app, [event(user_email=email, occurred_at=(today + dt.timedelta(minutes=2)).isoformat())]
    )
    assert row() == first
    ingest(app, [event(user_email=email, occurred_at=(today - dt.timedelta(days=3)).isoformat())])
    assert row() == first
    yesterday = today - dt.timedelta(days=1)
    with app.app_context():
        db.session.execute(
            sa.update(UsageLastUse)
            .where(UsageLastUse.user_email == email)
            .values(last_day=yesterday.date())
        )
        db.session.commit()
    ingest(app, [event(user_email=email, occurred_at=today.isoformat())])
    assert str(row()[0]) == today.date().isoformat()


def test_parallel_batches_keep_the_latest_day(app, metered):
    """Batches of different days for the same people at once: each person's row ends at
    the latest day, whichever batch committed last."""
    emails = [person(app, "acme", f"par{i}@acme.example") for i in range(5)]
    now = now_utc()
    days = [now - dt.timedelta(days=d, hours=1) for d in (9, 1, 4, 7, 2, 5)]
    batches = [[event(user_email=e, occurred_at=at.isoformat()) for e in emails] for at in days]
    _send_at_once(app, batches)
    latest = max(days).astimezone(dt.UTC).date()
    with app.app_context():
        rows = db.session.execute(
            sa.select(UsageLastUse.user_email, UsageLastUse.last_day).where(
                UsageLastUse.user_email.in_(emails)
            )
        ).all()
    assert sorted(rows) == sorted((e, latest) for e in emails)


def test_a_holder_last_seen_on_the_windows_first_day_is_idle_only_before_its_start(app, metered):
    """The idle window starts mid-day: use on that day before its start is idleness, use
    after it is not (the last day alone cannot tell: the day's time decides)."""
    from portal.seats.models import Subscription
    from portal.seats.services import seat_assign
    from tests.conftest import SYSTEM

    now = now_utc().replace(hour=12, minute=0, second=0, microsecond=0)
    if now > now_utc():
        now -= dt.timedelta(days=1)
    since = now - dt.timedelta(days=14)
    before = person(app, "acme", "before@acme.example")
    after = person(app, "acme", "after@acme.example")
    ingest(
        app,
        [
            event(user_email=before, occurred_at=(since - dt.timedelta(hours=3)).isoformat()),
            event(user_email=after, occurred_at=(since + dt.timedelta(hours=3)).isoformat()),
        ],
    )
    with app.app_context():
        sub = db.session.get(Subscription, metered["subscription"])
        seats = {}
        for email in (before, after):
            seat = seat_assign(db.session, actor=SYSTEM, subscription=sub, user_email=email)
            seat.assigned_at = now - dt.timedelta(days=30)
            seats[email] = seat.id
        db.session.commit()
        org_id = metered["org"].id
        flagged = selectors.idle_seats(db.session, organisation_id=org_id, idle_days=14, now=now)
        assert [f.seat.id for f in flagged] == [seats[before]]
        assert (
            selectors.idle_seat_count(db.session, organisation_id=org_id, idle_days=14, now=now)
            == 1
        )
        # A day later the window starts after both: both idle.
        later = now + dt.timedelta(days=1)
        flagged = selectors.idle_seats(db.session, organisation_id=org_id, idle_days=14, now=later)
        assert sorted(f.seat.id for f in flagged) == sorted(seats.values())
