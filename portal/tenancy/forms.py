"""Forms for organisations: the council's, the org admin's and the public application."""

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

from portal.kernel import iso


def country_choices() -> list[tuple[str, str]]:
    return [("", "Choose a country")] + [(c, f"{n} ({c})") for c, n in iso.countries().items()]


def currency_choices() -> list[tuple[str, str]]:
    return [("", "Choose a currency")] + [(c, f"{c} — {n}") for c, n in iso.currencies().items()]


BILLING_PROVIDER_CHOICES = [("manual", "Manual (bank transfer)"), ("stripe", "Stripe")]


class _OrganisationFields(FlaskForm):
    name = StringField("Legal name", validators=[InputRequired(), Length(max=200)])
    # The service checks the codes, so a form, the API and the CLI say the same thing.
    country = SelectField("Country", validators=[InputRequired()], validate_choice=False)
    currency = SelectField("Billing currency", validators=[InputRequired()], validate_choice=False)
    tax_id = StringField("Tax id", validators=[Optional(), Length(max=64)])
    billing_email = EmailField("Billing email", validators=[InputRequired(), Length(max=254)])

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.country.choices = country_choices()
        self.currency.choices = currency_choices()


class OrganisationForm(_OrganisationFields):
    """Council staff create or edit an organisation."""

    slug = StringField(
        "Slug",
        validators=[InputRequired(), Length(min=3, max=63)],
        description="Lower-case letters, digits and hyphens; used in links and the API.",
    )
    # Choices are set per instance: WTForms 3.3 deprecates tuples given to the constructor.
    billing_provider = SelectField("Billing provider")
    tax_rate_percent = DecimalField(
        "Tax rate (%)",
        places=2,
        validators=[Optional(), NumberRange(min=0, max=100)],
        description="Leave empty to use the council's default rate.",
    )
    reverse_charge = BooleanField("Reverse charge (no tax; a note on the invoice)")
    submit = SubmitField("Save organisation")

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.billing_provider.choices = BILLING_PROVIDER_CHOICES


class OrgProfileForm(FlaskForm):
    """An org admin edits the contact fields of their own organisation."""

    name = StringField("Legal name", validators=[InputRequired(), Length(max=200)])
    tax_id = StringField("Tax id", validators=[Optional(), Length(max=64)])
    billing_email = EmailField("Billing email", validators=[InputRequired(), Length(max=254)])
    submit = SubmitField("Save")


class ApplicationForm(_OrganisationFields):
    """The public membership application."""

    slug = StringField(
        "Short name for links",
        validators=[InputRequired(), Length(min=3, max=63)],
        description="Lower-case letters, digits and hyphens, e.g. acme-gmbh.",
    )
    applicant_name = StringField("Your name", validators=[InputRequired(), Length(max=200)])
    applicant_email = EmailField(
        "Your work email",
        validators=[InputRequired(), Length(max=254)],
        description="The council will invite you as your company's admin.",
    )
    note = TextAreaField(
        "Anything the council should know", validators=[Optional(), Length(max=2000)]
    )
    submit = SubmitField("Apply for membership")


class StatusForm(FlaskForm):
    """Approve, decline, suspend, reactivate or close, with an optional reason."""

    reason = StringField(
        "Reason (shown to the organisation's users)", validators=[Optional(), Length(max=500)]
    )
    submit = SubmitField("Confirm")
