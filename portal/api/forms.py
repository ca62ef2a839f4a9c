"""The forms for creating API tokens on the Tokens pages.

Choices are set per instance: WTForms 3.3 deprecates tuples given to a field's constructor.
"""

from flask_wtf import FlaskForm
from wtforms import SelectField, StringField, SubmitField
from wtforms.validators import InputRequired, Length

from portal.forms import EXPIRY_CHOICES, expiry_field
from portal.kernel.i18n import _l

SCOPE_CHOICES = [
    ("council", _l("Council (everything)")),
    ("organisation", _l("One organisation")),
    ("vendor", _l("One vendor (usage and entitlements)")),
]


class OrgTokenForm(FlaskForm):
    """An org admin names a token for their own organisation."""

    name = StringField(
        _l("Name"),
        validators=[InputRequired(), Length(max=200)],
        description=_l("What the token is for, e.g. “HR system sync”."),
    )
    expires_in = expiry_field()
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
