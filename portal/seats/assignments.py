"""Seats: a person holds a seat of their organisation's subscription (invariant 2).

A subscription's active seats never exceed its quantity, and a person holds at
most one active seat of a product: seat changes lock the subscription row, and a
partial unique index backs the second rule. A deactivated person's seats go
back to their organisation (:data:`~portal.signals.user_deactivated`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Session

from portal.audit.services import audit_record
from portal.i18n import in_language
from portal.identity.models import User
from portal.kernel import policy
from portal.kernel.actor import Actor
from portal.kernel.clock import now_utc
from portal.kernel.errors import Conflict, InvalidState, NotFound, ValidationFailed
from portal.kernel.i18n import _, _l, _ln
from portal.kernel.policy import Action
from portal.mail import build_message, mail_queue
from portal.seats import selectors, writes
from portal.seats.models import (
    SeatAssignment,
    SeatRequest,
    SeatRequestStatus,
    Subscription,
    SubscriptionStatus,
)
from portal.signals import seat_assigned, seat_released, user_deactivated
from portal.sso.services import user_provision
from portal.validation import check_email


def seat_assign(
    session: Session, *, actor: Actor, subscription: Subscription, user_email: str
) -> SeatAssignment:
    """Give a person a seat of the subscription; an unknown email gets an invitation."""
    policy.require(actor, Action.SEAT_ASSIGN, organisation_id=subscription.organisation_id)
    try:
        email = check_email((user_email or "").strip())
    except ValueError as exc:
        raise ValidationFailed(str(exc), errors={"user_email": [str(exc)]}) from exc
    # Lock the subscription and read it afresh: concurrent assignments queue here (invariant 2).
    writes.lock_subscription(session, subscription)
    if subscription.status != SubscriptionStatus.ACTIVE:
        raise InvalidState(
            _l("This subscription is waitlisted; it has no seats to assign.")
            if subscription.status == SubscriptionStatus.WAITLISTED
            else _l("This subscription is cancelled; it has no seats to assign."),
            code="subscription_not_active",
        )
    organisation = subscription.organisation
    assigned = subscription.assigned  # read afresh under the lock
    if assigned >= subscription.quantity and not _holds_seat(session, subscription, email):
        # Before the address is looked at: a full subscription answers the same for
        # every address, whoever it belongs to.
        raise _no_free_seat(subscription)
    user = user_provision(session, actor=actor, organisation=organisation, email=email)
    if not user.is_active:
        raise InvalidState(
            _l("%(email)s is deactivated; reactivate the account first.", email=email),
            code="user_inactive",
            errors={"user_email": [_l("This account is deactivated.")]},
        )
    if writes.holds_active_seat(
        session,
        organisation_id=organisation.id,
        user_id=user.id,
        product_id=subscription.product_id,
    ):
        raise Conflict(
            _l(
                "%(email)s already has a seat of %(product)s.",
                email=email,
                product=subscription.product.name,
            ),
            code="already_assigned",
            errors={"user_email": [_l("Already has a seat.")]},
        )
    if not writes.take_seat(session, subscription):  # the counter, in the capacity check
        raise _no_free_seat(subscription)
    seat = writes.insert_seat(session, subscription=subscription, user=user)
    if seat is None:  # the unique index caught a race for the same person
        raise Conflict(
            _l(
                "%(email)s already has a seat of %(product)s.",
                email=email,
                product=subscription.product.name,
            ),
            code="already_assigned",
        )
    # Provisioning writes its outbox row in this transaction (SPEC 8.4).
    seat_assigned.send(seat, session=session, actor=actor)
    # A pending request of this person for this product is answered by the seat.
    session.execute(
        sa.update(SeatRequest)
        .where(
            SeatRequest.organisation_id == organisation.id,
            SeatRequest.user_id == user.id,
            SeatRequest.product_id == subscription.product_id,
            SeatRequest.status == SeatRequestStatus.PENDING,
        )
        .values(
            status=SeatRequestStatus.APPROVED, decided_by_id=actor.user_id, decided_at=now_utc()
        )
        .execution_options(synchronize_session="fetch")
    )
    audit_record(
        session,
        actor=actor,
        action="seat.assign",
        target_type="seat",
        target_id=seat.id,
        target_label=f"{subscription.product.sku} → {email}",
        organisation_id=organisation.id,
        after={"user_email": email, "subscription": subscription.id},
    )
    if user.password_hash is not None:
        with in_language(user.locale):
            message = build_message(
                to=email,
                subject=_("You have a seat of %(product)s", product=subscription.product.name),
                template="seat_assigned",
                product=subscription.product,
                organisation=organisation,
            )
        mail_queue(
            session,
            message,
            organisation_id=organisation.id,
            related=("seat", seat.id),
            actor=actor,
        )
    return seat


@dataclass
class BulkResult:
    email: str
    ok: bool
    message: str


def _no_free_seat(subscription: Subscription) -> Conflict:
    return Conflict(
        _ln(
            "The %(num)d seat of %(product)s is assigned. "
            "Release it or add seats to the subscription.",
            "All %(num)d seats of %(product)s are assigned. "
            "Release one or add seats to the subscription.",
            subscription.quantity,
            product=subscription.product.name,
        ),
        code="no_free_seat",
    )


def _holds_seat(session: Session, subscription: Subscription, email: str) -> bool:
    """Whether a person of the subscription's organisation holds a seat of its product."""
    user_id = session.scalar(
        sa.select(User.id).where(
            User.email == email, User.organisation_id == subscription.organisation_id
        )
    )
    return user_id is not None and (
        selectors.seat_of_user(
            session,
            organisation_id=subscription.organisation_id,
            user_id=user_id,
            product_id=subscription.product_id,
        )
        is not None
    )


def seat_assign_many(
    session: Session, *, actor: Actor, subscription: Subscription, emails: list[str]
) -> list[BulkResult]:
    """Assign seats to several people at once; each email succeeds or fails on its own."""
    policy.require(actor, Action.SEAT_ASSIGN, organisation_id=subscription.organisation_id)
    results = []
    seen: set[str] = set()
    for raw in emails:
        email = raw.strip().lower()
        if not email or email in seen:
            continue
        seen.add(email)
        try:
            with session.begin_nested():
                seat_assign(session, actor=actor, subscription=subscription, user_email=email)
        except (Conflict, InvalidState, ValidationFailed, NotFound) as error:
            results.append(BulkResult(email, False, error.detail))
        else:
            results.append(BulkResult(email, True, _("Seat assigned.")))
    return results


def seat_release(
    session: Session,
    *,
    actor: Actor,
    subscription: Subscription,
    user_email: str,
    reason: str = "released",
) -> SeatAssignment:
    """Take a seat back from a person; the seat stays reserved for the organisation."""
    policy.require(actor, Action.SEAT_RELEASE, organisation_id=subscription.organisation_id)
    email = (user_email or "").strip().lower()
    seat = session.scalar(
        sa.select(SeatAssignment)
        .join(User, User.id == SeatAssignment.user_id)
        .where(
            SeatAssignment.subscription_id == subscription.id,
            SeatAssignment.organisation_id == subscription.organisation_id,
            SeatAssignment.released_at.is_(None),
            User.email == email,
        )
        .options(*writes.RELEASE_LOAD)
    )
    if seat is None:
        raise NotFound(
            _l("%(email)s holds no seat of this subscription.", email=email)
            if email
            else _l("That person holds no seat of this subscription."),
            code="seat_not_found",
        )
    seat.released_at = now_utc()
    seat.release_reason = reason  # written with the audit event, in one flush
    writes.give_back(session, {subscription.id: 1})
    audit_record(
        session,
        actor=actor,
        action="seat.release",
        target_type="seat",
        target_id=seat.id,
        target_label=f"{subscription.product.sku} → {email}",
        organisation_id=subscription.organisation_id,
        before={"user_email": email},
        after={"released": True, "reason": reason},
    )
    seat_released.send(seat, session=session, actor=actor)
    return seat


@user_deactivated.connect
def _release_seats_of_deactivated(user: User, **kwargs: Any) -> None:
    """A deactivated person's seats go back to their organisation."""
    session: Session = kwargs["session"]
    seats = session.scalars(
        sa.select(SeatAssignment).where(
            SeatAssignment.user_id == user.id, SeatAssignment.released_at.is_(None)
        )
    ).all()
    counts: dict[int, int] = {}
    for seat in seats:
        counts[seat.subscription_id] = counts.get(seat.subscription_id, 0) + 1
    writes.give_back(session, counts)
    for seat in seats:
        seat.released_at = now_utc()
        seat.release_reason = "deactivated"
        audit_record(
            session,
            actor=kwargs["actor"],
            action="seat.release",
            target_type="seat",
            target_id=seat.id,
            target_label=user.email,
            organisation_id=seat.organisation_id,
            after={"released": True, "reason": "deactivated"},
        )
        seat_released.send(seat, session=session, actor=kwargs["actor"])
