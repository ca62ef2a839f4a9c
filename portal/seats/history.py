"""A subscription's quantity over time: the seats reserved on each day of a stretch.

Billing rates seat-days from it; the council's utilisation chart sums it over a
product's subscriptions.
"""

from __future__ import annotations

import datetime as dt
import itertools
from collections.abc import Iterable

_DAY = dt.timedelta(days=1)


def daily_runs(
    changes: list[tuple[dt.datetime, int]], first: dt.date, last: dt.date
) -> list[tuple[int, int, int]]:
    """The seats reserved on each day from ``first`` to ``last`` as runs of equal days:
    ``(lo, hi, seats)`` for the days ``lo`` to ``hi - 1`` (0 is ``first``), in order,
    days without seats left out.

    ``changes`` are (effective_at, quantity from then on), in time order. A day
    counts the highest quantity reserved at any moment of it: a seat reserved
    for part of a day was reserved that day. (A quantity replaced at the very
    moment it took effect counts only inside a day, not at midnight.)

    Each quantity holds from its change to the next one and covers the days that span
    touches: the cost follows the number of changes, not of days.
    """
    days = (last - first).days + 1
    runs: list[list[int]] = []
    start = dt.datetime.combine(first, dt.time(), tzinfo=dt.UTC)
    for i, (at, quantity) in enumerate(changes):
        if not quantity:
            continue
        lo = max(0, (at - start) // _DAY)  # the day the quantity starts in
        # Past its last day: the day after the one the next change falls in (ceiling).
        hi = min(days, -((start - changes[i + 1][0]) // _DAY)) if i + 1 < len(changes) else days
        if lo >= hi:
            continue
        # Changes are in time order, so only day ``lo`` can hold an earlier quantity (one
        # that ended that day): the new one replaces the runs from ``lo`` on, and day
        # ``lo`` keeps the higher of the two.
        earlier = 0
        while runs and runs[-1][1] > lo:
            run = runs[-1]
            if run[0] <= lo:
                earlier = run[2]
                if run[0] < lo:
                    run[1] = lo
                    break
            runs.pop()
        if earlier > quantity:
            runs.append([lo, lo + 1, earlier])
            lo += 1
        if lo < hi:
            runs.append([lo, hi, quantity])
    return [(lo, hi, seats) for lo, hi, seats in runs]


def daily_quantities(
    changes: list[tuple[dt.datetime, int]], first: dt.date, last: dt.date
) -> list[int]:
    """The seats reserved on each day from ``first`` to ``last`` (inclusive): the runs of
    :func:`daily_runs`, one value a day."""
    out = [0] * max((last - first).days + 1, 0)
    for lo, hi, seats in daily_runs(changes, first, last):
        out[lo:hi] = [seats] * (hi - lo)
    return out


def seat_days(changes: list[tuple[dt.datetime, int]], first: dt.date, last: dt.date) -> int:
    """The seat-days reserved from ``first`` to ``last``: :func:`daily_quantities` added up."""
    return sum((hi - lo) * seats for lo, hi, seats in daily_runs(changes, first, last))


def summed_daily_quantities(
    histories: Iterable[list[tuple[dt.datetime, int]]], first: dt.date, last: dt.date
) -> list[int]:
    """The seats reserved on each day from ``first`` to ``last``, summed over several
    subscriptions' ``changes`` (as :func:`daily_quantities`). Each run is added at its
    ends (a difference array), so the cost follows the changes, not changes × days: a
    product's 50,000 subscriptions over 84 days are 50,000 runs, not 4,200,000 additions.
    """
    days = max((last - first).days + 1, 0)
    steps = [0] * (days + 1)
    for changes in histories:
        for lo, hi, seats in daily_runs(changes, first, last):
            steps[lo] += seats
            steps[hi] -= seats
    return list(itertools.accumulate(steps[:days]))
