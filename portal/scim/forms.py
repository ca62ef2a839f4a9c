"""Forms for the SCIM pages: tokens and group → product mappings."""

from flask_wtf import FlaskForm
from wtforms import SelectField, StringField, SubmitField
from wtforms.validators import InputRequired, Length

from portal.forms import EXPIRY_CHOICES, expiry_field
from portal.kernel.i18n import _l


class ScimTokenForm(FlaskForm):
    name = StringField(
        _l("Name"),
        validators=[InputRequired(), Length(max=200)],
        description=_l("Where the token is used, e.g. “Entra ID provisioning”."),
    )
    expires_in = expiry_field()
    submit = SubmitField(_l("Create SCIM token"))

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.expires_in.choices = EXPIRY_CHOICES


class MappingForm(FlaskForm):
    group = SelectField(_l("Group"), validators=[InputRequired()])
    product = SelectField(_l("Product"), validators=[InputRequired()])
    submit = SubmitField(_l("Map group to product"))
