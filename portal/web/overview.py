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

from portal.billing.models import Invoice, InvoiceStatus
from portal.metering.selectors import idle_seats
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
    idle = idle_seats(session, organisation_id=organisation_id, idle_days=idle_days, now=now)
    return OrganisationOverview(
        subscriptions=int(count),
        seats_reserved=int(reserved),
        seats_assigned=int(assigned or 0),
        seats_waiting=int(requested) - int(reserved),
        seat_requests=int(requests or 0),
        idle_seats=len(idle),
        open_invoices=int(open_count),
        amount_due=int(due),
    )
