"""Renewal forecasts on synthetic histories (issue 16): the pure half.

Each history is 84 days of a product's reserved seats ending today (2027-03-01), for a
pool of 100 seats from 2027-01-01 to 2027-12-31. Tolerances, stated per case: the
expected run-out day is worked out from the line that made the history.
"""

from __future__ import annotations

import datetime as dt
import math
from fractions import Fraction

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from portal.billing.rating import Tier
from portal.procurement.forecast import (
    Inputs,
    PriceTerms,
    decimal_text,
    fit,
    forecast_of,
    term_months,
)

TODAY = dt.date(2027, 3, 1)
START, END = dt.date(2027, 1, 1), dt.date(2027, 12, 31)
DAYS = 84


def inputs(history: list[int], **changes) -> Inputs:
    values = {
        "today": TODAY,
        "starts_on": START,
        "ends_on": END,
        "capacity": 100,
        "unit_cost": 1200,
        "cost_currency": "EUR",
        "history": tuple(history),
        "pools": ((1, START, END, 100),),
        "pool_id": 1,
    }
    values.update(changes)
    return Inputs(**values)


def days_after_today(day: dt.date | None) -> int | None:
    return None if day is None else (day - TODAY).days


def test_flat_never_runs_out():
    f = forecast_of(inputs([50] * DAYS))
    assert f.trend.slope == 0 and f.trend.level == 50
    assert f.runs_out_on is None
    assert f.at_ends_on == 50
    assert {p.seats for p in f.projection} == {50}
    assert f.projection[0].day == TODAY
    assert f.projection[-1].day == END + dt.timedelta(days=90)
    assert END in {p.day for p in f.projection}


def test_growing_runs_out_when_the_line_says():
    """20 seats growing by half a seat a day: 61.5 today (day 83), 100 at day 83 + 77.

    Tolerance: ±3 days (the history is rounded down to whole seats each day).
    """
    history = [20 + d // 2 for d in range(DAYS)]
    f = forecast_of(inputs(history))
    assert abs(f.trend.slope - Fraction(1, 2)) < Fraction(1, 50)
    assert abs(days_after_today(f.runs_out_on) - 77) <= 3


def test_seasonal_growth_runs_out_within_two_weeks_of_the_trend():
    """A quarter seat a day of growth under a four-week wave of ±8 seats.

    The trend alone reaches 100 at day 83 + 117 (50 + 0.25 × 200 = 100). The method is
    seasonality-free, so the wave moves today's level: tolerance ±14 days.
    """
    history = [round(50 + d / 4 + 8 * math.sin(2 * math.pi * d / 28)) for d in range(DAYS)]
    f = forecast_of(inputs(history))
    assert abs(days_after_today(f.runs_out_on) - 117) <= 14


def test_seasonal_flat_never_runs_out():
    history = [round(60 + 10 * math.sin(2 * math.pi * d / 28)) for d in range(DAYS)]
    f = forecast_of(inputs(history))
    assert f.runs_out_on is None
    assert abs(f.at_ends_on - 60) <= 10


def test_a_cliff_is_a_new_level_not_a_trend():
    """Growing to 90 seats, then a member leaves: 40 seats for the last three weeks.

    A line through all 56 days would dive to zero; after the level shift the trend
    starts again from the new level: flat at 40, never runs out.
    """
    history = [70 + d // 3 for d in range(DAYS - 21)] + [40] * 21
    f = forecast_of(inputs(history))
    assert f.trend.fitted_days == 21
    assert f.trend.slope == 0 and f.trend.level == 40
    assert f.runs_out_on is None
    assert f.at_ends_on == 40


def test_a_cliff_up_runs_out_at_once_with_a_waitlist():
    """A large member joins five days ago (30 → 95 seats); 10 more seats wait."""
    history = [30] * (DAYS - 5) + [95] * 5
    f = forecast_of(inputs(history, waiting=10))
    assert f.trend.fitted_days == 5 and f.trend.slope == 0
    assert f.runs_out_on == TODAY


def test_a_full_pool_has_run_out_today():
    assert forecast_of(inputs([100] * DAYS)).runs_out_on == TODAY


def test_another_pool_of_the_product_adds_capacity():
    history = [20 + d // 2 for d in range(DAYS)]
    second = (2, dt.date(2027, 4, 1), dt.date(2027, 12, 31), 50)
    f = forecast_of(inputs(history, pools=((1, START, END, 100), second)))
    # 150 seats from April: 61.5 + 0.5 d = 150 at d = 177.
    assert abs(days_after_today(f.runs_out_on) - 177) <= 3


def test_recommendation_cost_and_revenue():
    """Flat at 50 with 2 open requests: (50 + 0 + 2) × 1.10 = 57.2 → 58 seats.

    Cost: 58 × 12.00 × 12 months = 8,352.00 EUR. Revenue: 50 seats shared 30 EUR / 20 GBP
    as today: EUR 30 × 20.00 × 12 = 7,200.00; GBP 20 × 18.00 × 12 = 4,320.00.
    """
    f = forecast_of(
        inputs(
            [50] * DAYS,
            open_requests=2,
            reserved_by_currency={"EUR": 30, "GBP": 20},
            prices=(PriceTerms("GBP", 1800), PriceTerms("EUR", 2000)),
        )
    )
    assert f.term_months == 12
    assert f.next_term_starts_on == dt.date(2028, 1, 1)
    assert f.next_term_ends_on == dt.date(2028, 12, 31)  # 2028 is a leap year: same length
    assert f.projected_peak == 50
    assert f.recommended_capacity == 58
    assert (f.cost.amount, f.cost.currency) == (835_200, "EUR")
    assert [(m.currency, m.amount) for m in f.revenue] == [("EUR", 720_000), ("GBP", 432_000)]


def test_recommendation_less_the_pools_that_go_on_and_council_tiers():
    """A second pool of 20 seats runs on into the next term: 58 - 20 = 38 to renew.

    A council-basis EUR price charges the tier of 50 seats (up to 60: 15.00).
    """
    longer = (2, START, dt.date(2028, 6, 30), 20)
    f = forecast_of(
        inputs(
            [50] * DAYS,
            open_requests=2,
            pools=((1, START, END, 100), longer),
            reserved_by_currency={"EUR": 50},
            prices=(
                PriceTerms("EUR", 0, "council", (Tier(40, 2000), Tier(60, 1500), Tier(None, 1000))),
            ),
        )
    )
    assert f.other_capacity == 20
    assert f.recommended_capacity == 38
    assert [(m.currency, m.amount) for m in f.revenue] == [("EUR", 50 * 1500 * 12)]


def test_growth_recommends_the_peak_of_the_next_term():
    history = [20 + d // 2 for d in range(DAYS)]
    f = forecast_of(inputs(history))
    # The line at the end of the next term (day 670 from today): about 61.5 + 335 = 396.
    assert 390 <= f.projected_peak <= 402
    assert f.recommended_capacity == math.ceil(f.projected_peak * Fraction(11, 10))


def test_no_history_is_flat_at_zero():
    f = forecast_of(inputs([]))
    assert f.trend.level == 0 and f.runs_out_on is None and f.recommended_capacity == 0


@pytest.mark.parametrize(
    ("value", "text"),
    [(Fraction(1, 2), "0.5000"), (Fraction(-1, 3), "-0.3333"), (Fraction(2, 3), "0.6667")],
)
def test_decimal_text(value, text):
    assert decimal_text(value) == text


def test_term_months():
    assert term_months(dt.date(2027, 1, 1), dt.date(2027, 12, 31)) == 12
    assert term_months(dt.date(2027, 1, 1), dt.date(2027, 3, 31)) == 3
    assert term_months(dt.date(2027, 1, 1), dt.date(2027, 1, 1)) == 1


def test_fit_is_exact_on_a_line():
    trend = fit([10 + 2 * d for d in range(30)], capacity=1000)
    assert trend.slope == 2 and trend.level == 68 and trend.fitted_days == 30


def test_a_pool_ending_in_the_year_9999_is_projected_three_years():
    far = dt.date(9999, 12, 31)
    history = [20 + d // 2 for d in range(DAYS)]
    f = forecast_of(inputs(history, ends_on=far, pools=((1, START, far, 100),)))
    assert f.next_term_starts_on == far and f.next_term_ends_on == far
    days = [p.day for p in f.projection]
    assert days[-1] == far
    assert days[-2] <= TODAY + dt.timedelta(days=3 * 366 + 90)
    assert f.runs_out_on is not None  # growing into 100 seats within the three years
    f = forecast_of(inputs([50] * DAYS, starts_on=dt.date(1, 1, 1), ends_on=far, pools=()))
    assert f.runs_out_on is None and f.term_months > 100_000


def _run_out_day_by_day(trend, given: Inputs, until: dt.date) -> dt.date | None:
    """The definition, one day at a time (the search before it was solved per stretch)."""
    day = given.today
    while day <= until:
        if trend.at((day - given.today).days) + given.waiting >= given.capacity_on(day) > 0:
            return day
        day += dt.timedelta(days=1)
    return None


_offsets = st.integers(-400, 1200).map(lambda d: TODAY + dt.timedelta(days=d))
_pools = st.lists(
    st.tuples(_offsets, st.integers(0, 900), st.integers(0, 300)).map(
        lambda p: (p[0], p[0] + dt.timedelta(days=p[1]), p[2])
    ),
    min_size=0,
    max_size=4,
)


@settings(max_examples=300, deadline=None)
@given(
    level=st.fractions(0, 400, max_denominator=50),
    slope=st.fractions(-3, 3, max_denominator=50),
    waiting=st.integers(0, 60),
    pools=_pools,
    until=st.integers(-3, 1100),
)
def test_the_run_out_day_is_the_first_day_by_day(level, slope, waiting, pools, until):
    from portal.procurement.forecast import Trend, first_run_out

    trend = Trend(level, slope, 56)
    given = inputs(
        [0],
        waiting=waiting,
        pools=tuple((n, start, end, c) for n, (start, end, c) in enumerate(pools, 1)),
    )
    last = TODAY + dt.timedelta(days=until)
    assert first_run_out(trend, given, TODAY, last) == _run_out_day_by_day(trend, given, last)
