"""Reading organisations."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

import sqlalchemy as sa
from sqlalchemy.orm import Session

from portal.kernel.errors import NotFound
from portal.pagination import Page, paginate
from portal.tenancy.models import Organisation


def organisation_by_slug(session: Session, slug: str) -> Organisation:
    """The organisation with ``slug``, or :class:`NotFound`."""
    org = session.scalar(sa.select(Organisation).where(Organisation.slug == slug.lower()))
    if org is None:
        raise NotFound(f"No organisation “{slug}”.")
    return org


def organisations_list(
    session: Session,
    *,
    search: str | None = None,
    status: str | None = None,
    page: int = 1,
    per_page: int = 25,
) -> Page[Organisation]:
    """Organisations by name, filtered by a search over slug/name/email and a status."""
    query = sa.select(Organisation).order_by(Organisation.name, Organisation.id)
    if search:
        term = search.strip().lower()
        query = query.where(
            sa.or_(
                sa.func.lower(Organisation.name).contains(term, autoescape=True),
                Organisation.slug.contains(term, autoescape=True),
                sa.func.lower(Organisation.billing_email).contains(term, autoescape=True),
            )
        )
    if status:
        query = query.where(Organisation.status == status)
    return paginate(session, query, page=page, per_page=per_page)


def organisation_status_counts(session: Session) -> dict[str, int]:
    """How many organisations are in each status."""
    rows = session.execute(
        sa.select(Organisation.status, sa.func.count()).group_by(Organisation.status)
    ).all()
    return dict(rows)  # type: ignore[arg-type]


def organisations_after(
    session: Session, *, after_id: int | None, limit: int, status: str | None = None
) -> list[Organisation]:
    """Up to ``limit`` organisations with an id above ``after_id``, by id (API keyset pages)."""
    query = sa.select(Organisation).order_by(Organisation.id).limit(limit)
    if after_id is not None:
        query = query.where(Organisation.id > after_id)
    if status:
        query = query.where(Organisation.status == status)
    return list(session.scalars(query))


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
    from portal.billing.models import Invoice
    from portal.metering.selectors import idle_seats
    from portal.seats.models import SeatAssignment, SeatRequest, Subscription

    live = sa.and_(
        Subscription.organisation_id == organisation_id, Subscription.status != "cancelled"
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
        .where(SeatRequest.organisation_id == organisation_id, SeatRequest.status == "pending")
    )
    open_count, due = session.execute(
        sa.select(
            sa.func.count(),
            sa.func.coalesce(
                sa.func.sum(Invoice.total - Invoice.amount_paid - Invoice.amount_credited), 0
            ),
        ).where(Invoice.organisation_id == organisation_id, Invoice.status == "open")
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
