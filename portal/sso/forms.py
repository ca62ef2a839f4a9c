"""Forms for the SSO settings and the email domains pages."""

from flask_wtf import FlaskForm
from wtforms import BooleanField, PasswordField, StringField, SubmitField
from wtforms.validators import InputRequired, Length, Optional


class ConnectionForm(FlaskForm):
    issuer = StringField(
        "Issuer URL",
        validators=[InputRequired(), Length(max=500)],
        description="Your provider's issuer, e.g. https://login.example.com/realms/acme. "
        "The portal reads its /.well-known/openid-configuration.",
    )
    client_id = StringField("Client id", validators=[InputRequired(), Length(max=255)])
    client_secret = PasswordField(
        "Client secret",
        validators=[Optional(), Length(max=2000)],
        description="Stored encrypted. Leave empty to keep the secret already saved.",
    )
    enabled = BooleanField("Sign people in through this provider", default=True)
    jit_enabled = BooleanField(
        "Create an account at a person's first sign-in (role member)", default=True
    )
    group_claim = StringField(
        "Group claim",
        validators=[Optional(), Length(max=100)],
        description="Optional: the ID token claim listing a person's groups, e.g. groups.",
    )
    required_group = StringField(
        "Required group",
        validators=[Optional(), Length(max=255)],
        description="Optional: only people in this group may sign in (and get an account).",
    )
    enforce_sso = BooleanField("Turn off password sign-in for our verified domains")
    break_glass_email = StringField(
        "Break-glass admin",
        validators=[Optional(), Length(max=254)],
        description="The email of one of your admins who may still use a password "
        "(required when passwords are turned off).",
    )
    submit = SubmitField("Save")


class DomainForm(FlaskForm):
    domain = StringField(
        "Domain",
        validators=[InputRequired(), Length(max=253)],
        description="The part after @ in your people's email addresses, e.g. acme.example.",
    )
    submit = SubmitField("Claim domain")
