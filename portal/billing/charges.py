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
import functools
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

import sqlalchemy as sa
from babel.dates import format_date
from flask_babel import get_translations
from sqlalchemy.orm import Session

from portal import i18n
from portal.billing.rating import (
    Tier,
    council_average_seats,
    metered_amount,
    seat_amount,
    volume_tier,
)
from portal.catalogue.models import Meter, Price, PriceTier, Product, TierBasis
from portal.db import council_wide
from portal.kernel.i18n import _l
from portal.kernel.scope import Scope
from portal.metering.selectors import Aggregate, usage_aggregates
from portal.seats.history import daily_quantities
from portal.seats.models import Subscription, SubscriptionChange
from portal.tenancy.models import Organisation

# A meter's aggregation as an invoice line names it.
AGGREGATIONS = {
    "sum": _l("sum"),
    "count": _l("count"),
    "max": _l("max"),
    "unique_count": _l("unique count"),
}

# Line descriptions are written in the language being spoken (an invoice's, when drafting:
# portal.billing.drafting). An invoice run writes thousands of them, so the translated
# patterns and day names are looked up once per language (and count) and kept: Flask-Babel's
# own gettext and Babel's date formats cost some 60 µs a call, a cached pattern about 1 µs.


@functools.lru_cache(maxsize=8192)
def _pattern(language: str, singular: str, plural: str, num: int) -> str:
    """The catalogue's text of a message in ``language`` (the one being spoken), unformatted."""
    return get_translations().ungettext(singular, plural, num)


def ngettext(singular: str, plural: str, num: int, language: str) -> str:
    """``_n`` for line descriptions: the translated pattern for ``num``, not yet formatted."""
    return _pattern(language, singular, plural, num)


@functools.lru_cache(maxsize=64)
def _aggregation(name: str, language: str) -> str:
    """A meter's aggregation in ``language`` (the one being spoken)."""
    known = AGGREGATIONS.get(name)
    return str(known) if known is not None else name


@functools.lru_cache(maxsize=1024)
def _day(day: dt.date, language: str) -> str:
    """A day of the month on an invoice line: ``01 Dec`` / ``01 дек.``."""
    return format_date(day, format="dd MMM", locale=language)


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
    # A seat charge of a council-basis price: the council-wide average seats and its tier.
    council_quantity: int | None = None
    tier: int | None = None


@dataclass(frozen=True)
class PriceTerms:
    """A price as rating needs it (a plain snapshot: it outlives the transaction)."""

    unit_amount: int
    tier_mode: str | None
    tiers: tuple[Tier, ...]
    tier_basis: str = TierBasis.ORGANISATION


@dataclass
class Catalogue:
    """What every organisation's charges share: prices per currency, meters, products.

    Loaded once per invoice run (four queries) instead of once per organisation.
    """

    seat: dict[str, dict[int, PriceTerms]]  # currency -> product id -> seat price
    metered: dict[str, dict[int, PriceTerms]]  # currency -> meter id -> metered price
    meters: dict[int, tuple[str, str]]  # meter id -> (key, name)
    products: dict[int, tuple[str, str]]  # product id -> (sku, name)


def catalogue_load(session: Session, currency: str | None = None) -> Catalogue:
    """Prices (in ``currency``, or all), meters and products as plain snapshots."""
    query = sa.select(
        Price.id, Price.currency, Price.model, Price.product_id, Price.meter_id,
        Price.unit_amount, Price.tier_mode, Price.tier_basis,
    )  # fmt: skip
    tiers_query = sa.select(
        PriceTier.price_id, PriceTier.up_to, PriceTier.unit_amount, PriceTier.flat_amount
    ).order_by(PriceTier.price_id, PriceTier.position)
    if currency is not None:
        query = query.where(Price.currency == currency)
        tiers_query = tiers_query.join(Price, Price.id == PriceTier.price_id).where(
            Price.currency == currency
        )
    tiers: dict[int, list[Tier]] = {}
    for price_id, up_to, unit_amount, flat_amount in session.execute(tiers_query):
        tiers.setdefault(price_id, []).append(Tier(up_to, unit_amount, flat_amount))
    catalogue = Catalogue({}, {}, {}, {})
    for (
        price_id,
        cur,
        model,
        product_id,
        meter_id,
        unit_amount,
        tier_mode,
        basis,
    ) in session.execute(query):
        terms = PriceTerms(unit_amount, tier_mode, tuple(tiers.get(price_id, ())), basis)
        if model == "seat":
            catalogue.seat.setdefault(cur, {})[product_id] = terms
        elif meter_id is not None:
            catalogue.metered.setdefault(cur, {})[meter_id] = terms
    catalogue.meters = {
        id_: (key, name)
        for id_, key, name in session.execute(sa.select(Meter.id, Meter.key, Meter.name))
    }
    catalogue.products = {
        id_: (sku, name)
        for id_, sku, name in session.execute(sa.select(Product.id, Product.sku, Product.name))
    }
    return catalogue


def subscriptions_in(
    session: Session,
    *,
    first: dt.date,
    last: dt.date,
    until: dt.datetime,
    scope: Scope,
) -> tuple[dict[int, list[tuple[int, int]]], dict[int, list[tuple[dt.datetime, int]]]]:
    """Subscriptions running between ``first`` and ``last`` (by organisation: ``(id,
    product id)`` in id order) and their quantity histories up to ``until`` (by
    subscription, in time order); of the organisations in ``scope`` (two queries)."""
    where = [
        Subscription.starts_on <= last,
        sa.or_(Subscription.ends_on.is_(None), Subscription.ends_on >= first),
    ]
    where.append(scope.filter(Subscription.organisation_id))
    subscriptions: dict[int, list[tuple[int, int]]] = {}
    for sub_id, org_id, product_id in session.execute(
        sa.select(Subscription.id, Subscription.organisation_id, Subscription.product_id)
        .where(*where)
        .order_by(Subscription.id)
    ):
        subscriptions.setdefault(org_id, []).append((sub_id, product_id))
    history: dict[int, list[tuple[dt.datetime, int]]] = {}
    if subscriptions:
        changes = (
            sa.select(
                SubscriptionChange.subscription_id,
                SubscriptionChange.effective_at,
                SubscriptionChange.quantity,
            )
            .join(Subscription, Subscription.id == SubscriptionChange.subscription_id)
            .where(*where, SubscriptionChange.effective_at < until)
            .order_by(SubscriptionChange.effective_at, SubscriptionChange.id)
        )
        changes = changes.where(scope.filter(SubscriptionChange.organisation_id))
        for sub_id, at, quantity in session.execute(changes):
            history.setdefault(sub_id, []).append((at, quantity))
    return subscriptions, history


def council_products(catalogue: Catalogue) -> set[int]:
    """Products with a council-basis seat price in some currency (SPEC 8.3)."""
    return {
        product_id
        for prices in catalogue.seat.values()
        for product_id, terms in prices.items()
        if terms.tier_basis == TierBasis.COUNCIL
    }


def council_quantities_of(
    *,
    products: set[int],
    period_start: dt.datetime,
    subscriptions: dict[int, list[tuple[int, int]]],
    history: dict[int, list[tuple[dt.datetime, int]]],
) -> dict[int, int]:
    """The council-wide average reserved seats of each product in the month (SPEC 8.3).

    Every organisation's seat-days of the product over the whole calendar month,
    whatever its currency, ÷ days in the month, rounded down. ``subscriptions`` and
    ``history`` are every organisation's (as :func:`subscriptions_in` loads them
    council-wide); the whole month counts, today's quantity held to its end, as a draft
    counts it, so "cost so far" and the draft choose the same tier.
    """
    days_in_month = calendar.monthrange(period_start.year, period_start.month)[1]
    seat_days = council_seat_days_of(
        products=products, period_start=period_start, subscriptions=subscriptions, history=history
    )
    return {
        product_id: council_average_seats(seat_days=days, days_in_month=days_in_month)
        for product_id, days in seat_days.items()
    }


def council_seat_days_of(
    *,
    products: set[int],
    period_start: dt.datetime,
    subscriptions: dict[int, list[tuple[int, int]]],
    history: dict[int, list[tuple[dt.datetime, int]]],
) -> dict[int, int]:
    """Every organisation's seat-days of each product over the whole calendar month."""
    days_in_month = calendar.monthrange(period_start.year, period_start.month)[1]
    first = period_start.date().replace(day=1)
    last = first.replace(day=days_in_month)
    seat_days = dict.fromkeys(products, 0)
    for subs in subscriptions.values():
        for sub_id, product_id in subs:
            if product_id in seat_days:
                seat_days[product_id] += sum(daily_quantities(history.get(sub_id, []), first, last))
    return seat_days


def council_quantities_load(
    session: Session, *, catalogue: Catalogue, period_start: dt.datetime
) -> dict[int, int]:
    """:func:`council_quantities_of` for the council-basis products, read council-wide.

    A rule across organisations (SPEC 8.3): every organisation's subscriptions of
    those products are read whatever the session's scope (an org admin's "cost so far"
    too); only the per-product averages leave this function.
    """
    products = council_products(catalogue)
    if not products:
        return {}
    days_in_month = calendar.monthrange(period_start.year, period_start.month)[1]
    return {
        product_id: council_average_seats(seat_days=days, days_in_month=days_in_month)
        for product_id, days in council_seat_days_load(
            session, products=products, period_start=period_start
        ).items()
    }


def council_seat_days_load(
    session: Session, *, products: set[int], period_start: dt.datetime
) -> dict[int, int]:
    """:func:`council_seat_days_of` for ``products``, read council-wide (only sums leave)."""
    if not products:
        return {}
    days_in_month = calendar.monthrange(period_start.year, period_start.month)[1]
    first = period_start.date().replace(day=1)
    last = first.replace(day=days_in_month)
    end = dt.datetime.combine(last + dt.timedelta(days=1), dt.time(), tzinfo=dt.UTC)
    where = [
        Subscription.product_id.in_(products),
        Subscription.starts_on <= last,
        sa.or_(Subscription.ends_on.is_(None), Subscription.ends_on >= first),
    ]
    with council_wide(session):
        subscriptions: dict[int, list[tuple[int, int]]] = {}
        for sub_id, org_id, product_id in session.execute(
            sa.select(Subscription.id, Subscription.organisation_id, Subscription.product_id)
            .where(*where)
            .order_by(Subscription.id)
        ):
            subscriptions.setdefault(org_id, []).append((sub_id, product_id))
        history: dict[int, list[tuple[dt.datetime, int]]] = {}
        for sub_id, at, quantity in session.execute(
            sa.select(
                SubscriptionChange.subscription_id,
                SubscriptionChange.effective_at,
                SubscriptionChange.quantity,
            )
            .join(Subscription, Subscription.id == SubscriptionChange.subscription_id)
            .where(*where, SubscriptionChange.effective_at < end)
            .order_by(SubscriptionChange.effective_at, SubscriptionChange.id)
        ):
            history.setdefault(sub_id, []).append((at, quantity))
    return council_seat_days_of(
        products=products, period_start=period_start, subscriptions=subscriptions, history=history
    )


def rate_charges(
    *,
    currency: str,
    period_start: dt.datetime,
    until: dt.datetime,
    catalogue: Catalogue,
    subscriptions: list[tuple[int, int]],
    history: dict[int, list[tuple[dt.datetime, int]]],
    aggregates: list[Aggregate],
    council_quantities: dict[int, int] | None = None,
) -> list[Charge]:
    """One organisation's charges from what :func:`charges_for` loads (no database).

    Seat prices are prorated by day over the whole month (days in the month is
    the divisor), so a part of a month costs its share. Products without a price
    in the organisation's currency are not charged. A council-basis seat price
    (SPEC 8.3) charges the unit amount of the tier that ``council_quantities`` (the
    council-wide average seats of each such product) falls in, on the
    organisation's own seat-days, rounded once per line.
    """
    days_in_month = calendar.monthrange(period_start.year, period_start.month)[1]
    seat_prices = catalogue.seat.get(currency, {})
    metered_prices = catalogue.metered.get(currency, {})
    first = period_start.date()
    last = (until - dt.timedelta(microseconds=1)).date()
    charges: list[Charge] = []
    language = i18n.language()  # the descriptions' (drafting: the invoice's)
    for sub_id, product_id in subscriptions:
        price = seat_prices.get(product_id)
        if price is None:
            continue
        days = daily_quantities(history.get(sub_id, []), first, last)
        seat_days = sum(days)
        if seat_days == 0:
            continue
        unit_amount = price.unit_amount
        council_quantity: int | None = None
        tier: int | None = None
        if price.tier_basis == TierBasis.COUNCIL and price.tiers:
            council_quantity = (council_quantities or {}).get(product_id)
            if council_quantity is None:
                raise ValueError("a council-basis price needs the council-wide quantity")
            tier, chosen = volume_tier(price.tiers, council_quantity)
            unit_amount = chosen.unit_amount
        amount = seat_amount(
            unit_amount=unit_amount, daily_quantities=days, days_in_month=days_in_month
        )
        sku, name = catalogue.products[product_id]
        description = ngettext(
            "%(product)s: %(num)d seat-day (%(first)s–%(last)s) of %(days)s",
            "%(product)s: %(num)d seat-days (%(first)s–%(last)s) of %(days)s",
            seat_days,
            language,
        ) % {
            "product": name,
            "num": seat_days,
            "first": _day(first, language),
            "last": _day(last, language),
            "days": days_in_month,
        }
        source: dict[str, Any] = {
            "subscription": sub_id,
            "seat_days": seat_days,
            "days_in_month": days_in_month,
        }
        if council_quantity is not None:
            description += "; " + ngettext(
                "council volume: %(num)d seat → tier %(tier)d",
                "council volume: %(num)d seats → tier %(tier)d",
                council_quantity,
                language,
            ) % {"num": council_quantity, "tier": tier}
            source.update(tier_basis="council", council_quantity=council_quantity, tier=tier)
        charges.append(
            Charge(
                kind="seat",
                product_id=product_id,
                product_sku=sku,
                description=description,
                quantity=(Decimal(seat_days) / days_in_month).quantize(Decimal("0.0001")),
                unit_amount=unit_amount,
                amount=amount,
                currency=currency,
                source=source,
                council_quantity=council_quantity,
                tier=tier,
            )
        )

    for aggregate in aggregates:
        price = metered_prices.get(aggregate.meter_id)
        if price is None:
            continue
        meter_key, meter_name = catalogue.meters[aggregate.meter_id]
        sku, name = catalogue.products[aggregate.product_id]
        amount = metered_amount(
            quantity=aggregate.value,
            unit_amount=price.unit_amount,
            tier_mode=price.tier_mode,
            tiers=price.tiers,
        )
        charges.append(
            Charge(
                kind="metered",
                product_id=aggregate.product_id,
                product_sku=sku,
                description=ngettext(
                    "%(product)s: %(meter)s (%(aggregation)s, %(num)d event)",
                    "%(product)s: %(meter)s (%(aggregation)s, %(num)d events)",
                    aggregate.events,
                    language,
                )
                % {
                    "product": name,
                    "meter": meter_name,
                    "aggregation": _aggregation(aggregate.aggregation, language),
                    "num": aggregate.events,
                },
                quantity=aggregate.value,
                unit_amount=None if price.tiers else price.unit_amount,
                amount=amount,
                currency=currency,
                source={
                    "meter": meter_key,
                    "aggregation": aggregate.aggregation,
                    "events": aggregate.events,
                    "tier_mode": price.tier_mode,
                },
            )
        )
    return charges


def charges_for(
    session: Session,
    *,
    organisation: Organisation,
    period_start: dt.datetime,
    until: dt.datetime,
    usage_received_until: dt.datetime | None = None,
) -> list[Charge]:
    """Charges for ``[period_start, until)`` within one calendar month, in the org's currency.

    See :func:`rate_charges`; an invoice run loads the same data once for every
    organisation.
    """
    first = period_start.date()
    last = (until - dt.timedelta(microseconds=1)).date()
    scope = Scope.organisation(organisation.id)
    subscriptions, history = subscriptions_in(
        session, first=first, last=last, until=until, scope=scope
    )
    aggregates = usage_aggregates(
        session,
        start=period_start,
        end=until,
        scope=scope,
        received_until=usage_received_until,
    )
    catalogue = catalogue_load(session, organisation.currency)
    return rate_charges(
        currency=organisation.currency,
        period_start=period_start,
        until=until,
        catalogue=catalogue,
        subscriptions=subscriptions.get(organisation.id, []),
        history=history,
        aggregates=aggregates,
        council_quantities=council_quantities_load(
            session, catalogue=catalogue, period_start=period_start
        ),
    )
