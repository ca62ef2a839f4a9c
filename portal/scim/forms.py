"""Forms for the SCIM pages: tokens and group → product mappings."""

from flask_wtf import FlaskForm
from wtforms import SelectField, StringField, SubmitField
from wtforms.validators import InputRequired, Length


class ScimTokenForm(FlaskForm):
    name = StringField(
        "Name",
        validators=[InputRequired(), Length(max=200)],
        description="Where the token is used, e.g. “Entra ID provisioning”.",
    )
    submit = SubmitField("Create SCIM token")


class MappingForm(FlaskForm):
    group = SelectField("Group", validators=[InputRequired()])
    product = SelectField("Product", validators=[InputRequired()])
    submit = SubmitField("Map group to product")
