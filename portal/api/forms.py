"""The forms for creating API tokens on the Tokens pages.

Choices are set per instance: WTForms 3.3 deprecates tuples given to a field's constructor.
"""

from flask_wtf import FlaskForm
from wtforms import SelectField, StringField, SubmitField
from wtforms.validators import InputRequired, Length

from portal.kernel.i18n import _l

# 90 days is preselected (and the service's default); "never" must be chosen.
NEVER = "never"
EXPIRY_CHOICES = [
    ("30", "In 30 days"),
    ("90", "In 90 days"),
    ("365", "In a year"),
    (NEVER, "Never (until revoked)"),
]
SCOPE_CHOICES = [
    ("council", "Council (everything)"),
    ("organisation", "One organisation"),
    ("vendor", "One vendor (usage and entitlements)"),
]


class OrgTokenForm(FlaskForm):
    """An org admin names a token for their own organisation."""

    name = StringField(
        _l("Name"),
        validators=[InputRequired(), Length(max=200)],
        description=_l("What the token is for, e.g. “HR system sync”."),
    )
    expires_in = SelectField(
        _l("Expires"),
        default="90",
        description=_l("A token that never expires keeps working until someone revokes it."),
    )
    submit = SubmitField(_l("Create token"))

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.expires_in.choices = EXPIRY_CHOICES


class CouncilTokenForm(OrgTokenForm):
    """Council admins also choose the scope and, for it, the organisation or vendor."""

    scope = SelectField(_l("Scope"))
    # The organisation's slug typed, not chosen from a list: a council has thousands.
    organisation = StringField(
        _l("Organisation's slug (for an organisation token)"), validators=[Length(max=63)]
    )
    vendor = SelectField(_l("Vendor (for a vendor token)"))

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.scope.choices = SCOPE_CHOICES
