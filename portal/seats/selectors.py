"""Reading subscriptions, seats and seat requests, always within an organisation.

Selectors that may read more than one organisation take a required
:class:`~portal.kernel.scope.Scope`: ``Scope.council()`` for council staff and
council tokens, ``Scope.organisation(id)`` for everyone else.
"""

from __future__ import annotations

from dataclasses import dataclass

import sqlalchemy as sa
from sqlalchemy.orm import Session

from portal.catalogue.models import Product
from portal.db import council_wide
from portal.identity.models import User
from portal.kernel.actor import Role
from portal.kernel.errors import NotFound
from portal.kernel.i18n import _l
from portal.kernel.scope import Scope
from portal.pagination import Page, paginate
from portal.seats.models import (
    SeatAssignment,
    SeatRequest,
    SeatRequestStatus,
    Subscription,
    SubscriptionStatus,
)


def subscription_in_scope(session: Session, *, scope: Scope, subscription_id: int) -> Subscription:
    """One subscription the reader may see, or :class:`NotFound`."""
    query = sa.select(Subscription).where(
        Subscription.id == subscription_id, scope.filter(Subscription.organisation_id)
    )
    subscription = session.scalar(query)
    if subscription is None:
        raise NotFound(_l("No such subscription."))
    return subscription


def live_subscription(
    session: Session, *, organisation_id: int, product_id: int
) -> Subscription | None:
    """The organisation's live (not cancelled) subscription of a product, if any."""
    return session.scalar(
        sa.select(Subscription).where(
            Subscription.organisation_id == organisation_id,
            Subscription.product_id == product_id,
            Subscription.status != SubscriptionStatus.CANCELLED,
        )
    )


def subscriptions_list(
    session: Session,
    *,
    scope: Scope,
    product_id: int | None = None,
    include_cancelled: bool = False,
    after_id: int | None = None,
    limit: int | None = None,
) -> list[Subscription]:
    """Subscriptions in id order (keyset pagination with ``after_id``)."""
    query = (
        sa.select(Subscription)
        .where(scope.filter(Subscription.organisation_id))
        .order_by(Subscription.id)
    )
    if product_id is not None:
        query = query.where(Subscription.product_id == product_id)
    if not include_cancelled:
        query = query.where(Subscription.status != SubscriptionStatus.CANCELLED)
    if after_id is not None:
        query = query.where(Subscription.id > after_id)
    if limit is not None:
        query = query.limit(limit)
    return list(session.scalars(query).unique())


def reserved_seats(session: Session, product_id: int) -> int:
    """Seats of a product granted to live subscriptions (of every organisation: a pool is
    shared, so its capacity rule reads council-wide whoever asks; only the sum comes out)."""
    with council_wide(session):
        return (
            session.scalar(
                sa.select(sa.func.coalesce(sa.func.sum(Subscription.quantity), 0)).where(
                    Subscription.product_id == product_id,
                    Subscription.status != SubscriptionStatus.CANCELLED,
                )
            )
            or 0
        )


def org_admins(session: Session, organisation_id: int) -> list[User]:
    """The organisation's active admins (whom seat news is mailed to)."""
    return list(
        session.scalars(
            sa.select(User).where(
                User.organisation_id == organisation_id, User.role == Role.ORG_ADMIN, User.is_active
            )
        )
    )


def assigned_counts(session: Session, subscription_ids: list[int]) -> dict[int, int]:
    """Active seat assignments per subscription, in one query."""
    if not subscription_ids:
        return {}
    rows = session.execute(
        sa.select(SeatAssignment.subscription_id, sa.func.count())
        .where(
            SeatAssignment.subscription_id.in_(subscription_ids),
            SeatAssignment.released_at.is_(None),
        )
        .group_by(SeatAssignment.subscription_id)
    ).all()
    return {sid: int(n) for sid, n in rows}


def active_seats(session: Session, *, scope: Scope, subscription_id: int) -> list[SeatAssignment]:
    """People holding a seat of a subscription, by email."""
    query = (
        sa.select(SeatAssignment)
        .where(
            SeatAssignment.subscription_id == subscription_id,
            SeatAssignment.released_at.is_(None),
            scope.filter(SeatAssignment.organisation_id),
        )
        .order_by(SeatAssignment.assigned_at)
    )
    return list(session.scalars(query).unique())


def seat_of_user(
    session: Session, *, organisation_id: int, user_id: int, product_id: int
) -> SeatAssignment | None:
    """The active seat a person holds of a product, if any."""
    return session.scalar(
        sa.select(SeatAssignment).where(
            SeatAssignment.organisation_id == organisation_id,
            SeatAssignment.user_id == user_id,
            SeatAssignment.product_id == product_id,
            SeatAssignment.released_at.is_(None),
        )
    )


def my_seats(session: Session, *, organisation_id: int, user_id: int) -> list[SeatAssignment]:
    """A person's active seats, by product name."""
    return list(
        session.scalars(
            sa.select(SeatAssignment)
            .join(Product, Product.id == SeatAssignment.product_id)
            .where(
                SeatAssignment.organisation_id == organisation_id,
                SeatAssignment.user_id == user_id,
                SeatAssignment.released_at.is_(None),
            )
            .order_by(Product.name)
        ).unique()
    )


def seat_requests_list(
    session: Session,
    *,
    organisation_id: int,
    status: SeatRequestStatus | None = SeatRequestStatus.PENDING,
    user_id: int | None = None,
) -> list[SeatRequest]:
    """An organisation's seat requests, newest first."""
    query = sa.select(SeatRequest).where(SeatRequest.organisation_id == organisation_id)
    if status:
        query = query.where(SeatRequest.status == status)
    if user_id is not None:
        query = query.where(SeatRequest.user_id == user_id)
    return list(session.scalars(query.order_by(SeatRequest.created_at.desc())).unique())


def seat_request_in_scope(
    session: Session, *, organisation_id: int, request_id: int
) -> SeatRequest:
    request = session.scalar(
        sa.select(SeatRequest).where(
            SeatRequest.id == request_id, SeatRequest.organisation_id == organisation_id
        )
    )
    if request is None:
        raise NotFound(_l("No such seat request."))
    return request


def holders_of_product(session: Session, product_id: int) -> list[tuple[Subscription, int]]:
    """Every live subscription of a product with its assigned seats (council view)."""
    subscriptions = subscriptions_list(session, scope=Scope.council(), product_id=product_id)
    counts = assigned_counts(session, [s.id for s in subscriptions])
    return [(s, counts.get(s.id, 0)) for s in subscriptions]


def subscriptions_with_assigned(
    session: Session, *, organisation_id: int, include_cancelled: bool = True
) -> list[tuple[Subscription, int]]:
    """An organisation's subscriptions, live ones first, each with its assigned seats."""
    subscriptions = subscriptions_list(
        session, scope=Scope.organisation(organisation_id), include_cancelled=include_cancelled
    )
    subscriptions.sort(
        key=lambda s: (s.status == SubscriptionStatus.CANCELLED, s.product.name.lower(), s.id)
    )
    counts = assigned_counts(session, [s.id for s in subscriptions])
    return [(s, counts.get(s.id, 0)) for s in subscriptions]


@dataclass
class SubscriptionOverview:
    """One subscription with the people holding its seats."""

    subscription: Subscription
    seats: list[SeatAssignment]
    #: With a page: that page of the holders (``seats``) and how many hold a seat in all.
    page: Page[SeatAssignment] | None = None

    @property
    def assigned(self) -> int:
        return self.page.total if self.page is not None else len(self.seats)

    @property
    def unassigned(self) -> int:
        """Reserved seats nobody holds yet."""
        return max(0, self.subscription.quantity - self.assigned)


def subscription_overview(
    session: Session,
    *,
    organisation_id: int,
    subscription_id: int,
    page: int | None = None,
    per_page: int = 50,
) -> SubscriptionOverview:
    """A subscription of the organisation and its seat holders; another's is :class:`NotFound`.

    With ``page``, one page of ``per_page`` holders (by the time they got the seat) and
    their number counted by the database: a subscription of 5,000 seats is not one page."""
    scope = Scope.organisation(organisation_id)
    subscription = subscription_in_scope(session, scope=scope, subscription_id=subscription_id)
    if page is None:
        return SubscriptionOverview(
            subscription, active_seats(session, scope=scope, subscription_id=subscription.id)
        )
    query = sa.select(SeatAssignment).where(
        SeatAssignment.subscription_id == subscription.id,
        SeatAssignment.released_at.is_(None),
        scope.filter(SeatAssignment.organisation_id),
    )
    listed = paginate(
        session,
        query.order_by(SeatAssignment.assigned_at, SeatAssignment.id),
        page=page,
        per_page=per_page,
        key=SeatAssignment.id,
    )
    return SubscriptionOverview(subscription, listed.items, listed)


@dataclass
class MySoftware:
    """What a person holds and what they asked for."""

    seats: list[SeatAssignment]
    requests: list[SeatRequest]


def my_software(session: Session, *, organisation_id: int, user_id: int) -> MySoftware:
    """A person's active seats and their pending seat requests."""
    return MySoftware(
        seats=my_seats(session, organisation_id=organisation_id, user_id=user_id),
        requests=seat_requests_list(session, organisation_id=organisation_id, user_id=user_id),
    )


@dataclass
class PendingRequest:
    """A pending seat request beside the subscription that would supply the seat."""

    request: SeatRequest
    subscription: Subscription | None
    unassigned: int  # seats of that subscription nobody holds yet


def seat_requests_overview(session: Session, *, organisation_id: int) -> list[PendingRequest]:
    """An organisation's pending seat requests, oldest first, with the seats free to give."""
    requests = seat_requests_list(session, organisation_id=organisation_id)
    requests.reverse()
    product_ids = list({r.product_id for r in requests})
    subscriptions = {
        s.product_id: s
        for s in session.scalars(
            sa.select(Subscription).where(
                Subscription.organisation_id == organisation_id,
                Subscription.product_id.in_(product_ids),
                Subscription.status != SubscriptionStatus.CANCELLED,
            )
        ).unique()
    }
    counts = assigned_counts(session, [s.id for s in subscriptions.values()])
    out = []
    for request in requests:
        sub = subscriptions.get(request.product_id)
        free = max(0, sub.quantity - counts.get(sub.id, 0)) if sub else 0
        out.append(PendingRequest(request, sub, free))
    return out


def seat_in_scope(session: Session, *, organisation_id: int, seat_id: int) -> SeatAssignment:
    """One active seat of the organisation, or :class:`NotFound`."""
    seat = session.scalar(
        sa.select(SeatAssignment).where(
            SeatAssignment.id == seat_id,
            SeatAssignment.organisation_id == organisation_id,
            SeatAssignment.released_at.is_(None),
        )
    )
    if seat is None:
        raise NotFound(_l("No such seat."))
    return seat
