"""Reading usage: aggregates per period, entitlements, seat utilisation, idle seats.

Aggregates are computed from the events themselves with one grouped query over
the ``(organisation, product, meter, occurred_at)`` index, so they are exact
and late events count the moment they are stored.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import QueryableAttribute, Session

from portal.catalogue.models import Aggregation, LicencePool, Meter, Product
from portal.identity.models import User
from portal.kernel.scope import Scope
from portal.metering.ingest import micros_to_decimal
from portal.metering.models import IdleSeatDecision, UsageEvent
from portal.seats.history import daily_quantities
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
    ``received_until`` leaves out events stored after that moment (billing counts
    usage up to a cut-off; what arrives later is late usage).
    ``sum``/``max``/``count`` come from one grouped query; ``unique_count`` meters
    from a second one counting distinct values of their property.
    """
    where = [
        UsageEvent.occurred_at >= start,
        UsageEvent.occurred_at < end,
        scope.filter(UsageEvent.organisation_id),
    ]
    if product_id is not None:
        where.append(UsageEvent.product_id == product_id)
    if received_until is not None:
        where.append(UsageEvent.received_at <= received_until)
    grouped = (
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
    meters = {m.id: m for m in session.scalars(sa.select(Meter))}
    out: list[Aggregate] = []
    unique_meters = []
    for org_id, prod_id, meter_id, total, biggest, count in session.execute(grouped):
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


def seat_utilisation(
    session: Session, *, organisation_id: int, start: dt.datetime, end: dt.datetime
) -> list[SeatUtilisation]:
    """Seat-days from the assignment history (no snapshots), and seats with usage, per subscription.

    A seat counts a day when it was held at any moment of that day. An active seat
    is one whose holder appears as ``user_email`` in the product's usage in the period.
    """
    subscriptions = list(
        session.scalars(
            sa.select(Subscription).where(
                Subscription.organisation_id == organisation_id, Subscription.status != "cancelled"
            )
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
    users_with_usage = {
        (product_id, email)
        for product_id, email in session.execute(
            sa.select(UsageEvent.product_id, UsageEvent.user_email)
            .where(
                UsageEvent.organisation_id == organisation_id,
                UsageEvent.occurred_at >= start,
                UsageEvent.occurred_at < end,
                UsageEvent.user_email.is_not(None),
            )
            .distinct()
        )
    }
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


def idle_seats(
    session: Session, *, organisation_id: int, idle_days: int, now: dt.datetime
) -> list[IdleSeat]:
    """Seats held for at least ``idle_days`` with no usage by their holder in that time.

    Seats an admin chose to keep are not flagged again until the day they chose.
    """
    since = now - dt.timedelta(days=idle_days)
    last_use = (
        sa.select(sa.func.max(UsageEvent.occurred_at))
        .where(
            UsageEvent.organisation_id == SeatAssignment.organisation_id,
            UsageEvent.product_id == SeatAssignment.product_id,
            UsageEvent.user_email == User.email,
        )
        .correlate(SeatAssignment, User)
        .scalar_subquery()
    )
    kept = (
        sa.select(IdleSeatDecision.id)
        .where(
            IdleSeatDecision.seat_assignment_id == SeatAssignment.id,
            IdleSeatDecision.decision == "keep",
            IdleSeatDecision.until >= now.date(),
        )
        .exists()
    )
    rows = session.execute(
        sa.select(SeatAssignment, last_use.label("last_use"))
        .join(User, User.id == SeatAssignment.user_id)
        .where(
            SeatAssignment.organisation_id == organisation_id,
            SeatAssignment.released_at.is_(None),
            SeatAssignment.assigned_at <= since,
            ~kept,
        )
        .order_by(SeatAssignment.assigned_at)
    ).unique()
    return [IdleSeat(seat, last) for seat, last in rows if last is None or _aware(last) < since]


def _aware(value: dt.datetime | str) -> dt.datetime:
    if isinstance(value, str):  # SQLite returns max() of a timestamp column as text
        value = dt.datetime.fromisoformat(value)
    return value if value.tzinfo else value.replace(tzinfo=dt.UTC)


def _day_of(
    session: Session, column: sa.ColumnElement[Any] | QueryableAttribute[Any]
) -> sa.ColumnElement[Any]:
    """The UTC calendar day of a timestamp column, per dialect."""
    if session.get_bind().dialect.name == "postgresql":
        return sa.cast(sa.func.timezone("UTC", column), sa.Date)
    return sa.func.date(column)


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
    reserved = [0] * len(days)
    for changes in history.values():
        for i, quantity in enumerate(daily_quantities(changes, first, last)):
            reserved[i] += quantity

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

    day_col = _day_of(session, UsageEvent.occurred_at)
    active_by_day = {
        str(day): int(n)
        for day, n in session.execute(
            sa.select(day_col, sa.func.count(sa.distinct(UsageEvent.user_email)))
            .where(
                UsageEvent.product_id == product_id,
                UsageEvent.occurred_at >= start,
                UsageEvent.occurred_at < end,
                UsageEvent.user_email.is_not(None),
            )
            .group_by(day_col)
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
