"""What an organisation owes for a stretch of a month: seat and metered charges.

The link between the domain data and the pure rating functions of
:mod:`portal.billing.rating`. The usage pages call it for "cost so far this
month"; invoice runs call it for a whole month. Every charge says what
produced it (the subscription and its seat-days, or the meter aggregate and
its event count) so an invoice line can be traced.
"""

from __future__ import annotations

import calendar
import datetime as dt
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Session

from portal.billing.rating import Tier, metered_amount, seat_amount
from portal.catalogue.models import Meter, Price, Product
from portal.metering.selectors import usage_aggregates
from portal.seats.models import Subscription, SubscriptionChange
from portal.tenancy.models import Organisation


@dataclass
class Charge:
    """One would-be invoice line."""

    kind: str  # seat | metered
    product_id: int
    product_sku: str
    description: str
    quantity: Decimal  # seat-days ÷ days in month for seats; the aggregate for meters
    unit_amount: int | None  # None for tiered prices: the tiers set each unit's price
    amount: int
    currency: str
    source: dict[str, Any] = field(default_factory=dict)


def daily_quantities(
    changes: list[tuple[dt.datetime, int]], first: dt.date, last: dt.date
) -> list[int]:
    """The seats reserved on each day from ``first`` to ``last`` (inclusive).

    ``changes`` are (effective_at, quantity from then on), in time order. A day
    counts the highest quantity reserved at any moment of it: a seat reserved
    for part of a day was reserved that day.
    """
    out = []
    index = 0
    current = 0
    day = first
    while day <= last:
        day_start = dt.datetime.combine(day, dt.time(), tzinfo=dt.UTC)
        day_end = day_start + dt.timedelta(days=1)
        while index < len(changes) and changes[index][0] <= day_start:
            current = changes[index][1]
            index += 1
        highest = current
        j = index
        while j < len(changes) and changes[j][0] < day_end:
            highest = max(highest, changes[j][1])
            current = changes[j][1]
            j += 1
        index = j
        out.append(highest)
        day += dt.timedelta(days=1)
    return out


def _prices(session: Session, currency: str) -> tuple[dict[int, Price], dict[int, Price]]:
    """Seat prices by product id and metered prices by meter id, in one currency."""
    seat: dict[int, Price] = {}
    metered: dict[int, Price] = {}
    for price in session.scalars(sa.select(Price).where(Price.currency == currency)).unique():
        if price.model == "seat":
            seat[price.product_id] = price
        elif price.meter_id is not None:
            metered[price.meter_id] = price
    return seat, metered


def charges_for(
    session: Session,
    *,
    organisation: Organisation,
    period_start: dt.datetime,
    until: dt.datetime,
    usage_received_until: dt.datetime | None = None,
) -> list[Charge]:
    """Charges for ``[period_start, until)`` within one calendar month, in the org's currency.

    Seat prices are prorated by day over the whole month (days in the month is
    the divisor), so a part of a month costs its share. Products without a price
    in the organisation's currency are not charged.
    """
    currency = organisation.currency
    days_in_month = calendar.monthrange(period_start.year, period_start.month)[1]
    seat_prices, metered_prices = _prices(session, currency)
    first = period_start.date()
    last = (until - dt.timedelta(microseconds=1)).date()
    charges: list[Charge] = []

    subscriptions = list(
        session.scalars(
            sa.select(Subscription)
            .where(
                Subscription.organisation_id == organisation.id,
                Subscription.starts_on <= last,
                sa.or_(Subscription.ends_on.is_(None), Subscription.ends_on >= first),
            )
            .order_by(Subscription.id)
        ).unique()
    )
    history: dict[int, list[tuple[dt.datetime, int]]] = {}
    if subscriptions:
        for sub_id, at, quantity in session.execute(
            sa.select(
                SubscriptionChange.subscription_id,
                SubscriptionChange.effective_at,
                SubscriptionChange.quantity,
            )
            .where(
                SubscriptionChange.organisation_id == organisation.id,
                SubscriptionChange.subscription_id.in_([s.id for s in subscriptions]),
                SubscriptionChange.effective_at < until,
            )
            .order_by(SubscriptionChange.effective_at, SubscriptionChange.id)
        ):
            history.setdefault(sub_id, []).append((at, quantity))
    for sub in subscriptions:
        price = seat_prices.get(sub.product_id)
        if price is None:
            continue
        days = daily_quantities(history.get(sub.id, []), first, last)
        seat_days = sum(days)
        if seat_days == 0:
            continue
        amount = seat_amount(
            unit_amount=price.unit_amount, daily_quantities=days, days_in_month=days_in_month
        )
        charges.append(
            Charge(
                kind="seat",
                product_id=sub.product_id,
                product_sku=sub.product.sku,
                description=f"{sub.product.name}: {seat_days} seat-days "
                f"({first:%d %b}–{last:%d %b}) of {days_in_month}",
                quantity=(Decimal(seat_days) / days_in_month).quantize(Decimal("0.0001")),
                unit_amount=price.unit_amount,
                amount=amount,
                currency=currency,
                source={
                    "subscription": sub.id,
                    "seat_days": seat_days,
                    "days_in_month": days_in_month,
                },
            )
        )

    aggregates = usage_aggregates(
        session,
        start=period_start,
        end=until,
        organisation_id=organisation.id,
        received_until=usage_received_until,
    )
    meters = {m.id: m for m in session.scalars(sa.select(Meter))}
    products = {p.id: p for p in session.scalars(sa.select(Product)).unique()}
    for aggregate in aggregates:
        price = metered_prices.get(aggregate.meter_id)
        if price is None:
            continue
        meter = meters[aggregate.meter_id]
        product = products[aggregate.product_id]
        tiers = [Tier(t.up_to, t.unit_amount, t.flat_amount) for t in price.tiers]
        amount = metered_amount(
            quantity=aggregate.value,
            unit_amount=price.unit_amount,
            tier_mode=price.tier_mode,
            tiers=tiers,
        )
        charges.append(
            Charge(
                kind="metered",
                product_id=product.id,
                product_sku=product.sku,
                description=f"{product.name}: {meter.name} ({aggregate.aggregation}, "
                f"{aggregate.events} events)",
                quantity=aggregate.value,
                unit_amount=None if tiers else price.unit_amount,
                amount=amount,
                currency=currency,
                source={
                    "meter": meter.key,
                    "aggregation": aggregate.aggregation,
                    "events": aggregate.events,
                    "tier_mode": price.tier_mode,
                },
            )
        )
    return charges
