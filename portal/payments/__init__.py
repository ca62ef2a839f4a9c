"""Card payments through Stripe: the only package that imports ``stripe``.

The portal rates and invoices; Stripe holds each organisation's customer and
payment method and collects each finalised invoice with a PaymentIntent.
Webhooks are verified on the raw body, stored under Stripe's event id, then
applied once. See docs/PAYMENTS.md.

:func:`init_app` attaches the pages, the webhook endpoint (exempt from CSRF:
it is authenticated by Stripe's signature) and ``portal payments collect``.
Importing :mod:`portal.payments.collection` connects the ``invoice_finalised``
receiver that schedules collections.
"""

from __future__ import annotations

from flask import Flask


def init_app(app: Flask) -> None:
    """Register the payments blueprint, its CSRF exemption and its commands."""
    from portal.extensions import csrf
    from portal.payments import collection  # noqa: F401  (connects invoice_finalised)
    from portal.payments.cli import payments
    from portal.web.payments import bp, stripe_webhook

    csrf.exempt(stripe_webhook)
    app.register_blueprint(bp)
    app.cli.add_command(payments)
