"""Forms for the council's catalogue pages: vendors, products, meters, pools and prices.

The forms give CSRF protection and HTML hints; the rules are the services'.
Money is typed in the currency's major unit and turned into minor units here,
with :func:`portal.kernel.money.to_minor`; an amount that does not fit the currency
(three decimals in EUR, any in JPY) is refused beside its field.

Choices are set per instance: WTForms 3.3 deprecates tuples given to a field's
constructor.
"""

from __future__ import annotations

from typing import Any

from flask import flash
from flask_wtf import FlaskForm
from wtforms import (
    DateField,
    DecimalField,
    EmailField,
    FieldList,
    Form,
    FormField,
    IntegerField,
    SelectField,
    StringField,
    SubmitField,
    TextAreaField,
    URLField,
)
from wtforms.validators import InputRequired, Length, Optional

from portal.forms import show_errors
from portal.kernel.errors import DomainError
from portal.kernel.i18n import _l
from portal.kernel.money import to_minor
from portal.tenancy.forms import currency_choices

VENDOR_STATUS_CHOICES = [
    ("active", _l("Active")),
    ("under_review", _l("Under review (members cannot newly subscribe)")),
    ("suspended", _l("Suspended (members cannot newly subscribe)")),
]
AGGREGATION_CHOICES = [
    ("sum", _l("Sum of the quantities")),
    ("count", _l("Count of the events")),
    ("max", _l("Highest quantity")),
    ("unique_count", _l("Count of distinct values of a property")),
]
MODEL_CHOICES = [("seat", _l("Per seat per month")), ("metered", _l("Per unit of a meter"))]
TIER_MODE_CHOICES = [
    ("", _l("No tiers (one unit price)")),
    ("graduated", _l("Graduated: each unit at its own tier's price")),
    ("volume", _l("Volume: every unit at the price of the tier the total falls in")),
]
TIER_BASIS_CHOICES = [
    ("organisation", _l("The organisation's own seats")),
    (
        "council",
        _l(
            "Council volume: the council-wide average seats of the month "
            "(seat prices, volume tiers)"
        ),
    ),
]
# A vendor's status inside a choice's label.
VENDOR_STATUS_NAMES = {
    "active": _l("active"),
    "under_review": _l("under review"),
    "suspended": _l("suspended"),
}
TIER_ROWS = 5
_AMOUNT = {"step": "any", "min": "0", "inputmode": "decimal"}


def _blank_to_none(value: Any) -> Any:
    if isinstance(value, str):
        value = value.strip()
        return value or None
    return value


def _minor(
    amount: Any, currency: str, field: str, errors: dict[str, list[str]], default: int | None
) -> int | None:
    """``amount`` (a Decimal or None) in minor units, or a message under ``field``."""
    if amount is None:
        if default is None:
            errors.setdefault(field, []).append(str(_l("Enter an amount (0 for free).")))
        return default
    try:
        return to_minor(amount, currency)
    except ValueError as exc:
        errors.setdefault(field, []).append(str(exc))
        return None


def _place(form: FlaskForm, errors: dict[str, list[str]]) -> None:
    """Put messages beside the form's fields (not where the field's own check spoke already)."""
    for name, messages in errors.items():
        if name in form._fields and not form[name].errors:
            form[name].errors = list(messages)


# ---------------------------------------------------------------- vendors


class VendorForm(FlaskForm):
    """Create or edit a vendor; the slug is given once (an edit drops the field)."""

    slug = StringField(
        _l("Slug"),
        validators=[InputRequired(), Length(min=3, max=63)],
        description=_l("Lower-case letters, digits and hyphens, e.g. acme-soft; used in the API."),
    )
    name = StringField(_l("Name"), validators=[InputRequired(), Length(max=200)])
    status = SelectField(_l("Status"))
    status_note = TextAreaField(
        _l("Status note"),
        validators=[Optional(), Length(max=500)],
        description=_l("Why the vendor is under review or suspended; members see it."),
    )
    contact_email = EmailField(_l("Contact email"), validators=[Optional(), Length(max=254)])
    website = URLField(_l("Website"), validators=[Optional(), Length(max=500)])
    submit = SubmitField(_l("Save vendor"))

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.status.choices = VENDOR_STATUS_CHOICES

    def service_data(self) -> dict[str, Any]:
        """The fields as the vendor services take them (blank optional fields are None)."""
        data = {"slug": self.slug.data} if "slug" in self else {}
        return data | {
            "name": self.name.data,
            "status": self.status.data,
            "status_note": _blank_to_none(self.status_note.data),
            "contact_email": _blank_to_none(self.contact_email.data),
            "website": _blank_to_none(self.website.data),
        }


# ---------------------------------------------------------------- products and meters


class ProductForm(FlaskForm):
    """A new product of a vendor."""

    vendor = SelectField(_l("Vendor"), validators=[InputRequired()])
    sku = StringField(
        _l("SKU"),
        validators=[InputRequired(), Length(min=3, max=63)],
        description=_l("Lower-case letters, digits and hyphens, e.g. cad-suite. It never changes."),
    )
    name = StringField(_l("Name"), validators=[InputRequired(), Length(max=200)])
    description = TextAreaField(_l("Description"), validators=[Optional(), Length(max=5000)])
    launch_url = URLField(
        _l("Launch URL"),
        validators=[Optional(), Length(max=500)],
        description=_l("Where people with a seat open the product (https://…)."),
    )
    submit = SubmitField(_l("Create product"))

    def __init__(self, *args: Any, vendors: list | None = None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.vendor.choices = [("", str(_l("Choose a vendor")))] + [
            (v.slug, f"{v.name} ({VENDOR_STATUS_NAMES.get(v.status, v.status)})")
            for v in vendors or []
        ]

    def service_data(self) -> dict[str, Any]:
        return {
            "vendor": self.vendor.data,
            "sku": self.sku.data,
            "name": self.name.data,
            "description": self.description.data or "",
            "launch_url": _blank_to_none(self.launch_url.data),
        }


class ProductEditForm(FlaskForm):
    """Change a product's name, description or launch link."""

    name = StringField(_l("Name"), validators=[InputRequired(), Length(max=200)])
    description = TextAreaField(_l("Description"), validators=[Optional(), Length(max=5000)])
    launch_url = URLField(_l("Launch URL"), validators=[Optional(), Length(max=500)])
    submit = SubmitField(_l("Save product"))

    def service_data(self) -> dict[str, Any]:
        return {
            "name": self.name.data,
            "description": self.description.data or "",
            "launch_url": _blank_to_none(self.launch_url.data),
        }


class MeterForm(FlaskForm):
    """A meter of a product: what its vendor counts."""

    key = StringField(
        _l("Key"),
        validators=[InputRequired(), Length(max=63)],
        description=_l("As vendors send it in usage events, e.g. api_calls."),
    )
    name = StringField(_l("Name"), validators=[InputRequired(), Length(max=200)])
    unit = StringField(
        _l("Unit"), validators=[InputRequired(), Length(max=40)], description=_l("e.g. call, GB")
    )
    aggregation = SelectField(_l("Adds up as"))
    property = StringField(
        _l("Property"),
        validators=[Optional(), Length(max=63)],
        description=_l("For distinct counts only: the event property whose values are counted."),
    )
    submit = SubmitField(_l("Add meter"))

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.aggregation.choices = AGGREGATION_CHOICES

    def service_data(self) -> dict[str, Any]:
        return {
            "key": self.key.data,
            "name": self.name.data,
            "unit": self.unit.data,
            "aggregation": self.aggregation.data,
            "property": _blank_to_none(self.property.data),
        }


# ---------------------------------------------------------------- pools


class PoolForm(FlaskForm):
    """Seats the council bought for a term, at a unit cost per seat-month."""

    capacity = IntegerField(_l("Seats"), validators=[InputRequired()], render_kw={"min": "1"})
    starts_on = DateField(_l("Starts on"), validators=[InputRequired()])
    ends_on = DateField(_l("Ends on"), validators=[InputRequired()])
    unit_cost_amount = DecimalField(
        _l("Unit cost per seat-month"),
        places=None,
        validators=[InputRequired()],
        render_kw=_AMOUNT,
        description=_l("What the council pays, in the currency's units (e.g. 12.50)."),
    )
    unit_cost_currency = SelectField(_l("Currency"), validators=[InputRequired()])
    reference = StringField(
        _l("Contract reference"),
        validators=[Optional(), Length(max=200)],
        description=_l("Optional."),
    )
    submit = SubmitField(_l("Add pool"))

    # Where the services' field names are shown on this form.
    ALIASES = {
        "unit_cost.amount": "unit_cost_amount",
        "unit_cost.currency": "unit_cost_currency",
        "unit_cost": "unit_cost_amount",
        "_": "ends_on",  # the one rule across fields: the term's order
    }

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.unit_cost_currency.choices = currency_choices()

    def service_data(self, sku: str) -> dict[str, Any]:
        """The pool as :func:`~portal.catalogue.services.pool_create` takes it."""
        errors: dict[str, list[str]] = {}
        currency = self.unit_cost_currency.data
        amount = _minor(self.unit_cost_amount.data, currency, "unit_cost_amount", errors, None)
        # A bad amount goes beside its field, and the service still checks the rest (every
        # field's message on the first submit); forms.committed keeps nothing then.
        _place(self, errors)
        return {
            "product": sku,
            "capacity": self.capacity.data,
            "starts_on": self.starts_on.data,
            "ends_on": self.ends_on.data,
            "unit_cost": {"amount": amount if amount is not None else 0, "currency": currency},
            "reference": _blank_to_none(self.reference.data),
        }


class PoolEditForm(FlaskForm):
    """Grow or shrink a pool, or move its end."""

    capacity = IntegerField(_l("Seats"), validators=[InputRequired()])
    ends_on = DateField(_l("Ends on"), validators=[Optional()])
    submit = SubmitField(_l("Save"))

    def service_data(self) -> dict[str, Any]:
        data: dict[str, Any] = {"capacity": self.capacity.data}
        if self.ends_on.data is not None:
            data["ends_on"] = self.ends_on.data
        return data


# ---------------------------------------------------------------- prices


class TierForm(Form):
    """One row of a tiered price; a row left empty is ignored."""

    up_to = IntegerField(_l("Up to (units)"), validators=[Optional()], render_kw={"min": "1"})
    unit_amount = DecimalField(
        _l("Unit price"), places=None, validators=[Optional()], render_kw=_AMOUNT
    )
    flat_amount = DecimalField(
        _l("Flat amount"), places=None, validators=[Optional()], render_kw=_AMOUNT
    )

    def is_empty(self) -> bool:
        return all(f.data is None for f in (self.up_to, self.unit_amount, self.flat_amount))


class PriceForm(FlaskForm):
    """What members pay for a product in one currency, flat or in tiers."""

    currency = SelectField(_l("Currency"), validators=[InputRequired()])
    model = SelectField(_l("Charged"))
    meter = SelectField(_l("Meter (metered prices)"), validators=[Optional()])
    unit_amount = DecimalField(
        _l("Unit price"),
        places=None,
        validators=[Optional()],
        render_kw=_AMOUNT,
        description=_l("Per seat per month, or per unit of the meter, in the currency's units."),
    )
    tier_mode = SelectField(_l("Tiers"), validators=[Optional()])
    tier_basis = SelectField(
        _l("Tier chosen by"),
        validators=[Optional()],
        description=_l(
            "Council volume: every organisation pays the unit price of the tier that all "
            "organisations' seats together reach, on its own seat-days."
        ),
    )
    tiers = FieldList(FormField(TierForm), min_entries=TIER_ROWS, max_entries=TIER_ROWS)
    submit = SubmitField(_l("Add price"))

    def __init__(self, *args: Any, meters: list | None = None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.currency.choices = currency_choices()
        self.model.choices = MODEL_CHOICES
        self.meter.choices = [("", str(_l("No meter (seat price)")))] + [
            (
                m.key,
                str(_l("%(name)s (%(key)s, per %(unit)s)", name=m.name, key=m.key, unit=m.unit)),
            )
            for m in meters or []
        ]
        self.tier_mode.choices = TIER_MODE_CHOICES
        self.tier_basis.choices = TIER_BASIS_CHOICES
        self._tier_rows: list[int] = []

    def service_data(self, sku: str) -> dict[str, Any]:
        """The price as :func:`~portal.catalogue.services.price_create` takes it.

        Empty tier rows are left out; the others keep their order. A row without
        an upper limit is the open-ended last tier.
        """
        errors: dict[str, list[str]] = {}
        currency = self.currency.data
        tiers = []
        self._tier_rows = []
        for index, entry in enumerate(self.tiers.entries):
            row = entry.form
            if row.is_empty():
                continue
            prefix = f"tiers-{index}"
            tiers.append(
                {
                    "up_to": row.up_to.data,
                    "unit_amount": _minor(
                        row.unit_amount.data, currency, f"{prefix}-unit_amount", errors, 0
                    ),
                    "flat_amount": _minor(
                        row.flat_amount.data, currency, f"{prefix}-flat_amount", errors, 0
                    ),
                }
            )
            self._tier_rows.append(index)
        amount = _minor(
            self.unit_amount.data, currency, "unit_amount", errors, 0 if tiers else None
        )
        # Bad amounts go beside their fields, and the service still checks the rest (every
        # field's message on the first submit); the page keeps nothing then.
        self._place_row_errors(errors)
        _place(self, errors)
        for tier in tiers:
            tier["unit_amount"] = tier["unit_amount"] or 0
            tier["flat_amount"] = tier["flat_amount"] or 0
        return {
            "product": sku,
            "currency": currency,
            "model": self.model.data,
            "meter": _blank_to_none(self.meter.data),
            "unit_amount": amount if amount is not None else 0,
            "tier_mode": _blank_to_none(self.tier_mode.data) if tiers else None,
            "tiers": tiers,
            "tier_basis": self.tier_basis.data or "organisation",
        }

    def has_errors(self) -> bool:
        """Whether a field, or a field of a tier row, carries a message."""
        rows = (f for entry in self.tiers.entries for f in entry.form)
        return any(f.errors for f in self if f.name != "tiers") or any(f.errors for f in rows)

    def _place_row_errors(self, errors: dict[str, list[str]]) -> None:
        """Move ``tiers-N-field`` messages onto the tier rows' own fields."""
        for key in [k for k in errors if k.startswith("tiers-")]:
            _, index, name = key.split("-", 2)
            field = self.tiers.entries[int(index)].form[name]
            field.errors = list(field.errors or []) + errors.pop(key)

    def show_errors(self, error: DomainError) -> None:
        """Put a refusal's messages beside the fields, the tier rows' included.

        The services number tiers among the rows that were filled in
        (``tiers.1.unit_amount``); the form's rows include the empty ones.
        """
        remaining: dict[str, list[str]] = {}
        for key, messages in (error.errors or {}).items():
            parts = key.split(".")
            if (
                len(parts) == 3
                and parts[0] == "tiers"
                and parts[1].isdigit()
                and int(parts[1]) < len(self._tier_rows)
                and parts[2] in ("up_to", "unit_amount", "flat_amount")
            ):
                field = self.tiers.entries[self._tier_rows[int(parts[1])]].form[parts[2]]
                field.errors = list(field.errors or []) + list(messages)
            else:
                remaining[key] = list(messages)
        if remaining:
            show_errors(self, DomainError(error.detail, errors=remaining))
        else:
            flash(error.detail, "error")
