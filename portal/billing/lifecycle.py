"""The invoice lifecycle: every change of an invoice's state after drafting.

An invoice is a draft until finalised (:mod:`portal.billing.drafting` writes
drafts); then it has a number and never changes (invariant 4): its money moves
only through credit notes and payments, which have their own rows. Its status
moves only along :data:`INVOICE_TRANSITIONS`, through :func:`invoice_move`::

    draft ──finalise──▶ open ──paid in full (payments, credit notes)──▶ paid
                         │ ├──void (nothing paid)──▶ void
                         │ └──write off──▶ uncollectible ──paid in full──▶ paid
    (a draft whose total is 0 is paid as it is finalised)

Services take the session and an :class:`Actor`, flush but never commit, write
audit events and raise domain errors.
"""

from __future__ import annotations

import datetime as dt
from fractions import Fraction
from typing import Any

import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, object_session

from portal.audit.services import audit_record
from portal.billing.access import FINANCE_ONLY
from portal.billing.models import (
    ISSUED,
    CreditNote,
    Invoice,
    InvoiceStatus,
    Payment,
    PaymentMethod,
    status_name,
)
from portal.billing.numbering import next_number
from portal.billing.rating import round_half_up
from portal.kernel import policy
from portal.kernel.actor import Actor
from portal.kernel.clock import now_utc
from portal.kernel.errors import Conflict, InvalidState, ValidationFailed
from portal.kernel.i18n import _l
from portal.kernel.policy import Action
from portal.settings.services import settings_get
from portal.signals import invoice_finalised
from portal.validation import MIN_DATE

# Where an invoice's status may go from each status; nowhere else.
INVOICE_TRANSITIONS: dict[InvoiceStatus, frozenset[InvoiceStatus]] = {
    InvoiceStatus.DRAFT: frozenset({InvoiceStatus.OPEN}),
    InvoiceStatus.OPEN: frozenset(
        {InvoiceStatus.PAID, InvoiceStatus.VOID, InvoiceStatus.UNCOLLECTIBLE}
    ),
    InvoiceStatus.UNCOLLECTIBLE: frozenset({InvoiceStatus.PAID}),
    InvoiceStatus.PAID: frozenset(),
    InvoiceStatus.VOID: frozenset(),
}

PAYMENT_METHODS = tuple(PaymentMethod)


def invoice_can_become(invoice: Invoice, status: InvoiceStatus) -> bool:
    """Whether :data:`INVOICE_TRANSITIONS` lets the invoice move to ``status``."""
    return status in INVOICE_TRANSITIONS[InvoiceStatus(invoice.status)]


# invoice_product_totals (migration 0034): the invoice's lines summed per product, added or
# taken off. Rows in product order, so two finalisations wait on each other, not deadlock.
_PRODUCT_TOTALS = sa.text(
    "INSERT INTO invoice_product_totals AS t (period, product_id, currency, amount, lines) "
    "SELECT :period, product_id, :currency, :sign * sum(amount), :sign * count(*) "
    "FROM invoice_lines WHERE invoice_id = :invoice_id AND product_id IS NOT NULL "
    "GROUP BY product_id ORDER BY product_id "
    "ON CONFLICT (period, product_id, currency) DO UPDATE SET "
    "amount = t.amount + excluded.amount, lines = t.lines + excluded.lines"
)


def _count_in_product_totals(invoice: Invoice, *, sign: int) -> None:
    """Add (``sign`` 1: issued) or take off (-1: voided) the invoice's lines in the
    month's billed totals per product (:class:`InvoiceProductTotal`)."""
    session = object_session(invoice)
    if session is None:  # an invoice not stored has no lines to count
        return
    session.flush()  # its lines, as stored
    session.execute(
        _PRODUCT_TOTALS,
        {
            "period": invoice.period,
            "currency": invoice.currency,
            "sign": sign,
            "invoice_id": invoice.id,
        },
    )


def invoice_move(invoice: Invoice, to: InvoiceStatus, *, at: dt.datetime | None = None) -> None:
    """Move the invoice to ``to`` if the table allows it, with the moment it got there.

    The one place an invoice's status changes. A move the table does not allow
    raises :class:`InvalidState` (code ``invalid_transition``) and changes
    nothing. Services check their own preconditions first, with their own words
    and codes; this is the rule under them. A move into or out of :data:`ISSUED` adds
    the invoice's lines to, or takes them off, the month's billed totals per product.
    """
    if not invoice_can_become(invoice, to):
        raise InvalidState(
            _l(
                "Invoice %(number)s is %(status)s; it cannot become %(to)s.",
                number=invoice.number or _l("(draft)"),
                status=status_name(invoice.status),
                to=status_name(to),
            ),
            code="invalid_transition",
        )
    at = at or now_utc()
    counted = (invoice.status in ISSUED) - (to in ISSUED)
    invoice.status = to
    if counted:
        _count_in_product_totals(invoice, sign=-counted)
    if to == InvoiceStatus.OPEN and invoice.finalised_at is None:
        invoice.finalised_at = at
    elif to == InvoiceStatus.PAID:
        invoice.paid_at = at
    elif to == InvoiceStatus.VOID:
        invoice.voided_at = at


def invoice_actions(invoice: Invoice) -> frozenset[str]:
    """What finance may do to the invoice now (its page's buttons), by the services' rules.

    ``refresh`` and ``finalise`` (a draft), ``credit`` (issued), ``pay`` (open or
    written off), ``void`` (open, nothing paid), ``write_off`` (open).
    """
    actions: set[str] = set()
    if invoice_can_become(invoice, InvoiceStatus.OPEN):
        actions |= {"refresh", "finalise"}
    if invoice.status in ISSUED:
        actions.add("credit")
    if invoice_can_become(invoice, InvoiceStatus.PAID):
        actions.add("pay")
    if invoice_can_become(invoice, InvoiceStatus.VOID) and not invoice.amount_paid:
        actions.add("void")
    if invoice_can_become(invoice, InvoiceStatus.UNCOLLECTIBLE):
        actions.add("write_off")
    return frozenset(actions)


def invoice_lock(session: Session, invoice: Invoice) -> Invoice:
    """Lock the invoice's row (``FOR UPDATE``) and reload it: state changes start here."""
    session.execute(sa.select(Invoice.id).where(Invoice.id == invoice.id).with_for_update())
    session.refresh(invoice)
    return invoice


def invoice_creditable(session: Session, invoice: Invoice) -> int:
    """The net amount (minor units) credit notes may still credit on the invoice."""
    credited_net = (
        session.scalar(
            sa.select(sa.func.coalesce(sa.func.sum(CreditNote.subtotal), 0)).where(
                CreditNote.invoice_id == invoice.id
            )
        )
        or 0
    )
    return invoice.subtotal - credited_net


# ---------------------------------------------------------------- finalising, voiding, writing off


def invoice_finalize(session: Session, *, actor: Actor, invoice: Invoice) -> Invoice:
    """Give a draft its number and make it final: it never changes again."""
    policy.require(
        actor,
        Action.INVOICE_FINALIZE,
        organisation_id=invoice.organisation_id,
        message=FINANCE_ONLY,
    )
    invoice_lock(session, invoice)
    if not invoice_can_become(invoice, InvoiceStatus.OPEN):
        raise InvalidState(
            _l(
                "Invoice %(number)s is already %(status)s.",
                number=invoice.number,
                status=status_name(invoice.status),
            ),
            code="not_draft",
        )
    settings = settings_get(session)
    now = now_utc()
    invoice.number = next_number(session, prefix=settings.invoice_prefix, year=now.year)
    invoice_move(invoice, InvoiceStatus.OPEN, at=now)
    invoice.due_on = now.date() + dt.timedelta(days=settings.payment_terms_days)
    invoice.payment_reference = invoice.number
    if invoice.total == 0:
        invoice_move(invoice, InvoiceStatus.PAID, at=now)
    session.flush()
    audit_record(
        session,
        actor=actor,
        action="invoice.finalize",
        target_type="invoice",
        target_id=invoice.id,
        target_label=invoice.number,
        organisation_id=invoice.organisation_id,
        after={"number": invoice.number, "total": invoice.total, "currency": invoice.currency},
    )
    invoice_finalised.send(invoice, session=session, actor=actor)
    return invoice


def invoice_void(session: Session, *, actor: Actor, invoice: Invoice, reason: str) -> Invoice:
    """Cancel a finalised invoice nothing was paid on (its number stays used)."""
    policy.require(
        actor, Action.INVOICE_VOID, organisation_id=invoice.organisation_id, message=FINANCE_ONLY
    )
    invoice_lock(session, invoice)
    if not invoice_can_become(invoice, InvoiceStatus.VOID) or invoice.amount_paid:
        raise InvalidState(
            _l("Only an open invoice with no payments can be voided."), code="not_voidable"
        )
    reason = (reason or "").strip()
    if not reason:
        raise ValidationFailed(_l("Say why."), errors={"reason": [_l("Give a reason.")]})
    invoice_move(invoice, InvoiceStatus.VOID)
    session.flush()
    audit_record(
        session,
        actor=actor,
        action="invoice.void",
        target_type="invoice",
        target_id=invoice.id,
        target_label=invoice.number,
        organisation_id=invoice.organisation_id,
        after={"reason": reason[:500]},
    )
    return invoice


def invoice_mark_uncollectible(
    session: Session, *, actor: Actor, invoice: Invoice, reason: str
) -> Invoice:
    """Write off an open invoice as uncollectible (number and PDF stay; a payment still counts)."""
    policy.require(
        actor,
        Action.INVOICE_MARK_UNCOLLECTIBLE,
        organisation_id=invoice.organisation_id,
        message=FINANCE_ONLY,
    )
    invoice_lock(session, invoice)
    if not invoice_can_become(invoice, InvoiceStatus.UNCOLLECTIBLE):
        raise InvalidState(
            _l(
                "Only an open invoice can be written off; this one is %(status)s.",
                status=status_name(invoice.status),
            ),
            code="not_collectible",
        )
    reason = (reason or "").strip()
    if not reason or len(reason) > 1000:
        raise ValidationFailed(
            _l("Say why the invoice cannot be collected."),
            errors={"reason": [_l("Give a reason (at most 1,000 characters).")]},
        )
    invoice_move(invoice, InvoiceStatus.UNCOLLECTIBLE)
    session.flush()
    audit_record(
        session,
        actor=actor,
        action="invoice.uncollectible",
        target_type="invoice",
        target_id=invoice.id,
        target_label=invoice.number,
        organisation_id=invoice.organisation_id,
        before={"status": InvoiceStatus.OPEN},
        after={
            "status": InvoiceStatus.UNCOLLECTIBLE,
            "reason": reason[:500],
            "due": invoice.amount_due,
        },
    )
    return invoice


# ---------------------------------------------------------------- credit notes


def credit_note_create(
    session: Session, *, actor: Actor, invoice: Invoice, amount: int, reason: str
) -> CreditNote:
    """Credit part or all of a finalised invoice's net amount; tax is credited in proportion."""
    policy.require(
        actor,
        Action.CREDIT_NOTE_CREATE,
        organisation_id=invoice.organisation_id,
        message=FINANCE_ONLY,
    )
    invoice_lock(session, invoice)
    if invoice.status not in ISSUED:
        raise InvalidState(_l("Credit notes are for finalised invoices."), code="not_creditable")
    reason = (reason or "").strip()
    errors: dict[str, list[Any]] = {}
    if not reason or len(reason) > 1000:
        errors["reason"] = [_l("Give a reason (at most 1,000 characters).")]
    creditable = invoice_creditable(session, invoice)
    if isinstance(amount, bool) or not isinstance(amount, int) or not 0 < amount <= creditable:
        errors["amount"] = [
            _l("Give a whole number of minor units from 1 to %(most)s.", most=creditable)
        ]
    if errors:
        raise ValidationFailed(_l("The credit note needs attention."), errors=errors)
    tax = round_half_up(Fraction(amount * invoice.tax, invoice.subtotal)) if invoice.subtotal else 0
    settings = settings_get(session)
    note = CreditNote(
        organisation_id=invoice.organisation_id,
        invoice_id=invoice.id,
        number=next_number(session, prefix=settings.credit_note_prefix, year=now_utc().year),
        currency=invoice.currency,
        subtotal=amount,
        tax=tax,
        total=amount + tax,
        reason=reason,
        created_by=actor.label,
    )
    session.add(note)
    invoice.amount_credited += note.total
    if invoice.status == InvoiceStatus.OPEN and invoice.amount_due == 0:
        invoice_move(invoice, InvoiceStatus.PAID)  # a written-off invoice stays written off
    session.flush()
    audit_record(
        session,
        actor=actor,
        action="credit_note.create",
        target_type="credit_note",
        target_id=note.id,
        target_label=note.number,
        organisation_id=invoice.organisation_id,
        after={"invoice": invoice.number, "total": note.total, "reason": reason[:200]},
    )
    return note


# ---------------------------------------------------------------- payments


def payment_record(
    session: Session,
    *,
    actor: Actor,
    invoice: Invoice,
    amount: int,
    method: str,
    received_on: dt.date,
    reference: str | None = None,
    external_id: str | None = None,
) -> Payment:
    """Record money received for an invoice (full or part); paid in full settles it.

    ``external_id`` (Stripe's PaymentIntent id) is unique: recording it twice
    returns the first payment and changes nothing.
    """
    policy.require(
        actor, Action.PAYMENT_RECORD, organisation_id=invoice.organisation_id, message=FINANCE_ONLY
    )
    if external_id:
        existing = session.scalar(sa.select(Payment).where(Payment.external_id == external_id))
        if existing is not None:
            return existing
    invoice_lock(session, invoice)
    if not invoice_can_become(invoice, InvoiceStatus.PAID):
        raise InvalidState(
            _l(
                "Invoice %(number)s is %(status)s; payments are recorded against open invoices.",
                number=invoice.number or _l("(draft)"),
                status=status_name(invoice.status),
            ),
            code="not_payable",
        )
    errors: dict[str, list[Any]] = {}
    if (
        isinstance(amount, bool)
        or not isinstance(amount, int)
        or not 0 < amount <= invoice.amount_due
    ):
        errors["amount"] = [
            _l("Give an amount from 1 to %(most)s (minor units).", most=invoice.amount_due)
        ]
    if method not in PAYMENT_METHODS:
        errors["method"] = [_l("Choose stripe, bank_transfer or other.")]
    if received_on > now_utc().date():
        errors["received_on"] = [_l("A payment cannot be received in the future.")]
    elif received_on < MIN_DATE:  # date arithmetic on it stays in range (SPEC invariant 9)
        errors["received_on"] = [_l("Give a date from %(first)s on.", first=MIN_DATE.isoformat())]
    if errors:
        raise ValidationFailed(_l("The payment needs attention."), errors=errors)
    payment = Payment(
        organisation_id=invoice.organisation_id,
        invoice_id=invoice.id,
        amount=amount,
        currency=invoice.currency,
        method=PaymentMethod(method),
        reference=(reference or "")[:200] or None,
        external_id=external_id,
        received_on=received_on,
        recorded_by=actor.label,
    )
    try:
        with session.begin_nested():
            session.add(payment)
    except IntegrityError as exc:
        raise Conflict(_l("This payment was recorded already."), code="payment_exists") from exc
    invoice.amount_paid += amount
    if invoice.amount_due == 0:  # paid in full, written off or not
        invoice_move(invoice, InvoiceStatus.PAID)
    session.flush()
    audit_record(
        session,
        actor=actor,
        action="payment.record",
        target_type="invoice",
        target_id=invoice.id,
        target_label=invoice.number,
        organisation_id=invoice.organisation_id,
        after={
            "amount": amount,
            "method": method,
            "reference": reference,
            "status": invoice.status,
        },
    )
    return payment


def invoice_by_reference(session: Session, reference: str) -> Invoice | None:
    """The finalised invoice a bank transfer's reference names (its number)."""
    cleaned = (reference or "").strip().upper()
    return session.scalar(sa.select(Invoice).where(Invoice.payment_reference == cleaned))
