"""The provisioning pages' forms (issue 17) and the words for deliveries' states and events."""

from __future__ import annotations

from flask_wtf import FlaskForm
from wtforms import BooleanField, PasswordField, SelectField, StringField, SubmitField
from wtforms.fields.choices import SelectChoice
from wtforms.validators import Length, Optional

from portal.kernel.i18n import _l
from portal.provisioning.services import TOKEN_MAX, URL_MAX

STATE_LABELS = {
    "pending": _l("pending"),
    "delivered": _l("delivered"),
    "failed": _l("failed"),
}

EVENT_LABELS = {
    "seat.assigned": _l("Seat assigned"),
    "seat.released": _l("Seat released"),
    "user.deactivated": _l("Person deactivated"),
    "user.updated": _l("Profile changed"),
    "subscription.changed": _l("Subscription changed"),
}

CHANNEL_LABELS = {"scim": _l("SCIM"), "webhook": _l("Webhook")}

OUTCOME_LABELS = {
    "delivered": _l("delivered"),
    "retry": _l("to be tried again"),
    "failed": _l("failed"),
}


class SettingsForm(FlaskForm):
    """Where the vendor's changes go. A blank token field keeps the token stored."""

    scim_base_url = StringField(
        _l("SCIM base URL"),
        validators=[Optional(), Length(max=URL_MAX)],
        description=_l("For example https://app.example.com/scim/v2. Leave empty for no SCIM."),
    )
    scim_token = PasswordField(
        _l("SCIM bearer token"),
        validators=[Optional(), Length(max=TOKEN_MAX)],
        description=_l(
            "Stored encrypted and never shown again. Leave empty to keep the one stored."
        ),
    )
    remove_scim_token = BooleanField(_l("Remove the stored SCIM token"))
    on_release = SelectField(
        _l("When a seat is released"),
        choices=[
            SelectChoice("deactivate", _l("Deactivate the person at the vendor")),
            SelectChoice("delete", _l("Delete the person at the vendor")),
        ],
    )
    group_push = BooleanField(_l("Keep a SCIM group per product"))
    reconcile_fix = BooleanField(_l("Let the daily reconciliation fix the drift it finds"))
    webhook_url = StringField(
        _l("Webhook URL"),
        validators=[Optional(), Length(max=URL_MAX)],
        description=_l("Signed Standard Webhooks are POSTed here. Leave empty for none."),
    )
    submit = SubmitField(_l("Save the settings"))


class SecretForm(FlaskForm):
    submit = SubmitField(_l("Make a new signing secret"))


class RedeliverForm(FlaskForm):
    submit = SubmitField(_l("Deliver again"))


class DeliveryFilterForm(FlaskForm):
    """The log's filters (GET: no CSRF token, nothing changes)."""

    class Meta:
        csrf = False

    vendor = SelectField(_l("Vendor"), choices=[], validate_choice=False)
    state = SelectField(
        _l("State"),
        choices=[
            SelectChoice("", _l("Any state")),
            *(SelectChoice(k, v) for k, v in STATE_LABELS.items()),
        ],
        validate_choice=False,
    )
    event = SelectField(
        _l("Event"),
        choices=[
            SelectChoice("", _l("Any event")),
            *(SelectChoice(k, v) for k, v in EVENT_LABELS.items()),
        ],
        validate_choice=False,
    )
    person = StringField(_l("Person (email)"), validators=[Optional(), Length(max=254)])
    submit = SubmitField(_l("Filter"))
