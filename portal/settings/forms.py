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
from portal.kernel.money import from_minor, to_minor
from portal.validation import check_currency


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
    # Purchase orders (issue 16): "EUR 10000.00" a line, read by threshold_parse.
    purchase_order_finance_threshold = TextAreaField(
        _l("Finance also approves purchase orders above"),
        validators=[Length(max=1000)],
        description=_l(
            "One currency and amount a line, e.g. EUR 10000.00. An order in a currency not "
            "listed always needs finance's approval as well as a council admin's."
        ),
    )
    submit = SubmitField(_l("Save settings"))


def threshold_text(thresholds: dict[str, int]) -> str:
    """``{"EUR": 1000000}`` as the field shows it: ``EUR 10000.00``, a line each."""
    return "\n".join(f"{c} {from_minor(a, c)}" for c, a in sorted(thresholds.items()))


def threshold_parse(text: str) -> dict[str, int]:
    """The field's lines as currency → minor units; ValueError naming the first bad line."""
    thresholds: dict[str, int] = {}
    for number, line in enumerate((text or "").splitlines(), start=1):
        parts = line.split()
        if not parts:
            continue
        try:
            if len(parts) != 2:
                raise ValueError(line)
            currency = check_currency(parts[0].upper())
            if currency in thresholds:
                raise ValueError(line)
            thresholds[currency] = to_minor(parts[1].replace(",", ""), currency)
        except (ValueError, ArithmeticError):
            raise ValueError(
                _l(
                    "Line %(number)s: write a currency and an amount, e.g. EUR 10000.00, "
                    "each currency once.",
                    number=number,
                )
            ) from None
    return thresholds
