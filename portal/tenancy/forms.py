"""Forms for organisations: the council's, the org admin's and the public application."""

from babel import Locale
from flask_wtf import FlaskForm
from wtforms import (
    BooleanField,
    DecimalField,
    EmailField,
    SelectField,
    StringField,
    SubmitField,
    TextAreaField,
)
from wtforms.validators import InputRequired, Length, NumberRange, Optional

from portal.i18n import language
from portal.kernel import iso
from portal.kernel.i18n import _l


def country_choices() -> list[tuple[str, str]]:
    """Countries by name in the reader's language: ``Deutschland``/``Германия (DE)``."""
    names = Locale.parse(language()).territories
    pairs = sorted(((c, names.get(c, n)) for c, n in iso.countries().items()), key=lambda p: p[1])
    return [("", str(_l("Choose a country")))] + [(c, f"{n} ({c})") for c, n in pairs]


def currency_choices() -> list[tuple[str, str]]:
    """Currencies by code, named in the reader's language."""
    names = Locale.parse(language()).currencies
    return [("", str(_l("Choose a currency")))] + [
        (c, f"{c} — {names.get(c, n)}") for c, n in iso.currencies().items()
    ]


INVOICE_LANGUAGE_CHOICES = [
    ("", _l("English (the default)")),
    ("en", "English"),
    ("ru", "Русский"),
]
BILLING_PROVIDER_CHOICES = [("manual", _l("Manual (bank transfer)")), ("stripe", "Stripe")]


class _OrganisationFields(FlaskForm):
    name = StringField(_l("Legal name"), validators=[InputRequired(), Length(max=200)])
    # The service checks the codes, so a form, the API and the CLI say the same thing.
    country = SelectField(_l("Country"), validators=[InputRequired()], validate_choice=False)
    currency = SelectField(
        _l("Billing currency"), validators=[InputRequired()], validate_choice=False
    )
    tax_id = StringField(_l("Tax id"), validators=[Optional(), Length(max=64)])
    billing_email = EmailField(_l("Billing email"), validators=[InputRequired(), Length(max=254)])

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.country.choices = country_choices()
        self.currency.choices = currency_choices()


class _BuyerFields(FlaskForm):
    """The buyer's details its invoices print (issue 14): postal address, invoice language."""

    billing_address = TextAreaField(
        _l("Billing address"),
        validators=[Optional(), Length(max=500)],
        description=_l("The postal address printed on invoices, as it should appear."),
        render_kw={"rows": 4, "autocomplete": "street-address"},
    )
    invoice_language = SelectField(_l("Invoice language"), validators=[Optional()])

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.invoice_language.choices = INVOICE_LANGUAGE_CHOICES


class OrganisationForm(_OrganisationFields, _BuyerFields):
    """Council staff create or edit an organisation."""

    slug = StringField(
        _l("Slug"),
        validators=[InputRequired(), Length(min=3, max=63)],
        description=_l("Lower-case letters, digits and hyphens; used in links and the API."),
    )
    # Choices are set per instance: WTForms 3.3 deprecates tuples given to the constructor.
    billing_provider = SelectField(_l("Billing provider"))
    tax_rate_percent = DecimalField(
        _l("Tax rate (%)"),
        places=2,
        validators=[Optional(), NumberRange(min=0, max=100)],
        description=_l("Leave empty to use the council's default rate."),
    )
    reverse_charge = BooleanField(_l("Reverse charge (no tax; a note on the invoice)"))
    submit = SubmitField(_l("Save organisation"))

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.billing_provider.choices = BILLING_PROVIDER_CHOICES


class OrgProfileForm(_BuyerFields):
    """An org admin edits the contact and buyer fields of their own organisation."""

    name = StringField(_l("Legal name"), validators=[InputRequired(), Length(max=200)])
    tax_id = StringField(_l("Tax id"), validators=[Optional(), Length(max=64)])
    billing_email = EmailField(_l("Billing email"), validators=[InputRequired(), Length(max=254)])
    submit = SubmitField(_l("Save"))


class ApplicationForm(_OrganisationFields):
    """The public membership application."""

    slug = StringField(
        _l("Short name for links"),
        validators=[InputRequired(), Length(min=3, max=63)],
        description=_l("Lower-case letters, digits and hyphens, e.g. acme-gmbh."),
    )
    applicant_name = StringField(_l("Your name"), validators=[InputRequired(), Length(max=200)])
    applicant_email = EmailField(
        _l("Your work email"),
        validators=[InputRequired(), Length(max=254)],
        description=_l("The council will invite you as your company's admin."),
    )
    note = TextAreaField(
        _l("Anything the council should know"), validators=[Optional(), Length(max=2000)]
    )
    submit = SubmitField(_l("Apply for membership"))


class StatusForm(FlaskForm):
    """Approve, decline, suspend, reactivate or close, with an optional reason."""

    reason = StringField(
        _l("Reason (shown to the organisation's users)"), validators=[Optional(), Length(max=500)]
    )
    submit = SubmitField(_l("Confirm"))
