"""Forms for usage pages."""

from flask_wtf import FlaskForm
from flask_wtf.file import FileAllowed, FileField, FileRequired
from wtforms import IntegerField, SubmitField
from wtforms.validators import InputRequired, NumberRange


class UsageUploadForm(FlaskForm):
    file = FileField(
        "CSV file",
        validators=[
            FileRequired("Choose a CSV file."),
            FileAllowed(["csv"], "Upload a .csv file."),
        ],
        description="Header: idempotency_key, organisation, product, meter, quantity, occurred_at "
        "and optionally user_email, properties (JSON). At most 10,000 rows. Rows are checked "
        "as API events are: a row counts only for an organisation subscribed to the product "
        "on its day, for that organisation's people; rejected rows are listed by line.",
    )
    submit = SubmitField("Upload usage")


class KeepSeatForm(FlaskForm):
    days = IntegerField(
        "Keep for (days)", default=30, validators=[InputRequired(), NumberRange(min=1, max=365)]
    )
    submit = SubmitField("Keep")
