"""Forms of the purchase order pages: a draft with its lines, the moves, a vendor invoice.

The forms give CSRF protection and HTML hints; the rules are the service's
(:mod:`portal.procurement.purchase_orders`). Money is typed in the currency's major
unit and turned into minor units here (:func:`portal.kernel.money.to_minor`); an
amount that does not fit the currency is refused beside its field. A line row left
empty is ignored; the service numbers the lines that were filled in, and its messages
are put back on the rows they came from.
"""

from __future__ import annotations

import re
from decimal import Decimal
from typing import Any

from flask import flash, has_request_context, request
from flask_wtf import FlaskForm
from wtforms import (
    DateField,
    DecimalField,
    FieldList,
    Form,
    FormField,
    IntegerField,
    SelectField,
    StringField,
    SubmitField,
    TextAreaField,
)
from wtforms.validators import InputRequired, Length, NumberRange, Optional

from portal.kernel.errors import DomainError
from portal.kernel.i18n import _l
from portal.kernel.money import to_minor
from portal.tenancy.forms import currency_choices

LINE_ROWS = 5
_AMOUNT = {"min": "0", "step": "any", "inputmode": "decimal"}


def _minor(amount: Decimal | None, currency: str, field: Any) -> int | None:
    """``amount`` in minor units, or a message beside ``field`` (None)."""
    if amount is None:
        field.errors = [*field.errors, str(_l("Enter an amount (0 for free)."))]
        return None
    try:
        return to_minor(amount, currency)
    except ValueError as exc:
        field.errors = [*field.errors, str(exc)]
        return None


def _id(value: str | None) -> int | None:
    """A chosen option's id; None for none or anything that is not one (the service says)."""
    return int(value) if value and value.isascii() and value.isdigit() else None


def _place(form: Any, errors: dict[str, list[str]], rows: list[Any], prefix: str) -> list[str]:
    """Put a refusal's messages beside the fields (``lines.N.name`` on the N-th filled row);
    the ones no field shows are returned."""
    unplaced = []
    for key, messages in errors.items():
        parts = key.split(".")
        target = None
        if parts[0] == prefix and len(parts) == 3 and parts[1].isdigit():
            index = int(parts[1])
            name = {"product_id": "product", "line_id": "seats"}.get(parts[2], parts[2])
            if index < len(rows) and name in rows[index]._fields:
                target = rows[index][name]
        elif key in form._fields:
            target = form[key]
        if target is None:
            unplaced.extend(messages)
        elif not target.errors:
            target.errors = list(messages)
    return unplaced


class LineForm(Form):
    """One line of a draft: a product, its seats and the unit cost per seat-month."""

    product = SelectField(_l("Product"), validators=[Optional()])
    seats = IntegerField(
        _l("Seats"), validators=[Optional(), NumberRange(min=1)], render_kw={"min": "1"}
    )
    unit_cost = DecimalField(
        _l("Unit cost per seat-month"), places=None, validators=[Optional()], render_kw=_AMOUNT
    )

    def is_empty(self) -> bool:
        return not self.product.data and self.seats.data is None and self.unit_cost.data is None


class DraftForm(FlaskForm):
    """A new draft order to one vendor."""

    vendor = SelectField(_l("Vendor"), validators=[InputRequired()])
    currency = SelectField(_l("Currency"), validators=[InputRequired()])
    starts_on = DateField(_l("Term starts on"), validators=[InputRequired()])
    ends_on = DateField(_l("Term ends on"), validators=[InputRequired()])
    notes = TextAreaField(_l("Notes"), validators=[Optional(), Length(max=2000)])
    lines = FieldList(FormField(LineForm), min_entries=LINE_ROWS, max_entries=LINE_ROWS)
    submit = SubmitField(_l("Save the draft"))

    def __init__(self, *args: Any, vendors: list, products: list, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.vendor.choices = [("", str(_l("Choose a vendor")))] + [
            (str(v.id), v.name) for v in vendors
        ]
        self.currency.choices = currency_choices()
        product_choices = [("", str(_l("No product (an empty row)")))] + [
            (str(p.id), f"{p.vendor.name}: {p.name} ({p.sku})") for p in products
        ]
        for entry in self.lines.entries:
            entry.form.product.choices = product_choices
        self._rows: list[Any] = []

    def service_data(self) -> dict[str, Any]:
        """The draft as :func:`draft_purchase_order` takes it (a bad amount is None there,
        its message already beside its field)."""
        currency = self.currency.data or "EUR"
        lines, self._rows = [], []
        for entry in self.lines.entries:
            row = entry.form
            if row.is_empty():
                continue
            unit_cost = _minor(row.unit_cost.data, currency, row.unit_cost)
            if not row.product.data and not row.product.errors:
                row.product.errors = [str(_l("Choose a product, or empty the row."))]
            lines.append(
                {
                    "product_id": _id(row.product.data),
                    "seats": row.seats.data,
                    "unit_cost": unit_cost,
                }
            )
            self._rows.append(row)
        if not lines:
            self.lines.entries[0].form.product.errors = [str(_l("Add at least one line."))]
        return {
            "vendor_id": _id(self.vendor.data),
            "currency": self.currency.data,
            "starts_on": self.starts_on.data,
            "ends_on": self.ends_on.data,
            "notes": self.notes.data,
            "lines": lines,
        }

    def show_errors(self, error: DomainError) -> None:
        errors = {k.replace("vendor_id", "vendor"): v for k, v in error.errors.items()}
        unplaced = _place(self, errors, self._rows, "lines")
        if not error.errors or unplaced:
            flash(f"{error.detail} {' '.join(unplaced)}".strip(), "error")

    def has_errors(self) -> bool:
        rows = (f for entry in self.lines.entries for f in entry.form)
        return any(f.errors for f in self if f.name != "lines") or any(f.errors for f in rows)


class MoveForm(FlaskForm):
    """A move of the state machine with nothing to say (approve, send, receive)."""


class ConfirmForm(FlaskForm):
    vendor_reference = StringField(
        _l("The vendor's reference"),
        validators=[Optional(), Length(max=200)],
        description=_l("Its order number or the subject of its mail (optional)."),
    )
    submit = SubmitField(_l("Record the vendor's confirmation"))


class CancelForm(FlaskForm):
    reason = StringField(_l("Reason"), validators=[Optional(), Length(max=500)])
    submit = SubmitField(_l("Cancel the order"))


class InvoiceLineForm(Form):
    seats = IntegerField(_l("Seats invoiced"), validators=[Optional(), NumberRange(min=0)])
    amount = DecimalField(
        _l("Amount invoiced"), places=None, validators=[Optional()], render_kw=_AMOUNT
    )


class VendorInvoiceForm(FlaskForm):
    """The vendor's invoice, one row per line of the order (empty rows: not invoiced)."""

    vendor_number = StringField(
        _l("The vendor's invoice number"), validators=[InputRequired(), Length(max=100)]
    )
    issued_on = DateField(_l("Issued on"), validators=[InputRequired()])
    lines = FieldList(FormField(InvoiceLineForm), min_entries=0, max_entries=50)
    submit = SubmitField(_l("Record the vendor invoice"))

    def __init__(self, *args: Any, order_lines: list, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        # Row N is the order's N-th line. WTForms renumbers the rows it is sent, so rows sent
        # under other numbers (a hand-made POST) are caught here, not guessed at: the rows
        # start empty and the form says so.
        sent = set()
        if kwargs.get("formdata", True) is not None and has_request_context():
            for key in request.form:
                match = re.fullmatch(r"lines-(\d{1,6})-\w+", key)
                if match:
                    sent.add(int(match.group(1)))
        self.rows_mismatched = bool(sent) and sent != set(range(min(len(order_lines), len(sent))))
        if self.rows_mismatched:
            self.lines.entries = []
            self.lines.last_index = -1
        while len(self.lines.entries) < len(order_lines):
            self.lines.append_entry()
        self.order_lines = order_lines
        self._rows: list[Any] = []

    def service_data(self, currency: str) -> dict[str, Any]:
        """The invoice as :func:`vendor_invoice_record` takes it (a bad amount is None there,
        its message already beside its field)."""
        lines, self._rows = [], []
        for entry, line in zip(self.lines.entries, self.order_lines, strict=False):
            row = entry.form
            if row.seats.data is None and row.amount.data is None:
                continue
            amount = _minor(row.amount.data, currency, row.amount)
            lines.append({"line_id": line.id, "seats": row.seats.data or 0, "amount": amount})
            self._rows.append(row)
        if self.rows_mismatched and self.lines.entries:
            self.lines.entries[0].form.seats.errors = [
                str(_l("The rows did not match the order's lines; enter them again."))
            ]
        elif not lines and self.lines.entries:
            self.lines.entries[0].form.seats.errors = [
                str(_l("Enter what the invoice charges for at least one line."))
            ]
        return {
            "vendor_number": self.vendor_number.data,
            "issued_on": self.issued_on.data.isoformat() if self.issued_on.data else None,
            "lines": lines,
        }

    def show_errors(self, error: DomainError) -> None:
        unplaced = _place(self, error.errors, self._rows, "lines")
        if not error.errors or unplaced:
            flash(f"{error.detail} {' '.join(unplaced)}".strip(), "error")

    def has_errors(self) -> bool:
        rows = (f for entry in self.lines.entries for f in entry.form)
        return any(f.errors for f in self if f.name != "lines") or any(f.errors for f in rows)
