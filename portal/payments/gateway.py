"""The Stripe gateway: the one module of the portal that imports ``stripe``.

Everything the portal asks of Stripe goes through :class:`StripeGateway`, built
with the official library's ``StripeClient`` and pointed at
``PORTAL_STRIPE_API_BASE`` when that is set (a local Stripe-compatible server
such as localstripe). Results come back as small frozen dataclasses and
failures as the exceptions below, so no ``stripe`` type leaks into services:

* :class:`PaymentDeclined`: Stripe answered and refused the charge (a declined
  card, authentication required): a definite failure, retried on the schedule.
* :class:`GatewayRefused`: Stripe answered and refused the request for another
  reason (a bad parameter, an unknown customer): nothing was charged.
* :class:`GatewayUnavailable`: no answer (timeout, connection error, 5xx, rate
  limit): the outcome is unknown, and the same request is sent again later with
  the same idempotency key, so it takes effect at most once.

The library's objects are not dicts since stripe 15: attributes and
``to_dict()`` are used, never ``.get()``.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

import stripe

#: Webhook deliveries signed longer ago than this (or this far in the future) are refused.
WEBHOOK_TOLERANCE_SECONDS = 300

#: The Stripe API version the portal speaks, pinned so that a library upgrade never
#: changes the requests: in it PaymentIntents and SetupIntents take
#: ``payment_method_types`` (later versions call it ``allowed_payment_method_types``,
#: which localstripe does not know). Create the webhook endpoint with this version too.
STRIPE_API_VERSION = "2025-03-31.basil"


class GatewayError(Exception):
    """Base of the gateway's failures; ``message`` is safe to show."""

    def __init__(self, message: str, *, code: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.code = code


class GatewayUnavailable(GatewayError):
    """Stripe did not answer (or answered 5xx / 429): the outcome is unknown."""


class GatewayRefused(GatewayError):
    """Stripe refused the request (4xx other than a card decline); nothing happened."""


class PaymentDeclined(GatewayError):
    """The payment was declined; ``intent`` is the PaymentIntent when Stripe returned it."""

    def __init__(
        self, message: str, *, code: str | None = None, intent: Intent | None = None
    ) -> None:
        super().__init__(message, code=code)
        self.intent = intent


class SignatureInvalid(Exception):
    """A webhook delivery whose signature is missing, wrong, or outside the replay window."""


@dataclass(frozen=True)
class PaymentMethodInfo:
    """What the portal keeps of a payment method: how to name it, never the number."""

    id: str
    type: str
    customer: str | None = None
    brand: str | None = None
    last4: str | None = None
    exp_month: int | None = None
    exp_year: int | None = None


@dataclass(frozen=True)
class Intent:
    """A PaymentIntent as the portal needs it."""

    id: str
    status: str
    amount: int
    currency: str
    customer: str | None
    metadata: dict[str, str] = field(default_factory=dict)
    error_code: str | None = None
    error_message: str | None = None


@dataclass(frozen=True)
class CheckoutSession:
    """A Stripe Checkout session in ``setup`` mode (adding a payment method)."""

    id: str
    url: str | None
    status: str | None
    customer: str | None
    payment_method: str | None


def _as_dict(obj: Any) -> dict[str, Any]:
    if obj is None:
        return {}
    if isinstance(obj, dict):
        return obj
    return obj.to_dict()


def intent_from(data: Any) -> Intent:
    """An :class:`Intent` from a PaymentIntent object or its dict (a webhook's ``data.object``)."""
    d = _as_dict(data)
    error = d.get("last_payment_error") or {}
    return Intent(
        id=d["id"],
        status=d.get("status") or "",
        amount=int(d.get("amount") or 0),
        currency=(d.get("currency") or "").upper(),
        customer=d.get("customer") if isinstance(d.get("customer"), str) else None,
        metadata={str(k): str(v) for k, v in (d.get("metadata") or {}).items()},
        error_code=error.get("decline_code") or error.get("code"),
        error_message=error.get("message"),
    )


def _method_from(data: Any) -> PaymentMethodInfo:
    d = _as_dict(data)
    card = d.get("card") or {}
    other = d.get(d.get("type") or "") or {}
    customer = d.get("customer")
    return PaymentMethodInfo(
        id=d["id"],
        type=d.get("type") or "card",
        customer=customer if isinstance(customer, str) else None,
        brand=card.get("brand"),
        last4=card.get("last4") or other.get("last4"),
        exp_month=card.get("exp_month"),
        exp_year=card.get("exp_year"),
    )


def _translate(error: stripe.StripeError) -> GatewayError:
    """Map the library's errors to the portal's three kinds of failure."""
    message = error.user_message or str(error._message or "") or "Stripe refused the request."
    if isinstance(error, stripe.CardError):
        details = _as_dict(error.error)
        raw = details.get("payment_intent")
        intent = intent_from(raw) if isinstance(raw, dict) and raw.get("id") else None
        code = details.get("decline_code") or error.code
        return PaymentDeclined(message, code=code, intent=intent)
    if isinstance(error, stripe.APIConnectionError | stripe.RateLimitError):
        return GatewayUnavailable(message, code=error.code)
    if isinstance(error, stripe.AuthenticationError | stripe.PermissionError):
        # The portal's key is wrong: nothing was charged, and retrying later (once
        # the key is fixed) with the same idempotency key is safe.
        return GatewayUnavailable(message, code="stripe_authentication")
    status = error.http_status or 0
    if status >= 500 or status in (0, 409):
        # 409: the same idempotency key is still being processed: try again later.
        return GatewayUnavailable(message, code=error.code)
    return GatewayRefused(message, code=error.code)


class StripeGateway:
    """Stripe, as the portal uses it: customers, payment methods, PaymentIntents, webhooks."""

    def __init__(
        self,
        api_key: str,
        *,
        api_base: str | None = None,
        timeout: float = 20,
        max_network_retries: int = 2,
    ) -> None:
        base_addresses: dict[str, str] = {}
        if api_base:
            base_addresses = {"api": api_base.rstrip("/")}
        self.test_mode = api_key.startswith(("sk_test_", "rk_test_"))
        self.client = stripe.StripeClient(
            api_key,
            stripe_version=STRIPE_API_VERSION,
            base_addresses=base_addresses,  # type: ignore[arg-type]
            max_network_retries=max_network_retries,
            http_client=stripe.RequestsClient(timeout=timeout),
        )

    # ------------------------------------------------------------ customers

    def customer_create(
        self, *, organisation_id: int, name: str, email: str, idempotency_key: str
    ) -> str:
        """Create the organisation's Stripe customer; returns its id."""
        try:
            customer = self.client.v1.customers.create(
                params={
                    "name": name,
                    "email": email,
                    "metadata": {"organisation_id": str(organisation_id)},
                },
                options={"idempotency_key": idempotency_key},
            )
        except stripe.StripeError as error:
            raise _translate(error) from error
        return customer.id

    def customer_default_method(self, customer_id: str) -> str | None:
        """The customer's default payment method for invoices, as Stripe has it."""
        try:
            customer = self.client.v1.customers.retrieve(customer_id)
        except stripe.StripeError as error:
            raise _translate(error) from error
        settings = _as_dict(customer.invoice_settings)
        method = settings.get("default_payment_method")
        return method if isinstance(method, str) or method is None else method["id"]

    # ------------------------------------------------------------ payment methods

    def payment_method_make_default(self, *, customer_id: str, payment_method_id: str) -> None:
        """Make an attached payment method the one the customer's invoices are charged to."""
        try:
            self.client.v1.customers.update(
                customer_id,
                params={"invoice_settings": {"default_payment_method": payment_method_id}},
            )
        except stripe.StripeError as error:
            raise _translate(error) from error

    def payment_method_retrieve(self, payment_method_id: str) -> PaymentMethodInfo:
        """A payment method's kind, brand and last four digits."""
        try:
            method = self.client.v1.payment_methods.retrieve(payment_method_id)
        except stripe.StripeError as error:
            raise _translate(error) from error
        return _method_from(method)

    def test_method_attach(self, *, customer_id: str, test_method: str) -> PaymentMethodInfo:
        """Save one of Stripe's test payment methods (``pm_card_visa`` …) through a SetupIntent.

        Test mode only: this is how development (and localstripe) adds a card
        without a browser at Stripe. The SetupIntent is confirmed off-session
        with the test method, and the resulting method attached to the customer.
        """
        if not self.test_mode:
            raise GatewayRefused("Test payment methods work only with a test-mode key.")
        try:
            params: Any = {  # STRIPE_API_VERSION's parameters (see payment_intent_create)
                "customer": customer_id,
                "usage": "off_session",
                "payment_method_types": ["card"],
            }
            setup = self.client.v1.setup_intents.create(params=params)
            setup = self.client.v1.setup_intents.confirm(
                setup.id, params={"payment_method": test_method}
            )
            if setup.status != "succeeded" or not setup.payment_method:
                raise GatewayRefused(
                    f"Stripe could not set the payment method up ({setup.status}).",
                    code=setup.status,
                )
            method_id = (
                setup.payment_method
                if isinstance(setup.payment_method, str)
                else setup.payment_method.id
            )
            method = self.client.v1.payment_methods.retrieve(method_id)
            if method.customer is None:
                method = self.client.v1.payment_methods.attach(
                    method_id, params={"customer": customer_id}
                )
        except stripe.StripeError as error:
            raise _translate(error) from error
        return _method_from(method)

    # ------------------------------------------------------------ Checkout (thin)
    #
    # localstripe has no Checkout: these two calls are tested against response
    # bodies taken from Stripe's API reference (tests/payments/test_checkout.py).

    def checkout_setup_session_create(
        self, *, customer_id: str, currency: str, success_url: str, cancel_url: str
    ) -> CheckoutSession:
        """A Stripe-hosted page where the org admin adds a payment method (``mode=setup``)."""
        try:
            session = self.client.v1.checkout.sessions.create(
                params={
                    "mode": "setup",
                    "customer": customer_id,
                    "currency": currency.lower(),
                    "success_url": success_url,
                    "cancel_url": cancel_url,
                }
            )
        except stripe.StripeError as error:
            raise _translate(error) from error
        return self._checkout(session)

    def checkout_session_retrieve(self, session_id: str) -> CheckoutSession:
        """A Checkout session with its SetupIntent expanded (to read the new payment method)."""
        try:
            session = self.client.v1.checkout.sessions.retrieve(
                session_id, params={"expand": ["setup_intent"]}
            )
        except stripe.StripeError as error:
            raise _translate(error) from error
        return self._checkout(session)

    @staticmethod
    def _checkout(session: Any) -> CheckoutSession:
        d = _as_dict(session)
        setup = d.get("setup_intent")
        method = None
        if isinstance(setup, dict):
            method = setup.get("payment_method")
            if isinstance(method, dict):
                method = method.get("id")
        customer = d.get("customer")
        return CheckoutSession(
            id=d["id"],
            url=d.get("url"),
            status=d.get("status"),
            customer=customer if isinstance(customer, str) else None,
            payment_method=method,
        )

    # ------------------------------------------------------------ PaymentIntents

    def payment_intent_create(
        self,
        *,
        customer_id: str,
        payment_method_id: str,
        payment_method_type: str,
        amount: int,
        currency: str,
        metadata: dict[str, str],
        idempotency_key: str,
    ) -> Intent:
        """Charge the customer's saved method now (off-session), confirming at once.

        ``payment_method_types`` names the saved method's type: with Stripe's
        default (automatic payment methods) a server-side confirmation would also
        need a ``return_url`` for redirect-based methods. The invoice is named in
        ``metadata`` (localstripe refuses ``description``).
        Sent again with the same ``idempotency_key``, Stripe replays the first
        answer instead of charging twice; the library's own network retries
        reuse the key too.
        """
        # The library's types follow its newest API version; these are STRIPE_API_VERSION's.
        params: Any = {
            "amount": amount,
            "currency": currency.lower(),
            "customer": customer_id,
            "payment_method": payment_method_id,
            "payment_method_types": [payment_method_type],
            "confirm": True,
            "off_session": True,
            "metadata": metadata,
        }
        try:
            intent = self.client.v1.payment_intents.create(
                params=params, options={"idempotency_key": idempotency_key}
            )
        except stripe.StripeError as error:
            raise _translate(error) from error
        return intent_from(intent)

    def payment_intent_retrieve(self, intent_id: str) -> Intent:
        """A PaymentIntent as Stripe has it now."""
        try:
            intent = self.client.v1.payment_intents.retrieve(intent_id)
        except stripe.StripeError as error:
            raise _translate(error) from error
        return intent_from(intent)

    def payment_intent_cancel(self, intent_id: str) -> Intent:
        """Cancel a PaymentIntent that can no longer succeed on its own (before a retry)."""
        try:
            intent = self.client.v1.payment_intents.cancel(intent_id)
        except stripe.StripeError as error:
            raise _translate(error) from error
        return intent_from(intent)


# ------------------------------------------------------------ webhooks


def event_verify(
    payload: bytes, signature: str | None, secret: str, *, now: float | None = None
) -> dict[str, Any]:
    """Check a webhook delivery's signature on its raw body; returns the event as a dict.

    ``stripe.Webhook.construct_event`` checks the HMAC and refuses deliveries
    signed more than :data:`WEBHOOK_TOLERANCE_SECONDS` ago; a timestamp as far
    in the future is refused here too (a replay window has two sides).
    """
    if not signature:
        raise SignatureInvalid("The Stripe-Signature header is missing.")
    if not secret:
        raise SignatureInvalid("No webhook secret is configured.")
    try:
        event = stripe.Webhook.construct_event(
            payload, signature, secret, tolerance=WEBHOOK_TOLERANCE_SECONDS
        )
    except stripe.SignatureVerificationError as error:
        raise SignatureInvalid(str(error._message or "The signature does not match.")) from error
    except (ValueError, KeyError, IndexError) as error:
        raise SignatureInvalid("The signature header or the body is malformed.") from error
    parts = [part.strip() for part in signature.split(",")]
    timestamp = int(next(part[2:] for part in parts if part.startswith("t=")))
    if timestamp > (now or time.time()) + WEBHOOK_TOLERANCE_SECONDS:
        raise SignatureInvalid("The delivery is signed with a time in the future.")
    data = event.to_dict()
    if not isinstance(data.get("id"), str) or not isinstance(data.get("type"), str):
        raise SignatureInvalid("The body is not a Stripe event.")
    return data


# ------------------------------------------------------------ configuration


def gateway_for(config: Any, extensions: dict[str, Any] | None = None) -> StripeGateway | None:
    """The app's gateway, or None when ``PORTAL_STRIPE_API_KEY`` is not set.

    Reads ``PORTAL_STRIPE_API_KEY`` and ``PORTAL_STRIPE_API_BASE``; the timeout
    (``PORTAL_STRIPE_TIMEOUT_SECONDS``, 20) and the library's network retries
    (``PORTAL_STRIPE_MAX_NETWORK_RETRIES``, 2) can be tuned in the app config.
    One client is kept per configuration in ``extensions``.
    """
    key = config.get("PORTAL_STRIPE_API_KEY")
    if not key:
        return None
    settings = (
        key,
        config.get("PORTAL_STRIPE_API_BASE") or None,
        float(config.get("PORTAL_STRIPE_TIMEOUT_SECONDS", 20)),
        int(config.get("PORTAL_STRIPE_MAX_NETWORK_RETRIES", 2)),
    )
    cache = extensions if extensions is not None else {}
    cached = cache.get("portal.payments.gateway")
    if cached is not None and cached[0] == settings:
        return cached[1]
    gateway = StripeGateway(
        key, api_base=settings[1], timeout=settings[2], max_network_retries=settings[3]
    )
    cache["portal.payments.gateway"] = (settings, gateway)
    return gateway
