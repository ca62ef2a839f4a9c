"""Read models for pages that span domains (the pages may import every domain).

A figure that needs several domains is read here rather than in the lowest of
them, which may not import the others: the org admin's dashboard counts
subscriptions and seats (seats), idle seats (metering) and what is owed (billing).
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

import sqlalchemy as sa
from sqlalchemy.orm import Session

from portal.audit.models import AuditEvent
from portal.billing.charges import subscriptions_in
from portal.billing.models import Invoice, InvoiceStatus
from portal.catalogue.models import Product
from portal.identity.models import User
from portal.kernel.scope import Scope
from portal.metering.selectors import idle_seat_count, seat_days_by_subscription
from portal.pagination import Page
from portal.seats.history import seat_days
from portal.seats.models import (
    SeatAssignment,
    SeatRequest,
    SeatRequestStatus,
    Subscription,
    SubscriptionStatus,
)


@dataclass(frozen=True)
class OrganisationOverview:
    """The figures on an org admin's dashboard."""

    subscriptions: int
    seats_reserved: int
    seats_assigned: int
    seats_waiting: int
    seat_requests: int
    idle_seats: int
    open_invoices: int
    amount_due: int


def organisation_overview(
    session: Session, *, organisation_id: int, idle_days: int, now: dt.datetime
) -> OrganisationOverview:
    """Subscriptions, seats, requests, idle seats and what is owed, for one organisation."""
    live = sa.and_(
        Subscription.organisation_id == organisation_id,
        Subscription.status != SubscriptionStatus.CANCELLED,
    )
    count, reserved, requested = session.execute(
        sa.select(
            sa.func.count(),
            sa.func.coalesce(sa.func.sum(Subscription.quantity), 0),
            sa.func.coalesce(sa.func.sum(Subscription.requested_quantity), 0),
        ).where(live)
    ).one()
    assigned = session.scalar(
        sa.select(sa.func.count())
        .select_from(SeatAssignment)
        .where(
            SeatAssignment.organisation_id == organisation_id, SeatAssignment.released_at.is_(None)
        )
    )
    requests = session.scalar(
        sa.select(sa.func.count())
        .select_from(SeatRequest)
        .where(
            SeatRequest.organisation_id == organisation_id,
            SeatRequest.status == SeatRequestStatus.PENDING,
        )
    )
    open_count, due = session.execute(
        sa.select(
            sa.func.count(),
            sa.func.coalesce(
                sa.func.sum(Invoice.total - Invoice.amount_paid - Invoice.amount_credited), 0
            ),
        ).where(Invoice.organisation_id == organisation_id, Invoice.status == InvoiceStatus.OPEN)
    ).one()
    idle = idle_seat_count(session, organisation_id=organisation_id, idle_days=idle_days, now=now)
    return OrganisationOverview(
        subscriptions=int(count),
        seats_reserved=int(reserved),
        seats_assigned=int(assigned or 0),
        seats_waiting=int(requested) - int(reserved),
        seat_requests=int(requests or 0),
        idle_seats=idle,
        open_invoices=int(open_count),
        amount_due=int(due),
    )


@dataclass(frozen=True)
class SeatDays:
    """A product's seat-days this month, both ways they are counted (glossary: docs/I18N.md).

    ``reserved`` are the seat-days billed: each day counts the seats the subscription
    reserved that day (the invoice line's and the usage page's cost line's figure);
    ``assigned`` count the days each person had a seat (the usage page's seats table).
    They differ whenever reserved seats are not all assigned (issue 14 saw 360 and 90
    for one product: 12 seats reserved, 3 assigned, over 30 days), so each is named.
    """

    product_name: str
    reserved: int
    assigned: int


def seat_days_this_month(
    session: Session, *, organisation_id: int, now: dt.datetime
) -> list[SeatDays]:
    """Reserved and assigned seat-days of each subscription from the month's start to now.

    Reserved seat-days come from the quantity history as billing rates them
    (:func:`portal.billing.charges.subscriptions_in`,
    :func:`portal.seats.history.seat_days`), assigned ones summed by the database
    (:func:`portal.metering.selectors.seat_days_by_subscription`: one row per subscription,
    whatever the number of seats).
    """
    start = now.replace(day=1, hour=0, minute=0, second=0, microsecond=0)
    first = start.date()
    last = (now - dt.timedelta(microseconds=1)).date()
    if now <= start:
        return []
    subscriptions, history = subscriptions_in(
        session, first=first, last=last, until=now, scope=Scope.organisation(organisation_id)
    )
    assigned = seat_days_by_subscription(
        session, organisation_id=organisation_id, start=start, end=now
    )
    rows = subscriptions.get(organisation_id, [])
    names = dict(
        session.execute(
            sa.select(Product.id, Product.name).where(Product.id.in_({p for _, p in rows}))
        ).all()
    )
    out = [
        SeatDays(
            product_name=names.get(product_id, ""),
            reserved=seat_days(history.get(sub_id, []), first, last),
            assigned=assigned.get(sub_id, 0),
        )
        for sub_id, product_id in rows
    ]
    return sorted((r for r in out if r.reserved or r.assigned), key=lambda r: r.product_name)


def people_count(session: Session, *, organisation_id: int) -> int:
    """The organisation's accounts (one count from the organisation's index; the dashboard
    shows the number, not a page of people sorted by email)."""
    query = sa.select(sa.func.count()).select_from(User)
    return int(session.scalar(query.where(User.organisation_id == organisation_id)) or 0)


def latest_audit_events(
    session: Session, *, organisation_id: int, limit: int = 8
) -> Page[AuditEvent]:
    """The organisation's latest audit events, newest first, without counting its whole
    history (the dashboard links to the log for the rest)."""
    items = list(
        session.scalars(
            sa.select(AuditEvent)
            .where(AuditEvent.organisation_id == organisation_id)
            .order_by(AuditEvent.occurred_at.desc(), AuditEvent.id.desc())
            .limit(limit)
        )
    )
    return Page(items=items, page=1, per_page=limit, total=len(items))
