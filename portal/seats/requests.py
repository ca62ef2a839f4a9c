"""Seat requests: a member asks for a seat of a product; their org admin approves or declines.

Approving assigns a seat from the organisation's subscription
(:func:`portal.seats.assignments.seat_assign`); a seat given directly answers a
pending request of the same person and product.
"""

from __future__ import annotations

from sqlalchemy.orm import Session

from portal.audit.services import audit_record
from portal.catalogue.models import Product
from portal.i18n import in_language
from portal.identity.models import User
from portal.kernel import policy
from portal.kernel.actor import Actor
from portal.kernel.clock import now_utc
from portal.kernel.errors import Conflict, InvalidState, PermissionDenied
from portal.kernel.i18n import _, _l
from portal.kernel.policy import Action
from portal.mail import build_message, mail_queue
from portal.seats import selectors
from portal.seats.assignments import seat_assign
from portal.seats.models import SeatRequest, SeatRequestStatus
from portal.seats.subscriptions import subscribable_or_refuse


def seat_request_create(
    session: Session, *, actor: Actor, user: User, product: Product, note: str | None = None
) -> SeatRequest:
    """A person asks their organisation's admin for a seat of a product."""
    policy.require(
        actor, Action.SEAT_REQUEST, organisation_id=user.organisation_id, user_id=user.id
    )
    if user.organisation_id is None:
        raise PermissionDenied(_l("Council staff do not hold seats."))
    note = (note or "").strip()[:1000] or None
    if selectors.seat_of_user(
        session, organisation_id=user.organisation_id, user_id=user.id, product_id=product.id
    ):
        raise Conflict(
            _l("You already have a seat of %(product)s.", product=product.name),
            code="already_assigned",
        )
    pending = selectors.seat_requests_list(
        session, organisation_id=user.organisation_id, user_id=user.id
    )
    if any(r.product_id == product.id for r in pending):
        raise Conflict(
            _l("You already asked for %(product)s; your admin will answer.", product=product.name),
            code="request_pending",
        )
    organisation = user.organisation
    if (
        organisation is not None
        and selectors.live_subscription(
            session, organisation_id=organisation.id, product_id=product.id
        )
        is None
    ):
        # No subscription to give the seat from: ask only where one could follow.
        subscribable_or_refuse(
            session, product=product, currency=organisation.currency, day=now_utc().date()
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
    for admin in selectors.org_admins(session, user.organisation_id):
        with in_language(admin.locale):
            message = build_message(
                to=admin.email,
                subject=_(
                    "%(person)s asks for a seat of %(product)s",
                    person=user.display_name,
                    product=product.name,
                ),
                template="seat_requested",
                requester=user,
                product=product,
                note=note,
            )
        mail_queue(
            session,
            message,
            organisation_id=user.organisation_id,
            related=("seat_request", request.id),
            actor=actor,
        )
    return request


def seat_request_decide(
    session: Session, *, actor: Actor, request: SeatRequest, approve: bool, note: str | None = None
) -> SeatRequest:
    """Approve (assigns a seat from the organisation's subscription) or decline a request."""
    policy.require(actor, Action.SEAT_REQUEST_DECIDE, organisation_id=request.organisation_id)
    if request.status != SeatRequestStatus.PENDING:
        raise InvalidState(
            _l("This request is already approved.")
            if request.status == SeatRequestStatus.APPROVED
            else _l("This request is already declined."),
            code="request_decided",
        )
    if approve:
        subscription = selectors.live_subscription(
            session, organisation_id=request.organisation_id, product_id=request.product_id
        )
        if subscription is None:
            raise InvalidState(
                _l(
                    "Your organisation does not subscribe to %(product)s; subscribe first.",
                    product=request.product.name,
                ),
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
    request.status = SeatRequestStatus.APPROVED if approve else SeatRequestStatus.DECLINED
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
        with in_language(request.user.locale):
            message = build_message(
                to=request.user.email,
                subject=_("Your request for %(product)s", product=request.product.name),
                template="seat_request_declined",
                request=request,
            )
        mail_queue(
            session,
            message,
            organisation_id=request.organisation_id,
            related=("seat_request", request.id),
            actor=actor,
        )
    return request
