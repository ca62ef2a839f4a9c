"""A subscription's quantity over time: the seats reserved on each day of a stretch.

Billing rates seat-days from it; the council's utilisation chart sums it over a
product's subscriptions.
"""

from __future__ import annotations

import datetime as dt

_DAY = dt.timedelta(days=1)


def daily_quantities(
    changes: list[tuple[dt.datetime, int]], first: dt.date, last: dt.date
) -> list[int]:
    """The seats reserved on each day from ``first`` to ``last`` (inclusive).

    ``changes`` are (effective_at, quantity from then on), in time order. A day
    counts the highest quantity reserved at any moment of it: a seat reserved
    for part of a day was reserved that day. (A quantity replaced at the very
    moment it took effect counts only inside a day, not at midnight.)

    Each quantity holds from its change to the next one: it is spread over the
    days that span touches, so the cost follows the number of changes, not days.
    """
    days = (last - first).days + 1
    out = [0] * max(days, 0)
    start = dt.datetime.combine(first, dt.time(), tzinfo=dt.UTC)
    for i, (at, quantity) in enumerate(changes):
        if not quantity:
            continue
        lo = max(0, (at - start) // _DAY)  # the day the quantity starts in
        # Past its last day: the day after the one the next change falls in (ceiling).
        hi = min(days, -((start - changes[i + 1][0]) // _DAY)) if i + 1 < len(changes) else days
        if lo < hi:
            # Changes are in time order, so only the first day can hold an earlier
            # quantity (one that ended that day): keep the higher there.
            earlier = out[lo]
            out[lo:hi] = [quantity] * (hi - lo)
            if earlier > quantity:
                out[lo] = earlier
    return out
