"""Writes on subscriptions and seats; the rules behind invariants 1 and 2.

* Invariant 1 — seats reserved by live subscriptions of a product never exceed
  the capacity of its pools in force: every change of a product's reservations
  first locks the product row (:func:`portal.catalogue.services.lock_product`).
* Invariant 2 — a subscription's active seats never exceed its quantity, and a
  person holds at most one active seat of a product: seat changes lock the
  subscription row, and a partial unique index backs the second rule.

Shortage handling (``on_shortage``): ``reject`` refuses with ``pool_exhausted``;
``partial`` takes the free seats and drops the rest; ``waitlist`` takes the free
seats and queues the rest, granted first come first served as seats free up.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any, Literal

import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from portal.audit.services import audit_record
from portal.catalogue.models import Product
from portal.catalogue.selectors import capacity_in_force, reserved_seats
from portal.catalogue.services import lock_product
from portal.identity.models import User
from portal.kernel.actor import Actor, Role
from portal.kernel.clock import now_utc
from portal.kernel.errors import (
    Conflict,
    InvalidState,
    NotFound,
    PermissionDenied,
    ValidationFailed,
)
from portal.mail import build_message, mail_queue
from portal.seats import selectors
from portal.seats.models import (
    SeatAssignment,
    SeatRequest,
    Subscription,
    SubscriptionChange,
    SubscriptionStatus,
)
from portal.signals import pool_capacity_changed, subscription_opening, user_deactivated
from portal.sso.services import user_provision
from portal.tenancy.models import Organisation
from portal.validation import MIN_DATE, check_email

OnShortage = Literal["reject", "waitlist", "partial"]
MAX_QUANTITY = 100_000


def _may_manage(actor: Actor, organisation_id: int) -> None:
    """Council admins (and the system) manage every organisation's seats; org admins their own."""
    if actor.role is None or actor.role == Role.COUNCIL_ADMIN:
        return
    if actor.role == Role.ORG_ADMIN:
        if actor.organisation_id != organisation_id:
            raise NotFound("No such subscription.")
        return
    raise PermissionDenied("Only your organisation's admin manages subscriptions and seats.")


def _check_quantity(quantity: Any, *, minimum: int = 1) -> int:
    if isinstance(quantity, bool) or not isinstance(quantity, int):
        raise ValidationFailed(
            "Give a whole number of seats.", errors={"quantity": ["Enter a whole number."]}
        )
    if not minimum <= quantity <= MAX_QUANTITY:
        raise ValidationFailed(
            f"Give between {minimum} and {MAX_QUANTITY} seats.",
            errors={"quantity": [f"Enter a number from {minimum} to {MAX_QUANTITY}."]},
        )
    return quantity


def _check_on_shortage(on_shortage: str) -> str:
    if on_shortage not in ("reject", "waitlist", "partial"):
        raise ValidationFailed(
            "on_shortage must be reject, waitlist or partial.",
            errors={"on_shortage": ["Choose reject, waitlist or partial."]},
        )
    return on_shortage


def _free_seats(session: Session, product_id: int) -> int:
    today = now_utc().date()
    return max(
        0, capacity_in_force(session, product_id, today) - reserved_seats(session, product_id)
    )


def _record_change(
    session: Session, subscription: Subscription, reason: str, at: dt.datetime | None = None
) -> None:
    session.add(
        SubscriptionChange(
            organisation_id=subscription.organisation_id,
            subscription_id=subscription.id,
            quantity=subscription.quantity,
            effective_at=at or now_utc(),
            reason=reason,
        )
    )


def _set_status(subscription: Subscription) -> None:
    subscription.status = (
        SubscriptionStatus.ACTIVE if subscription.quantity > 0 else SubscriptionStatus.WAITLISTED
    )
    if subscription.waiting == 0:
        subscription.waitlisted_at = None
    elif subscription.waitlisted_at is None:
        subscription.waitlisted_at = now_utc()


def _shortage(product: Product, wanted: int, free: int) -> Conflict:
    return Conflict(
        f"Only {free} seat{'s' if free != 1 else ''} of {product.name} "
        f"{'are' if free != 1 else 'is'} free; {wanted} were asked for.",
        code="pool_exhausted",
        extra={"available": free},
    )


@dataclass
class Outcome:
    """What a subscription request got: ``granted``, ``partial`` or ``waitlisted``."""

    subscription: Subscription
    result: str

    @property
    def complete(self) -> bool:
        return self.result == "granted"


def _grant(product: Product, wanted: int, free: int, on_shortage: str) -> tuple[int, int, str]:
    """(granted, still requested, outcome) for ``wanted`` more seats with ``free`` free."""
    if wanted <= free:
        return wanted, wanted, "granted"
    if on_shortage == "reject" or (on_shortage == "partial" and free == 0):
        raise _shortage(product, wanted, free)
    if on_shortage == "partial":
        return free, free, "partial"
    return free, wanted, "waitlisted"


def subscription_create(
    session: Session,
    *,
    actor: Actor,
    organisation: Organisation,
    product: Product,
    quantity: int,
    on_shortage: OnShortage | str = "reject",
    starts_on: dt.date | None = None,
) -> Outcome:
    """Reserve ``quantity`` seats of ``product`` for ``organisation``."""
    _may_manage(actor, organisation.id)
    quantity = _check_quantity(quantity)
    _check_on_shortage(on_shortage)
    today = now_utc().date()
    if starts_on is None:
        starts_on = today
    elif starts_on != today and actor.role not in (None, Role.COUNCIL_ADMIN):
        raise ValidationFailed(
            "Only the council can date a subscription other than today.",
            errors={"starts_on": ["Leave empty: subscriptions start today."]},
        )
    elif starts_on > today:
        raise ValidationFailed(
            "A subscription cannot start in the future.",
            errors={"starts_on": ["Give today or a past date."]},
        )
    elif starts_on < MIN_DATE:  # date arithmetic on it stays in range (SPEC invariant 9)
        raise ValidationFailed(
            f"A subscription cannot start before {MIN_DATE.isoformat()}.",
            errors={"starts_on": [f"Give a date from {MIN_DATE.isoformat()} on."]},
        )
    if organisation.status != "active":
        raise InvalidState(
            f"{organisation.name} is {organisation.status}; it cannot take new subscriptions.",
            code="organisation_not_active",
        )
    # Receivers may refuse: billing's overdue invoices hold back new subscriptions (a council
    # setting; existing seats are never touched).
    subscription_opening.send(organisation, session=session, today=today)
    if product.vendor.status != "active":
        raise InvalidState(
            f"{product.vendor.name} is {product.vendor.status.replace('_', ' ')}; "
            f"{product.name} cannot be newly subscribed.",
            code="vendor_unavailable",
        )
    lock_product(session, product.id)
    if selectors.live_subscription(session, organisation_id=organisation.id, product_id=product.id):
        raise Conflict(
            f"{organisation.name} already subscribes to {product.name}; "
            "change its quantity instead.",
            code="subscription_exists",
        )
    granted, requested, result = _grant(
        product, quantity, _free_seats(session, product.id), on_shortage
    )
    subscription = Subscription(
        organisation_id=organisation.id,
        product_id=product.id,
        quantity=granted,
        requested_quantity=requested,
        starts_on=starts_on,
        status=SubscriptionStatus.ACTIVE,
    )
    _set_status(subscription)
    session.add(subscription)
    session.flush()
    start = dt.datetime.combine(starts_on, dt.time(), tzinfo=dt.UTC)
    _record_change(session, subscription, "create", at=min(start, now_utc()))
    audit_record(
        session,
        actor=actor,
        action="subscription.create",
        target_type="subscription",
        target_id=subscription.id,
        target_label=product.sku,
        organisation_id=organisation.id,
        after={
            "quantity": granted,
            "requested_quantity": requested,
            "status": subscription.status,
            "outcome": result,
        },
    )
    return Outcome(subscription, result)


def subscription_resize(
    session: Session,
    *,
    actor: Actor,
    subscription: Subscription,
    quantity: int,
    on_shortage: OnShortage | str = "reject",
) -> Outcome:
    """Change the seats reserved. Shrinking below the seats assigned is refused."""
    _may_manage(actor, subscription.organisation_id)
    quantity = _check_quantity(quantity)
    _check_on_shortage(on_shortage)
    lock_product(session, subscription.product_id)
    session.refresh(subscription)
    if subscription.status == SubscriptionStatus.CANCELLED:
        raise InvalidState("This subscription is cancelled.", code="subscription_cancelled")
    product = subscription.product
    assigned = selectors.assigned_counts(session, [subscription.id]).get(subscription.id, 0)
    if quantity < assigned:
        release = assigned - quantity
        raise Conflict(
            f"{assigned} seats are assigned; "
            f"release {release} of them before reducing to {quantity}.",
            code="seats_assigned",
            errors={
                "quantity": [f"Release {release} assigned seat{'s' if release != 1 else ''} first."]
            },
            extra={"assigned": assigned},
        )
    before = {
        "quantity": subscription.quantity,
        "requested_quantity": subscription.requested_quantity,
    }
    result = "granted"
    if quantity <= subscription.quantity:
        subscription.quantity = subscription.requested_quantity = quantity
    elif quantity <= subscription.requested_quantity:
        # Fewer seats waiting, none granted taken away: the queue place is kept.
        subscription.requested_quantity = quantity
        result = "waitlisted"
    else:
        if product.vendor.status != "active":
            raise InvalidState(
                f"{product.vendor.name} is {product.vendor.status.replace('_', ' ')}; "
                "no seats can be added.",
                code="vendor_unavailable",
            )
        more, wanted_more, result = _grant(
            product, quantity - subscription.quantity, _free_seats(session, product.id), on_shortage
        )
        subscription.quantity += more
        subscription.requested_quantity = subscription.quantity - more + wanted_more
    _set_status(subscription)
    session.flush()
    if subscription.quantity != before["quantity"]:
        _record_change(session, subscription, "resize")
    audit_record(
        session,
        actor=actor,
        action="subscription.resize",
        target_type="subscription",
        target_id=subscription.id,
        target_label=product.sku,
        organisation_id=subscription.organisation_id,
        before=before,
        after={
            "quantity": subscription.quantity,
            "requested_quantity": subscription.requested_quantity,
            "outcome": result,
        },
    )
    if subscription.quantity < before["quantity"]:
        waitlist_fill(session, product=product, actor=actor)
    return Outcome(subscription, result)


def subscription_cancel(
    session: Session, *, actor: Actor, subscription: Subscription
) -> Subscription:
    """End a subscription: its seats are released and go back to the pool."""
    _may_manage(actor, subscription.organisation_id)
    lock_product(session, subscription.product_id)
    session.refresh(subscription)
    if subscription.status == SubscriptionStatus.CANCELLED:
        raise InvalidState("This subscription is already cancelled.", code="subscription_cancelled")
    now = now_utc()
    for seat in selectors.active_seats(
        session, organisation_id=subscription.organisation_id, subscription_id=subscription.id
    ):
        seat.released_at = now
        seat.release_reason = "cancelled"
    before = {"quantity": subscription.quantity, "status": subscription.status}
    subscription.quantity = subscription.requested_quantity = 0
    subscription.status = SubscriptionStatus.CANCELLED
    subscription.cancelled_at = now
    subscription.ends_on = now.date()
    subscription.waitlisted_at = None
    session.flush()
    _record_change(session, subscription, "cancel")
    audit_record(
        session,
        actor=actor,
        action="subscription.cancel",
        target_type="subscription",
        target_id=subscription.id,
        target_label=subscription.product.sku,
        organisation_id=subscription.organisation_id,
        before=before,
        after={"quantity": 0, "status": "cancelled"},
    )
    waitlist_fill(session, product=subscription.product, actor=actor)
    return subscription


def waitlist_fill(
    session: Session, *, product: Product, actor: Actor
) -> list[tuple[Subscription, int]]:
    """Grant free seats to waiting subscriptions, first come first served.

    The caller holds the product lock. Returns (subscription, seats granted) pairs;
    each organisation's admins and the council admins are mailed.
    """
    free = _free_seats(session, product.id)
    if free <= 0:
        return []
    waiting = session.scalars(
        sa.select(Subscription)
        .join(Organisation, Organisation.id == Subscription.organisation_id)
        .where(
            Subscription.product_id == product.id,
            Subscription.status != SubscriptionStatus.CANCELLED,
            Subscription.requested_quantity > Subscription.quantity,
            Organisation.status == "active",
        )
        .order_by(Subscription.waitlisted_at, Subscription.id)
    ).unique()
    granted: list[tuple[Subscription, int]] = []
    for subscription in waiting:
        if free <= 0:
            break
        seats = min(free, subscription.waiting)
        subscription.quantity += seats
        free -= seats
        _set_status(subscription)
        session.flush()
        _record_change(session, subscription, "waitlist")
        audit_record(
            session,
            actor=actor,
            action="subscription.waitlist_grant",
            target_type="subscription",
            target_id=subscription.id,
            target_label=product.sku,
            organisation_id=subscription.organisation_id,
            after={
                "granted": seats,
                "quantity": subscription.quantity,
                "still_waiting": subscription.waiting,
            },
        )
        granted.append((subscription, seats))
    if granted:
        _mail_waitlist_grants(session, product, granted)
    return granted


def _mail_waitlist_grants(
    session: Session, product: Product, granted: list[tuple[Subscription, int]]
) -> None:
    for subscription, seats in granted:
        for admin in _org_admins(session, subscription.organisation_id):
            mail_queue(
                session,
                build_message(
                    to=admin.email,
                    subject=f"{seats} seat(s) of {product.name} granted",
                    template="waitlist_granted",
                    product=product,
                    seats=seats,
                    subscription=subscription,
                    organisation=subscription.organisation,
                ),
            )
    council = session.scalars(
        sa.select(User).where(User.role == Role.COUNCIL_ADMIN, User.is_active)
    ).all()
    for admin in council:
        mail_queue(
            session,
            build_message(
                to=admin.email,
                subject=f"Waitlisted seats of {product.name} granted",
                template="waitlist_granted_council",
                product=product,
                granted=granted,
            ),
        )


def _org_admins(session: Session, organisation_id: int) -> list[User]:
    return list(
        session.scalars(
            sa.select(User).where(
                User.organisation_id == organisation_id, User.role == Role.ORG_ADMIN, User.is_active
            )
        )
    )


@pool_capacity_changed.connect
def _pool_changed(product: Product, **kwargs: Any) -> None:
    """A pool grew or was added: waiting organisations may get seats now."""
    lock_product(kwargs["session"], product.id)
    waitlist_fill(kwargs["session"], product=product, actor=kwargs["actor"])


# ---------------------------------------------------------------- seats


def seat_assign(
    session: Session, *, actor: Actor, subscription: Subscription, user_email: str
) -> SeatAssignment:
    """Give a person a seat of the subscription; an unknown email gets an invitation."""
    _may_manage(actor, subscription.organisation_id)
    try:
        email = check_email((user_email or "").strip())
    except ValueError as exc:
        raise ValidationFailed(str(exc), errors={"user_email": [str(exc)]}) from exc
    # Lock the subscription: concurrent assignments queue here (invariant 2).
    session.execute(
        sa.select(Subscription.id).where(Subscription.id == subscription.id).with_for_update()
    )
    session.refresh(subscription)
    if subscription.status != SubscriptionStatus.ACTIVE:
        raise InvalidState(
            f"This subscription is {subscription.status}; it has no seats to assign.",
            code="subscription_not_active",
        )
    organisation = subscription.organisation
    assigned = selectors.assigned_counts(session, [subscription.id]).get(subscription.id, 0)
    if assigned >= subscription.quantity and not _holds_seat(session, subscription, email):
        # Before the address is looked at: a full subscription answers the same for
        # every address, whoever it belongs to.
        raise _no_free_seat(subscription)
    user = user_provision(session, actor=actor, organisation=organisation, email=email)
    if not user.is_active:
        raise InvalidState(
            f"{email} is deactivated; reactivate the account first.",
            code="user_inactive",
            errors={"user_email": ["This account is deactivated."]},
        )
    existing = selectors.seat_of_user(
        session,
        organisation_id=organisation.id,
        user_id=user.id,
        product_id=subscription.product_id,
    )
    if existing is not None:
        raise Conflict(
            f"{email} already has a seat of {subscription.product.name}.",
            code="already_assigned",
            errors={"user_email": ["Already has a seat."]},
        )
    if assigned >= subscription.quantity:
        raise _no_free_seat(subscription)
    seat = SeatAssignment(
        organisation_id=organisation.id,
        subscription_id=subscription.id,
        product_id=subscription.product_id,
        user_id=user.id,
    )
    try:
        with session.begin_nested():
            session.add(seat)
    except IntegrityError as exc:  # the unique index caught a race for the same person
        raise Conflict(
            f"{email} already has a seat of {subscription.product.name}.", code="already_assigned"
        ) from exc
    # A pending request of this person for this product is answered by the seat.
    session.execute(
        sa.update(SeatRequest)
        .where(
            SeatRequest.organisation_id == organisation.id,
            SeatRequest.user_id == user.id,
            SeatRequest.product_id == subscription.product_id,
            SeatRequest.status == "pending",
        )
        .values(status="approved", decided_by_id=actor.user_id, decided_at=now_utc())
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
        mail_queue(
            session,
            build_message(
                to=email,
                subject=f"You have a seat of {subscription.product.name}",
                template="seat_assigned",
                product=subscription.product,
                organisation=organisation,
            ),
        )
    return seat


@dataclass
class BulkResult:
    email: str
    ok: bool
    message: str


def _no_free_seat(subscription: Subscription) -> Conflict:
    return Conflict(
        f"All {subscription.quantity} seats of {subscription.product.name} are assigned. "
        "Release one or add seats to the subscription.",
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
            results.append(BulkResult(email, True, "Seat assigned."))
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
    _may_manage(actor, subscription.organisation_id)
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
    )
    if seat is None:
        raise NotFound(
            f"{email or 'That person'} holds no seat of this subscription.", code="seat_not_found"
        )
    seat.released_at = now_utc()
    seat.release_reason = reason
    session.flush()
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


# ---------------------------------------------------------------- seat requests


def seat_request_create(
    session: Session, *, actor: Actor, user: User, product: Product, note: str | None = None
) -> SeatRequest:
    """A person asks their organisation's admin for a seat of a product."""
    if user.organisation_id is None:
        raise PermissionDenied("Council staff do not hold seats.")
    note = (note or "").strip()[:1000] or None
    if selectors.seat_of_user(
        session, organisation_id=user.organisation_id, user_id=user.id, product_id=product.id
    ):
        raise Conflict(f"You already have a seat of {product.name}.", code="already_assigned")
    pending = selectors.seat_requests_list(
        session, organisation_id=user.organisation_id, user_id=user.id
    )
    if any(r.product_id == product.id for r in pending):
        raise Conflict(
            f"You already asked for {product.name}; your admin will answer.", code="request_pending"
        )
    request = SeatRequest(
        organisation_id=user.organisation_id, product_id=product.id, user_id=user.id, note=note
    )
    session.add(request)
    session.flush()
    audit_record(
        session,
        actor=actor,
        action="seat_request.create",
        target_type="seat_request",
        target_id=request.id,
        target_label=f"{product.sku} ← {user.email}",
        organisation_id=user.organisation_id,
        after={"product": product.sku, "note": note},
    )
    for admin in _org_admins(session, user.organisation_id):
        mail_queue(
            session,
            build_message(
                to=admin.email,
                subject=f"{user.display_name} asks for a seat of {product.name}",
                template="seat_requested",
                requester=user,
                product=product,
                note=note,
            ),
        )
    return request


def seat_request_decide(
    session: Session, *, actor: Actor, request: SeatRequest, approve: bool, note: str | None = None
) -> SeatRequest:
    """Approve (assigns a seat from the organisation's subscription) or decline a request."""
    _may_manage(actor, request.organisation_id)
    if request.status != "pending":
        raise InvalidState(f"This request is already {request.status}.", code="request_decided")
    if approve:
        subscription = selectors.live_subscription(
            session, organisation_id=request.organisation_id, product_id=request.product_id
        )
        if subscription is None:
            raise InvalidState(
                f"Your organisation does not subscribe to {request.product.name}; subscribe first.",
                code="no_subscription",
            )
        held = selectors.seat_of_user(
            session,
            organisation_id=request.organisation_id,
            user_id=request.user_id,
            product_id=request.product_id,
        )
        if held is None:  # given a seat directly meanwhile: nothing more to assign
            seat_assign(
                session, actor=actor, subscription=subscription, user_email=request.user.email
            )
    request.status = "approved" if approve else "declined"
    request.decision_note = (note or "").strip()[:1000] or None
    request.decided_by_id = actor.user_id
    request.decided_at = now_utc()
    session.flush()
    audit_record(
        session,
        actor=actor,
        action=f"seat_request.{request.status}",
        target_type="seat_request",
        target_id=request.id,
        target_label=f"{request.product.sku} ← {request.user.email}",
        organisation_id=request.organisation_id,
        after={"status": request.status},
    )
    if not approve:
        mail_queue(
            session,
            build_message(
                to=request.user.email,
                subject=f"Your request for {request.product.name}",
                template="seat_request_declined",
                request=request,
            ),
        )
    return request


def product_for_subscription(session: Session, sku: str) -> Product:
    """A product by SKU for a subscription request (a miss is a field error)."""
    from portal.catalogue.selectors import product_by_sku

    return product_by_sku(session, sku, field="product")
