"""The waitlist: seats asked for beyond those free wait, granted first come first served.

A subscription waits while ``requested_quantity > quantity``; its place is
``waitlisted_at``. Whenever seats of a product free up (a subscription shrinks or
ends, a pool grows or is added: :data:`~portal.signals.pool_capacity_changed`),
:func:`waitlist_fill` grants them in order and mails the organisations' admins
and the council admins.
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Session

from portal.audit.services import audit_record
from portal.catalogue.models import Product
from portal.catalogue.services import lock_product
from portal.db import council_wide
from portal.i18n import in_language
from portal.identity.models import User
from portal.kernel import policy
from portal.kernel.actor import Actor, Role
from portal.kernel.i18n import _, _n
from portal.kernel.policy import Action
from portal.mail import build_message, mail_queue
from portal.seats import counts
from portal.seats.capacity import free_seats
from portal.seats.lifecycle import record_change, settle_status
from portal.seats.models import Subscription, SubscriptionStatus
from portal.seats.selectors import org_admins
from portal.signals import pool_capacity_changed, subscription_changed
from portal.tenancy.models import Organisation, OrganisationStatus


def waitlist_fill(
    session: Session, *, product: Product, actor: Actor
) -> list[tuple[Subscription, int]]:
    """Grant free seats to waiting subscriptions, first come first served.

    The caller holds the product lock. Returns (subscription, seats granted) pairs;
    each organisation's admins and the council admins are mailed. It follows from a
    change the actor was allowed to make (seats freed in their organisation or a pool
    grown), so the actor needs the action, not a reach over every organisation.
    """
    policy.require_may(actor, Action.SUBSCRIPTION_WAITLIST_FILL)
    # The waitlist spans organisations: seats one frees go to whoever waited first.
    with council_wide(session):
        return _waitlist_fill(session, product=product, actor=actor)


def _waitlist_fill(
    session: Session, *, product: Product, actor: Actor
) -> list[tuple[Subscription, int]]:
    free = free_seats(session, product.id)
    if free <= 0:
        return []
    waiting = session.scalars(
        sa.select(Subscription)
        .join(Organisation, Organisation.id == Subscription.organisation_id)
        .where(
            Subscription.product_id == product.id,
            Subscription.status != SubscriptionStatus.CANCELLED,
            Subscription.requested_quantity > Subscription.quantity,
            Organisation.status == OrganisationStatus.ACTIVE,
        )
        .order_by(Subscription.waitlisted_at, Subscription.id)
    ).unique()
    granted: list[tuple[Subscription, int]] = []
    for subscription in waiting:
        if free <= 0:
            break
        seats = min(free, subscription.waiting)
        reserved_before = counts.reservation(subscription)
        subscription.quantity += seats
        free -= seats
        settle_status(subscription)
        session.flush()
        counts.count_reservation(session, subscription, reserved_before)
        record_change(session, subscription, "waitlist")
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
        subscription_changed.send(subscription, session=session, actor=actor, change="resized")
        granted.append((subscription, seats))
    if granted:
        _mail_waitlist_grants(session, product, granted)
    return granted


def _mail_waitlist_grants(
    session: Session, product: Product, granted: list[tuple[Subscription, int]]
) -> None:
    for subscription, seats in granted:
        for admin in org_admins(session, subscription.organisation_id):
            with in_language(admin.locale):
                message = build_message(
                    to=admin.email,
                    subject=_n(
                        "%(num)d seat of %(product)s granted",
                        "%(num)d seats of %(product)s granted",
                        seats,
                        product=product.name,
                    ),
                    template="waitlist_granted",
                    product=product,
                    seats=seats,
                    subscription=subscription,
                    organisation=subscription.organisation,
                )
            mail_queue(
                session,
                message,
                organisation_id=subscription.organisation_id,
                related=("subscription", subscription.id),
            )
    council = session.scalars(
        sa.select(User).where(User.role == Role.COUNCIL_ADMIN, User.is_active)
    ).all()
    for admin in council:
        with in_language(admin.locale):
            message = build_message(
                to=admin.email,
                subject=_("Waitlisted seats of %(product)s granted", product=product.name),
                template="waitlist_granted_council",
                product=product,
                granted=granted,
            )
        mail_queue(session, message)


@pool_capacity_changed.connect
def _pool_changed(product: Product, **kwargs: Any) -> None:
    """A pool grew or was added: waiting organisations may get seats now."""
    lock_product(kwargs["session"], product.id)
    waitlist_fill(kwargs["session"], product=product, actor=kwargs["actor"])
