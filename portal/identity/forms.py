"""Forms for signing in, invitations, passwords and people."""

from flask_wtf import FlaskForm
from wtforms import (
    BooleanField,
    EmailField,
    HiddenField,
    PasswordField,
    RadioField,
    SelectField,
    StringField,
    SubmitField,
)
from wtforms.fields.choices import SelectChoice
from wtforms.validators import InputRequired, Length

from portal.identity.security import MAX_PASSWORD_LENGTH, MIN_PASSWORD_LENGTH
from portal.kernel.i18n import _l

_new_password = [InputRequired(), Length(min=MIN_PASSWORD_LENGTH, max=MAX_PASSWORD_LENGTH)]


class LoginForm(FlaskForm):
    """Email and password in one POST; an email alone goes to its organisation's provider."""

    email = EmailField(_l("Email"), validators=[InputRequired(), Length(max=254)])
    # Optional here: with an empty password the email is routed to single sign-on if
    # its domain has it, and told to enter a password otherwise.
    password = PasswordField(_l("Password"), validators=[Length(max=MAX_PASSWORD_LENGTH)])
    next = HiddenField()
    submit = SubmitField(_l("Sign in"))
    sso = SubmitField(_l("Continue with single sign-on"))


class AcceptInvitationForm(FlaskForm):
    name = StringField(_l("Your name"), validators=[InputRequired(), Length(max=200)])
    password = PasswordField(_l("Choose a password"), validators=_new_password)
    submit = SubmitField(_l("Create my account"))


class ForgotPasswordForm(FlaskForm):
    email = EmailField(_l("Email"), validators=[InputRequired(), Length(max=254)])
    submit = SubmitField(_l("Send me a reset link"))


class ResetPasswordForm(FlaskForm):
    password = PasswordField(_l("New password"), validators=_new_password)
    submit = SubmitField(_l("Set password"))


class ProfileForm(FlaskForm):
    name = StringField(_l("Your name"), validators=[InputRequired(), Length(max=200)])
    submit = SubmitField(_l("Save"))


class ChangePasswordForm(FlaskForm):
    current_password = PasswordField(_l("Current password"), validators=[InputRequired()])
    new_password = PasswordField(_l("New password"), validators=_new_password)
    submit = SubmitField(_l("Change password"))


class InviteForm(FlaskForm):
    email = EmailField(_l("Email"), validators=[InputRequired(), Length(max=254)])
    role = SelectField(_l("Role"))
    submit = SubmitField(_l("Send invitation"))


class RoleForm(FlaskForm):
    role = SelectField(_l("Role"))
    submit = SubmitField(_l("Change role"))


class ConfirmForm(FlaskForm):
    """A bare POST form: a button with a CSRF token."""

    submit = SubmitField(_l("Confirm"))


class PasskeyRegisterForm(FlaskForm):
    """A passkey's name, and the browser's answer that static/js/passkeys.js fills in."""

    name = StringField(_l("Name for this passkey"), validators=[Length(max=100)])
    credential = HiddenField()
    submit = SubmitField(_l("Add a passkey"))


class PasskeyRenameForm(FlaskForm):
    name = StringField(_l("New name"), validators=[InputRequired(), Length(max=100)])
    submit = SubmitField(_l("Rename"))


class PasskeySignInForm(FlaskForm):
    """The second sign-in step with a passkey: the browser's answer, filled in by the script."""

    credential = HiddenField()
    submit = SubmitField(_l("Use a passkey"))


class SecondFactorForm(FlaskForm):
    """The second sign-in step: a code from the authenticator app, or a recovery code."""

    code = StringField(
        _l("Code"),
        validators=[InputRequired(), Length(max=64)],
        description=_l(
            "The 6-digit code your authenticator app shows, or one of your recovery codes."
        ),
    )
    submit = SubmitField(_l("Verify"))


class TotpConfirmForm(FlaskForm):
    code = StringField(
        _l("Code from the app"), validators=[InputRequired(), Length(max=16)], description=""
    )
    submit = SubmitField(_l("Confirm"))


class TotpRemoveForm(FlaskForm):
    """Removing the authenticator app: proven with a current code or the password."""

    code = StringField(_l("Current code from the app"), validators=[Length(max=16)])
    password = PasswordField(_l("Or your password"), validators=[Length(max=MAX_PASSWORD_LENGTH)])
    submit = SubmitField(_l("Remove the authenticator app"))


class RequireSecondFactorForm(FlaskForm):
    required = BooleanField(_l("Require a second factor for everyone"))
    submit = SubmitField(_l("Save"))


class LanguageForm(FlaskForm):
    """The language of one's pages and mail: English, Russian, or the browser's (no choice)."""

    # Each language named in itself; "" is no choice: the browser's Accept-Language.
    language = RadioField(
        _l("Language"),
        choices=[
            SelectChoice("", _l("The browser's language")),
            SelectChoice("en", "English"),
            SelectChoice("ru", "Русский"),
        ],
        default="",
    )
    submit = SubmitField(_l("Save the language"))
