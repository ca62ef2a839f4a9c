"""Forms for usage pages."""

from flask_wtf import FlaskForm
from flask_wtf.file import FileAllowed, FileField, FileRequired
from wtforms import IntegerField, SubmitField
from wtforms.validators import InputRequired, NumberRange

from portal.kernel.i18n import _l


class UsageUploadForm(FlaskForm):
    file = FileField(
        _l("CSV file"),
        validators=[
            FileRequired(_l("Choose a CSV file.")),
            FileAllowed(["csv"], _l("Upload a .csv file.")),
        ],
        description=_l(
            "Header: idempotency_key, organisation, product, meter, quantity, occurred_at "
            "and optionally user_email, properties (JSON). At most 10,000 rows. Rows are checked "
            "as API events are: a row counts only for an organisation subscribed to the product "
            "on its day, for that organisation's people; rejected rows are listed by line."
        ),
    )
    submit = SubmitField(_l("Upload usage"))


class KeepSeatForm(FlaskForm):
    days = IntegerField(
        _l("Keep for (days)"),
        default=30,
        validators=[InputRequired(), NumberRange(min=1, max=365)],
    )
    submit = SubmitField(_l("Keep"))
