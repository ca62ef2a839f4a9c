"""Forms for the SSO settings and the email domains pages."""

from flask_wtf import FlaskForm
from wtforms import BooleanField, PasswordField, StringField, SubmitField
from wtforms.validators import InputRequired, Length, Optional

from portal.kernel.i18n import _l


class ConnectionForm(FlaskForm):
    issuer = StringField(
        _l("Issuer URL"),
        validators=[InputRequired(), Length(max=500)],
        description=_l(
            "Your provider's issuer, e.g. https://login.example.com/realms/acme. "
            "The portal reads its /.well-known/openid-configuration."
        ),
    )
    client_id = StringField(_l("Client id"), validators=[InputRequired(), Length(max=255)])
    client_secret = PasswordField(
        _l("Client secret"),
        validators=[Optional(), Length(max=2000)],
        description=_l("Stored encrypted. Leave empty to keep the secret already saved."),
    )
    enabled = BooleanField(_l("Sign people in through this provider"), default=True)
    jit_enabled = BooleanField(
        _l("Create an account at a person's first sign-in (role member)"), default=True
    )
    group_claim = StringField(
        _l("Group claim"),
        validators=[Optional(), Length(max=100)],
        description=_l("Optional: the ID token claim listing a person's groups, e.g. groups."),
    )
    required_group = StringField(
        _l("Required group"),
        validators=[Optional(), Length(max=255)],
        description=_l("Optional: only people in this group may sign in (and get an account)."),
    )
    enforce_sso = BooleanField(_l("Turn off password sign-in for our verified domains"))
    break_glass_email = StringField(
        _l("Break-glass admin"),
        validators=[Optional(), Length(max=254)],
        description=_l(
            "The email of one of your admins who may still use a password "
            "(required when passwords are turned off)."
        ),
    )
    submit = SubmitField(_l("Save"))


class DomainForm(FlaskForm):
    domain = StringField(
        _l("Domain"),
        validators=[InputRequired(), Length(max=253)],
        description=_l("The part after @ in your people's email addresses, e.g. acme.example."),
    )
    submit = SubmitField(_l("Claim domain"))
