"""Aggregates, entitlements, seat utilisation and idle seats from the stored events."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

import pytest
import sqlalchemy as sa

from portal.catalogue.models import Meter, Product
from portal.db import db
from portal.kernel.clock import now_utc
from portal.kernel.periods import period_bounds, period_of
from portal.kernel.scope import Scope
from portal.metering import selectors
from portal.seats import services as seats
from portal.seats.models import SeatAssignment, Subscription
from portal.tenancy.models import Organisation
from tests.conftest import SYSTEM
from tests.metering.conftest import event, ingest, person, subscribe

MID_MONTH = "2026-09-15T12:00:00Z"
JUST_AFTER_MIDNIGHT_ON_THE_FIRST = "2026-10-01T00:10:00Z"


@pytest.fixture(autouse=True)
def frozen(request, clock) -> dt.datetime:
    """Every test here reads "this month": the clock stands still at a fixed instant
    (mid-month unless a test is parametrized with another), set before the fixtures
    that subscribe 40 days back."""
    return clock.freeze(getattr(request, "param", MID_MONTH))


def _ago(minutes: int) -> str:
    return (now_utc() - dt.timedelta(minutes=minutes)).isoformat()


def _by_meter(app, aggregates) -> dict[str, tuple[Decimal, int]]:
    """Aggregates by meter key (call inside the app context that computed them)."""
    keys = {m.id: m.key for m in db.session.scalars(sa.select(Meter))}
    return {keys[a.meter_id]: (a.value, a.events) for a in aggregates}


def _month():
    now = now_utc()
    return period_bounds(f"{now.year}-{now.month:02d}")


@pytest.mark.parametrize(
    "frozen",
    [MID_MONTH, JUST_AFTER_MIDNIGHT_ON_THE_FIRST],
    ids=["mid-month", "first-of-month-just-after-midnight"],
    indirect=True,
)
def test_each_aggregation_over_a_period(app, frozen, metered):
    person(app, "acme", "a@acme.example")
    person(app, "acme", "b@acme.example")
    ingest(
        app,
        [
            event(meter="api_calls", quantity="1.5", occurred_at=_ago(90)),
            event(meter="api_calls", quantity="2.25", occurred_at=_ago(30)),
            event(meter="storage_gb", quantity="10", occurred_at=_ago(90)),
            event(meter="storage_gb", quantity="7", occurred_at=_ago(30)),
            event(meter="sessions", quantity="100", occurred_at=_ago(90)),
            event(meter="sessions", quantity="100", occurred_at=_ago(90)),
            event(meter="active_users", user_email="a@acme.example", occurred_at=_ago(90)),
            event(meter="active_users", user_email="b@acme.example", occurred_at=_ago(90)),
            event(meter="active_users", user_email="a@acme.example", occurred_at=_ago(90)),
            event(meter="regions", properties={"region": "eu"}, occurred_at=_ago(90)),
            event(meter="regions", properties={"region": "us"}, occurred_at=_ago(90)),
            event(meter="regions", properties={"region": "eu"}, occurred_at=_ago(90)),
        ],
    )
    # 30 and 90 minutes ago: in September whether it is now mid-September or October 1st, 00:10
    start, end = period_bounds("2026-09")
    this_start, this_end = _month()
    with app.app_context():
        result = _by_meter(
            app,
            selectors.usage_aggregates(
                db.session, start=start, end=end, scope=Scope.organisation(metered["org"].id)
            ),
        )
        this_month = selectors.usage_aggregates(
            db.session, start=this_start, end=this_end, scope=Scope.organisation(metered["org"].id)
        )
    assert result == {
        "api_calls": (Decimal("3.75"), 2),
        "storage_gb": (Decimal(10), 2),
        "sessions": (Decimal(2), 2),
        "active_users": (Decimal(2), 3),
        "regions": (Decimal(2), 3),
    }
    if frozen.day == 1:  # just after midnight: nothing yet in October
        assert this_month == []


def test_period_boundaries_are_half_open_in_utc(app, metered):
    now = now_utc()
    start, end = _month()
    # at most 31 days ago, so within the 35 days the portal accepts
    previous_last_instant = start - dt.timedelta(microseconds=1)
    assert previous_last_instant > now - dt.timedelta(days=35)
    ingest(
        app,
        [
            event(quantity="1", occurred_at=start.isoformat()),
            event(quantity="100", occurred_at=previous_last_instant.isoformat()),
        ],
    )
    with app.app_context():
        this = _by_meter(
            app,
            selectors.usage_aggregates(
                db.session, start=start, end=end, scope=Scope.organisation(metered["org"].id)
            ),
        )
        last_start, _ = period_bounds(period_of(previous_last_instant))
        last = _by_meter(
            app,
            selectors.usage_aggregates(
                db.session, start=last_start, end=start, scope=Scope.organisation(metered["org"].id)
            ),
        )
    assert this["api_calls"] == (Decimal(1), 1)
    assert last["api_calls"] == (Decimal(100), 1)


def test_aggregates_are_scoped_to_the_organisation(app, metered, make_org):
    make_org("other")
    subscribe(app, "other", "cad-suite")
    ingest(app, [event(quantity="5"), event(quantity="7", organisation="other")])
    start, end = _month()
    with app.app_context():
        mine = selectors.usage_aggregates(
            db.session, start=start, end=end, scope=Scope.organisation(metered["org"].id)
        )
        everyone = selectors.usage_aggregates(
            db.session, start=start, end=end, scope=Scope.council()
        )
    assert [a.value for a in mine] == [Decimal(5)]
    assert sorted(a.value for a in everyone) == [Decimal(5), Decimal(7)]


@pytest.mark.parametrize("period", ["2026", "2026-13", "abc", "", "2026-00"])
def test_bad_periods_are_refused(period):
    from portal.kernel.errors import ValidationFailed

    with pytest.raises(ValidationFailed):
        period_bounds(period)


def _seat(app, org, product, email):
    sub_id = subscribe(app, org.slug, product.sku, quantity=3)
    with app.app_context():
        subscription = db.session.get(Subscription, sub_id)
        seat = seats.seat_assign(
            db.session, actor=SYSTEM, subscription=subscription, user_email=email
        )
        db.session.commit()
        return sub_id, seat.id


def test_entitlement_check(app, metered, make_user, make_product):
    person = make_user("member", metered["org"])
    _seat(app, metered["org"], metered["product"], person.email)
    other_vendor_product = make_product(3, sku="bi-studio", vendor="datalake")
    with app.app_context():
        yes = selectors.entitlement_check(
            db.session,
            vendor_id=metered["vendor_id"],
            organisation="acme",
            user_email=person.email.upper(),
            product="cad-suite",
        )
        assert yes.entitled and yes.seat["user_email"] == person.email
        for kwargs in (
            {"organisation": "acme", "user_email": "nobody@acme.example", "product": "cad-suite"},
            {"organisation": "other", "user_email": person.email, "product": "cad-suite"},
            {
                "organisation": "acme",
                "user_email": person.email,
                "product": other_vendor_product.sku,
            },
        ):
            assert not selectors.entitlement_check(
                db.session, vendor_id=metered["vendor_id"], **kwargs
            ).entitled
        # another vendor asking about this product learns nothing
        assert not selectors.entitlement_check(
            db.session,
            vendor_id=metered["vendor_id"] + 1000,
            organisation="acme",
            user_email=person.email,
            product="cad-suite",
        ).entitled


def test_released_seat_is_not_entitled(app, metered, make_user):
    person = make_user("member", metered["org"])
    sub_id, _ = _seat(app, metered["org"], metered["product"], person.email)
    with app.app_context():
        from portal.seats.models import Subscription

        seats.seat_release(
            db.session,
            actor=SYSTEM,
            subscription=db.session.get(Subscription, sub_id),
            user_email=person.email,
        )
        db.session.commit()
        assert not selectors.entitlement_check(
            db.session,
            vendor_id=None,
            organisation="acme",
            user_email=person.email,
            product="cad-suite",
        ).entitled


def test_seat_days_from_the_assignment_history(app, metered, make_user):
    person = make_user("member", metered["org"])
    sub_id, seat_id = _seat(app, metered["org"], metered["product"], person.email)
    start = dt.datetime(2026, 9, 1, tzinfo=dt.UTC)
    end = dt.datetime(2026, 10, 1, tzinfo=dt.UTC)
    with app.app_context():
        seat = db.session.get(SeatAssignment, seat_id)
        seat.assigned_at = dt.datetime(2026, 9, 10, 15, tzinfo=dt.UTC)  # days 10..19: 10 days
        seat.released_at = dt.datetime(2026, 9, 19, 9, tzinfo=dt.UTC)
        second = SeatAssignment(
            organisation_id=seat.organisation_id,
            subscription_id=sub_id,
            product_id=seat.product_id,
            user_id=seat.user_id,
            assigned_at=dt.datetime(2026, 9, 25, tzinfo=dt.UTC),
        )  # 25..30: 6
        db.session.add(second)
        db.session.commit()
        [row] = selectors.seat_utilisation(
            db.session, organisation_id=metered["org"].id, start=start, end=end
        )
    assert row.seat_days == 16
    assert row.assigned_now == 1
    assert row.active_seats == 0


def test_idle_seats_are_flagged_and_kept_ones_are_not(app, metered, make_user):
    from portal.metering.services import idle_seat_keep

    busy, idle = make_user("member", metered["org"]), make_user("member", metered["org"])
    sub_id = subscribe(app, "acme", "cad-suite", quantity=2)
    with app.app_context():
        subscription = db.session.get(Subscription, sub_id)
        for person in (busy, idle):
            seat = seats.seat_assign(
                db.session, actor=SYSTEM, subscription=subscription, user_email=person.email
            )
            seat.assigned_at = now_utc() - dt.timedelta(days=40)
        db.session.commit()
    ingest(app, [event(user_email=busy.email)])
    with app.app_context():
        flagged = selectors.idle_seats(
            db.session, organisation_id=metered["org"].id, idle_days=30, now=now_utc()
        )
        assert [f.seat.user.email for f in flagged] == [idle.email]
        idle_seat_keep(db.session, actor=SYSTEM, seat=flagged[0].seat, days=14)
        db.session.commit()
        assert (
            selectors.idle_seats(
                db.session, organisation_id=metered["org"].id, idle_days=30, now=now_utc()
            )
            == []
        )


def test_releasing_an_idle_seat_returns_it_to_the_pool_and_feeds_the_waitlist(
    app, metered, make_user, make_org
):
    from portal.metering.services import idle_seat_release

    person = make_user("member", metered["org"])
    waiting_org = make_org("waiting")
    mine_id = subscribe(app, "acme", "cad-suite", quantity=10)
    with app.app_context():
        product = db.session.get(Product, metered["product"].id)
        mine = db.session.get(Subscription, mine_id)
        seat = seats.seat_assign(
            db.session, actor=SYSTEM, subscription=mine, user_email=person.email
        )
        waiting = seats.subscription_create(
            db.session,
            actor=SYSTEM,
            organisation=db.session.get(Organisation, waiting_org.id),
            product=product,
            quantity=1,
            on_shortage="waitlist",
        ).subscription
        assert waiting.status == "waitlisted"
        db.session.commit()
        idle_seat_release(db.session, actor=SYSTEM, seat=seat)
        db.session.commit()
        assert db.session.get(Subscription, mine.id).quantity == 9
        assert db.session.get(Subscription, waiting.id).status == "active"
        assert db.session.get(SeatAssignment, seat.id).release_reason == "idle"


def test_csv_upload_counts_like_the_api(app, metered):
    from portal.metering.services import usage_ingest_csv
    from tests.metering.conftest import COUNCIL

    when = (now_utc() - dt.timedelta(hours=3)).isoformat()
    person(app, "acme", "a@acme.example")
    text = (
        "idempotency_key,organisation,product,meter,quantity,occurred_at,user_email,properties\n"
        f'k1,acme,cad-suite,api_calls,2.5,{when},a@acme.example,"{{""region"": ""eu""}}"\n'
        f"k2,acme,cad-suite,api_calls,-1,{when},,\n"
        f"k3,acme,cad-suite,api_calls,1,{when},,not json\n"
    )
    with app.app_context():
        result = usage_ingest_csv(
            db.session, actor=COUNCIL, text=text, vendor_id=None, max_age_days=35
        )
        db.session.commit()
        again = usage_ingest_csv(
            db.session, actor=COUNCIL, text=text, vendor_id=None, max_age_days=35
        )
        db.session.commit()
    assert result.accepted == 1
    assert {r["index"]: list(r["errors"]) for r in result.rejected} == {
        1: ["quantity"],
        2: ["properties"],
    }
    assert (again.accepted, again.duplicates) == (0, 1)


def test_csv_without_the_needed_columns_is_refused(app, metered):
    from portal.kernel.errors import ValidationFailed
    from portal.metering.services import usage_ingest_csv
    from tests.metering.conftest import COUNCIL

    with app.app_context(), pytest.raises(ValidationFailed, match="header"):
        usage_ingest_csv(
            db.session, actor=COUNCIL, text="a,b\n1,2\n", vendor_id=None, max_age_days=35
        )
