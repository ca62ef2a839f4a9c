"""Forms for signing in, invitations, passwords and people."""

from flask_wtf import FlaskForm
from wtforms import (
    BooleanField,
    EmailField,
    HiddenField,
    PasswordField,
    SelectField,
    StringField,
    SubmitField,
)
from wtforms.validators import InputRequired, Length

from portal.identity.security import MAX_PASSWORD_LENGTH, MIN_PASSWORD_LENGTH

_new_password = [InputRequired(), Length(min=MIN_PASSWORD_LENGTH, max=MAX_PASSWORD_LENGTH)]


class LoginForm(FlaskForm):
    """Email and password in one POST; an email alone goes to its organisation's provider."""

    email = EmailField("Email", validators=[InputRequired(), Length(max=254)])
    # Optional here: with an empty password the email is routed to single sign-on if
    # its domain has it, and told to enter a password otherwise.
    password = PasswordField("Password", validators=[Length(max=MAX_PASSWORD_LENGTH)])
    next = HiddenField()
    submit = SubmitField("Sign in")
    sso = SubmitField("Continue with single sign-on")


class AcceptInvitationForm(FlaskForm):
    name = StringField("Your name", validators=[InputRequired(), Length(max=200)])
    password = PasswordField("Choose a password", validators=_new_password)
    submit = SubmitField("Create my account")


class ForgotPasswordForm(FlaskForm):
    email = EmailField("Email", validators=[InputRequired(), Length(max=254)])
    submit = SubmitField("Send me a reset link")


class ResetPasswordForm(FlaskForm):
    password = PasswordField("New password", validators=_new_password)
    submit = SubmitField("Set password")


class ProfileForm(FlaskForm):
    name = StringField("Name", validators=[InputRequired(), Length(max=200)])
    submit = SubmitField("Save")


class ChangePasswordForm(FlaskForm):
    current_password = PasswordField("Current password", validators=[InputRequired()])
    new_password = PasswordField("New password", validators=_new_password)
    submit = SubmitField("Change password")


class InviteForm(FlaskForm):
    email = EmailField("Email", validators=[InputRequired(), Length(max=254)])
    role = SelectField("Role")
    submit = SubmitField("Send invitation")


class RoleForm(FlaskForm):
    role = SelectField("Role")
    submit = SubmitField("Change role")


class ConfirmForm(FlaskForm):
    """A bare POST form: a button with a CSRF token."""

    submit = SubmitField("Confirm")


class PasskeyRegisterForm(FlaskForm):
    """A passkey's name, and the browser's answer that static/js/passkeys.js fills in."""

    name = StringField("Name for this passkey", validators=[Length(max=100)])
    credential = HiddenField()
    submit = SubmitField("Add a passkey")


class PasskeyRenameForm(FlaskForm):
    name = StringField("New name", validators=[InputRequired(), Length(max=100)])
    submit = SubmitField("Rename")


class PasskeySignInForm(FlaskForm):
    """The second sign-in step with a passkey: the browser's answer, filled in by the script."""

    credential = HiddenField()
    submit = SubmitField("Use a passkey")


class SecondFactorForm(FlaskForm):
    """The second sign-in step: a code from the authenticator app, or a recovery code."""

    code = StringField(
        "Code",
        validators=[InputRequired(), Length(max=64)],
        description="The 6-digit code your authenticator app shows, or one of your recovery codes.",
    )
    submit = SubmitField("Verify")


class TotpConfirmForm(FlaskForm):
    code = StringField(
        "Code from the app", validators=[InputRequired(), Length(max=16)], description=""
    )
    submit = SubmitField("Confirm")


class TotpRemoveForm(FlaskForm):
    """Removing the authenticator app: proven with a current code or the password."""

    code = StringField("Current code from the app", validators=[Length(max=16)])
    password = PasswordField("Or your password", validators=[Length(max=MAX_PASSWORD_LENGTH)])
    submit = SubmitField("Remove the authenticator app")


class RequireSecondFactorForm(FlaskForm):
    required = BooleanField("Require a second factor for everyone")
    submit = SubmitField("Save")
