"""Cost preview: what subscribing to seats, or changing how many, costs (issue 14).

Before an org admin subscribes or resizes, the page shows this month's charge for the
subscription (prorated by day, as invoices rate it) and the charge of each whole month
after. The figures come from billing's own rules: the quantity history of
:func:`portal.billing.charges.subscriptions_in`, the seats reserved on each day
(:func:`portal.seats.history.daily_quantities`: a day counts the highest quantity
reserved at any moment of it) and :func:`portal.billing.rating.seat_amount` (the
month's days as the divisor, rounded once). A page and the API can both call
:func:`seat_cost_preview`. Amounts are before tax, in the organisation's currency.
"""

from __future__ import annotations

import calendar
import datetime as dt
from dataclasses import dataclass

from sqlalchemy.orm import Session

from portal.billing.charges import council_seat_days_load, subscriptions_in
from portal.billing.rating import Tier, council_average_seats, seat_amount, volume_tier
from portal.catalogue.models import Product, TierBasis
from portal.catalogue.selectors import seat_prices
from portal.kernel.scope import Scope
from portal.seats.history import daily_quantities
from portal.seats.models import Subscription
from portal.tenancy.models import Organisation


@dataclass(frozen=True)
class CostPreview:
    """What ``quantity`` seats cost this month and each month after, in minor units."""

    currency: str
    unit_amount: int  # the seat price per seat per month
    quantity: int  # seats reserved after the change
    this_month: int  # this month's charge of the subscription with the change
    now_this_month: int  # this month's charge without the change (0 for a new subscription)
    monthly: int  # a whole month at ``quantity``
    days_left: int  # days of this month from today on, today included
    days_in_month: int
    # Council volume pricing (SPEC 8.3): the council-wide average seats this month with the
    # change, and the tier (1, 2, …) they choose; None for other prices.
    council_quantity: int | None = None
    tier: int | None = None

    @property
    def difference(self) -> int:
        """What the change adds to this month's charge (negative: saves)."""
        return self.this_month - self.now_this_month


def seat_cost_preview(
    session: Session,
    *,
    organisation: Organisation,
    product: Product,
    quantity: int,
    now: dt.datetime,
    subscription: Subscription | None = None,
) -> CostPreview | None:
    """The cost of ``organisation`` reserving ``quantity`` seats of ``product`` from ``now``.

    ``subscription``: the organisation's live subscription being resized (its history this
    month counts); None for a new one. None when the product has no seat price in the
    organisation's currency (it cannot be subscribed then). Assumes every seat asked for
    is granted now (seats that wait are billed from the day they are granted).
    """
    price = seat_prices(session, currency=organisation.currency, product_ids=[product.id]).get(
        product.id
    )
    if price is None:
        return None
    now = now.astimezone(dt.UTC)
    days_in_month = calendar.monthrange(now.year, now.month)[1]
    first = now.date().replace(day=1)
    last = first.replace(day=days_in_month)
    history: list[tuple[dt.datetime, int]] = []
    if subscription is not None:
        _, histories = subscriptions_in(
            session,
            first=first,
            last=last,
            until=now,
            scope=Scope.organisation(organisation.id),
        )
        history = histories.get(subscription.id, [])

    unit_amount = price.unit_amount
    council_quantity = tier = None
    if price.tier_basis == TierBasis.COUNCIL and price.tiers:
        # The tier this month's council-wide seats choose, this change included.
        period_start = dt.datetime.combine(first, dt.time(), tzinfo=dt.UTC)
        council_days = council_seat_days_load(
            session, products={product.id}, period_start=period_start
        ).get(product.id, 0)
        change = sum(daily_quantities([*history, (now, quantity)], first, last)) - sum(
            daily_quantities(history, first, last)
        )
        council_quantity = council_average_seats(
            seat_days=max(0, council_days + change), days_in_month=days_in_month
        )
        tiers = [Tier(t.up_to, t.unit_amount, t.flat_amount) for t in price.tiers]
        tier, chosen = volume_tier(tiers, council_quantity)
        unit_amount = chosen.unit_amount

    def charge(changes: list[tuple[dt.datetime, int]]) -> int:
        days = daily_quantities(changes, first, last)
        return seat_amount(
            unit_amount=unit_amount, daily_quantities=days, days_in_month=days_in_month
        )

    return CostPreview(
        currency=organisation.currency,
        unit_amount=unit_amount,
        quantity=quantity,
        this_month=charge([*history, (now, quantity)]),
        now_this_month=charge(history),
        monthly=seat_amount(
            unit_amount=unit_amount,
            daily_quantities=[quantity] * days_in_month,
            days_in_month=days_in_month,
        ),
        days_left=(last - now.date()).days + 1,
        days_in_month=days_in_month,
        council_quantity=council_quantity,
        tier=tier,
    )
