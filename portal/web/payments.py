"""Pages and endpoints of card payments: the org admin's payment method, the Stripe webhook."""

from __future__ import annotations

from flask import Blueprint, current_app, flash, g, redirect, render_template, request, url_for
from flask.typing import ResponseReturnValue
from werkzeug.wrappers import Response

from portal.db import db_session
from portal.errors import problem
from portal.forms import committed
from portal.identity import auth
from portal.identity.forms import ConfirmForm
from portal.kernel.actor import Role
from portal.kernel.errors import DomainError
from portal.kernel.i18n import _
from portal.payments import accounts, collection, selectors, webhooks
from portal.payments.forms import CheckoutForm, StripeTestCardForm
from portal.tenancy.models import BillingProvider

bp = Blueprint("payments", __name__)


# ---------------------------------------------------------------- the org admin's page


@bp.get("/org/payment-method")
@auth.role_required(Role.ORG_ADMIN)
def payment_method() -> ResponseReturnValue:
    """The card (or other method) invoices are charged to, and the card payments so far."""
    org = auth.current_organisation()
    gateway = accounts.current_gateway()
    return render_template(
        "payments/payment_method.html",
        org=org,
        stripe_billed=org.billing_provider == BillingProvider.STRIPE,
        available=gateway is not None,
        test_mode=bool(gateway and gateway.test_mode),
        account=accounts.account_of(db_session(), organisation_id=org.id),
        payments=selectors.collections_of(db_session(), organisation_id=org.id),
        checkout_form=CheckoutForm(),
        test_form=StripeTestCardForm(),
    )


def _back(message: str | None = None, category: str = "success") -> Response:
    if message:
        flash(message, category)
    return redirect(url_for("payments.payment_method"))


@bp.post("/org/payment-method/checkout")
@auth.role_required(Role.ORG_ADMIN)
def checkout_start() -> ResponseReturnValue:
    """Off to Stripe Checkout (setup mode) to add a payment method."""
    form = CheckoutForm()
    if not form.validate_on_submit():
        return _back(_("The form expired; try again."), "error")
    base = current_app.config["PORTAL_BASE_URL"]
    # Not forms.committed: Stripe's refusals name no field of this form; their detail is flashed.
    try:
        url = accounts.checkout_start(
            db_session(),
            actor=g.actor,
            organisation=auth.current_organisation(),
            gateway=accounts.require_gateway(),
            success_url=base
            + url_for("payments.checkout_return")
            + "?session_id={CHECKOUT_SESSION_ID}",
            cancel_url=base + url_for("payments.payment_method"),
        )
    except DomainError as error:
        db_session().rollback()
        return _back(error.detail, "error")
    db_session().commit()
    return redirect(url, code=303)


@bp.get("/org/payment-method/checkout/return")
@auth.role_required(Role.ORG_ADMIN)
def checkout_return() -> ResponseReturnValue:
    """Back from Stripe Checkout: save the new payment method as the default."""
    # Not forms.committed: a GET from Stripe's redirect, with no form to show errors beside.
    try:
        account = accounts.checkout_finish(
            db_session(),
            actor=g.actor,
            organisation=auth.current_organisation(),
            gateway=accounts.require_gateway(),
            checkout_session_id=request.args.get("session_id", ""),
        )
    except DomainError as error:
        db_session().rollback()
        return _back(error.detail, "error")
    db_session().commit()
    return _back(_("%(method)s will be charged for your invoices.", method=account.method_label))


@bp.post("/org/payment-method/test-card")
@auth.role_required(Role.ORG_ADMIN)
def test_card() -> ResponseReturnValue:
    """Test mode: save one of Stripe's test cards."""
    form = StripeTestCardForm()
    if not form.validate_on_submit():
        return _back(_("Choose one of the test cards."), "error")
    # Not forms.committed: the page redirects, so a refusal's detail is flashed, not placed.
    try:
        account = accounts.stripe_test_card_add(
            db_session(),
            actor=g.actor,
            organisation=auth.current_organisation(),
            gateway=accounts.require_gateway(),
            test_method=form.test_method.data,
        )
    except DomainError as error:
        db_session().rollback()
        return _back(error.detail, "error")
    db_session().commit()
    return _back(_("%(method)s will be charged for your invoices.", method=account.method_label))


@bp.post("/org/payment-method/payments/<int:invoice_id>/retry")
@auth.role_required(Role.ORG_ADMIN)
def payment_retry(invoice_id: int) -> ResponseReturnValue:
    """Ask for another attempt at a failed payment now."""
    form = ConfirmForm()
    if not form.validate_on_submit():
        return _back(_("The form expired; try again."), "error")
    with committed(form) as saved:  # a refusal (no field errors) is flashed
        collection.collection_retry_now(
            db_session(),
            actor=g.actor,
            organisation=auth.current_organisation(),
            invoice_id=invoice_id,
        )
    if not saved:
        return _back()
    return _back(_("The payment was tried again; the list below shows how it went."))


# ---------------------------------------------------------------- the webhook


@bp.post("/webhooks/stripe")
def stripe_webhook() -> ResponseReturnValue:
    """Stripe's events: verified on the raw body, stored under their id, then applied once.

    Exempt from CSRF (:func:`portal.web.register_blueprints`): Stripe's signature
    authenticates it. Refusals are problem+json whatever the client accepts.
    """
    try:
        received = webhooks.receive(
            db_session(),
            payload=request.get_data(cache=False),
            signature=request.headers.get("Stripe-Signature"),
        )
    except DomainError as error:
        return problem(error.status, error.title, error.detail, code=error.code)
    return {"received": True, "id": received.event_id, "outcome": received.outcome}
