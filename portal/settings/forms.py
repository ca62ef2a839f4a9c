"""The council settings form."""

from flask_wtf import FlaskForm
from wtforms import (
    BooleanField,
    DecimalField,
    IntegerField,
    StringField,
    SubmitField,
    TextAreaField,
)
from wtforms.validators import InputRequired, Length, NumberRange


class CouncilSettingsForm(FlaskForm):
    default_tax_rate_percent = DecimalField(
        "Default tax rate (%)",
        places=2,
        validators=[InputRequired(), NumberRange(min=0, max=100)],
        description="For organisations without a rate of their own.",
    )
    idle_seat_days = IntegerField(
        "Idle after (days)",
        validators=[InputRequired(), NumberRange(min=1, max=365)],
        description="A seat with no usage by its holder for this long is flagged to the org admin.",
    )
    invoice_prefix = StringField(
        "Invoice number prefix", validators=[InputRequired(), Length(max=12)]
    )
    credit_note_prefix = StringField(
        "Credit note number prefix", validators=[InputRequired(), Length(max=12)]
    )
    payment_terms_days = IntegerField(
        "Payment terms (days)", validators=[InputRequired(), NumberRange(min=0, max=120)]
    )
    overdue_grace_days = IntegerField(
        "Grace before overdue (days)", validators=[InputRequired(), NumberRange(min=0, max=365)]
    )
    suspend_subscriptions_when_overdue = BooleanField(
        "Refuse new subscriptions of organisations with overdue invoices"
    )
    bank_details = TextAreaField("Bank details on invoices", validators=[Length(max=1000)])
    submit = SubmitField("Save settings")
