"""The organisation's Stripe customer and the payment method its invoices are charged to.

Services in the portal's style: they take the session, an :class:`Actor` and
keyword-only arguments, flush but never commit, audit, and raise domain errors.
They also take the gateway: each talks to Stripe at most a few times, and the
caller commits once afterwards.
"""

from __future__ import annotations

import sqlalchemy as sa
from flask import current_app
from sqlalchemy.orm import Session

from portal.audit.services import audit_record
from portal.kernel import policy
from portal.kernel.actor import Actor
from portal.kernel.clock import now_utc
from portal.kernel.errors import DomainError, InvalidState, PermissionDenied, ValidationFailed
from portal.kernel.i18n import _l
from portal.kernel.policy import Action
from portal.payments.gateway import (
    GatewayRefused,
    GatewayUnavailable,
    PaymentDeclined,
    PaymentMethodInfo,
    StripeGateway,
    gateway_for,
)
from portal.payments.models import CollectionStatus, PaymentAccount, PaymentCollection
from portal.payments.pending import collect_after_commit
from portal.tenancy.models import BillingProvider, Organisation

#: Stripe's test payment methods offered in test mode (they exist in Stripe and in localstripe).
TEST_METHODS = {
    "pm_card_visa": _l("Visa 4242 4242 4242 4242: payments succeed"),
    "pm_card_chargeCustomerFail": _l("Visa 4000 0000 0000 0341: saved, but payments are declined"),
}


class PaymentsUnavailable(DomainError):
    """Stripe is not configured here, or did not answer."""

    status = 503
    code = "payments_unavailable"
    title = _l("Card payments are unavailable")


def current_gateway() -> StripeGateway | None:
    """The app's Stripe gateway, or None when no API key is configured."""
    return gateway_for(current_app.config, current_app.extensions)


def require_gateway() -> StripeGateway:
    """The gateway, or :class:`PaymentsUnavailable`."""
    gateway = current_gateway()
    if gateway is None:
        raise PaymentsUnavailable(_l("Card payments are not set up on this portal."))
    return gateway


def _refused(error: Exception) -> DomainError:
    if isinstance(error, GatewayUnavailable):
        return PaymentsUnavailable(_l("Stripe did not answer; try again in a minute."))
    if isinstance(error, PaymentDeclined):
        return ValidationFailed(
            _l("Stripe declined this payment method: %(reason)s", reason=error.message),
            code="card_declined",
            errors={"payment_method": [error.message]},
        )
    assert isinstance(error, GatewayRefused)
    return ValidationFailed(
        _l("Stripe refused: %(reason)s", reason=error.message),
        code="stripe_refused",
        errors={"stripe": [error.message]},
    )


def _require_admin_of(actor: Actor, organisation: Organisation) -> None:
    policy.require(
        actor,
        Action.PAYMENT_METHOD_MANAGE,
        organisation_id=organisation.id,
        message=_l("Only the organisation's admins manage its payment method."),
    )


def _require_stripe_billed(organisation: Organisation) -> None:
    if organisation.billing_provider != BillingProvider.STRIPE:
        raise InvalidState(
            _l(
                "%(organisation)s pays by bank transfer; the council can switch it to card "
                "payments.",
                organisation=organisation.name,
            ),
            code="not_stripe_billed",
        )


def account_of(session: Session, *, organisation_id: int) -> PaymentAccount | None:
    """The organisation's payment account, if it has one yet."""
    return session.scalar(
        sa.select(PaymentAccount).where(PaymentAccount.organisation_id == organisation_id)
    )


def account_ensure(
    session: Session, *, actor: Actor, organisation: Organisation, gateway: StripeGateway
) -> PaymentAccount:
    """The organisation's Stripe customer, created the first time it is needed.

    The organisation row is locked while the customer is created, and the
    request carries an idempotency key naming the organisation, so two admins
    clicking at once (or a retried request) make one customer.
    """
    _require_admin_of(actor, organisation)
    _require_stripe_billed(organisation)
    session.execute(
        sa.select(Organisation.id).where(Organisation.id == organisation.id).with_for_update()
    )
    account = account_of(session, organisation_id=organisation.id)
    if account is not None:
        return account
    try:
        customer_id = gateway.customer_create(
            organisation_id=organisation.id,
            name=organisation.name,
            email=organisation.billing_email,
            idempotency_key=f"customer-{organisation.id}",
        )
    except (GatewayUnavailable, GatewayRefused) as error:
        raise _refused(error) from error
    account = PaymentAccount(organisation_id=organisation.id, customer_id=customer_id)
    session.add(account)
    session.flush()
    audit_record(
        session,
        actor=actor,
        action="payment_account.create",
        target_type="payment_account",
        target_id=account.id,
        target_label=customer_id,
        organisation_id=organisation.id,
        after={"customer": customer_id},
    )
    return account


def payment_method_save(
    session: Session,
    *,
    actor: Actor,
    organisation: Organisation,
    gateway: StripeGateway,
    method: PaymentMethodInfo,
) -> PaymentAccount:
    """Make ``method`` (already attached to the customer at Stripe) the one invoices are charged to.

    Collections that failed and wait for a retry are brought forward to now: a
    new card is the usual answer to a declined one.
    """
    _require_admin_of(actor, organisation)
    account = account_ensure(session, actor=actor, organisation=organisation, gateway=gateway)
    if method.customer is not None and method.customer != account.customer_id:
        raise PermissionDenied(_l("That payment method belongs to another Stripe customer."))
    try:
        gateway.payment_method_make_default(
            customer_id=account.customer_id, payment_method_id=method.id
        )
    except (GatewayUnavailable, GatewayRefused, PaymentDeclined) as error:
        raise _refused(error) from error
    before = {"payment_method": account.method_label}
    account.default_payment_method_id = method.id
    account.method_type = method.type
    account.method_brand = method.brand
    account.method_last4 = method.last4
    account.method_exp_month = method.exp_month
    account.method_exp_year = method.exp_year
    account.method_updated_at = now_utc()
    session.flush()
    audit_record(
        session,
        actor=actor,
        action="payment_method.set",
        target_type="payment_account",
        target_id=account.id,
        target_label=account.customer_id,
        organisation_id=organisation.id,
        before=before,
        after={"payment_method": account.method_label},
    )
    waiting = session.scalars(
        sa.select(PaymentCollection).where(
            PaymentCollection.organisation_id == organisation.id,
            PaymentCollection.status == CollectionStatus.SCHEDULED,
            PaymentCollection.attempts > 0,
        )
    ).all()
    for collection in waiting:
        collection.next_attempt_at = now_utc()
        collect_after_commit(session, collection.invoice_id)
    session.flush()
    return account


def stripe_test_card_add(
    session: Session,
    *,
    actor: Actor,
    organisation: Organisation,
    gateway: StripeGateway,
    test_method: str,
) -> PaymentAccount:
    """Test mode: save one of Stripe's test payment methods for the organisation."""
    _require_admin_of(actor, organisation)
    if test_method not in TEST_METHODS:
        raise ValidationFailed(
            _l("Choose one of the test cards."), errors={"test_method": [_l("Choose a test card.")]}
        )
    if not gateway.test_mode:
        raise PermissionDenied(_l("Test cards can be used only with a Stripe test-mode key."))
    account = account_ensure(session, actor=actor, organisation=organisation, gateway=gateway)
    try:
        method = gateway.test_method_attach(
            customer_id=account.customer_id, test_method=test_method
        )
    except (GatewayUnavailable, GatewayRefused, PaymentDeclined) as error:
        raise _refused(error) from error
    return payment_method_save(
        session, actor=actor, organisation=organisation, gateway=gateway, method=method
    )


def checkout_start(
    session: Session,
    *,
    actor: Actor,
    organisation: Organisation,
    gateway: StripeGateway,
    success_url: str,
    cancel_url: str,
) -> str:
    """A Stripe Checkout page (setup mode) where the admin adds a card or another method."""
    _require_admin_of(actor, organisation)
    account = account_ensure(session, actor=actor, organisation=organisation, gateway=gateway)
    try:
        checkout = gateway.checkout_setup_session_create(
            customer_id=account.customer_id,
            currency=organisation.currency,
            success_url=success_url,
            cancel_url=cancel_url,
        )
    except (GatewayUnavailable, GatewayRefused, PaymentDeclined) as error:
        raise _refused(error) from error
    if not checkout.url:
        raise PaymentsUnavailable(_l("Stripe gave no page to add the payment method on."))
    return checkout.url


def checkout_finish(
    session: Session,
    *,
    actor: Actor,
    organisation: Organisation,
    gateway: StripeGateway,
    checkout_session_id: str,
) -> PaymentAccount:
    """Back from Checkout: save the payment method the admin added there as the default."""
    _require_admin_of(actor, organisation)
    _require_stripe_billed(organisation)
    account = account_of(session, organisation_id=organisation.id)
    if account is None or not checkout_session_id.startswith("cs_"):
        raise ValidationFailed(_l("That is not a Checkout session of this organisation."))
    try:
        checkout = gateway.checkout_session_retrieve(checkout_session_id)
    except (GatewayUnavailable, GatewayRefused, PaymentDeclined) as error:
        raise _refused(error) from error
    if checkout.customer != account.customer_id:
        raise PermissionDenied(_l("That Checkout session belongs to another customer."))
    if checkout.status != "complete" or not checkout.payment_method:
        raise ValidationFailed(
            _l("No payment method was added at Stripe."), code="checkout_incomplete"
        )
    try:
        method = gateway.payment_method_retrieve(checkout.payment_method)
    except (GatewayUnavailable, GatewayRefused, PaymentDeclined) as error:
        raise _refused(error) from error
    return payment_method_save(
        session, actor=actor, organisation=organisation, gateway=gateway, method=method
    )
