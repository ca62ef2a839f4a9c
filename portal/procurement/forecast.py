"""Renewal forecasts per licence pool (SPEC 8.3, issue 16; docs/FORECAST.md).

Two halves:

* pure functions over a history (:func:`fit`, :func:`forecast_of`): no database, exact
  fractions, the same answer every time;
* the reader (:func:`pool_forecast`, :func:`forecasts_list`) that loads a pool's
  product's reserved-seat history, waitlist, open seat requests and prices
  council-wide, and hands them to the pure half.

**The method** (explainable, seasonality-free): a straight line through the last
:data:`WINDOW_DAYS` days of the product's daily reserved seats (every organisation's
subscriptions: the pools of a product are shared). The window is cut in two halves of
four weeks; the slope is the difference of the halves' mean seats ÷ the days between
their middles, and the line passes through the recent half's mean at its middle
(exact on a straight line; a four-weekly wave cancels out of both means). A *level
shift* — one day's change of at least :data:`SHIFT_SHARE` of the capacity (a large
member joining or leaving at once) — restarts the window on the day of the change, so a
cliff is not read as a trend. With fewer than :data:`MIN_FIT_DAYS` days in the window
the projection is flat at today's seats. The projection is the line's value today plus
its slope per day onwards, never below zero.

* **runs out on**: the first day from today to the pool's ``ends_on`` on which the
  projected reserved seats plus the seats waiting now (waitlist) reach the product's
  capacity in force that day (every pool of the product); None when they do not.
* **recommended capacity**: the projected peak of the next term (the pool's term
  again, from the day after ``ends_on``) plus the seats waiting and the open seat
  requests now, plus :data:`HEADROOM_PERCENT` % headroom, rounded up; less the
  capacity of the product's other pools still in force on the first day of the next
  term; never below zero.
* **cost**: recommended capacity × the pool's unit cost per seat-month × the term's
  months. **revenue at current prices**: the projected mean seats of the next term
  (up to what the renewed capacity can hold), shared between currencies as today's
  reserved seats are, × each currency's seat price (a council-basis price at the tier
  that mean chooses) × the term's months; one amount per currency, rounded half-up.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from fractions import Fraction

import sqlalchemy as sa
from sqlalchemy.orm import Session

from portal.billing.rating import Tier, round_half_up, volume_tier
from portal.catalogue.models import LicencePool, Price, PriceModel, TierBasis
from portal.db import council_wide
from portal.kernel import policy
from portal.kernel.actor import Actor
from portal.kernel.clock import now_utc
from portal.kernel.errors import NotFound
from portal.kernel.i18n import _l
from portal.kernel.policy import Action
from portal.procurement.forecast_models import PoolReminder
from portal.seats.counts import seat_counts
from portal.seats.history import summed_daily_quantities
from portal.seats.models import (
    SeatRequest,
    SeatRequestStatus,
    Subscription,
    SubscriptionChange,
    SubscriptionStatus,
)
from portal.tenancy.models import Organisation

#: Days of history the line is fitted to.
WINDOW_DAYS = 56
#: Days of history read (and drawn on the chart).
HISTORY_DAYS = 84
#: Fewer days than this since a level shift: no trend, flat at today's seats.
MIN_FIT_DAYS = 14
#: One day's change of at least this share of the capacity is a level shift.
SHIFT_SHARE = Fraction(1, 4)
#: Headroom on top of the projected peak and the waiting demand.
HEADROOM_PERCENT = 10
#: How far past ``ends_on`` the projection is reported.
PAST_END_DAYS = 90
#: The projection and the run-out search stop this many days from today at the latest (a
#: pool ending in the year 9999 is projected three years, not eight thousand).
MAX_HORIZON_DAYS = 3 * 366
#: Reminders: a pool ending within these many days, and one running out within RUN_OUT_SOON.
REMINDER_DAYS = (60, 30)
RUN_OUT_SOON = 30

_DAY = dt.timedelta(days=1)
_MONTH_DAYS = Fraction(36525, 1200)  # a mean month: 365.25 ÷ 12 days


# ------------------------------------------------------------------ the pure half


def decimal_text(value: Fraction, places: int = 4) -> str:
    """``value`` as a decimal string with ``places`` places, halves rounded up."""
    scaled = (
        round_half_up(value * 10**places) if value >= 0 else -round_half_up(-value * 10**places)
    )
    sign = "-" if scaled < 0 else ""
    whole, rest = divmod(abs(scaled), 10**places)
    return f"{sign}{whole}.{rest:0{places}d}"


@dataclass(frozen=True)
class Trend:
    """A fitted line: ``level`` seats today, ``slope`` seats a day; ``fitted_days`` used."""

    level: Fraction
    slope: Fraction
    fitted_days: int

    def at(self, days_ahead: int) -> Fraction:
        """Projected reserved seats ``days_ahead`` days after today (never below zero)."""
        return max(Fraction(0), self.level + self.slope * days_ahead)


def fit(history: Sequence[int], *, capacity: int) -> Trend:
    """The line through the recent history (one value a day, the last is today).

    See the module's docstring: the two halves of the last :data:`WINDOW_DAYS` days
    (restarted at a level shift of at least :data:`SHIFT_SHARE` × ``capacity`` seats in
    one day); flat at today's value with fewer than :data:`MIN_FIT_DAYS` days.
    """
    if not history:
        return Trend(Fraction(0), Fraction(0), 0)
    window = list(history[-WINDOW_DAYS:])
    threshold = max(Fraction(1), SHIFT_SHARE * max(capacity, 1))
    for i in range(len(window) - 1, 0, -1):
        if abs(window[i] - window[i - 1]) >= threshold:
            window = window[i:]
            break
    today = window[-1]
    n = len(window)
    if n < MIN_FIT_DAYS:
        return Trend(Fraction(today), Fraction(0), n)
    half = n // 2
    recent = Fraction(sum(window[-half:]), half)
    before = Fraction(sum(window[-2 * half : -half]), half)
    slope = (recent - before) / half  # their middles are ``half`` days apart
    level = recent + slope * Fraction(half - 1, 2)  # from the recent half's middle to today
    return Trend(max(Fraction(0), level), slope, n)


@dataclass(frozen=True)
class PriceTerms:
    """A seat price as the forecast needs it."""

    currency: str
    unit_amount: int
    tier_basis: str = TierBasis.ORGANISATION
    tiers: tuple[Tier, ...] = ()

    def unit_for(self, seats: int) -> int:
        if self.tier_basis == TierBasis.COUNCIL and self.tiers:
            return volume_tier(self.tiers, seats)[1].unit_amount
        return self.unit_amount


@dataclass(frozen=True)
class Inputs:
    """Everything a pool's forecast is computed from (a plain snapshot)."""

    today: dt.date
    starts_on: dt.date
    ends_on: dt.date
    capacity: int  # this pool's
    unit_cost: int  # per seat-month, minor units of cost_currency
    cost_currency: str
    history: tuple[int, ...]  # daily reserved seats of the product, the last is today
    # Every pool of the product: (id, starts_on, ends_on, capacity); this one's id:
    pools: tuple[tuple[int, dt.date, dt.date, int], ...]
    pool_id: int = 0
    waiting: int = 0  # seats on the waitlist now
    open_requests: int = 0  # people's seat requests not yet decided
    reserved_by_currency: dict[str, int] = field(default_factory=dict)
    prices: tuple[PriceTerms, ...] = ()

    def capacity_on(self, day: dt.date) -> int:
        return sum(c for _, start, end, c in self.pools if start <= day <= end)


@dataclass(frozen=True)
class Point:
    day: dt.date
    seats: int


@dataclass(frozen=True)
class Money:
    amount: int
    currency: str


@dataclass(frozen=True)
class Forecast:
    """A pool's renewal forecast."""

    today: dt.date
    ends_on: dt.date
    trend: Trend
    reserved_now: int
    capacity_now: int  # the product's, every pool in force today
    waiting: int
    open_requests: int
    history: tuple[Point, ...]  # daily, the last HISTORY_DAYS days
    projection: tuple[Point, ...]  # weekly from today, ends_on included, to PAST_END_DAYS past
    at_ends_on: int
    runs_out_on: dt.date | None
    next_term_starts_on: dt.date
    next_term_ends_on: dt.date
    term_months: int
    projected_peak: int  # over the next term
    recommended_capacity: int
    other_capacity: int  # the product's other pools still in force when the next term starts
    cost: Money
    revenue: tuple[Money, ...]
    pools: tuple[tuple[int, dt.date, dt.date, int], ...] = ()

    @property
    def days_left(self) -> int:
        return (self.ends_on - self.today).days

    def capacity_on(self, day: dt.date) -> int:
        """The product's seats in the pools in force on ``day``."""
        return sum(c for _, start, end, c in self.pools if start <= day <= end)


def _plus(day: dt.date, days: int) -> dt.date:
    """``day`` + ``days``, the calendar's last day at most (no overflow)."""
    return day + dt.timedelta(days=days) if (dt.date.max - day).days >= days else dt.date.max


def next_term_end(starts_on: dt.date, ends_on: dt.date) -> dt.date:
    """The last day of the next term: as many whole months again when the term is whole
    calendar months (a year from 1 January ends on 31 December, leap or not), else as many
    days again (the calendar's last day at most)."""
    after = _plus(ends_on, 1)
    if starts_on.day == 1 and after.day == 1 and after != ends_on:
        months = (after.year - starts_on.year) * 12 + after.month - starts_on.month
        total = after.year * 12 + after.month - 1 + months
        if total // 12 <= dt.MAXYEAR:
            return dt.date(total // 12, total % 12 + 1, 1) - _DAY
        return dt.date.max
    return _plus(ends_on, (ends_on - starts_on).days + 1)


def term_months(starts_on: dt.date, ends_on: dt.date) -> int:
    """A term's length in whole months (a mean month of 30.44 days; at least one)."""
    days = (ends_on - starts_on).days + 1
    return max(1, round_half_up(Fraction(days) / _MONTH_DAYS))


def first_run_out(trend: Trend, inputs: Inputs, today: dt.date, until: dt.date) -> dt.date | None:
    """The first day from ``today`` to ``until`` on which the projected seats plus the seats
    waiting reach the product's capacity in force that day (more than none); None if none.

    The capacity only changes where a pool starts or ends, and the line is straight: each
    stretch of equal capacity is solved at once (a rising line reaches it on the ceiling
    of the crossing, a flat or falling one on the stretch's first day or not at all)
    instead of day by day, up to three years of days for each of the pools listed.
    """
    if until < today:
        return None
    changes = {today}
    for _, start, end, _ in inputs.pools:
        for day in (start, _plus(end, 1)):
            if today < day <= until:
                changes.add(day)
    edges = sorted(changes)
    for i, first in enumerate(edges):
        last = edges[i + 1] - _DAY if i + 1 < len(edges) else until
        capacity = inputs.capacity_on(first)
        if capacity <= 0:
            continue
        ahead = (first - today).days
        if trend.at(ahead) + inputs.waiting >= capacity:
            return first
        if trend.slope > 0:
            # level + slope × a + waiting ≥ capacity, first on the ceiling of the crossing.
            crossing = math.ceil((capacity - inputs.waiting - trend.level) / trend.slope)
            if crossing <= (last - today).days:
                return today + dt.timedelta(days=max(crossing, ahead))
    return None


def forecast_of(inputs: Inputs) -> Forecast:
    """The forecast from ``inputs`` (pure; see the module's docstring for the rules)."""
    today = inputs.today
    trend = fit(inputs.history, capacity=max(inputs.capacity_on(today), inputs.capacity))
    reserved_now = inputs.history[-1] if inputs.history else 0

    search_until = min(inputs.ends_on, _plus(today, MAX_HORIZON_DAYS))
    runs_out_on = first_run_out(trend, inputs, today, search_until)

    horizon = _plus(max(min(inputs.ends_on, _plus(today, MAX_HORIZON_DAYS)), today), PAST_END_DAYS)
    days = sorted(
        {today + dt.timedelta(days=7 * k) for k in range((horizon - today).days // 7 + 1)}
        | ({inputs.ends_on} if inputs.ends_on >= today else set())
        | {horizon}
    )
    projection = tuple(Point(d, round_half_up(trend.at((d - today).days))) for d in days)
    at_ends_on = round_half_up(trend.at(max(0, (inputs.ends_on - today).days)))

    next_start = _plus(inputs.ends_on, 1)
    next_end = next_term_end(inputs.starts_on, inputs.ends_on)
    months = term_months(inputs.starts_on, inputs.ends_on)
    first_ahead = max(0, (next_start - today).days)
    last_ahead = max(0, (next_end - today).days)
    # A line's peak over a stretch is at one of its ends.
    peak = max(trend.at(first_ahead), trend.at(last_ahead))
    projected_peak = math.ceil(peak)
    other = sum(
        c
        for id_, start, end, c in inputs.pools
        if start <= next_start <= end and id_ != inputs.pool_id
    )
    need = (projected_peak + inputs.waiting + inputs.open_requests) * Fraction(
        100 + HEADROOM_PERCENT, 100
    )
    recommended = max(0, math.ceil(need) - other)
    cost = Money(recommended * inputs.unit_cost * months, inputs.cost_currency)

    mean = (trend.at(first_ahead) + trend.at(last_ahead)) / 2
    held = min(mean, Fraction(recommended + other))
    total_now = sum(inputs.reserved_by_currency.values())
    revenue: list[Money] = []
    for price in sorted(inputs.prices, key=lambda p: p.currency):
        share = inputs.reserved_by_currency.get(price.currency, 0)
        if not total_now or not share:
            continue
        unit = price.unit_for(int(held))  # the council-wide average, rounded down
        amount = round_half_up(held * Fraction(share, total_now) * unit * months)
        revenue.append(Money(amount, price.currency))

    start_history = today - dt.timedelta(days=len(inputs.history) - 1)
    return Forecast(
        today=today,
        ends_on=inputs.ends_on,
        trend=trend,
        reserved_now=reserved_now,
        capacity_now=inputs.capacity_on(today),
        waiting=inputs.waiting,
        open_requests=inputs.open_requests,
        history=tuple(
            Point(start_history + dt.timedelta(days=i), v) for i, v in enumerate(inputs.history)
        ),
        projection=projection,
        at_ends_on=at_ends_on,
        runs_out_on=runs_out_on,
        next_term_starts_on=next_start,
        next_term_ends_on=next_end,
        term_months=months,
        projected_peak=projected_peak,
        recommended_capacity=recommended,
        other_capacity=other,
        cost=cost,
        revenue=tuple(revenue),
        pools=inputs.pools,
    )


# ------------------------------------------------------------------ the reader


def product_history(
    session: Session, *, product_id: int, first: dt.date, last: dt.date
) -> list[int]:
    """The product's reserved seats on each day from ``first`` to ``last``, every
    organisation's (read council-wide: a pool is shared; only the sums leave)."""
    end = dt.datetime.combine(last + _DAY, dt.time(), tzinfo=dt.UTC)
    with council_wide(session):
        changes: dict[int, list[tuple[dt.datetime, int]]] = {}
        for sub_id, at, quantity in session.execute(
            sa.select(
                SubscriptionChange.subscription_id,
                SubscriptionChange.effective_at,
                SubscriptionChange.quantity,
            )
            .join(Subscription, Subscription.id == SubscriptionChange.subscription_id)
            .where(
                Subscription.product_id == product_id,
                Subscription.starts_on <= last,
                sa.or_(Subscription.ends_on.is_(None), Subscription.ends_on >= first),
                SubscriptionChange.effective_at < end,
            )
            .order_by(SubscriptionChange.effective_at, SubscriptionChange.id)
        ):
            changes.setdefault(sub_id, []).append((at, quantity))
    return summed_daily_quantities(changes.values(), first, last)


def _inputs(
    session: Session, pool: LicencePool, today: dt.date, memo: dict[int, Inputs] | None = None
) -> Inputs:
    """A pool's inputs; ``memo`` keeps what its product's other pools share (a list)."""
    shared = memo.get(pool.product_id) if memo is not None else None
    if shared is None:
        shared = _product_inputs(session, pool.product_id, today)
        if memo is not None:
            memo[pool.product_id] = shared
    return dataclasses.replace(
        shared,
        pool_id=pool.id,
        starts_on=pool.starts_on,
        ends_on=pool.ends_on,
        capacity=pool.capacity,
        unit_cost=pool.unit_cost_amount,
        cost_currency=pool.unit_cost_currency,
    )


def _product_inputs(session: Session, product_id: int, today: dt.date) -> Inputs:
    return _products_inputs(session, [product_id], today)[product_id]


def _products_inputs(session: Session, product_ids: list[int], today: dt.date) -> dict[int, Inputs]:
    """The inputs every pool of each product shares, for all the products at once: a few
    grouped statements whatever the number of products (the renewals page lists every
    pool in force; at scale each product has thousands of subscriptions)."""
    ids = sorted(set(product_ids))
    first = today - dt.timedelta(days=HISTORY_DAYS - 1)
    end = dt.datetime.combine(today + _DAY, dt.time(), tzinfo=dt.UTC)
    pools: dict[int, list[tuple[int, dt.date, dt.date, int]]] = {p: [] for p in ids}
    waiting = dict.fromkeys(ids, 0)
    open_requests = dict.fromkeys(ids, 0)
    reserved: dict[int, dict[str, int]] = {p: {} for p in ids}
    prices: dict[int, list[PriceTerms]] = {p: [] for p in ids}
    if not ids:
        return {}
    live = Subscription.status != SubscriptionStatus.CANCELLED
    with council_wide(session):
        # The product's reserved seats on each day (as product_history, every product).
        changes: dict[int, list[tuple[dt.datetime, int]]] = {}
        product_of: dict[int, int] = {}
        for product_id, sub_id, at, quantity in session.execute(
            sa.select(
                Subscription.product_id,
                SubscriptionChange.subscription_id,
                SubscriptionChange.effective_at,
                SubscriptionChange.quantity,
            )
            .join(Subscription, Subscription.id == SubscriptionChange.subscription_id)
            .where(
                Subscription.product_id.in_(ids),
                Subscription.starts_on <= today,
                sa.or_(Subscription.ends_on.is_(None), Subscription.ends_on >= first),
                SubscriptionChange.effective_at < end,
            )
            .order_by(SubscriptionChange.effective_at, SubscriptionChange.id)
        ):
            changes.setdefault(sub_id, []).append((at, quantity))
            product_of[sub_id] = product_id
        by_product: dict[int, list[list[tuple[dt.datetime, int]]]] = {p: [] for p in ids}
        for sub_id, steps in changes.items():
            by_product[product_of[sub_id]].append(steps)
        # Every product has its days, zeros without subscriptions.
        history = {p: summed_daily_quantities(h, first, today) for p, h in by_product.items()}
        for product_id, asked in session.execute(
            sa.select(SeatRequest.product_id, sa.func.count())
            .where(
                SeatRequest.product_id.in_(ids),
                SeatRequest.status == SeatRequestStatus.PENDING,
            )
            .group_by(SeatRequest.product_id)
        ):
            open_requests[product_id] = int(asked or 0)
        # Reserved and waiting: the figures kept as seats change (portal.seats.counts), not a
        # sum over every subscription (50,015 at scale: 20 ms, half the page). Reserved per
        # currency (the revenue's shares): only the subscriptions of organisations paying in
        # a currency other than the council's most common one are summed; the most common
        # currency's share is what is left of the product's figure.
        totals = seat_counts(session, ids)
        for product_id, (_, waited, _) in totals.items():
            waiting[product_id] = waited
        currencies = dict(
            session.execute(
                sa.select(Organisation.currency, sa.func.count()).group_by(Organisation.currency)
            ).all()
        )
        main = max(sorted(currencies), key=currencies.__getitem__) if currencies else None
        if len(currencies) > 1:
            for product_id, currency, seats in session.execute(
                sa.select(
                    Subscription.product_id,
                    Organisation.currency,
                    sa.func.sum(Subscription.quantity),
                )
                .join(Organisation, Organisation.id == Subscription.organisation_id)
                .where(
                    Organisation.currency.in_(sorted(set(currencies) - {main})),
                    Subscription.product_id.in_(ids),
                    live,
                )
                .group_by(Subscription.product_id, Organisation.currency)
            ):
                reserved[product_id][currency] = int(seats or 0)
        for product_id, (seats, _, _) in totals.items():
            rest = seats - sum(reserved[product_id].values())
            if main is not None and rest:
                reserved[product_id][main] = rest
    for id_, product_id, start, stop, capacity in session.execute(
        sa.select(
            LicencePool.id,
            LicencePool.product_id,
            LicencePool.starts_on,
            LicencePool.ends_on,
            LicencePool.capacity,
        )
        .where(LicencePool.product_id.in_(ids))
        .order_by(LicencePool.id)
    ):
        pools[product_id].append((id_, start, stop, capacity))
    for p in session.scalars(
        sa.select(Price)
        .where(Price.product_id.in_(ids), Price.model == PriceModel.SEAT)
        .order_by(Price.id)
    ).unique():
        prices[p.product_id].append(
            PriceTerms(
                p.currency,
                p.unit_amount,
                p.tier_basis,
                tuple(Tier(t.up_to, t.unit_amount, t.flat_amount) for t in p.tiers),
            )
        )
    return {
        p: Inputs(
            today=today,
            starts_on=today,
            ends_on=today,
            capacity=0,
            unit_cost=0,
            cost_currency="EUR",
            history=tuple(history[p]),
            pools=tuple(pools[p]),
            waiting=waiting[p],
            open_requests=open_requests[p],
            reserved_by_currency=reserved[p],
            prices=tuple(prices[p]),
        )
        for p in ids
    }


def pool_forecast(
    session: Session, *, actor: Actor, pool_id: int, today: dt.date | None = None
) -> tuple[LicencePool, Forecast]:
    """A pool's renewal forecast as of ``today`` (the clock's, unless told)."""
    policy.require(actor, Action.POOL_READ)
    pool = session.get(LicencePool, pool_id)
    if pool is None:
        raise NotFound(_l("No such pool."))
    day = today or now_utc().date()
    return pool, forecast_of(_inputs(session, pool, day))


def as_json(pool: LicencePool, f: Forecast) -> dict:
    """A pool's forecast as the API and the CLI give it (dates ISO 8601, money in minor
    units beside its currency, the trend a decimal string)."""

    def day(value: dt.date | None) -> str | None:
        return value.isoformat() if value else None

    return {
        "pool": pool.id,
        "product": pool.product.sku,
        "as_of": day(f.today),
        "starts_on": day(pool.starts_on),
        "ends_on": day(pool.ends_on),
        "capacity": pool.capacity,
        "product_capacity": f.capacity_now,
        "reserved": f.reserved_now,
        "waiting": f.waiting,
        "open_requests": f.open_requests,
        "trend_per_day": decimal_text(f.trend.slope),
        "fitted_days": f.trend.fitted_days,
        "at_ends_on": f.at_ends_on,
        "runs_out_on": day(f.runs_out_on),
        "projection": [{"date": day(p.day), "seats": p.seats} for p in f.projection],
        "next_term_starts_on": day(f.next_term_starts_on),
        "next_term_ends_on": day(f.next_term_ends_on),
        "term_months": f.term_months,
        "projected_peak": f.projected_peak,
        "recommended_capacity": f.recommended_capacity,
        "cost": {"amount": f.cost.amount, "currency": f.cost.currency},
        "revenue": [{"amount": m.amount, "currency": m.currency} for m in f.revenue],
    }


def reminders_of(session: Session, *, pool_id: int) -> list[PoolReminder]:
    """The reminders sent about a pool, newest first."""
    return list(
        session.scalars(
            sa.select(PoolReminder)
            .where(PoolReminder.pool_id == pool_id)
            .order_by(PoolReminder.sent_at.desc(), PoolReminder.id.desc())
        )
    )


@dataclass(frozen=True)
class Row:
    """A pool on the forecasts list."""

    pool: LicencePool
    forecast: Forecast


def forecasts_list(
    session: Session, *, actor: Actor, today: dt.date | None = None, include_ended: bool = False
) -> list[Row]:
    """Every pool in force (or starting later; ``include_ended``: those ended too) with its
    forecast: the ones running out first, then the ones ending first."""
    policy.require(actor, Action.POOL_READ)
    day = today or now_utc().date()
    query = sa.select(LicencePool).order_by(LicencePool.ends_on, LicencePool.id)
    if not include_ended:
        query = query.where(LicencePool.ends_on >= day)
    pools = list(session.scalars(query))
    memo = _products_inputs(session, [pool.product_id for pool in pools], day)
    rows = [Row(pool, forecast_of(_inputs(session, pool, day, memo))) for pool in pools]
    far = dt.date.max
    return sorted(
        rows,
        key=lambda r: (
            r.forecast.runs_out_on or far,
            r.pool.ends_on,
            r.pool.id,
        ),
    )
