"""The outbox: each change a vendor should hear of becomes :class:`Delivery` rows in the
change's own transaction (SPEC 8.4).

Receivers of :mod:`portal.signals` (``seat_assigned``, ``seat_released``,
``user_deactivated``, ``user_profile_changed``, ``subscription_changed``) write one row
per vendor concerned and channel it configured (SCIM, webhook), with the change's
snapshot as the payload. A rolled-back change leaves no row; a committed one always has
its rows, and the engine (:mod:`portal.provisioning.delivery`) delivers them whether or
not the job enqueued with them ever runs (the schedule's sweep finds due rows).

Hot paths stay cheap: which vendors have provisioning configured is read once per
transaction (one small query; none at all while no vendor has), and a transaction that
wrote deliveries enqueues one delivery job per vendor just before it commits.
"""

from __future__ import annotations

import secrets
from collections.abc import Iterable, Sequence
from typing import Any

import sqlalchemy as sa
from sqlalchemy import event
from sqlalchemy.orm import Session

from portal.catalogue.models import Product
from portal.identity.models import User
from portal.kernel.clock import now_utc
from portal.provisioning.delivery import enqueue_delivery
from portal.provisioning.models import Channel, Delivery, Event, VendorProvisioning
from portal.seats.models import SeatAssignment, Subscription
from portal.signals import (
    seat_assigned,
    seat_released,
    subscription_changed,
    user_deactivated,
    user_profile_changed,
)
from portal.tenancy.models import Organisation

_CONFIGURED_KEY = "portal_provisioning_configured"
_TOUCHED_KEY = "portal_provisioning_vendors"

#: Which events go over which channel (SCIM has nothing to do for a subscription; a
#: profile change is a SCIM PATCH only).
EVENT_CHANNELS: dict[Event, tuple[Channel, ...]] = {
    Event.SEAT_ASSIGNED: (Channel.SCIM, Channel.WEBHOOK),
    Event.SEAT_RELEASED: (Channel.SCIM, Channel.WEBHOOK),
    Event.USER_DEACTIVATED: (Channel.SCIM, Channel.WEBHOOK),
    Event.USER_UPDATED: (Channel.SCIM,),
    Event.SUBSCRIPTION_CHANGED: (Channel.WEBHOOK,),
}


#: The vendors' provisioning settings :func:`configured_vendors` reads (a caller that runs
#: it itself hands the rows to :func:`remember_configured`).
CONFIGURED = sa.select(
    VendorProvisioning.vendor_id,
    VendorProvisioning.scim_base_url,
    VendorProvisioning.scim_token_sealed,
    VendorProvisioning.webhook_url,
    VendorProvisioning.webhook_secret_sealed,
)


def configured_vendors(session: Session) -> dict[int, tuple[Channel, ...]]:
    """Vendors with a channel configured, and their channels (read once per transaction)."""
    cached = session.info.get(_CONFIGURED_KEY)
    if cached is not None:
        return cached
    return remember_configured(session, session.execute(CONFIGURED).all())


def remember_configured(
    session: Session, rows: Iterable[Sequence[Any]]
) -> dict[int, tuple[Channel, ...]]:
    """The configured vendors of :data:`CONFIGURED`'s ``rows``, kept for the transaction."""
    found: dict[int, tuple[Channel, ...]] = {}
    for vendor_id, scim_url, scim_token, hook_url, hook_secret in rows:
        channels = []
        if scim_url and scim_token:
            channels.append(Channel.SCIM)
        if hook_url and hook_secret:
            channels.append(Channel.WEBHOOK)
        if channels:
            found[vendor_id] = tuple(channels)
    session.info[_CONFIGURED_KEY] = found
    return found


def writes_nothing_for(session: Session, vendor_id: int) -> bool:
    """Whether a seat change of ``vendor_id``'s product writes nothing here (no channel
    configured for the vendor): the lean seat path then writes in one round trip."""
    return vendor_id not in configured_vendors(session)


def forget_configuration(session: Session) -> None:
    """Settings changed in this transaction: read them again at the next change."""
    session.info.pop(_CONFIGURED_KEY, None)


@event.listens_for(Session, "after_commit")
def _after_commit(session: Session) -> None:
    if not session.in_nested_transaction():
        session.info.pop(_CONFIGURED_KEY, None)
        session.info.pop(_TOUCHED_KEY, None)


@event.listens_for(Session, "after_soft_rollback")
def _after_rollback(session: Session, previous_transaction: Any) -> None:
    if previous_transaction.parent is None:
        session.info.pop(_CONFIGURED_KEY, None)
        session.info.pop(_TOUCHED_KEY, None)


@event.listens_for(Session, "before_commit")
def _enqueue_deliveries(session: Session) -> None:
    """A delivery job per vendor this transaction wrote deliveries for, in it (several
    for a large change: ``delivery.enqueue_delivery``)."""
    if session.in_nested_transaction():
        return
    touched = session.info.pop(_TOUCHED_KEY, None) or {}
    for vendor_id in sorted(touched):
        enqueue_delivery(session, vendor_id, deliveries=touched[vendor_id])


# ------------------------------------------------------------------ payloads


def _person(user: User) -> dict[str, Any]:
    return {
        "id": str(user.id),
        "email": user.email,
        "name": user.name or "",
        "active": bool(user.is_active),
    }


def _organisation(organisation: Organisation | None) -> dict[str, Any] | None:
    if organisation is None:
        return None
    return {"id": str(organisation.id), "slug": organisation.slug, "name": organisation.name}


def _product(product: Product) -> dict[str, Any]:
    return {"id": str(product.id), "sku": product.sku, "name": product.name}


def _payload(kind: Event, data: dict[str, Any]) -> dict[str, Any]:
    return {"type": str(kind), "timestamp": now_utc().isoformat(), "data": data}


def _write(
    session: Session,
    *,
    vendor_id: int,
    kind: Event,
    organisation_id: int,
    sequence_key: str,
    data: dict[str, Any],
    user_id: int | None = None,
    product_id: int | None = None,
) -> int:
    """The rows of one change for one vendor: one per configured channel that carries it."""
    channels = configured_vendors(session).get(vendor_id, ())
    written = 0
    now = now_utc()
    for channel in channels:
        if channel not in EVENT_CHANNELS[kind]:
            continue
        session.add(
            Delivery(
                organisation_id=organisation_id,
                vendor_id=vendor_id,
                channel=channel,
                event=kind,
                sequence_key=sequence_key,
                user_id=user_id,
                product_id=product_id,
                message_id="msg_" + secrets.token_urlsafe(24),
                payload=_payload(kind, data),
                attempts=0,
                created_at=now,
                next_attempt_at=now,
            )
        )
        written += 1
    if written:
        touched = session.info.setdefault(_TOUCHED_KEY, {})  # vendor id: deliveries written
        touched[vendor_id] = touched.get(vendor_id, 0) + written
    return written


def _seat_parts(session: Session, seat: SeatAssignment) -> tuple[Product, User, Organisation]:
    subscription = session.get(Subscription, seat.subscription_id)
    product = (
        subscription.product
        if subscription is not None and subscription.product_id == seat.product_id
        else session.get(Product, seat.product_id)
    )
    user = seat.user if seat.user is not None else session.get(User, seat.user_id)
    organisation = (
        subscription.organisation
        if subscription is not None
        else session.get(Organisation, seat.organisation_id)
    )
    assert product is not None and user is not None and organisation is not None
    return product, user, organisation


def _seat_change(session: Session, seat: SeatAssignment, kind: Event) -> None:
    configured = configured_vendors(session)
    if not configured:
        return
    product, user, organisation = _seat_parts(session, seat)
    if product.vendor_id not in configured:
        return
    seat_data: dict[str, Any] = {
        "id": str(seat.id),
        "assigned_at": seat.assigned_at.isoformat() if seat.assigned_at else None,
    }
    if kind == Event.SEAT_RELEASED:
        seat_data["released_at"] = seat.released_at.isoformat() if seat.released_at else None
        seat_data["reason"] = seat.release_reason
    _write(
        session,
        vendor_id=product.vendor_id,
        kind=kind,
        organisation_id=seat.organisation_id,
        sequence_key=f"user:{user.id}",
        user_id=user.id,
        product_id=product.id,
        data={
            "seat": seat_data,
            "person": _person(user),
            "organisation": _organisation(organisation),
            "product": _product(product),
        },
    )


@seat_assigned.connect
def _on_seat_assigned(seat: SeatAssignment, **kwargs: Any) -> None:
    _seat_change(kwargs["session"], seat, Event.SEAT_ASSIGNED)


@seat_released.connect
def _on_seat_released(seat: SeatAssignment, **kwargs: Any) -> None:
    _seat_change(kwargs["session"], seat, Event.SEAT_RELEASED)


def _vendors_of_person(session: Session, user_id: int, *, active_only: bool) -> list[int]:
    query = (
        sa.select(Product.vendor_id)
        .join(SeatAssignment, SeatAssignment.product_id == Product.id)
        .where(SeatAssignment.user_id == user_id)
        .distinct()
    )
    if active_only:
        query = query.where(SeatAssignment.released_at.is_(None))
    return sorted(session.scalars(query).all())


@user_deactivated.connect
def _on_user_deactivated(user: User, **kwargs: Any) -> None:
    """Every configured vendor where the person holds, or held, a seat."""
    session: Session = kwargs["session"]
    configured = configured_vendors(session)
    if not configured or user.organisation_id is None:
        return
    organisation = session.get(Organisation, user.organisation_id)
    for vendor_id in _vendors_of_person(session, user.id, active_only=False):
        if vendor_id in configured:
            _write(
                session,
                vendor_id=vendor_id,
                kind=Event.USER_DEACTIVATED,
                organisation_id=user.organisation_id,
                sequence_key=f"user:{user.id}",
                user_id=user.id,
                data={
                    "person": _person(user),
                    "organisation": _organisation(organisation),
                    "deactivated_at": now_utc().isoformat(),
                },
            )


@user_profile_changed.connect
def _on_profile_changed(user: User, **kwargs: Any) -> None:
    """Vendors where the person holds a seat now hear of the new name or address (SCIM)."""
    session: Session = kwargs["session"]
    configured = configured_vendors(session)
    if not configured or user.organisation_id is None:
        return
    if not any(Channel.SCIM in channels for channels in configured.values()):
        return
    fields = sorted(str(f) for f in kwargs.get("fields") or ())
    for vendor_id in _vendors_of_person(session, user.id, active_only=True):
        if vendor_id in configured:
            _write(
                session,
                vendor_id=vendor_id,
                kind=Event.USER_UPDATED,
                organisation_id=user.organisation_id,
                sequence_key=f"user:{user.id}",
                user_id=user.id,
                data={"person": _person(user), "fields": fields},
            )


@subscription_changed.connect
def _on_subscription_changed(subscription: Subscription, **kwargs: Any) -> None:
    session: Session = kwargs["session"]
    configured = configured_vendors(session)
    if not configured:
        return
    product = subscription.product or session.get(Product, subscription.product_id)
    if product is None or product.vendor_id not in configured:
        return
    _write(
        session,
        vendor_id=product.vendor_id,
        kind=Event.SUBSCRIPTION_CHANGED,
        organisation_id=subscription.organisation_id,
        sequence_key=f"subscription:{subscription.id}",
        product_id=product.id,
        data={
            "change": str(kwargs.get("change") or "changed"),
            "subscription": {
                "id": str(subscription.id),
                "status": str(subscription.status),
                "quantity": subscription.quantity,
                "requested_quantity": subscription.requested_quantity,
            },
            "organisation": _organisation(subscription.organisation),
            "product": _product(product),
        },
    )
