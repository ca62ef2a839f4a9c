"""A subscription's seats per day (portal.seats.history): the runs, the days and the sums
agree with the plain day-by-day reading they replaced, for any changes."""

from __future__ import annotations

import datetime as dt

from hypothesis import given, settings
from hypothesis import strategies as st

from portal.seats.history import daily_quantities, daily_runs, summed_daily_quantities

FIRST = dt.date(2026, 3, 1)
LAST = dt.date(2026, 3, 31)
_DAY = dt.timedelta(days=1)
_START = dt.datetime(2026, 3, 1, tzinfo=dt.UTC)


def one_day_at_a_time(changes, first, last):
    """The reading before the runs: every quantity written over the days it touches, the
    first day keeping the higher of two (the definition, kept here as the reference)."""
    days = (last - first).days + 1
    out = [0] * max(days, 0)
    start = dt.datetime.combine(first, dt.time(), tzinfo=dt.UTC)
    for i, (at, quantity) in enumerate(changes):
        if not quantity:
            continue
        lo = max(0, (at - start) // _DAY)
        hi = min(days, -((start - changes[i + 1][0]) // _DAY)) if i + 1 < len(changes) else days
        if lo < hi:
            earlier = out[lo]
            out[lo:hi] = [quantity] * (hi - lo)
            if earlier > quantity:
                out[lo] = earlier
    return out


#: Changes from a week before the stretch to a week after it, some at midnight, several a day.
_moments = st.one_of(
    st.integers(-7 * 24, 38 * 24).map(lambda h: _START + dt.timedelta(hours=h)),
    st.integers(-7, 38).map(lambda d: _START + d * _DAY),
)
_changes = st.lists(st.tuples(_moments, st.integers(0, 9)), max_size=12).map(
    lambda cs: sorted(cs, key=lambda c: c[0])
)


@settings(max_examples=400, deadline=None)
@given(_changes)
def test_days_are_the_day_by_day_reading(changes):
    assert daily_quantities(changes, FIRST, LAST) == one_day_at_a_time(changes, FIRST, LAST)


@settings(max_examples=400, deadline=None)
@given(_changes)
def test_runs_are_ordered_apart_and_never_empty(changes):
    runs = daily_runs(changes, FIRST, LAST)
    for lo, hi, seats in runs:
        assert 0 <= lo < hi <= 31 and seats > 0
    for (_, hi, _), (lo, _, _) in zip(runs, runs[1:], strict=False):
        assert hi <= lo


@settings(max_examples=200, deadline=None)
@given(st.lists(_changes, max_size=6))
def test_sums_are_the_days_added_up(histories):
    expected = [0] * 31
    for changes in histories:
        for i, seats in enumerate(one_day_at_a_time(changes, FIRST, LAST)):
            expected[i] += seats
    assert summed_daily_quantities(histories, FIRST, LAST) == expected


def test_a_decrease_mid_day_counts_the_higher_that_day():
    changes = [
        (_START - _DAY, 5),
        (_START + dt.timedelta(days=3, hours=10), 2),
        (_START + dt.timedelta(days=3, hours=12), 7),
        (_START + dt.timedelta(days=3, hours=14), 1),
    ]
    days = daily_quantities(changes, FIRST, LAST)
    assert days[:5] == [5, 5, 5, 7, 1]
    assert daily_runs(changes, FIRST, LAST) == [(0, 3, 5), (3, 4, 7), (4, 31, 1)]


def test_an_empty_stretch_has_no_days():
    assert daily_quantities([(_START, 3)], LAST, FIRST) == []
    assert summed_daily_quantities([[(_START, 3)]], LAST, FIRST) == []
