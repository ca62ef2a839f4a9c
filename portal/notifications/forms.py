"""Forms of the notifications pages: marking read (bare POST forms) and one's choices."""

from __future__ import annotations

from flask_wtf import FlaskForm
from wtforms import BooleanField, SubmitField

from portal.kernel.i18n import _l
from portal.notifications.kinds import GROUP_LABELS, Group


class MarkReadForm(FlaskForm):
    """A button with a CSRF token: mark one notification (or all) read."""

    submit = SubmitField(_l("Mark read"))


class PreferencesForm(FlaskForm):
    """What is mailed as well as shown in the portal, and the org admins' daily digest."""

    mail_incidents = BooleanField(GROUP_LABELS[Group.INCIDENTS])
    mail_standing = BooleanField(GROUP_LABELS[Group.STANDING])
    mail_operations = BooleanField(GROUP_LABELS[Group.OPERATIONS])
    digest = BooleanField(_l("A daily digest of what my organisation's people were told"))
    submit = SubmitField(_l("Save the choices"))
