"""Forms of the finance pages: runs, credit notes, payments, voiding, bank statements.

Amounts are typed in the currency's major unit ("12.50", "1500" for JPY) and
converted exactly to minor units with :func:`portal.kernel.money.to_minor` by
:func:`amount_minor`; the rules themselves are the services'.
"""

from __future__ import annotations

from typing import Any

from flask_wtf import FlaskForm
from flask_wtf.file import FileField, FileRequired
from wtforms import BooleanField, DateField, SelectField, StringField, SubmitField, TextAreaField
from wtforms.validators import InputRequired, Length, Optional

from portal.kernel.i18n import _, _l
from portal.kernel.money import to_minor


class RunForm(FlaskForm):
    """Start the invoice run of a month."""

    period = StringField(
        _l("Month to invoice"),
        validators=[InputRequired(), Length(max=7)],
        render_kw={"placeholder": "YYYY-MM", "pattern": r"\d{4}-\d{2}"},
    )
    finalize = BooleanField(_l("Finalise the drafts too (numbers, PDFs and mail go out)"))
    submit = SubmitField(_l("Run invoices"))


class CreditNoteForm(FlaskForm):
    """Credit part or all of a finalised invoice's net amount."""

    amount = StringField(
        _l("Amount to credit (before tax)"),
        validators=[InputRequired(), Length(max=30)],
        description=_l("In the invoice's currency, e.g. 12.50; tax is credited in proportion."),
        render_kw={"inputmode": "decimal"},
    )
    reason = TextAreaField(_l("Reason"), validators=[InputRequired(), Length(max=1000)])
    submit = SubmitField(_l("Issue credit note"))


class PaymentForm(FlaskForm):
    """Money received by bank transfer (or otherwise) against an open invoice."""

    amount = StringField(
        _l("Amount received"),
        validators=[InputRequired(), Length(max=30)],
        description=_l("In the invoice's currency; less than is due records a part payment."),
        render_kw={"inputmode": "decimal"},
    )
    received_on = DateField(_l("Received on"), validators=[InputRequired()])
    method = SelectField(_l("Method"), default="bank_transfer")
    reference = StringField(_l("Reference"), validators=[Optional(), Length(max=200)])
    submit = SubmitField(_l("Record payment"))

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.method.choices = [("bank_transfer", _("Bank transfer")), ("other", _("Other"))]


class ReasonForm(FlaskForm):
    """Void an invoice, or write it off: both need a reason."""

    reason = StringField(_l("Reason"), validators=[InputRequired(), Length(max=1000)])
    submit = SubmitField(_l("Confirm"))


class BankImportForm(FlaskForm):
    """A bank statement as CSV: date, amount, currency, reference."""

    file = FileField(
        _l("Bank statement (CSV)"), validators=[FileRequired(_l("Choose a CSV file."))]
    )
    submit = SubmitField(_l("Import and match"))


def amount_minor(form: FlaskForm, currency: str) -> int | None:
    """The form's ``amount`` in minor units of ``currency``, or None with the field's error set."""
    try:
        return to_minor(form.amount.data or "", currency)
    except ValueError as error:
        form.amount.errors = [*form.amount.errors, str(error)]
        return None
