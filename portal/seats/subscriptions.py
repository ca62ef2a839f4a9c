"""Subscriptions: an organisation reserves seats of a product, changes how many, ends it.

Invariant 1 (see :mod:`portal.seats.capacity`): every change of a product's
reservations locks the product row first and counts the free seats.

Shortage handling (``on_shortage``): ``reject`` refuses with ``pool_exhausted``;
``partial`` takes the free seats and drops the rest; ``waitlist`` takes the free
seats and queues the rest, granted first come first served as seats free up
(:mod:`portal.seats.waitlist`). Statuses change through
:func:`portal.seats.lifecycle.transition` only.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any, Literal

from sqlalchemy.orm import Session

from portal.audit.services import audit_record
from portal.catalogue.models import Product, VendorStatus
from portal.catalogue.selectors import capacity_in_force, product_by_sku, seat_prices
from portal.catalogue.services import lock_product
from portal.kernel import policy
from portal.kernel.actor import Actor
from portal.kernel.clock import now_utc
from portal.kernel.errors import Conflict, InvalidState, ValidationFailed
from portal.kernel.i18n import _l, _ln
from portal.kernel.policy import Action
from portal.kernel.scope import Scope
from portal.seats import counts, selectors, writes
from portal.seats.capacity import free_seats
from portal.seats.lifecycle import record_change, settle_status, transition
from portal.seats.models import Subscription, SubscriptionStatus
from portal.seats.waitlist import waitlist_fill
from portal.signals import seat_released, subscription_changed, subscription_opening
from portal.tenancy.models import Organisation, OrganisationStatus
from portal.tenancy.services import STATUS_NAMES
from portal.validation import MIN_DATE

OnShortage = Literal["reject", "waitlist", "partial"]
MAX_QUANTITY = 100_000


def _check_quantity(quantity: Any, *, minimum: int = 1) -> int:
    if isinstance(quantity, bool) or not isinstance(quantity, int):
        raise ValidationFailed(
            _l("Give a whole number of seats."), errors={"quantity": [_l("Enter a whole number.")]}
        )
    if not minimum <= quantity <= MAX_QUANTITY:
        raise ValidationFailed(
            _l("Give between %(min)d and %(max)d seats.", min=minimum, max=MAX_QUANTITY),
            errors={
                "quantity": [
                    _l("Enter a number from %(min)d to %(max)d.", min=minimum, max=MAX_QUANTITY)
                ]
            },
        )
    return quantity


def _check_on_shortage(on_shortage: str) -> str:
    if on_shortage not in ("reject", "waitlist", "partial"):
        raise ValidationFailed(
            _l("on_shortage must be reject, waitlist or partial."),
            errors={"on_shortage": [_l("Choose reject, waitlist or partial.")]},
        )
    return on_shortage


def _shortage(product: Product, wanted: int, free: int) -> Conflict:
    return Conflict(
        _ln(
            "Only %(num)d seat of %(product)s is free; you asked for %(wanted)d.",
            "Only %(num)d seats of %(product)s are free; you asked for %(wanted)d.",
            free,
            product=product.name,
            wanted=wanted,
        ),
        code="pool_exhausted",
        extra={"available": free},
    )


def _vendor_unavailable(product: Product, *, adding: bool = False) -> InvalidState:
    """A product of a vendor under review or suspended cannot be newly subscribed."""
    vendor = product.vendor.name
    if adding:
        if product.vendor.status == VendorStatus.SUSPENDED:
            message = _l("%(vendor)s is suspended; no seats can be added.", vendor=vendor)
        else:
            message = _l("%(vendor)s is under review; no seats can be added.", vendor=vendor)
    elif product.vendor.status == VendorStatus.SUSPENDED:
        message = _l(
            "%(vendor)s is suspended; %(product)s cannot be newly subscribed.",
            vendor=vendor,
            product=product.name,
        )
    else:
        message = _l(
            "%(vendor)s is under review; %(product)s cannot be newly subscribed.",
            vendor=vendor,
            product=product.name,
        )
    return InvalidState(message, code="vendor_unavailable")


def subscribable_or_refuse(
    session: Session, *, product: Product, currency: str, day: dt.date
) -> None:
    """Refuse, saying why, unless an organisation billed in ``currency`` could subscribe.

    A product can be subscribed when its vendor is active, the council has a pool of it
    in force on ``day`` and it has a seat price in ``currency`` (SPEC section 4; issue 14:
    a product with no pool or no price showed a Subscribe button and took waitlists).
    Seat requests and waitlists follow the same rule: they only make sense where a
    subscription could follow.
    """
    if product.vendor.status != VendorStatus.ACTIVE:
        raise _vendor_unavailable(product)
    if capacity_in_force(session, product.id, day) <= 0:
        raise InvalidState(
            _l(
                "The council has no seats of %(product)s in force; it cannot be subscribed yet.",
                product=product.name,
            ),
            code="no_pool_in_force",
        )
    if not seat_prices(session, currency=currency, product_ids=[product.id]):
        raise InvalidState(
            _l(
                "%(product)s has no price in %(currency)s yet; it cannot be subscribed.",
                product=product.name,
                currency=currency,
            ),
            code="no_price",
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
    policy.require(actor, Action.SUBSCRIPTION_CREATE, organisation_id=organisation.id)
    quantity = _check_quantity(quantity)
    _check_on_shortage(on_shortage)
    today = now_utc().date()
    if starts_on is None:
        starts_on = today
    elif starts_on != today and not policy.allowed(
        actor, Action.SUBSCRIPTION_BACKDATE, organisation_id=organisation.id
    ):
        raise ValidationFailed(
            _l("Only the council can date a subscription other than today."),
            errors={"starts_on": [_l("Leave empty: subscriptions start today.")]},
        )
    elif starts_on > today:
        raise ValidationFailed(
            _l("A subscription cannot start in the future."),
            errors={"starts_on": [_l("Give today or a past date.")]},
        )
    elif starts_on < MIN_DATE:  # date arithmetic on it stays in range (SPEC invariant 9)
        raise ValidationFailed(
            _l("A subscription cannot start before %(day)s.", day=MIN_DATE.isoformat()),
            errors={"starts_on": [_l("Give a date from %(day)s on.", day=MIN_DATE.isoformat())]},
        )
    if organisation.status != OrganisationStatus.ACTIVE:
        raise InvalidState(
            _l(
                "%(name)s is %(status)s; it cannot take new subscriptions.",
                name=organisation.name,
                status=STATUS_NAMES[organisation.status],
            ),
            code="organisation_not_active",
        )
    # Receivers may refuse: billing's overdue invoices hold back new subscriptions (a council
    # setting; existing seats are never touched).
    subscription_opening.send(organisation, session=session, today=today)
    subscribable_or_refuse(session, product=product, currency=organisation.currency, day=today)
    lock_product(session, product.id)
    if selectors.live_subscription(session, organisation_id=organisation.id, product_id=product.id):
        raise Conflict(
            _l(
                "%(organisation)s already subscribes to %(product)s; change its quantity instead.",
                organisation=organisation.name,
                product=product.name,
            ),
            code="subscription_exists",
        )
    granted, requested, result = _grant(
        product, quantity, free_seats(session, product.id), on_shortage
    )
    subscription = Subscription(
        organisation_id=organisation.id,
        product_id=product.id,
        quantity=granted,
        requested_quantity=requested,
        starts_on=starts_on,
    )
    settle_status(subscription)  # active, or waitlisted when no seat was free
    session.add(subscription)
    session.flush()
    counts.count_reservation(session, subscription, (0, 0))
    start = dt.datetime.combine(starts_on, dt.time(), tzinfo=dt.UTC)
    record_change(session, subscription, "create", at=min(start, now_utc()))
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
    subscription_changed.send(subscription, session=session, actor=actor, change="opened")
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
    policy.require(actor, Action.SUBSCRIPTION_RESIZE, organisation_id=subscription.organisation_id)
    quantity = _check_quantity(quantity)
    _check_on_shortage(on_shortage)
    lock_product(session, subscription.product_id)
    # The subscription's row too, read afresh: seat assignments queue on it, so the count
    # of assigned seats cannot grow past the new quantity meanwhile (invariant 2).
    writes.lock_subscription(session, subscription)
    if subscription.status == SubscriptionStatus.CANCELLED:
        raise InvalidState(_l("This subscription is cancelled."), code="subscription_cancelled")
    product = subscription.product
    assigned = subscription.assigned
    if quantity < assigned:
        release = assigned - quantity
        raise Conflict(
            _ln(
                "%(num)d seat is assigned; release %(release)d before reducing to %(quantity)d.",
                "%(num)d seats are assigned; release %(release)d of them before reducing to "
                "%(quantity)d.",
                assigned,
                release=release,
                quantity=quantity,
            ),
            code="seats_assigned",
            errors={
                "quantity": [
                    _ln(
                        "Release %(num)d assigned seat first.",
                        "Release %(num)d assigned seats first.",
                        release,
                    )
                ]
            },
            extra={"assigned": assigned},
        )
    before = {
        "quantity": subscription.quantity,
        "requested_quantity": subscription.requested_quantity,
    }
    reserved_before = counts.reservation(subscription)
    result = "granted"
    if quantity <= subscription.quantity:
        subscription.quantity = subscription.requested_quantity = quantity
    elif quantity <= subscription.requested_quantity:
        # Fewer seats waiting, none granted taken away: the queue place is kept.
        subscription.requested_quantity = quantity
        result = "waitlisted"
    else:
        if product.vendor.status != VendorStatus.ACTIVE:
            raise _vendor_unavailable(product, adding=True)
        # More seats (or a longer waitlist) only where a new subscription could be taken.
        subscribable_or_refuse(
            session,
            product=product,
            currency=subscription.organisation.currency,
            day=now_utc().date(),
        )
        more, wanted_more, result = _grant(
            product, quantity - subscription.quantity, free_seats(session, product.id), on_shortage
        )
        subscription.quantity += more
        subscription.requested_quantity = subscription.quantity - more + wanted_more
    settle_status(subscription)
    session.flush()
    counts.count_reservation(session, subscription, reserved_before)
    if subscription.quantity != before["quantity"]:
        record_change(session, subscription, "resize")
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
    subscription_changed.send(subscription, session=session, actor=actor, change="resized")
    if subscription.quantity < before["quantity"]:
        waitlist_fill(session, product=product, actor=actor)
    return Outcome(subscription, result)


def subscription_cancel(
    session: Session, *, actor: Actor, subscription: Subscription
) -> Subscription:
    """End a subscription: its seats are released and go back to the pool."""
    policy.require(actor, Action.SUBSCRIPTION_CANCEL, organisation_id=subscription.organisation_id)
    lock_product(session, subscription.product_id)
    # The subscription's row too, read afresh: seat changes queue on it, so the seats
    # read below are all of them and its counter of active seats ends at zero.
    writes.lock_subscription(session, subscription)
    if subscription.status == SubscriptionStatus.CANCELLED:
        raise InvalidState(
            _l("This subscription is already cancelled."), code="subscription_cancelled"
        )
    now = now_utc()
    released = list(
        selectors.active_seats(
            session,
            scope=Scope.organisation(subscription.organisation_id),
            subscription_id=subscription.id,
        )
    )
    for seat in released:
        seat.released_at = now
        seat.release_reason = "cancelled"
    reserved_before, assigned_before = counts.reservation(subscription), subscription.assigned
    subscription.assigned = 0  # every active seat released (the row is locked by the refresh)
    before = {"quantity": subscription.quantity, "status": subscription.status}
    subscription.quantity = subscription.requested_quantity = 0
    transition(subscription, SubscriptionStatus.CANCELLED)
    subscription.cancelled_at = now
    subscription.ends_on = now.date()
    subscription.waitlisted_at = None
    session.flush()
    counts.count_reservation(session, subscription, reserved_before, assigned=-assigned_before)
    record_change(session, subscription, "cancel")
    audit_record(
        session,
        actor=actor,
        action="subscription.cancel",
        target_type="subscription",
        target_id=subscription.id,
        target_label=subscription.product.sku,
        organisation_id=subscription.organisation_id,
        before=before,
        after={"quantity": 0, "status": SubscriptionStatus.CANCELLED},
    )
    for seat in released:
        seat_released.send(seat, session=session, actor=actor)
    subscription_changed.send(subscription, session=session, actor=actor, change="cancelled")
    waitlist_fill(session, product=subscription.product, actor=actor)
    return subscription


def product_for_subscription(session: Session, sku: str) -> Product:
    """A product by SKU for a subscription request (a miss is a field error)."""
    return product_by_sku(session, sku, field="product")
