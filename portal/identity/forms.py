"""Forms for signing in, invitations, passwords and people."""

from flask_wtf import FlaskForm
from wtforms import EmailField, HiddenField, PasswordField, SelectField, StringField, SubmitField
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
