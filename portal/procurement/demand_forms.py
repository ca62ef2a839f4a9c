"""Forms of the demand pages: asking for a product, the council's answer, merge and link, a
purchase order drafted from demand.

The forms give CSRF protection and HTML hints; the rules are the service's
(:mod:`portal.procurement.demand`). Money is typed in the currency's major unit and
turned into minor units here.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from flask_wtf import FlaskForm
from wtforms import (
    DateField,
    DecimalField,
    IntegerField,
    SelectField,
    StringField,
    SubmitField,
    TextAreaField,
)
from wtforms.validators import InputRequired, Length, NumberRange, Optional

from portal.kernel.i18n import _l
from portal.kernel.money import to_minor
from portal.procurement.demand import ANSWERS, MAX_REQUEST_SEATS
from portal.procurement.models import request_state_name
from portal.tenancy.forms import currency_choices


class ProductRequestForm(FlaskForm):
    """A member's or org admin's request for a product not in the catalogue."""

    product_name = StringField(
        _l("Product"),
        validators=[InputRequired(), Length(max=200)],
        render_kw={"maxlength": "200"},
        description=_l("Its name as the vendor sells it."),
    )
    vendor_id = SelectField(_l("Vendor"), validators=[Optional()])
    vendor_name = StringField(
        _l("Or the vendor's name"),
        validators=[Optional(), Length(max=200)],
        render_kw={"maxlength": "200"},
        description=_l("If the vendor is not in the list."),
    )
    seats = IntegerField(
        _l("Seats"),
        validators=[InputRequired(), NumberRange(min=1, max=MAX_REQUEST_SEATS)],
        render_kw={"min": "1", "max": str(MAX_REQUEST_SEATS), "inputmode": "numeric"},
    )
    note = TextAreaField(
        _l("Note for the council"),
        validators=[Optional(), Length(max=1000)],
        render_kw={"maxlength": "1000", "rows": "3"},
        description=_l("What it is for, who would use it (optional)."),
    )
    submit = SubmitField(_l("Ask the council"))

    def __init__(self, *args: Any, vendors: list[Any], **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.vendor_id.choices = [("", str(_l("Not in the list")))] + [
            (str(v.id), v.name) for v in vendors
        ]

    def service_data(self) -> dict[str, Any]:
        return {
            "product_name": self.product_name.data,
            "vendor_id": self.vendor_id.data or None,
            "vendor_name": self.vendor_name.data,
            "seats": self.seats.data,
            "note": self.note.data,
        }


class AnswerForm(FlaskForm):
    state = SelectField(_l("State"), validators=[InputRequired()])
    reply = TextAreaField(
        _l("Reply to the requesters"),
        validators=[Optional(), Length(max=2000)],
        render_kw={"maxlength": "2000", "rows": "3"},
    )
    submit = SubmitField(_l("Send the answer"))

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.state.choices = [(s.value, request_state_name(s)) for s in ANSWERS]


class MergeForm(FlaskForm):
    into = SelectField(_l("Duplicate of"), validators=[InputRequired()])
    submit = SubmitField(_l("Merge"))

    def __init__(self, *args: Any, requests: list[Any], **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.into.choices = [("", str(_l("Choose a request")))] + [
            (str(r.id), f"#{r.id} {r.product_name} ({r.vendor_name})") for r in requests
        ]


class LinkForm(FlaskForm):
    product_id = SelectField(_l("Catalogue product"), validators=[InputRequired()])
    submit = SubmitField(_l("Link"))

    def __init__(self, *args: Any, products: list[Any], **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.product_id.choices = [("", str(_l("Choose a product")))] + [
            (str(p.id), f"{p.name} ({p.vendor.name})") for p in products
        ]


class DemandDraftForm(FlaskForm):
    """A purchase order of one product's seats, drafted from demand."""

    seats = IntegerField(
        _l("Seats"),
        validators=[InputRequired(), NumberRange(min=1)],
        render_kw={"min": "1", "inputmode": "numeric"},
    )
    unit_cost = DecimalField(
        _l("Unit cost per seat-month"),
        validators=[InputRequired(), NumberRange(min=0)],
        render_kw={"min": "0", "step": "any", "inputmode": "decimal"},
    )
    currency = SelectField(_l("Currency"), validators=[InputRequired()])
    starts_on = DateField(_l("Term starts on"), validators=[InputRequired()])
    ends_on = DateField(_l("Term ends on"), validators=[InputRequired()])
    submit = SubmitField(_l("Draft the purchase order"))

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.currency.choices = currency_choices()

    def service_data(self) -> dict[str, Any]:
        unit_cost: Any = None
        amount: Decimal | None = self.unit_cost.data
        if amount is not None and self.currency.data:
            try:
                unit_cost = to_minor(amount, self.currency.data)
            except ValueError as exc:
                self.unit_cost.errors = [*self.unit_cost.errors, str(exc)]
        return {
            "seats": self.seats.data,
            "unit_cost": unit_cost,
            "currency": self.currency.data,
            "starts_on": self.starts_on.data,
            "ends_on": self.ends_on.data,
        }
