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
from portal.billing.rating import Tier, metered_amount, seat_amount
from portal.catalogue.models import Meter, Price, PriceTier, Product
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


@dataclass(frozen=True)
class PriceTerms:
    """A price as rating needs it (a plain snapshot: it outlives the transaction)."""

    unit_amount: int
    tier_mode: str | None
    tiers: tuple[Tier, ...]


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
        Price.unit_amount, Price.tier_mode,
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
    for price_id, cur, model, product_id, meter_id, unit_amount, tier_mode in session.execute(
        query
    ):
        terms = PriceTerms(unit_amount, tier_mode, tuple(tiers.get(price_id, ())))
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


def rate_charges(
    *,
    currency: str,
    period_start: dt.datetime,
    until: dt.datetime,
    catalogue: Catalogue,
    subscriptions: list[tuple[int, int]],
    history: dict[int, list[tuple[dt.datetime, int]]],
    aggregates: list[Aggregate],
) -> list[Charge]:
    """One organisation's charges from what :func:`charges_for` loads (no database).

    Seat prices are prorated by day over the whole month (days in the month is
    the divisor), so a part of a month costs its share. Products without a price
    in the organisation's currency are not charged.
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
        amount = seat_amount(
            unit_amount=price.unit_amount, daily_quantities=days, days_in_month=days_in_month
        )
        sku, name = catalogue.products[product_id]
        charges.append(
            Charge(
                kind="seat",
                product_id=product_id,
                product_sku=sku,
                description=ngettext(
                    "%(product)s: %(num)d seat-day (%(first)s–%(last)s) of %(days)s",
                    "%(product)s: %(num)d seat-days (%(first)s–%(last)s) of %(days)s",
                    seat_days,
                    language,
                )
                % {
                    "product": name,
                    "num": seat_days,
                    "first": _day(first, language),
                    "last": _day(last, language),
                    "days": days_in_month,
                },
                quantity=(Decimal(seat_days) / days_in_month).quantize(Decimal("0.0001")),
                unit_amount=price.unit_amount,
                amount=amount,
                currency=currency,
                source={
                    "subscription": sub_id,
                    "seat_days": seat_days,
                    "days_in_month": days_in_month,
                },
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
    return rate_charges(
        currency=organisation.currency,
        period_start=period_start,
        until=until,
        catalogue=catalogue_load(session, organisation.currency),
        subscriptions=subscriptions.get(organisation.id, []),
        history=history,
        aggregates=aggregates,
    )
