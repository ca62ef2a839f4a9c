"""Council economics of a month: what the council paid for its pools against what it billed.

Per product and pool, the council's cost is ``capacity × unit cost per
seat-month``, prorated by the days of the month the pool was in force (one
rounding per pool, :func:`portal.billing.rating.round_half_up`). What members
were billed for the product is the sum of its lines on the month's issued
invoices (open, paid or uncollectible; drafts and void invoices are left out),
per currency: there is no exchange rate in the portal, so cost and revenue
are compared only within a currency. Utilisation is the average capacity,
reserved and assigned seats per day over the month (up to today for the
current month), from the same histories the rating and the usage pages use.
"""

from __future__ import annotations

import calendar
import datetime as dt
from dataclasses import dataclass, field
from decimal import ROUND_HALF_UP, Decimal
from fractions import Fraction

import sqlalchemy as sa
from sqlalchemy.orm import Session

from portal.billing.models import Invoice, InvoiceProductTotal, InvoiceStatus
from portal.billing.rating import round_half_up
from portal.catalogue.models import LicencePool, Product
from portal.kernel.i18n import _l
from portal.kernel.periods import period_bounds
from portal.seats import history as seat_history
from portal.seats.counts import seat_counts
from portal.seats.models import SeatAssignment, Subscription, SubscriptionChange


@dataclass
class PoolCost:
    """One pool's cost to the council for the month."""

    pool_id: int
    reference: str | None
    capacity: int
    starts_on: dt.date
    ends_on: dt.date
    days_in_force: int
    unit_cost: int
    currency: str
    cost: int


@dataclass
class ProductEconomics:
    """A product's pools, cost, billing and utilisation for the month."""

    product_id: int
    sku: str
    name: str
    pools: list[PoolCost] = field(default_factory=list)
    cost: dict[str, int] = field(default_factory=dict)
    billed: dict[str, int] = field(default_factory=dict)
    days: int = 0  # days measured for utilisation
    capacity_days: int = 0
    reserved_days: int = 0
    assigned_days: int = 0

    def _average(self, seat_days: int) -> Decimal:
        if not self.days:
            return Decimal(0)
        return (Decimal(seat_days) / self.days).quantize(Decimal("0.1"), ROUND_HALF_UP)

    @property
    def avg_capacity(self) -> Decimal:
        return self._average(self.capacity_days)

    @property
    def avg_reserved(self) -> Decimal:
        return self._average(self.reserved_days)

    @property
    def avg_assigned(self) -> Decimal:
        return self._average(self.assigned_days)

    @property
    def utilisation_percent(self) -> Decimal | None:
        """Reserved seat-days as a share of the capacity's seat-days."""
        if not self.capacity_days:
            return None
        return (Decimal(100 * self.reserved_days) / self.capacity_days).quantize(
            Decimal("0.1"), ROUND_HALF_UP
        )

    @property
    def currencies(self) -> list[str]:
        return sorted(set(self.cost) | set(self.billed))


@dataclass
class CurrencyEconomics:
    currency: str
    cost: int = 0
    billed: int = 0

    @property
    def margin(self) -> int:
        return self.billed - self.cost


@dataclass
class Economics:
    period: str
    products: list[ProductEconomics]
    totals: list[CurrencyEconomics]
    drafts: int  # drafts of the month, not counted as billed


def _overlap_days(start: dt.date, end: dt.date, first: dt.date, last: dt.date) -> int:
    begin, stop = max(start, first), min(end, last)
    return max(0, (stop - begin).days + 1)


def _held_days(
    assigned_at: dt.datetime, released_at: dt.datetime | None, first: dt.date, last: dt.date
) -> int:
    """The days from ``first`` to ``last`` at whose end a seat was held (assigned before
    the day's last midnight, not released before it), as the pool chart counts them."""
    day = dt.timedelta(days=1)
    lo = max(assigned_at.astimezone(dt.UTC).date() + day, first + day)  # first midnight after
    hi = last + day if released_at is None else released_at.astimezone(dt.UTC).date()
    return max(0, (min(hi, last + day) - lo).days + 1)


def seat_days(
    session: Session, *, product_ids: list[int], first: dt.date, last: dt.date
) -> dict[int, tuple[int, int, int]]:
    """Capacity, reserved and assigned seat-days of each product from ``first`` to ``last``:
    the sums of :func:`portal.metering.selectors.pool_utilisation_series`'s daily series,
    for every product at once and at a cost that does not grow with the seats held.

    Capacity from the pools; reserved from the subscriptions' quantity history (as
    billing rates it); assigned: the seats held now (the subscriptions' ``assigned``
    counters, migration 0028) that were assigned before ``first`` were held every day,
    and only the seats assigned since, or released since, are read one by one (partial
    indexes of migration 0030 find them).
    """
    out = dict.fromkeys(product_ids, (0, 0, 0))
    if not product_ids:
        return out
    ids = list(product_ids)
    days = (last - first).days + 1
    start = dt.datetime.combine(first, dt.time(), tzinfo=dt.UTC)
    end = dt.datetime.combine(last + dt.timedelta(days=1), dt.time(), tzinfo=dt.UTC)
    capacity = dict.fromkeys(ids, 0)
    for product_id, starts_on, ends_on, seats in session.execute(
        sa.select(
            LicencePool.product_id, LicencePool.starts_on, LicencePool.ends_on, LicencePool.capacity
        ).where(
            LicencePool.product_id.in_(ids),
            LicencePool.starts_on <= last,
            LicencePool.ends_on >= first,
        )
    ):
        capacity[product_id] += seats * _overlap_days(starts_on, ends_on, first, last)

    history: dict[int, list[tuple[dt.datetime, int]]] = {}
    product_of: dict[int, int] = {}
    for product_id, sub_id, at, quantity in session.execute(
        sa.select(
            Subscription.product_id,
            SubscriptionChange.subscription_id,
            SubscriptionChange.effective_at,
            SubscriptionChange.quantity,
        )
        .join(Subscription, Subscription.id == SubscriptionChange.subscription_id)
        .where(Subscription.product_id.in_(ids), SubscriptionChange.effective_at < end)
        .order_by(SubscriptionChange.effective_at, SubscriptionChange.id)
    ):
        history.setdefault(sub_id, []).append((at, quantity))
        product_of[sub_id] = product_id
    reserved = dict.fromkeys(ids, 0)
    for sub_id, changes in history.items():
        reserved[product_of[sub_id]] += seat_history.seat_days(changes, first, last)

    # Seats held now: the figures kept as seats change (portal.seats.counts), not a sum over
    # every subscription of the products (50,015 at scale: 13 ms).
    held_now = dict.fromkeys(ids, 0)
    for product_id, (_, _, held) in seat_counts(session, ids).items():
        held_now[product_id] = held
    assigned = dict.fromkeys(ids, 0)
    # Held now but assigned since ``first``: not held every day of the period.
    for product_id, assigned_at in session.execute(
        sa.select(SeatAssignment.product_id, SeatAssignment.assigned_at).where(
            SeatAssignment.product_id.in_(ids),
            SeatAssignment.released_at.is_(None),
            SeatAssignment.assigned_at >= start,
        )
    ):
        held_now[product_id] -= 1
        assigned[product_id] += _held_days(assigned_at, None, first, last)
    # Released since ``first`` (and assigned before the period's end).
    for product_id, assigned_at, released_at in session.execute(
        sa.select(
            SeatAssignment.product_id, SeatAssignment.assigned_at, SeatAssignment.released_at
        ).where(
            SeatAssignment.product_id.in_(ids),
            SeatAssignment.released_at.is_not(None),
            SeatAssignment.released_at >= start,
            SeatAssignment.assigned_at < end,
        )
    ):
        assigned[product_id] += _held_days(assigned_at, released_at, first, last)
    for product_id in ids:
        assigned[product_id] += days * held_now[product_id]
        out[product_id] = (capacity[product_id], reserved[product_id], assigned[product_id])
    return out


def council_economics(session: Session, *, period: str, today: dt.date) -> Economics:
    """Cost against billing per product and pool for ``period``, with the utilisation behind it."""
    start, end = period_bounds(period)
    first, last = start.date(), end.date() - dt.timedelta(days=1)
    days_in_month = calendar.monthrange(first.year, first.month)[1]
    products = {
        p.id: ProductEconomics(product_id=p.id, sku=p.sku, name=p.name)
        for p in session.scalars(sa.select(Product).order_by(Product.name)).unique()
    }
    for pool in session.scalars(
        sa.select(LicencePool)
        .where(LicencePool.starts_on <= last, LicencePool.ends_on >= first)
        .order_by(LicencePool.product_id, LicencePool.starts_on, LicencePool.id)
    ).unique():
        days = _overlap_days(pool.starts_on, pool.ends_on, first, last)
        cost = round_half_up(Fraction(pool.capacity * pool.unit_cost_amount * days, days_in_month))
        entry = products[pool.product_id]
        entry.pools.append(
            PoolCost(
                pool_id=pool.id,
                reference=pool.reference,
                capacity=pool.capacity,
                starts_on=pool.starts_on,
                ends_on=pool.ends_on,
                days_in_force=days,
                unit_cost=pool.unit_cost_amount,
                currency=pool.unit_cost_currency,
                cost=cost,
            )
        )
        entry.cost[pool.unit_cost_currency] = entry.cost.get(pool.unit_cost_currency, 0) + cost

    # The month's issued lines summed per product, kept as invoices are finalised and
    # voided (InvoiceProductTotal): a row per product and currency, not 100,000 lines.
    for product_id, currency, amount in session.execute(
        sa.select(
            InvoiceProductTotal.product_id,
            InvoiceProductTotal.currency,
            InvoiceProductTotal.amount,
        ).where(InvoiceProductTotal.period == period, InvoiceProductTotal.lines > 0)
    ):
        if product_id in products:
            products[product_id].billed[currency] = int(amount)

    measured_last = min(last, today)
    if measured_last >= first:
        measured = [e.product_id for e in products.values() if e.pools or e.billed]
        figures = seat_days(session, product_ids=measured, first=first, last=measured_last)
        for product_id in measured:
            entry = products[product_id]
            entry.days = (measured_last - first).days + 1
            entry.capacity_days, entry.reserved_days, entry.assigned_days = figures[product_id]

    totals: dict[str, CurrencyEconomics] = {}
    for entry in products.values():
        for currency, cost in entry.cost.items():
            totals.setdefault(currency, CurrencyEconomics(currency)).cost += cost
        for currency, billed in entry.billed.items():
            totals.setdefault(currency, CurrencyEconomics(currency)).billed += billed
    drafts = session.scalar(
        sa.select(sa.func.count())
        .select_from(Invoice)
        .where(Invoice.period == period, Invoice.status == InvoiceStatus.DRAFT)
    )
    return Economics(
        period=period,
        products=[p for p in products.values() if p.pools or p.billed],
        totals=sorted(totals.values(), key=lambda t: t.currency),
        drafts=int(drafts or 0),
    )


ECONOMICS_COLUMNS = (
    "period",
    "product",
    "product_name",
    "row",
    "pool",
    "currency",
    "capacity",
    "days_in_force",
    "unit_cost_minor",  # whole minor units of the row's currency (issue 14)
    "amount_minor",
    "avg_capacity",
    "avg_reserved",
    "avg_assigned",
    "utilisation_percent",
)
#: The header a reader in another language than English gets (portal.csvutil).
ECONOMICS_LABELS = {
    "period": _l("Period"),
    "product": _l("Product code"),
    "product_name": _l("Product"),
    "row": _l("Row"),
    "pool": _l("Pool"),
    "currency": _l("Currency"),
    "capacity": _l("Capacity"),
    "days_in_force": _l("Days in force"),
    "unit_cost_minor": _l("Unit cost, minor units"),
    "amount_minor": _l("Amount, minor units"),
    "avg_capacity": _l("Average capacity"),
    "avg_reserved": _l("Average reserved"),
    "avg_assigned": _l("Average assigned"),
    "utilisation_percent": _l("Utilisation, %"),
}


def economics_rows(economics: Economics) -> list[tuple]:
    """The economics as rows of :data:`ECONOMICS_COLUMNS`: one per pool (cost), one per
    product and currency billed, and one per product with the utilisation."""
    rows: list[tuple] = []
    for p in economics.products:
        for pool in p.pools:
            rows.append(
                (
                    economics.period,
                    p.sku,
                    p.name,
                    "council_cost",
                    pool.reference or f"pool {pool.pool_id}",
                    pool.currency,
                    pool.capacity,
                    pool.days_in_force,
                    pool.unit_cost,
                    pool.cost,
                    "",
                    "",
                    "",
                    "",
                )
            )
        for currency, amount in sorted(p.billed.items()):
            rows.append(
                (economics.period, p.sku, p.name, "billed", "", currency)
                + ("", "", "", amount, "", "", "", "")
            )
        rows.append(
            (economics.period, p.sku, p.name, "utilisation", "", "", "", "", "", "")
            + (
                str(p.avg_capacity),
                str(p.avg_reserved),
                str(p.avg_assigned),
                "" if p.utilisation_percent is None else str(p.utilisation_percent),
            )
        )
    return rows
