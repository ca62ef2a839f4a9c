"""Forms of the payment method page (CSRF and HTML hints; the rules are the services')."""

from __future__ import annotations

from flask_wtf import FlaskForm
from wtforms import SelectField, SubmitField
from wtforms.fields.choices import SelectChoice

from portal.kernel.i18n import _l
from portal.payments.accounts import TEST_METHODS


class CheckoutForm(FlaskForm):
    """Go to Stripe to add a card or another payment method."""

    submit = SubmitField(_l("Add a payment method at Stripe"))


class StripeTestCardForm(FlaskForm):
    """Test mode only: save one of Stripe's test cards."""

    test_method = SelectField(
        _l("Test card"),
        choices=[SelectChoice(value, label) for value, label in TEST_METHODS.items()],
    )
    submit = SubmitField(_l("Save test card"))
