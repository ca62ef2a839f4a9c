"""Writes on invoices: drafts from charges, finalisation, credit notes, payments, voiding.

Services take the session and an :class:`Actor`, flush but never commit,
write audit events and raise domain errors. A finalised invoice never changes
(invariant 4): its money fields move only through credit notes and payments,
which have their own rows.
"""

from __future__ import annotations

import datetime as dt
from fractions import Fraction

import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from portal.audit.services import Actor, audit_record
from portal.billing.charges import Charge, charges_for
from portal.billing.models import CreditNote, Invoice, InvoiceLine, InvoiceStatus, Payment
from portal.billing.numbering import next_number
from portal.billing.rating import Tier, metered_amount, round_half_up, tax_amount
from portal.catalogue.models import Meter, Price, Product
from portal.db import now_utc
from portal.errors import Conflict, InvalidState, PermissionDenied, ValidationFailed
from portal.metering.models import UsageEvent
from portal.metering.selectors import period_bounds, usage_aggregates
from portal.settings.services import settings_get
from portal.signals import invoice_finalised
from portal.tenancy.models import Organisation

FINANCE_ROLES = (None, "council_admin", "finance")
REVERSE_CHARGE_NOTE = "Reverse charge: VAT is to be accounted for by the recipient of the services."


def _require_finance(actor: Actor) -> None:
    if actor.role not in FINANCE_ROLES:
        raise PermissionDenied("Only council finance and council admins handle invoices.")


def _lock(session: Session, invoice: Invoice) -> Invoice:
    session.execute(sa.select(Invoice.id).where(Invoice.id == invoice.id).with_for_update())
    session.refresh(invoice)
    return invoice


# ---------------------------------------------------------------- drafts


def _late_charges(
    session: Session, *, organisation: Organisation, before: str, now: dt.datetime
) -> list[Charge]:
    """Usage of earlier, already finalised months that arrived after their invoice counted usage.

    For each such month the charge is the month's rated usage with late events
    included minus the same without them, so tiers apply to the month's whole
    volume. ``source`` records the window of receipt, which is the watermark the
    next invoice starts from.
    """
    finalised = session.scalars(
        sa.select(Invoice).where(
            Invoice.organisation_id == organisation.id,
            Invoice.currency == organisation.currency,
            Invoice.period < before,
            Invoice.status.in_(("open", "paid", "uncollectible")),
            Invoice.usage_counted_until.is_not(None),
        )
    ).all()
    if not finalised:
        return []
    watermarks: dict[str, dt.datetime] = {}
    for invoice in finalised:
        watermarks[invoice.period] = invoice.usage_counted_until  # type: ignore[assignment]
    for line in session.scalars(
        sa.select(InvoiceLine)
        .join(Invoice, Invoice.id == InvoiceLine.invoice_id)
        .where(
            InvoiceLine.organisation_id == organisation.id,
            InvoiceLine.kind == "late_usage",
            Invoice.status.in_(("open", "paid", "uncollectible")),
        )
    ):
        period = line.source.get("period")
        until = dt.datetime.fromisoformat(line.source["received_until"])
        if period in watermarks and until > watermarks[period]:
            watermarks[period] = until

    prices = {
        p.meter_id: p
        for p in session.scalars(
            sa.select(Price).where(
                Price.currency == organisation.currency, Price.model == "metered"
            )
        ).unique()
    }
    meters = {m.id: m for m in session.scalars(sa.select(Meter))}
    products = {p.id: p for p in session.scalars(sa.select(Product)).unique()}
    charges: list[Charge] = []
    for period, watermark in sorted(watermarks.items()):
        start, end = period_bounds(period)
        late_exists = session.scalar(
            sa.select(sa.func.count())
            .select_from(UsageEvent)
            .where(
                UsageEvent.organisation_id == organisation.id,
                UsageEvent.occurred_at >= start,
                UsageEvent.occurred_at < end,
                UsageEvent.received_at > watermark,
                UsageEvent.received_at <= now,
            )
        )
        if not late_exists:
            continue
        with_late = {
            a.meter_id: a
            for a in usage_aggregates(
                session, start=start, end=end, organisation_id=organisation.id, received_until=now
            )
        }
        before_late = {
            a.meter_id: a
            for a in usage_aggregates(
                session,
                start=start,
                end=end,
                organisation_id=organisation.id,
                received_until=watermark,
            )
        }
        for meter_id, aggregate in with_late.items():
            price = prices.get(meter_id)
            if price is None:
                continue
            tiers = [Tier(t.up_to, t.unit_amount, t.flat_amount) for t in price.tiers]

            def rate(quantity, price=price, tiers=tiers) -> int:
                return metered_amount(
                    quantity=quantity,
                    unit_amount=price.unit_amount,
                    tier_mode=price.tier_mode,
                    tiers=tiers,
                )

            old = before_late.get(meter_id)
            old_value = old.value if old else 0
            amount = rate(aggregate.value) - rate(old_value)  # type: ignore[arg-type]
            extra_events = aggregate.events - (old.events if old else 0)
            if extra_events <= 0:
                continue
            product = products[aggregate.product_id]
            meter = meters[meter_id]
            charges.append(
                Charge(
                    kind="late_usage",
                    product_id=product.id,
                    product_sku=product.sku,
                    description=f"Late usage for {period}: {product.name}, {meter.name} "
                    f"({extra_events} events received after that invoice)",
                    quantity=aggregate.value - old_value,
                    unit_amount=None if tiers else price.unit_amount,
                    amount=max(0, amount),
                    currency=organisation.currency,
                    source={
                        "period": period,
                        "meter": meter.key,
                        "events": extra_events,
                        "received_after": watermark.isoformat(),
                        "received_until": now.isoformat(),
                    },
                )
            )
    return charges


def invoice_draft_refresh(
    session: Session,
    *,
    actor: Actor,
    organisation: Organisation,
    period: str,
    now: dt.datetime | None = None,
) -> tuple[Invoice | None, str]:
    """Create or refresh the organisation's draft for ``period``.

    Returns the invoice and what happened: ``created``, ``refreshed``,
    ``unchanged`` (already finalised: never touched), or ``empty`` (nothing to
    bill; a stale draft is removed). Concurrent runs meet on the unique
    (organisation, period, currency) constraint and the row lock, so each
    organisation gets one invoice however many runs start (invariant 5).
    """
    _require_finance(actor)
    now = now or now_utc()
    start, end = period_bounds(period)
    if start >= now:
        raise ValidationFailed(
            f"{period} has not started; invoice a month that has.",
            errors={"period": ["Choose the current month or an earlier one."]},
        )
    invoice = session.scalar(
        sa.select(Invoice)
        .where(
            Invoice.organisation_id == organisation.id,
            Invoice.period == period,
            Invoice.currency == organisation.currency,
        )
        .with_for_update(of=Invoice)
    )
    if invoice is not None and invoice.status != InvoiceStatus.DRAFT:
        return invoice, "unchanged"
    charges = charges_for(
        session,
        organisation=organisation,
        period_start=start,
        until=end,
        usage_received_until=now,
    )
    charges += _late_charges(session, organisation=organisation, before=period, now=now)
    if not charges:
        if invoice is not None:
            session.delete(invoice)
            session.flush()
        return None, "empty"
    outcome = "refreshed"
    if invoice is None:
        try:
            with session.begin_nested():
                invoice = Invoice(
                    organisation_id=organisation.id,
                    period=period,
                    currency=organisation.currency,
                    status="draft",
                )
                session.add(invoice)
            outcome = "created"
        except IntegrityError:
            # Another run created it a moment ago: refresh theirs.
            invoice = session.scalar(
                sa.select(Invoice)
                .where(
                    Invoice.organisation_id == organisation.id,
                    Invoice.period == period,
                    Invoice.currency == organisation.currency,
                )
                .with_for_update(of=Invoice)
            )
            assert invoice is not None
            if invoice.status != InvoiceStatus.DRAFT:
                return invoice, "unchanged"
    settings = settings_get(session)
    rate_bp = (
        organisation.tax_rate_bp
        if organisation.tax_rate_bp is not None
        else settings.default_tax_rate_bp
    )
    invoice.lines.clear()
    session.flush()
    for position, charge in enumerate(charges):
        invoice.lines.append(
            InvoiceLine(
                organisation_id=organisation.id,
                position=position,
                kind=charge.kind,
                product_id=charge.product_id,
                product_sku=charge.product_sku,
                description=charge.description[:500],
                quantity=str(charge.quantity),
                unit_amount=charge.unit_amount,
                amount=charge.amount,
                source={
                    k: (str(v) if not isinstance(v, (int, str, type(None))) else v)
                    for k, v in charge.source.items()
                },
            )
        )
    invoice.subtotal = sum(c.amount for c in charges)
    invoice.reverse_charge = organisation.reverse_charge
    invoice.tax_rate_bp = 0 if organisation.reverse_charge else rate_bp
    invoice.tax = tax_amount(
        net=invoice.subtotal, rate_bp=rate_bp, reverse_charge=organisation.reverse_charge
    )
    invoice.total = invoice.subtotal + invoice.tax
    invoice.note = REVERSE_CHARGE_NOTE if organisation.reverse_charge else None
    invoice.usage_counted_until = now
    session.flush()
    audit_record(
        session,
        actor=actor,
        action=f"invoice.draft_{outcome}",
        target_type="invoice",
        target_id=invoice.id,
        target_label=f"{organisation.slug} {period}",
        organisation_id=organisation.id,
        after={
            "subtotal": invoice.subtotal,
            "tax": invoice.tax,
            "total": invoice.total,
            "lines": len(charges),
        },
    )
    return invoice, outcome


# ---------------------------------------------------------------- finalising


def invoice_finalize(session: Session, *, actor: Actor, invoice: Invoice) -> Invoice:
    """Give a draft its number and make it final: it never changes again."""
    _require_finance(actor)
    _lock(session, invoice)
    if invoice.status != InvoiceStatus.DRAFT:
        raise InvalidState(
            f"Invoice {invoice.number} is already {invoice.status}.", code="not_draft"
        )
    settings = settings_get(session)
    now = now_utc()
    invoice.number = next_number(session, prefix=settings.invoice_prefix, year=now.year)
    invoice.status = InvoiceStatus.OPEN
    invoice.finalised_at = now
    invoice.due_on = now.date() + dt.timedelta(days=settings.payment_terms_days)
    invoice.payment_reference = invoice.number
    if invoice.total == 0:
        invoice.status = InvoiceStatus.PAID
        invoice.paid_at = now
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
    _require_finance(actor)
    _lock(session, invoice)
    if invoice.status != InvoiceStatus.OPEN or invoice.amount_paid:
        raise InvalidState(
            "Only an open invoice with no payments can be voided.", code="not_voidable"
        )
    reason = (reason or "").strip()
    if not reason:
        raise ValidationFailed("Say why.", errors={"reason": ["Give a reason."]})
    invoice.status = InvoiceStatus.VOID
    invoice.voided_at = now_utc()
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


def _settle(invoice: Invoice) -> None:
    if invoice.status == InvoiceStatus.OPEN and invoice.amount_due == 0:
        invoice.status = InvoiceStatus.PAID
        invoice.paid_at = now_utc()


# ---------------------------------------------------------------- credit notes


def credit_note_create(
    session: Session, *, actor: Actor, invoice: Invoice, amount: int, reason: str
) -> CreditNote:
    """Credit part or all of a finalised invoice's net amount; tax is credited in proportion."""
    _require_finance(actor)
    _lock(session, invoice)
    if invoice.status not in (InvoiceStatus.OPEN, InvoiceStatus.PAID, InvoiceStatus.UNCOLLECTIBLE):
        raise InvalidState("Credit notes are for finalised invoices.", code="not_creditable")
    reason = (reason or "").strip()
    errors: dict[str, list[str]] = {}
    if not reason or len(reason) > 1000:
        errors["reason"] = ["Give a reason (at most 1,000 characters)."]
    credited_net = (
        session.scalar(
            sa.select(sa.func.coalesce(sa.func.sum(CreditNote.subtotal), 0)).where(
                CreditNote.invoice_id == invoice.id
            )
        )
        or 0
    )
    creditable = invoice.subtotal - credited_net
    if isinstance(amount, bool) or not isinstance(amount, int) or not 0 < amount <= creditable:
        errors["amount"] = [f"Give a whole number of minor units from 1 to {creditable}."]
    if errors:
        raise ValidationFailed("The credit note needs attention.", errors=errors)
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
    _settle(invoice)
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
    if method != "stripe":
        _require_finance(actor)
    if external_id:
        existing = session.scalar(sa.select(Payment).where(Payment.external_id == external_id))
        if existing is not None:
            return existing
    _lock(session, invoice)
    if invoice.status not in (InvoiceStatus.OPEN, InvoiceStatus.UNCOLLECTIBLE):
        raise InvalidState(
            f"Invoice {invoice.number or '(draft)'} is {invoice.status}; "
            "payments are recorded against open invoices.",
            code="not_payable",
        )
    errors: dict[str, list[str]] = {}
    if (
        isinstance(amount, bool)
        or not isinstance(amount, int)
        or not 0 < amount <= invoice.amount_due
    ):
        errors["amount"] = [f"Give an amount from 1 to {invoice.amount_due} (minor units)."]
    if method not in ("stripe", "bank_transfer", "other"):
        errors["method"] = ["Choose stripe, bank_transfer or other."]
    if received_on > now_utc().date():
        errors["received_on"] = ["A payment cannot be received in the future."]
    if errors:
        raise ValidationFailed("The payment needs attention.", errors=errors)
    payment = Payment(
        organisation_id=invoice.organisation_id,
        invoice_id=invoice.id,
        amount=amount,
        currency=invoice.currency,
        method=method,
        reference=(reference or "")[:200] or None,
        external_id=external_id,
        received_on=received_on,
        recorded_by=actor.label,
    )
    try:
        with session.begin_nested():
            session.add(payment)
    except IntegrityError as exc:
        raise Conflict("This payment was recorded already.", code="payment_exists") from exc
    invoice.amount_paid += amount
    if invoice.status == InvoiceStatus.UNCOLLECTIBLE and invoice.amount_due == 0:
        invoice.status = InvoiceStatus.OPEN
    _settle(invoice)
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
