"""Usage aggregates as rows for pages and CSV: names instead of ids."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Session

from portal.catalogue.models import Meter, Product
from portal.kernel.scope import Scope
from portal.metering.models import UsageDaily
from portal.metering.selectors import usage_aggregates
from portal.tenancy.models import Organisation


@dataclass(frozen=True)
class UsageRow:
    organisation: str
    product: str
    product_name: str
    meter: str
    meter_name: str
    aggregation: str
    value: Decimal
    unit: str
    events: int


def usage_rows(
    session: Session,
    *,
    scope: Scope,
    start: dt.datetime,
    end: dt.datetime,
    product_id: int | None = None,
) -> list[UsageRow]:
    """Aggregates of ``[start, end)`` in ``scope`` (of one product, if given), sorted by
    organisation, product and meter."""
    aggregates = usage_aggregates(session, start=start, end=end, scope=scope, product_id=product_id)
    if not aggregates:
        return []
    ids = {a.organisation_id for a in aggregates}
    slugs = sa.select(Organisation.id, Organisation.slug)
    if len(ids) <= 1000:
        slugs = slugs.where(Organisation.id.in_(ids))
    # Past a thousand (the council's month at scale has 10,000), every organisation's slug
    # is cheaper than a statement of 10,000 parameters (1 s to plan and bind at scale).
    orgs = dict(session.execute(slugs).all())
    products = {
        pid: (sku, name)
        for pid, sku, name in session.execute(sa.select(Product.id, Product.sku, Product.name))
    }
    meters = {
        mid: (key, name, unit)
        for mid, key, name, unit in session.execute(
            sa.select(Meter.id, Meter.key, Meter.name, Meter.unit)
        )
    }
    rows = [
        UsageRow(
            organisation=orgs[a.organisation_id],
            product=products[a.product_id][0],
            product_name=products[a.product_id][1],
            meter=meters[a.meter_id][0],
            meter_name=meters[a.meter_id][1],
            aggregation=a.aggregation,
            value=a.value,
            unit=meters[a.meter_id][2],
            events=a.events,
        )
        for a in aggregates
    ]
    return sorted(rows, key=lambda r: (r.organisation, r.product, r.meter))


@dataclass(frozen=True)
class _Organisations(Scope):
    """Council-wide, limited to some organisations (one page of the council's usage): the
    selectors' ``scope.filter(column)`` becomes ``column IN (ids)``."""

    ids: tuple[int, ...] = ()

    def filter(self, column: Any) -> Any:
        return column.in_(self.ids)


@dataclass
class OrganisationPage:
    """A page of organisations with usage: their ids, and whether pages come before and
    after (no total: counting every organisation with usage costs what the page saves)."""

    items: list[int]
    page: int
    per_page: int
    has_next: bool

    @property
    def has_prev(self) -> bool:
        return self.page > 1


def usage_rows_page(
    session: Session,
    *,
    start: dt.datetime,
    end: dt.datetime,
    product_id: int | None = None,
    page: int = 1,
    per_page: int = 25,
) -> tuple[list[UsageRow], OrganisationPage]:
    """Council-wide :func:`usage_rows` of one page of organisations (by slug, those with
    usage in the period), and that page: a council of 10,000 organisations has tens of
    thousands of rows a month, which only the CSV needs whole.

    The organisations are walked by slug, a growing batch at a time read from the slug's
    index, and each batch is asked whether its organisations have a ``usage_daily`` row in
    the period's days (every stored event has its row), until the page and one more are
    found: the first pages cost a few probes, not one per organisation. A period that
    starts or ends inside a day is read whole."""
    midnight = dt.time()
    whole_days = (
        start.timetz().replace(tzinfo=None) == midnight
        and end.timetz().replace(tzinfo=None) == midnight
    )
    if not whole_days:
        rows = usage_rows(
            session, scope=Scope.council(), start=start, end=end, product_id=product_id
        )
        return rows, OrganisationPage([], 1, max(1, len(rows)), False)
    page = max(1, page)
    wanted = page * per_page + 1
    found: list[int] = []
    after: str | None = None  # the last slug walked (slugs are unique)
    batch = 2 * (per_page + 1)
    while len(found) < wanted:
        walk = sa.select(Organisation.id, Organisation.slug).order_by(Organisation.slug)
        if after is not None:
            walk = walk.where(Organisation.slug > after)
        walked = session.execute(walk.limit(batch)).all()
        if not walked:
            break
        after = walked[-1].slug
        part = [row.id for row in walked]
        batch = min(2 * batch, 2000)
        used = [
            UsageDaily.organisation_id.in_(part),
            UsageDaily.day >= start.date(),
            UsageDaily.day < end.date(),
        ]
        if product_id is not None:
            used.append(UsageDaily.product_id == product_id)
        with_usage = set(
            session.scalars(sa.select(UsageDaily.organisation_id).where(*used).distinct())
        )
        found.extend(i for i in part if i in with_usage)
    chosen = found[(page - 1) * per_page : page * per_page]
    listed = OrganisationPage(chosen, page, per_page, len(found) > page * per_page)
    if not chosen:
        return [], listed
    scope = _Organisations(None, tuple(chosen))
    return (
        usage_rows(session, scope=scope, start=start, end=end, product_id=product_id),
        listed,
    )
