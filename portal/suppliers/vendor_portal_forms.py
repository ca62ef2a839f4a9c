"""Forms of the vendor portal (issue 15): the profile, service status, incidents, and the
council's invitation of a vendor admin.

The forms give CSRF protection and HTML hints; the rules are the services'
(:mod:`portal.suppliers.services`, :mod:`portal.identity.invitations`). Choices are set
per instance (WTForms 3.3 deprecates tuples given to a field's constructor).
"""

from __future__ import annotations

from typing import Any

from flask_wtf import FlaskForm
from wtforms import EmailField, SelectField, StringField, SubmitField, TextAreaField, URLField
from wtforms.validators import InputRequired, Length, Optional

from portal.kernel.i18n import _l

SERVICE_STATUS_LABELS = {
    "operational": _l("Operational"),
    "degraded": _l("Degraded performance"),
    "partial_outage": _l("Partial outage"),
    "major_outage": _l("Major outage"),
    "maintenance": _l("Under maintenance"),
}
IMPACT_LABELS = {
    "none": _l("No impact"),
    "minor": _l("Minor"),
    "major": _l("Major"),
    "critical": _l("Critical"),
}
STATE_LABELS = {
    "investigating": _l("Investigating"),
    "identified": _l("Identified"),
    "monitoring": _l("Monitoring"),
    "resolved": _l("Resolved"),
}
SOURCE_LABELS = {
    "vendor": _l("set by the vendor"),
    "council": _l("set by the council"),
    "statuspage": _l("read from the status page"),
}


def _blank_to_none(value: Any) -> Any:
    return None if isinstance(value, str) and not value.strip() else value


class ProfileForm(FlaskForm):
    """A vendor admin's own vendor profile (what members see in the supplier directory)."""

    legal_name = StringField(
        _l("Legal name"),
        validators=[Optional(), Length(max=200)],
        description=_l("The company's registered name, as on contracts."),
    )
    website = URLField(_l("Website"), validators=[Optional(), Length(max=500)])
    support_contact = StringField(
        _l("Support contact"),
        validators=[Optional(), Length(max=254)],
        description=_l("Where members ask for help: an email address, a phone or a web page."),
    )
    country = StringField(
        _l("Country"),
        validators=[Optional(), Length(max=2)],
        description=_l("Two letters (ISO 3166-1), e.g. DE."),
    )
    data_residency = StringField(
        _l("Data residency"),
        validators=[Optional(), Length(max=200)],
        description=_l("Where members' data is kept, e.g. “EU (Frankfurt)”."),
    )
    submit = SubmitField(_l("Save profile"))

    def service_data(self) -> dict[str, Any]:
        return {
            "legal_name": _blank_to_none(self.legal_name.data),
            "website": _blank_to_none(self.website.data),
            "support_contact": _blank_to_none(self.support_contact.data),
            "country": (_blank_to_none(self.country.data) or "").upper() or None,
            "data_residency": _blank_to_none(self.data_residency.data),
        }


class StatusForm(FlaskForm):
    """Set the vendor's service status now, with a short message for members."""

    service_status = SelectField(_l("Service status"))
    message = TextAreaField(
        _l("Message"),
        validators=[Optional(), Length(max=500)],
        description=_l("What members should know, e.g. “Exports are slow; we are on it.”"),
    )
    submit = SubmitField(_l("Set status"))

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.service_status.choices = list(SERVICE_STATUS_LABELS.items())


class IncidentForm(FlaskForm):
    """Open an incident with its first update."""

    title = StringField(_l("Title"), validators=[InputRequired(), Length(max=200)])
    impact = SelectField(_l("Impact"))
    body = TextAreaField(
        _l("First update"),
        validators=[InputRequired(), Length(max=5000)],
        description=_l("What is wrong and what you are doing about it."),
    )
    submit = SubmitField(_l("Open incident"))

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.impact.choices = list(IMPACT_LABELS.items())


class IncidentUpdateForm(FlaskForm):
    """Post an update to an incident; choosing “Resolved” closes it."""

    body = TextAreaField(_l("Update"), validators=[InputRequired(), Length(max=5000)])
    state = SelectField(_l("State"))
    impact = SelectField(_l("Impact"))
    submit = SubmitField(_l("Post update"))

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.state.choices = [("", _l("Unchanged")), *STATE_LABELS.items()]
        self.impact.choices = [("", _l("Unchanged")), *IMPACT_LABELS.items()]

    def service_data(self) -> dict[str, Any]:
        return {
            "body": self.body.data or "",
            "state": self.state.data or None,
            "impact": self.impact.data or None,
        }


class VendorAdminInviteForm(FlaskForm):
    """A council admin invites a vendor's admin by email."""

    email = EmailField(_l("Email"), validators=[InputRequired(), Length(max=254)])
    submit = SubmitField(_l("Send invitation"))
