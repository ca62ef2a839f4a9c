"""Reading usage: aggregates per period, entitlements, seat utilisation, idle seats.

Pages read the rollups kept at ingest (``usage_daily``, ``usage_daily_people``,
``usage_last_use``, written in the transaction that stores the events:
:mod:`portal.metering.ingest`), not the month's events, so they cost the same at any
volume; a part of a day at either end of a period (cost so far: up to now) is read from
the events. The figures are exact and late events count the moment they are stored
(``tests/metering/test_rollups.py`` compares them with the events' own).
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

import sqlalchemy as sa
from sqlalchemy import orm
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import QueryableAttribute, Session

from portal.catalogue.models import Aggregation, LicencePool, Meter, Product
from portal.db import UTCDateTime
from portal.identity.models import User
from portal.kernel.scope import Scope
from portal.metering.ingest import micros_to_decimal
from portal.metering.models import (
    IdleSeatDecision,
    UsageDaily,
    UsageDailyPerson,
    UsageEvent,
    UsageLastUse,
)
from portal.pagination import Page
from portal.seats.history import summed_daily_quantities
from portal.seats.models import SeatAssignment, Subscription, SubscriptionChange
from portal.tenancy.models import Organisation, OrganisationStatus


@dataclass(frozen=True)
class Aggregate:
    """One meter's aggregate for one organisation over a period."""

    organisation_id: int
    product_id: int
    meter_id: int
    aggregation: str
    value: Decimal
    events: int


Key = tuple[int, int, int]  # organisation, product, meter


def day_split(
    start: dt.datetime, end: dt.datetime
) -> tuple[tuple[dt.date, dt.date] | None, list[tuple[dt.datetime, dt.datetime]]]:
    """``[start, end)`` as whole UTC days ``[first, stop)`` (read from the rollups) and
    the instants at either edge that are not whole days (read from the events: at most
    a day each). ``None`` when no whole day is inside."""
    start, end = start.astimezone(dt.UTC), end.astimezone(dt.UTC)
    midnight = dt.time(tzinfo=dt.UTC)
    first = start.date() if start.timetz() == midnight else start.date() + dt.timedelta(days=1)
    stop = end.date()
    if first >= stop:
        return None, [(start, end)] if start < end else []
    edges = []
    first_at = dt.datetime.combine(first, midnight)
    stop_at = dt.datetime.combine(stop, midnight)
    if start < first_at:
        edges.append((start, first_at))
    if stop_at < end:
        edges.append((stop_at, end))
    return (first, stop), edges


def _spans(
    session: Session, start: dt.datetime, end: dt.datetime, scope: Scope, product_id: int | None
) -> tuple[tuple[dt.date, dt.date] | None, list[tuple[dt.datetime, dt.datetime]]]:
    """:func:`day_split`, with a period that ends during a day (cost so far: up to now)
    reading that whole day from the rollups when no event of the day is at or after
    ``end`` (events are at most minutes ahead of their arrival: usually none is). The
    day so far then costs one indexed probe instead of reading the day's events."""
    days, edges = day_split(start, end)
    if not edges:
        return days, edges
    begin, finish = edges[-1]
    midnight = dt.datetime.combine(finish.date(), dt.time(), tzinfo=dt.UTC)
    if finish != end.astimezone(dt.UTC) or begin != midnight:
        return days, edges
    later = session.execute(
        _later_probe((finish, midnight + dt.timedelta(days=1)), scope, product_id)
    ).first()
    if later is not None:
        return days, edges
    last = finish.date() + dt.timedelta(days=1)
    return ((days[0] if days else finish.date()), last), edges[:-1]


def _later_probe(
    span: tuple[dt.datetime, dt.datetime], scope: Scope, product_id: int | None
) -> sa.Select:
    """Whether an event lies in ``span`` (the rest of a day). For one organisation, one
    probe of ``ix_usage_events_org_product_meter_time`` per meter with usage that day (the
    day's ``usage_daily`` rows name them: every stored event has its row), so the answer
    costs the same however many events the day has; council-wide, the day's events."""
    if scope.is_council:
        return sa.select(sa.literal(1)).where(*_events_where(span, scope, product_id)).limit(1)
    later = (
        sa.select(sa.literal(1))
        .where(
            UsageEvent.organisation_id == UsageDaily.organisation_id,
            UsageEvent.product_id == UsageDaily.product_id,
            UsageEvent.meter_id == UsageDaily.meter_id,
            UsageEvent.occurred_at >= span[0],
            UsageEvent.occurred_at < span[1],
        )
        .correlate(UsageDaily)
        .exists()
    )
    where = [scope.filter(UsageDaily.organisation_id), UsageDaily.day == span[0].date(), later]
    if product_id is not None:
        where.append(UsageDaily.product_id == product_id)
    return sa.select(sa.literal(1)).where(*where).limit(1)


def usage_aggregates(
    session: Session,
    *,
    start: dt.datetime,
    end: dt.datetime,
    scope: Scope,
    product_id: int | None = None,
    received_until: dt.datetime | None = None,
) -> list[Aggregate]:
    """Each meter's aggregate per organisation for events with ``start <= occurred_at < end``.

    ``Scope.council()`` aggregates every organisation (council, billing).
    Whole UTC days come from the rollups kept at ingest (``usage_daily``,
    ``usage_daily_people``), the part of a day at either end (cost so far: up to now)
    from the events, so the figures are exact and cost the same at any volume.
    ``unique_count`` meters counting ``user_email`` read ``usage_daily_people``; those
    counting another property read the period's events of that meter (the rollups keep
    no per-day set of arbitrary properties).

    ``received_until`` leaves out events stored after that moment (billing counts
    usage up to a cut-off; what arrives later is late usage): the rollups do not know
    when an event arrived, so that reads the events (:func:`usage_aggregates_from_events`).
    """
    if received_until is not None:
        return usage_aggregates_from_events(
            session,
            start=start,
            end=end,
            scope=scope,
            product_id=product_id,
            received_until=received_until,
        )
    days, edges = _spans(session, start, end, scope, product_id)
    totals: dict[Key, list[int]] = {}  # sum, max, count

    def add(key: Key, total: Any, biggest: Any, count: Any) -> None:
        current = totals.setdefault(key, [0, 0, 0])
        current[0] += int(total or 0)
        current[1] = max(current[1], int(biggest or 0))
        current[2] += int(count or 0)

    if days is not None:
        for org_id, prod_id, meter_id, total, biggest, count in session.execute(
            sa.select(
                UsageDaily.organisation_id,
                UsageDaily.product_id,
                UsageDaily.meter_id,
                sa.func.sum(UsageDaily.quantity_micros),
                sa.func.max(UsageDaily.max_micros),
                sa.func.sum(UsageDaily.events),
            )
            .where(*_daily_where(UsageDaily, days, scope, product_id))
            .group_by(UsageDaily.organisation_id, UsageDaily.product_id, UsageDaily.meter_id)
        ):
            add((org_id, prod_id, meter_id), total, biggest, count)
    for edge in edges:
        for org_id, prod_id, meter_id, total, biggest, count in session.execute(
            _grouped_events(_events_where(edge, scope, product_id))
        ):
            add((org_id, prod_id, meter_id), total, biggest, count)
    if not totals:
        return []
    meters = {m.id: m for m in session.scalars(sa.select(Meter))}
    out: list[Aggregate] = []
    unique: dict[Key, int] = {}
    for (org_id, prod_id, meter_id), (total, biggest, count) in totals.items():
        meter = meters[meter_id]
        if meter.aggregation == Aggregation.UNIQUE_COUNT:
            unique[(org_id, prod_id, meter_id)] = count
            continue
        if meter.aggregation == Aggregation.SUM:
            value = micros_to_decimal(total)
        elif meter.aggregation == Aggregation.MAX:
            value = micros_to_decimal(biggest)
        else:  # count
            value = Decimal(count)
        out.append(Aggregate(org_id, prod_id, meter_id, meter.aggregation, value, count))
    unique_meters = sorted({key[2] for key in unique})
    # Every meter counting people in one statement (one read of the period's rollup rows).
    people_meters = [
        m for m in unique_meters if (meters[m].property or "user_email") == "user_email"
    ]
    distinct = _people_counts(session, people_meters, days, edges, scope, product_id)
    for meter_id in unique_meters:
        if meter_id in people_meters:
            out.extend(
                Aggregate(key[0], key[1], meter_id, "unique_count", Decimal(n), unique[key])
                for key, n in distinct.items()
                if key[2] == meter_id
            )
        else:
            where = _events_where((start, end), scope, product_id)
            out.extend(_unique_counts(session, meters[meter_id], where))
    return out


def _daily_where(
    table: type[UsageDaily] | type[UsageDailyPerson],
    days: tuple[dt.date, dt.date],
    scope: Scope,
    product_id: int | None,
) -> list:
    where = [table.day >= days[0], table.day < days[1], scope.filter(table.organisation_id)]
    if product_id is not None:
        where.append(table.product_id == product_id)
    return where


def _events_where(
    span: tuple[dt.datetime, dt.datetime], scope: Scope, product_id: int | None
) -> list:
    where = [
        UsageEvent.occurred_at >= span[0],
        UsageEvent.occurred_at < span[1],
        scope.filter(UsageEvent.organisation_id),
    ]
    if product_id is not None:
        where.append(UsageEvent.product_id == product_id)
    return where


def _grouped_events(where: list) -> sa.Select:
    return (
        sa.select(
            UsageEvent.organisation_id,
            UsageEvent.product_id,
            UsageEvent.meter_id,
            sa.func.sum(UsageEvent.quantity_micros),
            sa.func.max(UsageEvent.quantity_micros),
            sa.func.count(),
        )
        .where(*where)
        .group_by(UsageEvent.organisation_id, UsageEvent.product_id, UsageEvent.meter_id)
    )


def _people_counts(
    session: Session,
    meter_ids: list[int],
    days: tuple[dt.date, dt.date] | None,
    edges: list[tuple[dt.datetime, dt.datetime]],
    scope: Scope,
    product_id: int | None,
) -> dict[Key, int]:
    """Distinct ``user_email`` per organisation, product and meter of ``meter_ids``: the
    rollup's whole days and the edges' events together (a person counts once across both)."""
    parts: list[sa.Select] = []
    if not meter_ids:
        return {}
    if days is not None:
        parts.append(
            sa.select(
                UsageDailyPerson.organisation_id,
                UsageDailyPerson.product_id,
                UsageDailyPerson.meter_id,
                UsageDailyPerson.user_email,
            ).where(
                *_daily_where(UsageDailyPerson, days, scope, product_id),
                UsageDailyPerson.meter_id.in_(meter_ids),
            )
        )
    for edge in edges:
        parts.append(
            sa.select(
                UsageEvent.organisation_id,
                UsageEvent.product_id,
                UsageEvent.meter_id,
                UsageEvent.user_email,
            ).where(
                *_events_where(edge, scope, product_id),
                UsageEvent.meter_id.in_(meter_ids),
                UsageEvent.user_email.is_not(None),
            )
        )
    if not parts:
        return {}
    people = (parts[0] if len(parts) == 1 else sa.union(*parts)).subquery()
    rows = session.execute(
        sa.select(
            people.c.organisation_id,
            people.c.product_id,
            people.c.meter_id,
            sa.func.count(sa.distinct(people.c.user_email)),
        ).group_by(people.c.organisation_id, people.c.product_id, people.c.meter_id)
    )
    return {(org_id, prod_id, meter_id): int(n) for org_id, prod_id, meter_id, n in rows}


def people_with_usage(
    session: Session, *, organisation_id: int, start: dt.datetime, end: dt.datetime
) -> set[tuple[int, str]]:
    """(product id, email) of the organisation's people with usage in ``[start, end)``."""
    scope = Scope.organisation(organisation_id)
    days, edges = _spans(session, start, end, scope, None)
    out: set[tuple[int, str]] = set()
    if days is not None:
        out.update(
            session.execute(
                sa.select(UsageDailyPerson.product_id, UsageDailyPerson.user_email)
                .where(*_daily_where(UsageDailyPerson, days, scope, None))
                .distinct()
            ).all()
        )
    for edge in edges:
        out.update(
            (product_id, email)
            for product_id, email in session.execute(
                sa.select(UsageEvent.product_id, UsageEvent.user_email)
                .where(*_events_where(edge, scope, None), UsageEvent.user_email.is_not(None))
                .distinct()
            )
            if email is not None
        )
    return out


def usage_aggregates_from_events(
    session: Session,
    *,
    start: dt.datetime,
    end: dt.datetime,
    scope: Scope,
    product_id: int | None = None,
    received_until: dt.datetime | None = None,
) -> list[Aggregate]:
    """:func:`usage_aggregates` computed from the events themselves (every figure the
    rollups give must equal this; billing's cut-off reads it).

    ``sum``/``max``/``count`` come from one grouped query; ``unique_count`` meters
    from a second one counting distinct values of their property.
    """
    where = _events_where((start, end), scope, product_id)
    if received_until is not None:
        where.append(UsageEvent.received_at <= received_until)
    meters = {m.id: m for m in session.scalars(sa.select(Meter))}
    out: list[Aggregate] = []
    unique_meters = []
    for org_id, prod_id, meter_id, total, biggest, count in session.execute(_grouped_events(where)):
        meter = meters[meter_id]
        if meter.aggregation == Aggregation.UNIQUE_COUNT:
            unique_meters.append(meter)
            continue
        if meter.aggregation == Aggregation.SUM:
            value = micros_to_decimal(int(total or 0))
        elif meter.aggregation == Aggregation.MAX:
            value = micros_to_decimal(int(biggest or 0))
        else:  # count
            value = Decimal(count)
        out.append(Aggregate(org_id, prod_id, meter_id, meter.aggregation, value, int(count)))
    for meter in {m.id: m for m in unique_meters}.values():
        out.extend(_unique_counts(session, meter, where))
    return out


def _unique_counts(session: Session, meter: Meter, where: list) -> list[Aggregate]:
    prop = meter.property or "user_email"
    value: sa.ColumnElement[Any] | QueryableAttribute[Any]
    if prop == "user_email":
        value = UsageEvent.user_email
    else:
        value = sa.func.json_extract(UsageEvent.properties, f"$.{prop}")
        if session.get_bind().dialect.name == "postgresql":
            value = sa.cast(UsageEvent.properties, JSONB)[prop].astext
    rows = session.execute(
        sa.select(
            UsageEvent.organisation_id,
            UsageEvent.product_id,
            sa.func.count(sa.distinct(value)),
            sa.func.count(),
        )
        .where(*where, UsageEvent.meter_id == meter.id)
        .group_by(UsageEvent.organisation_id, UsageEvent.product_id)
    )
    return [
        Aggregate(org_id, prod_id, meter.id, "unique_count", Decimal(distinct), int(count))
        for org_id, prod_id, distinct, count in rows
    ]


@dataclass(frozen=True)
class Entitlement:
    entitled: bool
    seat: dict | None


# Built once: the check is asked under load, and building the statement costs more
# than running it (SQLAlchemy caches the compiled SQL, not the construction). The
# lowest seat id answers when a person somehow holds two seats of the product, so
# every path gives the same answer. ``portal.api.fastpath`` joins it to the token.
ENTITLEMENT_SEAT = (
    sa.select(
        SeatAssignment.id,
        SeatAssignment.subscription_id,
        SeatAssignment.assigned_at,
        Product.vendor_id,
    )
    .join(User, User.id == SeatAssignment.user_id)
    .join(Organisation, Organisation.id == SeatAssignment.organisation_id)
    .join(Product, Product.id == SeatAssignment.product_id)
    .where(
        Organisation.slug == sa.bindparam("organisation"),
        Organisation.status == OrganisationStatus.ACTIVE,
        User.email == sa.bindparam("user_email"),
        User.is_active,
        Product.sku == sa.bindparam("product"),
        SeatAssignment.released_at.is_(None),
    )
    .order_by(SeatAssignment.id)
    .limit(1)
)


def entitlement_params(*, organisation: str, user_email: str, product: str) -> dict[str, str]:
    """The bound values of :data:`ENTITLEMENT_SEAT` for a question as asked."""
    return {
        "organisation": organisation.strip().lower(),
        "user_email": user_email.strip().lower(),
        "product": product.strip().lower(),
    }


def entitlement_answer(
    *,
    vendor_id: int | None,
    user_email: str,
    subscription_id: int | None,
    assigned_at: dt.datetime | None,
    seat_vendor_id: int | None,
) -> Entitlement:
    """The answer from the seat found (or none): a vendor sees only its own products."""
    if subscription_id is None or (vendor_id is not None and seat_vendor_id != vendor_id):
        return Entitlement(False, None)
    return Entitlement(
        True,
        {
            "subscription": subscription_id,
            "user_email": user_email.strip().lower(),
            "assigned_at": assigned_at,
        },
    )


def entitlement_check(
    session: Session, *, vendor_id: int | None, organisation: str, user_email: str, product: str
) -> Entitlement:
    """Whether a person holds an active seat of a product (one indexed query).

    A vendor may ask only about its own products: for another vendor's product
    the answer is simply "not entitled", so nothing leaks about other vendors.
    """
    row = session.execute(
        ENTITLEMENT_SEAT,
        entitlement_params(organisation=organisation, user_email=user_email, product=product),
    ).first()
    return entitlement_answer(
        vendor_id=vendor_id,
        user_email=user_email,
        subscription_id=row.subscription_id if row else None,
        assigned_at=row.assigned_at if row else None,
        seat_vendor_id=row.vendor_id if row else None,
    )


@dataclass(frozen=True)
class SeatUtilisation:
    """A subscription's seat use over a period."""

    subscription_id: int
    product_id: int
    product_name: str
    quantity: int
    assigned_now: int
    seat_days: int
    active_seats: int


def _held_days(
    start: dt.datetime, end: dt.datetime, assigned_at: dt.datetime, released_at: dt.datetime | None
) -> int:
    """Days of ``[start, end)`` on which a seat was held at any moment."""
    begin = max(start, assigned_at)
    stop = min(end, released_at) if released_at else end
    if stop <= begin:
        return 0
    last = (stop - dt.timedelta(microseconds=1)).date()
    return (last - begin.date()).days + 1


def _seat_spans(session: Session, start: dt.datetime, end: dt.datetime) -> sa.Subquery:
    """Each seat row held in ``[start, end)`` with the part of the period it was held
    (``begin``, ``stop``) and the days of that part (a day counts when the seat was held at
    any moment of it: :func:`_held_days`), worked out by the database."""
    first = sa.literal(start, UTCDateTime())
    last = sa.literal(end, UTCDateTime())
    if session.get_bind().dialect.name == "postgresql":
        begin: Any = sa.func.greatest(SeatAssignment.assigned_at, first)
        stop: Any = sa.func.least(sa.func.coalesce(SeatAssignment.released_at, last), last)
        days: Any = (
            sa.cast(
                sa.func.timezone("UTC", stop - sa.literal_column("interval '1 microsecond'")),
                sa.Date,
            )
            - sa.cast(sa.func.timezone("UTC", begin), sa.Date)
            + 1
        )
    else:  # SQLite keeps naive UTC text: 'YYYY-MM-DD HH:MM:SS.ffffff'
        begin = sa.func.max(SeatAssignment.assigned_at, first)
        stop = sa.func.min(sa.func.coalesce(SeatAssignment.released_at, last), last)
        at_midnight = sa.func.rtrim(sa.func.substr(stop, 12), "0:.") == ""
        last_day = sa.case((at_midnight, sa.func.date(stop, "-1 day")), else_=sa.func.date(stop))
        days = (
            sa.cast(
                sa.func.julianday(last_day) - sa.func.julianday(sa.func.date(begin)), sa.Integer
            )
            + 1
        )
    return (
        sa.select(
            SeatAssignment.subscription_id,
            SeatAssignment.organisation_id,
            SeatAssignment.product_id,
            SeatAssignment.user_id,
            SeatAssignment.released_at,
            sa.case((stop > begin, days), else_=0).label("days"),
        )
        .where(
            SeatAssignment.assigned_at < end,
            sa.or_(SeatAssignment.released_at.is_(None), SeatAssignment.released_at >= start),
        )
        .subquery()
    )


def seat_days_by_subscription(
    session: Session, *, organisation_id: int, start: dt.datetime, end: dt.datetime
) -> dict[int, int]:
    """Assigned seat-days of ``[start, end)`` per subscription (see :func:`seat_utilisation`),
    summed by the database: one row per subscription leaves it, whatever the seats."""
    spans = _seat_spans(session, start, end)
    return {
        int(sub_id): int(days or 0)
        for sub_id, days in session.execute(
            sa.select(spans.c.subscription_id, sa.func.sum(spans.c.days))
            .where(spans.c.organisation_id == organisation_id)
            .group_by(spans.c.subscription_id)
        )
    }


def _their_days(*where: sa.ColumnElement[bool]) -> sa.Exists:
    """Whether the person of the ``usage_last_use`` row at hand has ``usage_daily_people``
    rows of the product that also match ``where``: one probe of
    ``ix_usage_daily_people_person_day`` per row asked."""
    return (
        sa.select(sa.literal(1))
        .where(
            UsageDailyPerson.organisation_id == UsageLastUse.organisation_id,
            UsageDailyPerson.product_id == UsageLastUse.product_id,
            UsageDailyPerson.user_email == UsageLastUse.user_email,
            *where,
        )
        .correlate(UsageLastUse)
        .exists()
    )


def _users_in(organisation_id: int, first: dt.date, stop: dt.date) -> sa.Select:
    """(product id, user id) of the organisation's people with usage on a day of
    ``[first, stop)``, as one uncorrelated set that each seat holder is looked up in.

    Read from ``usage_last_use`` (one row per person and product: the last day of use),
    which is exact here because the rollups only grow: a last day before ``first`` is no use
    in the period; a last day inside it is use. Only people whose last day is ``stop`` or
    later (a past month's page) need their days of ``usage_daily_people`` read, one index
    probe each. The month's page so far probes nobody: its end has not come yet. Each
    person's account is found by email (unique across the portal), one probe per person
    with usage rather than one per seat row.
    """
    later_use_in_period = _their_days(UsageDailyPerson.day >= first, UsageDailyPerson.day < stop)
    return (
        sa.select(UsageLastUse.product_id, User.id)
        # Not "and the account is the organisation's": with row-level security's estimates
        # the planner then loops over the organisation's people, probing each one's rows
        # (108 ms at scale-big against 11 ms).
        .join(User, User.email == UsageLastUse.user_email)
        .where(
            UsageLastUse.organisation_id == organisation_id,
            UsageLastUse.last_day >= first,
            sa.or_(UsageLastUse.last_day < stop, later_use_in_period),
        )
    )


def seat_utilisation(
    session: Session, *, organisation_id: int, start: dt.datetime, end: dt.datetime
) -> list[SeatUtilisation]:
    """Seat-days from the assignment history (no snapshots), and seats with usage, per subscription.

    A seat counts a day when it was held at any moment of that day. An active seat
    is one whose holder appears as ``user_email`` in the product's usage in the period.

    One grouped query over the period's seat rows: seat-days summed, seats held now
    counted, and the distinct holders found in the set of the organisation's people with
    usage in the period, read from the last day of use (:func:`_users_in`), so the page
    costs the same at any volume of events. A period with part of a day at either end that
    the rollups cannot answer (:func:`_spans`: rare; cost so far reads the day so far from
    them) counts its holders with usage as :func:`seat_utilisation_from_rows` does.
    """
    subscriptions = session.execute(
        sa.select(Subscription.id, Subscription.product_id, Product.name, Subscription.quantity)
        .join(Product, Product.id == Subscription.product_id)
        .where(Subscription.organisation_id == organisation_id, Subscription.status != "cancelled")
        .order_by(Subscription.id)
    ).all()
    if not subscriptions:
        return []
    days, edges = _spans(session, start, end, Scope.organisation(organisation_id), None)
    spans = _seat_spans(session, start, end)
    # The whole days the rollups answer for the period (None: part of a day at an edge).
    whole = days if days is not None and not edges else None
    # Each holder counted once per subscription (a seat assigned and released many times in
    # the period is one holder) when found in the one set of people with usage in the
    # period (:func:`_users_in`), in the same pass over the seat rows as the seat-days.
    with_usage = (
        sa.func.count(sa.distinct(spans.c.user_id)).filter(
            sa.tuple_(spans.c.product_id, spans.c.user_id).in_(
                _users_in(organisation_id, whole[0], whole[1])
            )
        )
        if whole is not None
        else sa.literal(0)
    )
    figures = {
        int(sub_id): (int(now or 0), int(held or 0), int(active or 0))
        for sub_id, now, held, active in session.execute(
            sa.select(
                spans.c.subscription_id,
                sa.func.sum(sa.case((spans.c.released_at.is_(None), 1), else_=0)),
                sa.func.sum(spans.c.days),
                with_usage,
            )
            .where(spans.c.organisation_id == organisation_id)
            .group_by(spans.c.subscription_id)
        )
    }
    if figures and whole is None:
        for u in seat_utilisation_from_rows(
            session, organisation_id=organisation_id, start=start, end=end
        ):
            if u.subscription_id in figures:
                now, held, _ = figures[u.subscription_id]
                figures[u.subscription_id] = (now, held, u.active_seats)
    out = []
    for sub_id, product_id, name, quantity in subscriptions:
        now, held, active = figures.get(sub_id, (0, 0, 0))
        out.append(
            SeatUtilisation(
                subscription_id=sub_id,
                product_id=product_id,
                product_name=name,
                quantity=quantity,
                assigned_now=now,
                seat_days=held,
                active_seats=active,
            )
        )
    return out


def seat_utilisation_from_rows(
    session: Session, *, organisation_id: int, start: dt.datetime, end: dt.datetime
) -> list[SeatUtilisation]:
    """:func:`seat_utilisation` worked out in Python from every seat row of the period and
    the people with usage (how it was computed before issue 13; every figure of
    :func:`seat_utilisation` must equal this one's: ``tests/metering/test_seat_figures.py``)."""
    subscriptions = list(
        session.scalars(
            sa.select(Subscription)
            .where(
                Subscription.organisation_id == organisation_id, Subscription.status != "cancelled"
            )
            .order_by(Subscription.id)
        ).unique()
    )
    assignments = session.execute(
        sa.select(
            SeatAssignment.subscription_id,
            SeatAssignment.assigned_at,
            SeatAssignment.released_at,
            SeatAssignment.product_id,
            User.email,
        )
        .join(User, User.id == SeatAssignment.user_id)
        .where(
            SeatAssignment.organisation_id == organisation_id,
            SeatAssignment.assigned_at < end,
            sa.or_(SeatAssignment.released_at.is_(None), SeatAssignment.released_at >= start),
        )
    ).all()
    users_with_usage = people_with_usage(
        session, organisation_id=organisation_id, start=start, end=end
    )
    out = []
    for sub in subscriptions:
        rows = [a for a in assignments if a.subscription_id == sub.id]
        out.append(
            SeatUtilisation(
                subscription_id=sub.id,
                product_id=sub.product_id,
                product_name=sub.product.name,
                quantity=sub.quantity,
                assigned_now=sum(1 for a in rows if a.released_at is None),
                seat_days=sum(_held_days(start, end, a.assigned_at, a.released_at) for a in rows),
                active_seats=len(
                    {a.email for a in rows if (a.product_id, a.email) in users_with_usage}
                ),
            )
        )
    return out


@dataclass(frozen=True)
class IdleSeat:
    seat: SeatAssignment
    last_used_at: dt.datetime | None


def _users_since(organisation_id: int, since: dt.datetime) -> sa.Select:
    """(product, person) of the organisation's people who used a product at or after
    ``since``.

    Read from ``usage_last_use`` (migration 0033: the last day of use, one row per person
    and product): a last day after ``since``'s day is use; before it, none; on that very
    day the time decides, read from that day's ``usage_daily_people`` rows (one probe, for
    the few people last seen on the window's first day). Not correlated with the seats:
    ``NOT IN`` it is one hashed set, read once, that every seat is looked up in, where a
    correlated ``NOT EXISTS`` was one index probe per seat (row-level security's estimate
    of one row per organisation makes the planner choose the probes; docs/PERFORMANCE.md,
    "Idle seats from the last day of use"). Every column compared is NOT NULL, so
    ``NOT IN`` has no NULL to trip on."""
    day = since.astimezone(dt.UTC).date()
    on_the_day = _their_days(
        UsageDailyPerson.day == day, UsageDailyPerson.last_occurred_at >= since
    )
    return sa.select(UsageLastUse.product_id, UsageLastUse.user_email).where(
        UsageLastUse.organisation_id == organisation_id,
        UsageLastUse.last_day >= day,
        sa.or_(UsageLastUse.last_day > day, on_the_day),
    )


def _last_use() -> sa.ScalarSelect[Any]:
    """The holder's last use of the seat's product: the latest day's latest row (a day's
    rows are that day's events), read backwards from the same index: one row per seat."""
    return (
        sa.select(UsageDailyPerson.last_occurred_at)
        .where(
            UsageDailyPerson.organisation_id == SeatAssignment.organisation_id,
            UsageDailyPerson.product_id == SeatAssignment.product_id,
            UsageDailyPerson.user_email == User.email,
        )
        .order_by(UsageDailyPerson.day.desc(), UsageDailyPerson.last_occurred_at.desc())
        .limit(1)
        .correlate(SeatAssignment, User)
        .scalar_subquery()
    )


def _idle_where(organisation_id: int, idle_days: int, now: dt.datetime) -> list:
    """The filter of the organisation's idle seats (see :func:`idle_seats`): per seat a
    lookup in the set of people with recent use (:func:`_users_since`) and an index probe
    for a decision to keep, so a count or a page costs the same however many events the
    month has."""
    since = now - dt.timedelta(days=idle_days)
    # The organisation's seats kept for now, as one hashed set too (a decision is its seat's
    # organisation's): a correlated NOT EXISTS was an anti-join probing the decisions once
    # per seat found idle (0.7–0.9 ms of the 5–8 for 1,408 of them at scale-big).
    kept = sa.select(IdleSeatDecision.seat_assignment_id).where(
        IdleSeatDecision.organisation_id == organisation_id,
        IdleSeatDecision.decision == "keep",
        IdleSeatDecision.until >= now.date(),
    )
    return [
        SeatAssignment.organisation_id == organisation_id,
        # Holders are the organisation's people (row-level security shows no others): said
        # here too, so the planner reads them from the organisation's index, not every user.
        User.organisation_id == organisation_id,
        SeatAssignment.released_at.is_(None),
        SeatAssignment.assigned_at <= since,
        SeatAssignment.id.not_in(kept),  # seat_assignment_id is NOT NULL: no NULL to trip on
        sa.tuple_(SeatAssignment.product_id, User.email).not_in(
            _users_since(organisation_id, since)
        ),
    ]


def _idle_query(organisation_id: int, idle_days: int, now: dt.datetime) -> sa.Select:
    """The organisation's idle seats with their holder's last use, oldest assignment
    first: the filter is the database's, so a page of them reads only that page."""
    return (
        sa.select(SeatAssignment, _last_use().label("last_use"))
        .join(User, User.id == SeatAssignment.user_id)
        .where(*_idle_where(organisation_id, idle_days, now))
        .order_by(SeatAssignment.assigned_at, SeatAssignment.id)
    )


def idle_seats(
    session: Session, *, organisation_id: int, idle_days: int, now: dt.datetime
) -> list[IdleSeat]:
    """Seats held for at least ``idle_days`` with no usage by their holder in that time.

    Seats an admin chose to keep are not flagged again until the day they chose.
    """
    rows = session.execute(_idle_query(organisation_id, idle_days, now)).unique()
    return [IdleSeat(seat, None if last is None else _aware(last)) for seat, last in rows]


def idle_seat_count(
    session: Session, *, organisation_id: int, idle_days: int, now: dt.datetime
) -> int:
    """How many seats :func:`idle_seats` would list (one counting query)."""
    query = (
        sa.select(sa.func.count())
        .select_from(SeatAssignment)
        .join(User, User.id == SeatAssignment.user_id)
        .where(*_idle_where(organisation_id, idle_days, now))
    )
    return int(session.scalar(query) or 0)


#: What a page of idle seats shows of a seat: its holder (from the join the page's query
#: makes anyway) and its product's name. The seat's default loads would also join the
#: subscription's organisation, the product's vendor and the holder's organisation: three
#: wide rows a seat that the page never shows (about 2 of the 11 ms a page took at scale-big).
_IDLE_PAGE_LOAD = (
    orm.contains_eager(SeatAssignment.user).lazyload(User.organisation),
    orm.joinedload(SeatAssignment.subscription).options(
        orm.lazyload(Subscription.organisation),
        orm.joinedload(Subscription.product).lazyload(Product.vendor),
    ),
)


def idle_seats_page(
    session: Session,
    *,
    organisation_id: int,
    idle_days: int,
    now: dt.datetime,
    page: int = 1,
    per_page: int = 50,
) -> Page[IdleSeat]:
    """One page of :func:`idle_seats` (an organisation of thousands of seats may have
    hundreds idle): the count and ``per_page`` rows, whatever the number of seats."""
    page = max(1, page)
    offset = min((page - 1) * per_page, 2**62)  # a page past any number a database stores
    # The page's seat ids first (the filter and the order over the seat and holder rows
    # alone), with the count of every idle seat beside them (a window over the same rows:
    # the filter's probes run once, not once for the count and again for the page); then
    # those seats with what the page shows of them: the eager loads and the last use are
    # for ``per_page`` seats, not for every seat the filter looks at.
    found = session.execute(
        sa.select(SeatAssignment.id, sa.func.count().over().label("total"))
        .join(User, User.id == SeatAssignment.user_id)
        .where(*_idle_where(organisation_id, idle_days, now))
        .order_by(SeatAssignment.assigned_at, SeatAssignment.id)
        .limit(per_page)
        .offset(offset)
    ).all()
    if not found:  # past the last page (or none idle): the count alone
        total = idle_seat_count(
            session, organisation_id=organisation_id, idle_days=idle_days, now=now
        )
        return Page(items=[], page=page, per_page=per_page, total=total)
    total = int(found[0].total)
    ids = [row.id for row in found]
    rows = session.execute(
        sa.select(SeatAssignment, _last_use().label("last_use"))
        .join(User, User.id == SeatAssignment.user_id)
        .where(SeatAssignment.id.in_(ids))
        .order_by(SeatAssignment.assigned_at, SeatAssignment.id)
        .options(*_IDLE_PAGE_LOAD)
    ).unique()
    items = [IdleSeat(seat, None if last is None else _aware(last)) for seat, last in rows]
    return Page(items=items, page=page, per_page=per_page, total=total)


def _aware(value: dt.datetime | str) -> dt.datetime:
    if isinstance(value, str):  # SQLite returns max() of a timestamp column as text
        value = dt.datetime.fromisoformat(value)
    return value if value.tzinfo else value.replace(tzinfo=dt.UTC)


def pool_utilisation_series(
    session: Session, *, product_id: int, first: dt.date, last: dt.date
) -> tuple[list[str], dict[str, list[int]]]:
    """Per day: capacity in force, seats reserved, seats assigned, people with usage.

    Reserved comes from every subscription's quantity history (the highest
    quantity of the day), assigned from the assignment history (held at the end
    of the day), active from distinct ``user_email`` values in the product's usage.
    """
    days = [first + dt.timedelta(days=i) for i in range((last - first).days + 1)]
    pools = session.execute(
        sa.select(LicencePool.starts_on, LicencePool.ends_on, LicencePool.capacity).where(
            LicencePool.product_id == product_id,
            LicencePool.starts_on <= last,
            LicencePool.ends_on >= first,
        )
    ).all()
    capacity = [sum(c for s, e, c in pools if s <= day <= e) for day in days]

    history: dict[int, list[tuple[dt.datetime, int]]] = {}
    end = dt.datetime.combine(last + dt.timedelta(days=1), dt.time(), tzinfo=dt.UTC)
    for sub_id, at, quantity in session.execute(
        sa.select(
            SubscriptionChange.subscription_id,
            SubscriptionChange.effective_at,
            SubscriptionChange.quantity,
        )
        .join(Subscription, Subscription.id == SubscriptionChange.subscription_id)
        .where(Subscription.product_id == product_id, SubscriptionChange.effective_at < end)
        .order_by(SubscriptionChange.effective_at, SubscriptionChange.id)
    ):
        history.setdefault(sub_id, []).append((at, quantity))
    reserved = summed_daily_quantities(history.values(), first, last)

    start = dt.datetime.combine(first, dt.time(), tzinfo=dt.UTC)
    held = session.execute(
        sa.select(SeatAssignment.assigned_at, SeatAssignment.released_at).where(
            SeatAssignment.product_id == product_id,
            SeatAssignment.assigned_at < end,
            sa.or_(SeatAssignment.released_at.is_(None), SeatAssignment.released_at >= start),
        )
    ).all()
    assigned = []
    for day in days:
        day_end = dt.datetime.combine(day + dt.timedelta(days=1), dt.time(), tzinfo=dt.UTC)
        assigned.append(sum(1 for a, r in held if a < day_end and (r is None or r >= day_end)))

    active_by_day = {
        day.isoformat(): int(n)
        for day, n in session.execute(
            sa.select(UsageDailyPerson.day, sa.func.count(sa.distinct(UsageDailyPerson.user_email)))
            .where(
                UsageDailyPerson.product_id == product_id,
                UsageDailyPerson.day >= first,
                UsageDailyPerson.day <= last,
            )
            .group_by(UsageDailyPerson.day)
        )
    }
    active = [active_by_day.get(day.isoformat(), 0) for day in days]
    labels = [f"{day:%d %b}" for day in days]
    return labels, {
        "Capacity": capacity,
        "Reserved": reserved,
        "Assigned": assigned,
        "People with usage": active,
    }
