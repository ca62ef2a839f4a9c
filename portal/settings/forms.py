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

from portal.kernel.i18n import _l


class CouncilSettingsForm(FlaskForm):
    default_tax_rate_percent = DecimalField(
        _l("Default tax rate (%)"),
        places=2,
        validators=[InputRequired(), NumberRange(min=0, max=100)],
        description=_l("For organisations without a rate of their own."),
    )
    idle_seat_days = IntegerField(
        _l("Idle after (days)"),
        validators=[InputRequired(), NumberRange(min=1, max=365)],
        description=_l(
            "A seat with no usage by its holder for this long is flagged to the org admin."
        ),
    )
    invoice_prefix = StringField(
        _l("Invoice number prefix"), validators=[InputRequired(), Length(max=12)]
    )
    credit_note_prefix = StringField(
        _l("Credit note number prefix"), validators=[InputRequired(), Length(max=12)]
    )
    payment_terms_days = IntegerField(
        _l("Payment terms (days)"), validators=[InputRequired(), NumberRange(min=0, max=120)]
    )
    overdue_grace_days = IntegerField(
        _l("Grace before overdue (days)"),
        validators=[InputRequired(), NumberRange(min=0, max=365)],
    )
    suspend_subscriptions_when_overdue = BooleanField(
        _l("Refuse new subscriptions of organisations with overdue invoices")
    )
    bank_details = TextAreaField(_l("Bank details on invoices"), validators=[Length(max=1000)])
    # The seller on every invoice (the rules are the service's: portal.settings.services).
    seller_legal_name = StringField(
        _l("Legal name"),
        validators=[Length(max=200)],
        description=_l("Empty: the council's name."),
    )
    seller_address = TextAreaField(_l("Address"), validators=[Length(max=500)])
    seller_tax_id = StringField(
        _l("Tax id (VAT)"),
        validators=[Length(max=64)],
        description=_l("Printed on every invoice, e.g. DE123456789."),
    )
    seller_iban = StringField(_l("IBAN"), validators=[Length(max=50)])
    seller_bic = StringField(_l("BIC"), validators=[Length(max=14)])
    compliance_review_on_expiry = BooleanField(
        _l("Put a vendor under review when a required compliance document expires"),
        description=_l(
            "Checked daily. The council can reinstate the vendor; the same expiry does not "
            "put it under review again."
        ),
    )
    submit = SubmitField(_l("Save settings"))
