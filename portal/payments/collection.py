"""Collecting finalised invoices of Stripe-billed organisations, with retries.

When an invoice is finalised (the :data:`~portal.signals.invoice_finalised`
signal, inside the finalising transaction) a :class:`PaymentCollection` row is
written, due now: finalised ⇔ collection scheduled, atomically. The Stripe call
itself never runs inside a database transaction:

1. right after the finalising transaction commits, the same process makes the
   first attempt (:func:`~portal.payments.pending.collect_after_commit`); and
2. ``portal payments collect`` (run by cron every few minutes) makes every
   attempt that is due: first attempts that did not happen (a crash, Stripe
   down), retries of failed payments, re-sends of attempts whose answer was lost
   (:func:`portal.payments.jobs.collect_due`).

An attempt is claimed under a row lock and a lease, sent with an idempotency
key naming the invoice (``invoice-<id>``; retries ``invoice-<id>-retry-<n>``),
and its outcome applied by :func:`outcome_apply`, the one function the webhook
handlers use too. Outcomes merge monotonically, so the order in which answers
and webhook events arrive does not change the final state: a success always
wins, and a failure counts only for the attempt in flight.
"""

from __future__ import annotations

import datetime as dt
import logging
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from flask import current_app, has_app_context
from sqlalchemy import event
from sqlalchemy.orm import Session

from portal import i18n
from portal.audit.services import audit_record
from portal.billing.lifecycle import payment_record
from portal.billing.models import Invoice, InvoiceStatus, Payment
from portal.db import bind_scope, db
from portal.identity.models import User
from portal.kernel import policy
from portal.kernel.actor import Actor, Role
from portal.kernel.clock import now_utc
from portal.kernel.errors import InvalidState, NotFound
from portal.kernel.i18n import _, _l
from portal.kernel.policy import Action
from portal.kernel.scope import Scope
from portal.mail import build_message, mail_queue
from portal.payments.accounts import account_of, current_gateway
from portal.payments.gateway import (
    GatewayRefused,
    GatewayUnavailable,
    Intent,
    PaymentDeclined,
    StripeGateway,
)
from portal.payments.models import RESEND_WINDOW, CollectionStatus, PaymentCollection
from portal.payments.pending import collect_after_commit, forget_pending, take_pending
from portal.signals import invoice_finalised
from portal.tenancy.models import BillingProvider, Organisation

log = logging.getLogger(__name__)

#: Waits after failed attempt 1, 2 and 3; attempt 4 is the last automatic one.
RETRY_DELAYS = (dt.timedelta(days=1), dt.timedelta(days=3), dt.timedelta(days=5))
MAX_ATTEMPTS = len(RETRY_DELAYS) + 1
#: How long a worker holds a collection while its request is with Stripe.
LEASE = dt.timedelta(minutes=5)
STRIPE = Actor.system("stripe")
PAYABLE = (InvoiceStatus.OPEN, InvoiceStatus.UNCOLLECTIBLE)
#: The failure recorded when there is nothing to charge (stored in English; pages translate it).
NO_PAYMENT_METHOD = _l("No card or other payment method is saved for your organisation.")


def idempotency_key(invoice_id: int, attempt: int) -> str:
    """``invoice-<id>`` for the first attempt, ``invoice-<id>-retry-<n>`` for retry ``n``.

    A request sent again (a timeout, a crash, the library's own retries) carries
    the same key, and Stripe answers it with the first result: one charge. A
    retry after a decline needs a new key, or Stripe would replay the decline.
    """
    return f"invoice-{invoice_id}" if attempt == 1 else f"invoice-{invoice_id}-retry-{attempt}"


@dataclass(frozen=True)
class Outcome:
    """What Stripe said about one attempt: in an API answer or in a webhook event."""

    invoice_id: int
    attempt: int
    succeeded: bool
    intent: Intent | None = None
    message: str | None = None
    code: str | None = None


# ---------------------------------------------------------------- scheduling


def collection_schedule(session: Session, *, invoice: Invoice) -> PaymentCollection | None:
    """A collection, due now, for a just-finalised invoice of a Stripe-billed organisation."""
    organisation = invoice.organisation
    if organisation.billing_provider != BillingProvider.STRIPE or invoice.amount_due <= 0:
        return None
    collection = session.scalar(
        sa.select(PaymentCollection).where(PaymentCollection.invoice_id == invoice.id)
    )
    if collection is None:
        collection = PaymentCollection(
            organisation_id=invoice.organisation_id,
            invoice_id=invoice.id,
            status=CollectionStatus.SCHEDULED,
            attempts=0,
            next_attempt_at=now_utc(),
            amount=invoice.amount_due,
            currency=invoice.currency,
        )
        session.add(collection)
        session.flush()
    collect_after_commit(session, invoice.id)
    return collection


@invoice_finalised.connect
def _on_invoice_finalised(invoice: Invoice, *, session: Session, **_: Any) -> None:
    """Finalising an invoice of a Stripe-billed organisation schedules its collection."""
    collection_schedule(session, invoice=invoice)


@event.listens_for(Session, "after_commit")
def _attempt_after_commit(session: Session) -> None:
    """Attempt what the committed transaction made due (:mod:`portal.payments.pending`)."""
    ids = take_pending(session)
    if not ids or not has_app_context():
        return
    gateway = current_gateway()
    if gateway is None:
        log.info("Stripe is not configured; %d collection(s) wait for it", len(ids))
        return
    engine = db.engine
    for invoice_id in ids:
        try:
            with Session(bind=engine) as own:
                bind_scope(own, Scope.council())  # the portal's own work, as the collect job's
                collection_attempt(own, invoice_id=invoice_id, gateway=gateway)
        except Exception:  # the change is committed; `portal payments collect` tries again
            current_app.logger.exception("Collecting invoice %s failed", invoice_id)


@event.listens_for(Session, "after_rollback")
def _forget_after_rollback(session: Session) -> None:
    forget_pending(session)


def collection_retry_now(
    session: Session, *, actor: Actor, organisation: Organisation, invoice_id: int
) -> PaymentCollection:
    """An org admin asks for another attempt now (after fixing the card, say)."""
    policy.require(
        actor,
        Action.PAYMENT_RETRY,
        organisation_id=organisation.id,
        message=_l("Only the organisation's admins and council finance may do this."),
    )
    collection = session.scalar(
        sa.select(PaymentCollection)
        .where(
            PaymentCollection.invoice_id == invoice_id,
            PaymentCollection.organisation_id == organisation.id,
        )
        .with_for_update()
    )
    if collection is None:
        raise NotFound(_l("There is no card payment of that invoice."))
    if not collection.retryable:
        raise InvalidState(_l("This payment is not waiting for a retry."), code="not_retryable")
    collection.status = CollectionStatus.SCHEDULED
    collection.next_attempt_at = now_utc()
    session.flush()
    audit_record(
        session,
        actor=actor,
        action="payment.retry_requested",
        target_type="invoice",
        target_id=invoice_id,
        organisation_id=organisation.id,
        after={"attempts": collection.attempts},
    )
    collect_after_commit(session, invoice_id)
    return collection


# ---------------------------------------------------------------- attempts (a job: commits)


@dataclass(frozen=True)
class _Claim:
    attempt: int
    amount: int
    currency: str
    customer_id: str
    payment_method_id: str
    payment_method_type: str | None
    number: str
    organisation_id: int


def collection_attempt(session: Session, *, invoice_id: int, gateway: StripeGateway) -> str:
    """Make the due attempt of one invoice's collection; returns what happened.

    Owns its transactions (a job): it never holds a lock while Stripe is asked.
    Before a retry the previous PaymentIntent is looked at: if it succeeded after
    all, that is recorded instead of charging again; if it is still processing,
    nothing is sent.
    """
    collection = session.scalar(
        sa.select(PaymentCollection).where(PaymentCollection.invoice_id == invoice_id)
    )
    if collection is None:
        session.rollback()
        return "missing"
    previous, status = collection.payment_intent_id, collection.status
    due = status == CollectionStatus.PROCESSING or (
        status == CollectionStatus.SCHEDULED
        and collection.next_attempt_at is not None
        and collection.next_attempt_at <= now_utc()
    )
    session.rollback()
    if previous and due:
        settled = _previous_intent_check(session, invoice_id, previous, status, gateway)
        if settled:
            return settled
    claim = _claim(session, invoice_id=invoice_id, now=now_utc())
    if isinstance(claim, str):
        return claim
    try:
        # A method's type never changes at Stripe, so a re-sent request stays identical.
        method_type = (
            claim.payment_method_type
            or gateway.payment_method_retrieve(claim.payment_method_id).type
        )
        intent = gateway.payment_intent_create(
            customer_id=claim.customer_id,
            payment_method_id=claim.payment_method_id,
            payment_method_type=method_type,
            amount=claim.amount,
            currency=claim.currency,
            metadata={
                "invoice_id": str(invoice_id),
                "invoice_number": claim.number,
                "organisation_id": str(claim.organisation_id),
                "attempt": str(claim.attempt),
            },
            idempotency_key=idempotency_key(invoice_id, claim.attempt),
        )
    except PaymentDeclined as error:
        outcome = Outcome(invoice_id, claim.attempt, False, error.intent, error.message, error.code)
    except GatewayRefused as error:  # not the card: the request itself (logged for developers)
        log.warning("Stripe refused the payment of invoice %s: %s", invoice_id, error.message)
        outcome = Outcome(invoice_id, claim.attempt, False, None, error.message, error.code)
    except GatewayUnavailable as error:
        _unanswered(session, invoice_id, claim.attempt, error.message)
        return "unknown"
    else:
        if intent.status in ("processing", "requires_capture"):
            _pending(session, invoice_id, claim.attempt, intent.id)
            return "processing"
        outcome = _outcome_of(invoice_id, claim.attempt, intent)
    outcome_apply(session, outcome)
    session.commit()
    return "succeeded" if outcome.succeeded else "failed"


def _outcome_of(invoice_id: int, attempt: int, intent: Intent) -> Outcome:
    if intent.status == "succeeded":
        return Outcome(invoice_id, attempt, True, intent)
    message = intent.error_message or (
        "The bank asks the cardholder to confirm this payment."
        if intent.status == "requires_action"
        else f"The payment ended as {intent.status.replace('_', ' ')}."
    )
    return Outcome(invoice_id, attempt, False, intent, message, intent.error_code or intent.status)


def _previous_intent_check(
    session: Session, invoice_id: int, intent_id: str, status: str, gateway: StripeGateway
) -> str | None:
    """Settle from the last PaymentIntent when Stripe knows more than the portal."""
    try:
        intent = gateway.payment_intent_retrieve(intent_id)
    except (GatewayUnavailable, GatewayRefused, PaymentDeclined):
        return "unavailable"
    attempt = int(intent.metadata.get("attempt") or 0)
    if intent.status == "succeeded":
        outcome_apply(session, Outcome(invoice_id, attempt, True, intent))
        session.commit()
        return "succeeded"
    if intent.status in ("processing", "requires_capture"):
        return "processing"
    if status == CollectionStatus.PROCESSING:
        outcome_apply(session, _outcome_of(invoice_id, attempt, intent))
        session.commit()
        return "failed"
    if intent.status != "canceled":
        try:  # a declined intent could be confirmed again by someone: close it first
            gateway.payment_intent_cancel(intent_id)
        except (GatewayUnavailable, GatewayRefused, PaymentDeclined):
            log.info("Could not cancel %s before retrying; it cannot charge on its own", intent_id)
    return None


def _claim(session: Session, *, invoice_id: int, now: dt.datetime) -> _Claim | str:
    """Under the row lock: start the due attempt (or take up the unanswered one) and lease it."""
    collection = session.scalar(
        sa.select(PaymentCollection)
        .where(PaymentCollection.invoice_id == invoice_id)
        .with_for_update()
    )
    if collection is None:
        session.rollback()
        return "missing"
    if collection.status not in (CollectionStatus.SCHEDULED, CollectionStatus.PROCESSING):
        session.rollback()
        return collection.status
    if collection.locked_until is not None and collection.locked_until > now:
        session.rollback()
        return "busy"
    invoice = session.get(Invoice, invoice_id)
    assert invoice is not None
    account = account_of(session, organisation_id=collection.organisation_id)
    if collection.status == CollectionStatus.SCHEDULED:
        if collection.next_attempt_at is None or collection.next_attempt_at > now:
            session.rollback()
            return "not_due"
        if invoice.status not in PAYABLE or invoice.amount_due <= 0:
            collection.status = CollectionStatus.CANCELLED
            collection.next_attempt_at = None
            session.commit()
            return "cancelled"
        collection.attempts += 1
        collection.last_attempt_at = now
        collection.payment_intent_id = None
        collection.failure_code = collection.last_error = None
        collection.status = CollectionStatus.PROCESSING
        if account is None or not account.default_payment_method_id:
            _failure_record(
                session,
                collection,
                invoice,
                message=str(NO_PAYMENT_METHOD),
                code="no_payment_method",
            )
            session.commit()
            return "failed"
        collection.amount = invoice.amount_due
        collection.currency = invoice.currency
        collection.payment_method_id = account.default_payment_method_id
    else:
        # The answer to this attempt was lost: send the very same request again.
        if collection.last_attempt_at is None or collection.last_attempt_at < now - RESEND_WINDOW:
            collection.last_error = (
                "Stripe's answer to this attempt was lost over a day ago: check the payment "
                "in the Stripe dashboard before asking for another attempt."
            )
            session.commit()
            return "stale"
        if account is None or not collection.payment_method_id:
            session.rollback()
            return "missing"
    collection.locked_until = now + LEASE
    claim = _Claim(
        attempt=collection.attempts,
        amount=collection.amount,
        currency=collection.currency,
        customer_id=account.customer_id,
        payment_method_id=collection.payment_method_id or "",
        payment_method_type=account.method_type
        if account.default_payment_method_id == collection.payment_method_id
        else None,
        number=invoice.number or "",
        organisation_id=collection.organisation_id,
    )
    session.commit()
    return claim


def _unanswered(session: Session, invoice_id: int, attempt: int, message: str) -> None:
    collection = _locked(session, invoice_id)
    if (
        collection
        and collection.status == CollectionStatus.PROCESSING
        and collection.attempts == attempt
    ):
        collection.locked_until = None
        collection.last_error = (
            f"Stripe did not answer ({message}); the same request will be sent again, "
            "and it cannot charge twice."
        )[:500]
    session.commit()


def _pending(session: Session, invoice_id: int, attempt: int, intent_id: str) -> None:
    collection = _locked(session, invoice_id)
    if (
        collection
        and collection.status == CollectionStatus.PROCESSING
        and collection.attempts == attempt
    ):
        collection.payment_intent_id = intent_id
        collection.locked_until = None
    session.commit()


def _locked(session: Session, invoice_id: int) -> PaymentCollection | None:
    return session.scalar(
        sa.select(PaymentCollection)
        .where(PaymentCollection.invoice_id == invoice_id)
        .with_for_update()
    )


# ---------------------------------------------------------------- outcomes (a service: flushes)


def outcome_apply(session: Session, outcome: Outcome) -> tuple[str, str]:
    """Apply what Stripe said about an attempt; returns (``applied`` | ``ignored``, why).

    The same answer applied twice, or answers in any order, end in the same
    state: a success records the payment once (the PaymentIntent id is the
    payment's unique external id) and nothing undoes it; a failure counts only
    if it is about the attempt in flight and no success came first.
    """
    collection = _locked(session, outcome.invoice_id)
    if collection is None:
        return "ignored", "no card payment of this invoice is being collected"
    intent = outcome.intent
    account = account_of(session, organisation_id=collection.organisation_id)
    if intent and intent.customer and (account is None or intent.customer != account.customer_id):
        return "ignored", f"{intent.id} is for another Stripe customer"
    invoice = session.get(Invoice, outcome.invoice_id)
    assert invoice is not None
    if outcome.succeeded:
        assert intent is not None
        return _success_record(session, collection, invoice, intent)
    if collection.status == CollectionStatus.SUCCEEDED:
        return "ignored", "the invoice was collected already; a failure cannot undo that"
    if collection.status == CollectionStatus.CANCELLED:
        return "ignored", "the collection was cancelled"
    if outcome.attempt != collection.attempts:
        return "ignored", (
            f"stale: about attempt {outcome.attempt}, the collection is at attempt "
            f"{collection.attempts}"
        )
    if collection.status != CollectionStatus.PROCESSING:
        if intent and collection.payment_intent_id is None:
            # The API's decline may not name the PaymentIntent; the event does.
            collection.payment_intent_id = intent.id
            session.flush()
        return "ignored", f"the failure of attempt {outcome.attempt} was recorded already"
    _failure_record(
        session,
        collection,
        invoice,
        message=outcome.message or "The payment failed.",
        code=outcome.code,
        intent_id=intent.id if intent else None,
    )
    return "applied", f"attempt {outcome.attempt} failed"


def _success_record(
    session: Session, collection: PaymentCollection, invoice: Invoice, intent: Intent
) -> tuple[str, str]:
    recorded = session.scalar(sa.select(Payment).where(Payment.external_id == intent.id))
    if recorded is not None:
        return "ignored", f"{intent.id} is recorded already"
    now = now_utc()
    note = None
    if collection.status == CollectionStatus.SUCCEEDED:
        note = f"{intent.id} succeeded too, after another payment: refund it in Stripe"
    elif intent.currency != invoice.currency:
        note = f"{intent.id} is in {intent.currency}, the invoice in {invoice.currency}"
    elif invoice.status not in PAYABLE or invoice.amount_due <= 0:
        note = f"{intent.id} arrived after the invoice was {invoice.status}: refund it in Stripe"
    if note:
        log.warning("Invoice %s: %s", invoice.number, note)
        collection.last_error = note[:500]
        audit_record(
            session,
            actor=STRIPE,
            action="payment.needs_refund",
            target_type="invoice",
            target_id=invoice.id,
            target_label=invoice.number,
            organisation_id=invoice.organisation_id,
            after={"payment_intent": intent.id, "amount": intent.amount, "note": note},
        )
    else:
        amount = min(intent.amount, invoice.amount_due)
        payment_record(
            session,
            actor=STRIPE,
            invoice=invoice,
            amount=amount,
            method="stripe",
            received_on=now.date(),
            reference=f"Stripe {intent.id}",
            external_id=intent.id,
        )
        if amount < intent.amount:
            collection.last_error = (
                f"Stripe collected {intent.amount} but {amount} was due: refund the difference."
            )
    if collection.status != CollectionStatus.SUCCEEDED:
        collection.status = CollectionStatus.SUCCEEDED
        collection.succeeded_at = now
        collection.payment_intent_id = intent.id
    collection.next_attempt_at = None
    collection.locked_until = None
    session.flush()
    return ("ignored", note) if note else ("applied", f"{intent.id} recorded")


def _failure_record(
    session: Session,
    collection: PaymentCollection,
    invoice: Invoice,
    *,
    message: str,
    code: str | None,
    intent_id: str | None = None,
) -> None:
    """The attempt in flight failed: schedule the next one (or give up) and tell the org admins."""
    collection.last_error = message[:500]
    collection.failure_code = (code or "failed")[:64]
    collection.locked_until = None
    if intent_id:
        collection.payment_intent_id = intent_id
    if collection.attempts >= MAX_ATTEMPTS:
        collection.status = CollectionStatus.ABANDONED
        collection.next_attempt_at = None
    else:
        started = collection.last_attempt_at or now_utc()
        collection.status = CollectionStatus.SCHEDULED
        collection.next_attempt_at = started + RETRY_DELAYS[collection.attempts - 1]
    session.flush()
    audit_record(
        session,
        actor=STRIPE,
        action="payment.failed",
        target_type="invoice",
        target_id=invoice.id,
        target_label=invoice.number,
        organisation_id=invoice.organisation_id,
        after={
            "attempt": collection.attempts,
            "code": collection.failure_code,
            "message": collection.last_error,
            "next_attempt_at": (
                collection.next_attempt_at.isoformat() if collection.next_attempt_at else None
            ),
        },
    )
    _failure_mail(session, collection, invoice)


def _failure_mail(session: Session, collection: PaymentCollection, invoice: Invoice) -> None:
    if not has_app_context():
        return
    organisation = invoice.organisation
    admins: list[tuple[str, str | None]] = [
        (email, locale)
        for email, locale in session.execute(
            sa.select(User.email, User.locale)
            .where(
                User.organisation_id == organisation.id,
                User.role == Role.ORG_ADMIN,
                User.is_active.is_(True),
            )
            .order_by(User.id)
        )
    ]
    # The admins, each in the language they chose; else the billing contact, in the invoices'.
    for address, locale in admins or [(organisation.billing_email, organisation.invoice_language)]:
        with i18n.in_language(locale):  # each admin reads it in the language they chose
            message = build_message(
                to=address,
                subject=_("Payment of invoice %(number)s failed", number=invoice.number),
                template="payment_failed",
                organisation=organisation,
                invoice=invoice,
                collection=collection,
                amount=i18n.money(collection.amount or invoice.amount_due, invoice.currency),
            )
        mail_queue(
            session,
            message,
            organisation_id=organisation.id,
            related=("invoice", invoice.id),
        )


# ---------------------------------------------------------------- the job


def collections_due(session: Session, *, now: dt.datetime | None = None) -> list[int]:
    """Invoice ids with an attempt due: scheduled and due, or unanswered and not leased."""
    now = now or now_utc()
    return list(
        session.scalars(
            sa.select(PaymentCollection.invoice_id)
            .where(
                sa.or_(
                    sa.and_(
                        PaymentCollection.status == CollectionStatus.SCHEDULED,
                        PaymentCollection.next_attempt_at <= now,
                    ),
                    sa.and_(
                        PaymentCollection.status == CollectionStatus.PROCESSING,
                        PaymentCollection.last_attempt_at >= now - RESEND_WINDOW,
                        sa.or_(
                            PaymentCollection.locked_until.is_(None),
                            PaymentCollection.locked_until <= now,
                        ),
                    ),
                )
            )
            .order_by(PaymentCollection.next_attempt_at, PaymentCollection.id)
        )
    )
