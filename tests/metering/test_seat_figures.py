"""Seat figures read with the database's help (issue 13) equal the old computation.

``seat_utilisation`` sums seat-days in SQL and counts holders with usage by an index
probe per seat; ``seat_utilisation_from_rows`` is how it was worked out before (every
seat row of the period and the people with usage, in Python). Idle seats test recent
use with an index probe; here they are compared with each holder's last event. Varied
data: seats assigned before and inside the period, released mid-day, at midnight, at the
period's start, held twice; usage on several days, meters and products' edges; a seat
kept by a decision.
"""

from __future__ import annotations

import datetime as dt

import sqlalchemy as sa

from portal.db import db
from portal.identity.models import User
from portal.kernel.clock import now_utc
from portal.metering import selectors
from portal.metering.models import IdleSeatDecision, UsageEvent
from portal.seats import services as seats
from portal.seats.models import SeatAssignment, Subscription
from tests.conftest import SYSTEM
from tests.metering.conftest import event, ingest, subscribe

DAY = dt.timedelta(days=1)


def _midnight(at: dt.datetime) -> dt.datetime:
    return at.replace(hour=0, minute=0, second=0, microsecond=0)


def _varied(app, metered, make_user) -> None:
    """Ten holders with seats of varied history and usage (times relative to now)."""
    now = now_utc()
    today = _midnight(now)
    people = [make_user("member", metered["org"]) for _ in range(10)]
    sub_id = subscribe(app, "acme", "cad-suite", quantity=10)
    # (assigned, released) per person; None: still held.
    spans = [
        (now - 40 * DAY, None),
        (now - 33 * DAY - dt.timedelta(hours=5), None),
        (today - 20 * DAY, today - 3 * DAY),  # released at midnight
        (now - 12 * DAY, now - 2 * DAY - dt.timedelta(hours=7)),  # released mid-day
        (now - 9 * DAY, None),
        (today - 31 * DAY + dt.timedelta(microseconds=1), None),
        (now - 45 * DAY, now - 44 * DAY),  # released before every period below
        (now - 36 * DAY, None),
        (now - 2 * DAY, None),
        (now - 38 * DAY, None),
    ]
    with app.app_context():
        subscription = db.session.get(Subscription, sub_id)
        for holder, (assigned, released) in zip(people, spans, strict=True):
            seat = seats.seat_assign(
                db.session, actor=SYSTEM, subscription=subscription, user_email=holder.email
            )
            seat.assigned_at = assigned
            if released is not None:
                seat.released_at = released
        # A second, earlier seat of the same holder (held twice: seat-days add up, the
        # holder counts once).
        first = db.session.scalar(sa.select(User).where(User.email == people[4].email))
        db.session.add(
            SeatAssignment(
                organisation_id=metered["org"].id,
                subscription_id=sub_id,
                product_id=metered["product"].id,
                user_id=first.id,
                assigned_at=now - 30 * DAY,
                released_at=_midnight(now - 20 * DAY) + dt.timedelta(hours=1),
            )
        )
        db.session.commit()
        kept = db.session.scalar(
            sa.select(SeatAssignment).where(
                SeatAssignment.user_id
                == db.session.scalar(sa.select(User.id).where(User.email == people[9].email)),
                SeatAssignment.released_at.is_(None),
            )
        )
        db.session.add(
            IdleSeatDecision(
                organisation_id=kept.organisation_id,
                seat_assignment_id=kept.id,
                decision="keep",
                until=(now + 5 * DAY).date(),
            )
        )
        db.session.commit()
    used = [
        (people[0], [1, 3, 25]),
        (people[1], [31, 32]),  # used only before the 30-day window
        (people[2], [10, 5]),
        (people[3], [2]),
        (people[4], [0, 22]),
        (people[5], [29]),
        (people[7], [33]),
        (people[8], [1]),
    ]
    batch = []
    for holder, days_ago in used:
        for k, ago in enumerate(days_ago):
            at = now - ago * DAY - dt.timedelta(minutes=5 + 7 * k)
            for meter in ("api_calls", "sessions"):
                batch.append(
                    event(user_email=holder.email, meter=meter, occurred_at=at.isoformat())
                )
    result = ingest(app, batch)
    assert not result.rejected, result.rejected[:1]


def _periods(now: dt.datetime) -> list[tuple[dt.datetime, dt.datetime]]:
    month = now.replace(day=1, hour=0, minute=0, second=0, microsecond=0)
    previous = (month - DAY).replace(day=1)
    following = (month + 32 * DAY).replace(day=1)
    return [
        (month, following),  # the usage page's month
        (previous, month),
        (month, now),  # the dashboard's month so far
        (_midnight(now) - 10 * DAY, now),
        (now - 3 * DAY - dt.timedelta(hours=11), now - dt.timedelta(hours=13)),  # part-days
        (_midnight(now) - 30 * DAY, _midnight(now) - 2 * DAY),
        (now - 60 * DAY, now + 2 * DAY),
    ]


def test_seat_utilisation_equals_the_computation_over_every_seat(app, metered, make_user):
    _varied(app, metered, make_user)
    org_id = metered["org"].id
    with app.app_context():
        now = now_utc()
        for start, end in _periods(now):
            new = selectors.seat_utilisation(
                db.session, organisation_id=org_id, start=start, end=end
            )
            old = selectors.seat_utilisation_from_rows(
                db.session, organisation_id=org_id, start=start, end=end
            )
            assert new == old, (start, end)
            days = selectors.seat_days_by_subscription(
                db.session, organisation_id=org_id, start=start, end=end
            )
            assert {u.subscription_id: u.seat_days for u in old if u.seat_days} == {
                k: v for k, v in days.items() if v
            }, (start, end)
        [month] = selectors.seat_utilisation(
            db.session, organisation_id=org_id, start=now - 60 * DAY, end=now + 2 * DAY
        )
        assert month.seat_days > 0 and month.active_seats > 0 and month.assigned_now == 7


def _idle_by_hand(org_id: int, idle_days: int, now: dt.datetime) -> dict[int, dt.datetime | None]:
    """Open seats held ``idle_days`` whose holder's last event of the product is older,
    not kept: seat id -> last use, from the events themselves."""
    since = now - idle_days * DAY
    last: dict[tuple[int, str], dt.datetime] = {}
    for product_id, email, at in db.session.execute(
        sa.select(UsageEvent.product_id, UsageEvent.user_email, UsageEvent.occurred_at).where(
            UsageEvent.organisation_id == org_id, UsageEvent.user_email.is_not(None)
        )
    ):
        at = at if at.tzinfo else at.replace(tzinfo=dt.UTC)
        last[(product_id, email)] = max(at, last.get((product_id, email), at))
    kept = set(
        db.session.scalars(
            sa.select(IdleSeatDecision.seat_assignment_id).where(
                IdleSeatDecision.decision == "keep", IdleSeatDecision.until >= now.date()
            )
        )
    )
    out = {}
    for seat, email in db.session.execute(
        sa.select(SeatAssignment, User.email)
        .join(User, User.id == SeatAssignment.user_id)
        .where(SeatAssignment.organisation_id == org_id, SeatAssignment.released_at.is_(None))
    ):
        used = last.get((seat.product_id, email))
        if seat.assigned_at <= since and seat.id not in kept and (used is None or used < since):
            out[seat.id] = used
    return out


def test_idle_seats_equal_each_holders_last_event(app, metered, make_user):
    _varied(app, metered, make_user)
    org_id = metered["org"].id
    with app.app_context():
        now = now_utc()
        seen = set()
        for idle_days in (1, 2, 7, 30, 31, 33, 60):
            expected = _idle_by_hand(org_id, idle_days, now)
            flagged = selectors.idle_seats(
                db.session, organisation_id=org_id, idle_days=idle_days, now=now
            )
            assert {f.seat.id: f.last_used_at for f in flagged} == expected, idle_days
            count = selectors.idle_seat_count(
                db.session, organisation_id=org_id, idle_days=idle_days, now=now
            )
            page = selectors.idle_seats_page(
                db.session, organisation_id=org_id, idle_days=idle_days, now=now, per_page=3
            )
            assert count == page.total == len(expected), idle_days
            seen.add(len(expected))
        assert len(seen) >= 3  # the thresholds flag different seats
