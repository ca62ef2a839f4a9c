"""Card payments through Stripe: the only package that imports ``stripe``.

The portal rates and invoices; Stripe holds each organisation's customer and
payment method and collects each finalised invoice with a PaymentIntent.
Webhooks are verified on the raw body, stored under Stripe's event id, then
applied once. See docs/PAYMENTS.md.

:func:`init_app` connects the ``invoice_finalised`` receiver that schedules
collections (importing :mod:`portal.payments.collection` does) and attaches
``portal payments collect``. The pages and the webhook endpoint are
:mod:`portal.web.payments`, registered with every other page by
:func:`portal.web.register_blueprints`.
"""

from __future__ import annotations

from flask import Flask


def init_app(app: Flask) -> None:
    """Connect the collection's signal receiver and add the ``payments`` commands."""
    from portal.payments import collection  # noqa: F401  (connects invoice_finalised)
    from portal.payments.cli import payments

    app.cli.add_command(payments)
