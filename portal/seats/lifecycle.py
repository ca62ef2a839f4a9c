"""A subscription's states and the record of its quantity, used by every path that changes them.

A subscription is ``active`` while it holds seats, ``waitlisted`` while it holds
none and waits for some, and ``cancelled`` at its end (for good).
:data:`TRANSITIONS` lists the changes allowed; :func:`transition` is the one
place a status is set.
"""

from __future__ import annotations

import datetime as dt

from sqlalchemy.orm import Session

from portal.kernel.clock import now_utc
from portal.kernel.errors import InvalidState
from portal.kernel.i18n import _l
from portal.seats.models import Subscription, SubscriptionChange, SubscriptionStatus

#: status -> the statuses it may become. A new subscription starts active or waitlisted;
#: a waitlisted one becomes active when the waitlist grants it seats (an active one never
#: goes back: a resize keeps at least one seat); cancelling ends either.
TRANSITIONS: dict[SubscriptionStatus, frozenset[SubscriptionStatus]] = {
    SubscriptionStatus.ACTIVE: frozenset({SubscriptionStatus.CANCELLED}),
    SubscriptionStatus.WAITLISTED: frozenset(
        {SubscriptionStatus.ACTIVE, SubscriptionStatus.CANCELLED}
    ),
    SubscriptionStatus.CANCELLED: frozenset(),
}


# A subscription's status as a word inside a sentence.
STATUS_NAMES = {
    SubscriptionStatus.ACTIVE: _l("active"),
    SubscriptionStatus.WAITLISTED: _l("waitlisted"),
    SubscriptionStatus.CANCELLED: _l("cancelled"),
}


def transition(subscription: Subscription, target: SubscriptionStatus) -> None:
    """Set the status to ``target`` if :data:`TRANSITIONS` allows it (staying put is no change)."""
    current = subscription.status
    if current is not None and current != target and target not in TRANSITIONS[current]:
        raise InvalidState(
            _l(
                "This subscription is %(status)s; it cannot become %(target)s.",
                status=STATUS_NAMES[current],
                target=STATUS_NAMES[target],
            ),
            code="invalid_transition",
        )
    subscription.status = target


def settle_status(subscription: Subscription) -> None:
    """Active with seats granted, waitlisted without; the waitlist place kept while seats wait."""
    transition(
        subscription,
        SubscriptionStatus.ACTIVE if subscription.quantity > 0 else SubscriptionStatus.WAITLISTED,
    )
    if subscription.waiting == 0:
        subscription.waitlisted_at = None
    elif subscription.waitlisted_at is None:
        subscription.waitlisted_at = now_utc()


def record_change(
    session: Session, subscription: Subscription, reason: str, at: dt.datetime | None = None
) -> None:
    """Add the subscription's granted quantity from ``at`` (now) on to its history."""
    session.add(
        SubscriptionChange(
            organisation_id=subscription.organisation_id,
            subscription_id=subscription.id,
            quantity=subscription.quantity,
            effective_at=at or now_utc(),
            reason=reason,
        )
    )
