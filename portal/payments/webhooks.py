"""Stripe webhook events: stored under their unique event id first, then applied once.

The view (``POST /webhooks/stripe``) hands the raw body and the
``Stripe-Signature`` header to :func:`receive`, which verifies the signature on
the raw body (:func:`portal.payments.gateway.event_verify`), then:

1. :func:`event_store` inserts the event under Stripe's event id (unique) and
   commits. A second delivery of the same event meets the unique constraint, also
   when ten arrive at once (on PostgreSQL the others wait for the first insert to
   commit, on SQLite writers queue), and only counts the delivery.
   The same transaction enqueues the job ``payments.webhook_apply`` (the
   request answers at once: ``queued``, or what applying did when the job ran
   inline); a later delivery of an event not applied yet enqueues it again.
2. The job runs :func:`event_process`: it locks the stored event, applies it if
   nobody has, and marks it processed in the same transaction. Whoever gets the
   lock first applies it; everyone after sees it processed, so the job delivered
   twice, a redelivery's job and the schedule's ``payments.collect`` apply it
   once. If applying fails, the error is written on the event and the job is
   retried with backoff; ``portal payments collect`` applies what is left.

:func:`receive` owns its transaction: the event and its job are committed
together, before anything applies it.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from flask import current_app
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from portal.jobs.queue import enqueue, job
from portal.kernel import policy
from portal.kernel.actor import Actor
from portal.kernel.clock import now_utc
from portal.kernel.errors import DomainError
from portal.kernel.i18n import _l
from portal.kernel.policy import Action
from portal.payments.collection import Outcome, outcome_apply
from portal.payments.gateway import SignatureInvalid, event_verify, intent_from
from portal.payments.models import PaymentAccount, StripeEvent

log = logging.getLogger(__name__)

#: Stored events younger than this are left to the request that stored them.
UNPROCESSED_GRACE = dt.timedelta(minutes=1)


# ---------------------------------------------------------------- receiving a delivery


class WebhooksNotConfigured(DomainError):
    """No webhook signing secret is set, so no delivery can be trusted."""

    status = 503
    code = "webhooks_not_configured"
    title = _l("Webhooks are not configured")


class WebhookSignatureInvalid(DomainError):
    """The delivery's signature is missing, wrong, or outside the replay window."""

    status = 400
    code = "invalid_signature"
    title = _l("Invalid signature")


@dataclass(frozen=True)
class Received:
    """A delivery taken in: the event's id and what applying it did."""

    event_id: str
    outcome: str


def receive(session: Session, *, payload: bytes, signature: str | None) -> Received:
    """Take in one delivery: verify it on the raw body, store it, enqueue its job; commits.

    The outcome is ``duplicate`` for an event stored before, else what applying did if
    the job has run already, else ``queued``. Raises :class:`WebhooksNotConfigured`
    without a signing secret (``PORTAL_STRIPE_WEBHOOK_SECRET``) and
    :class:`WebhookSignatureInvalid` for a delivery that is not Stripe's.
    """
    secret = current_app.config.get("PORTAL_STRIPE_WEBHOOK_SECRET") or ""
    if not secret:
        raise WebhooksNotConfigured(
            _l("%(setting)s is not set on this portal.", setting="PORTAL_STRIPE_WEBHOOK_SECRET")
        )
    try:
        event = event_verify(payload, signature, secret)
    except SignatureInvalid as error:
        raise WebhookSignatureInvalid(str(error)) from error
    row, new = event_store(session, event)
    if row.processed_at is None:
        # Applied by a job (retried with backoff); a redelivery of an event not applied
        # yet asks again (the job applies it once, whoever runs first).
        enqueue(
            session,
            "payments.webhook_apply",
            {"event_id": row.event_id},
            actor=Actor.system("stripe-webhook"),
        )
    session.commit()
    if not new:
        return Received(event_id=event["id"], outcome="duplicate")
    # The job may have run already (inline in tests, or a fast worker): say what it did.
    done = session.scalar(
        sa.select(StripeEvent.outcome).where(
            StripeEvent.event_id == row.event_id, StripeEvent.processed_at.is_not(None)
        )
    )
    session.commit()
    return Received(event_id=event["id"], outcome=done or "queued")


# ---------------------------------------------------------------- storing and applying


def event_store(session: Session, event: dict[str, Any]) -> tuple[StripeEvent, bool]:
    """Store a verified event under its id; returns the row and whether it is new."""
    data = event.get("data")
    obj: dict[str, Any] = {}
    if isinstance(data, dict) and isinstance(data.get("object"), dict):
        obj = data["object"]
    customer = obj.get("customer") if isinstance(obj.get("customer"), str) else None
    object_id = obj.get("id") if isinstance(obj.get("id"), str) else None
    organisation_id = None
    if customer:
        organisation_id = session.scalar(
            sa.select(PaymentAccount.organisation_id).where(PaymentAccount.customer_id == customer)
        )
    created = event.get("created")
    row = StripeEvent(
        event_id=event["id"][:100],
        type=event["type"][:100],
        organisation_id=organisation_id,
        object_id=object_id[:100] if object_id else None,
        stripe_created_at=dt.datetime.fromtimestamp(
            int(created) if isinstance(created, int | float) else 0, dt.UTC
        ),
        livemode=bool(event.get("livemode")),
        payload=event,
    )
    try:
        with session.begin_nested():
            session.add(row)
    except IntegrityError:
        session.execute(
            sa.update(StripeEvent)
            .where(StripeEvent.event_id == row.event_id)
            .values(deliveries=StripeEvent.deliveries + 1)
        )
        existing = session.scalar(
            sa.select(StripeEvent).where(StripeEvent.event_id == row.event_id)
        )
        assert existing is not None
        return existing, False
    return row, True


def event_process(session: Session, *, event_id: str) -> str:
    """Apply a stored event unless it was applied; returns applied, ignored or duplicate."""
    row = session.scalar(
        sa.select(StripeEvent).where(StripeEvent.event_id == event_id).with_for_update()
    )
    if row is None:
        return "missing"
    if row.processed_at is not None:
        return "duplicate"
    handler = HANDLERS.get(row.type)
    if handler is None:
        outcome, note = "ignored", f"{row.type} is not used by the portal"
    else:
        outcome, note = handler(session, row)
    row.processed_at = now_utc()
    row.outcome = outcome
    row.note = (note or "")[:500] or None
    row.error = None
    session.flush()
    return outcome


def event_process_commit(session: Session, *, event_id: str) -> str:
    """:func:`event_process` in its own transaction; a failure is written on the event."""
    try:
        result = event_process(session, event_id=event_id)
        session.commit()
        return result
    except Exception as error:
        session.rollback()
        event_failed(session, event_id=event_id, error=error)
        session.commit()
        raise


@job("payments.webhook_apply", max_attempts=5, backoff=(30, 120, 600, 1800))
def webhook_apply_job(session: Session, *, actor: Actor, event_id: str) -> None:
    """Apply one stored Stripe event (once: a processed event is left as it is).

    A failure is written on the event and raised, so the job is retried with backoff.
    """
    policy.require(actor, Action.JOB_RUN)
    session.commit()  # the job's claim is committed; the event is applied in its own
    event_process_commit(session, event_id=event_id)


def event_failed(session: Session, *, event_id: str, error: BaseException) -> None:
    """Write why applying a stored event failed (it stays unprocessed, to be applied again)."""
    session.execute(
        sa.update(StripeEvent)
        .where(StripeEvent.event_id == event_id, StripeEvent.processed_at.is_(None))
        .values(error=f"{type(error).__name__}: {error}"[:5000])
    )


def events_unprocessed(session: Session, *, now: dt.datetime | None = None) -> list[str]:
    """Stored events nobody applied (a crash, an error), oldest first."""
    now = now or now_utc()
    ids = list(
        session.scalars(
            sa.select(StripeEvent.event_id)
            .where(
                StripeEvent.processed_at.is_(None),
                StripeEvent.received_at <= now - UNPROCESSED_GRACE,
            )
            .order_by(StripeEvent.stripe_created_at, StripeEvent.id)
        )
    )
    session.rollback()
    return ids


# ---------------------------------------------------------------- handlers


def _payment_intent(succeeded: bool) -> Callable[[Session, StripeEvent], tuple[str, str]]:
    def handle(session: Session, row: StripeEvent) -> tuple[str, str]:
        intent = intent_from(row.payload["data"]["object"])
        try:
            invoice_id = int(intent.metadata["invoice_id"])
            attempt = int(intent.metadata.get("attempt") or 1)
        except (KeyError, ValueError):
            return "ignored", f"{intent.id} is not the payment of a portal invoice"
        return outcome_apply(
            session,
            Outcome(
                invoice_id=invoice_id,
                attempt=attempt,
                succeeded=succeeded,
                intent=intent,
                message=intent.error_message or "The payment failed.",
                code=intent.error_code,
            ),
        )

    return handle


HANDLERS: dict[str, Callable[[Session, StripeEvent], tuple[str, str]]] = {
    "payment_intent.succeeded": _payment_intent(True),
    "payment_intent.payment_failed": _payment_intent(False),
}
