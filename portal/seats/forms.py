"""Forms for subscriptions, seats and seat requests.

Choices are set per instance: WTForms 3.3 deprecates tuples given to a field's
constructor.
"""

from __future__ import annotations

import re
from typing import Any

from flask_wtf import FlaskForm
from wtforms import (
    BooleanField,
    EmailField,
    HiddenField,
    IntegerField,
    RadioField,
    StringField,
    SubmitField,
    TextAreaField,
)
from wtforms.validators import InputRequired, Length, Optional

from portal.kernel.i18n import _l

# What each ``on_shortage`` choice does, in plain words.
ON_SHORTAGE_CHOICES = [
    (
        "reject",
        _l("All or nothing: if not every seat is free, take none and tell me."),
    ),
    (
        "waitlist",
        _l(
            "Take the free seats now and put the rest on the waitlist; they are added "
            "automatically, first come first served, as seats free up."
        ),
    ),
    (
        "partial",
        _l("Take the free seats now and forget the rest."),
    ),
]
BULK_MAX_EMAILS = 500


def _shortage_field() -> RadioField:
    return RadioField(_l("If not enough seats are free"), default="reject")


class SubscribeForm(FlaskForm):
    """An org admin reserves seats of a product for the organisation."""

    quantity = IntegerField(_l("Seats"), validators=[InputRequired()], render_kw={"min": "1"})
    on_shortage = _shortage_field()
    submit = SubmitField(_l("Subscribe"))

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.on_shortage.choices = ON_SHORTAGE_CHOICES


class ResizeForm(SubscribeForm):
    """Change the seats reserved."""

    submit = SubmitField(_l("Change seats"))


class CancelForm(FlaskForm):
    """Cancel a subscription; the box makes sure it is meant."""

    confirm = BooleanField(
        _l("Yes, cancel: every assigned seat is released"),
        validators=[InputRequired(_l("Tick the box to confirm."))],
    )
    submit = SubmitField(_l("Cancel subscription"))


class AssignForm(FlaskForm):
    """Give one person a seat."""

    user_email = EmailField(
        _l("Email"),
        validators=[InputRequired(), Length(max=254)],
        description=_l("Someone without an account yet gets an invitation."),
    )
    submit = SubmitField(_l("Assign seat"))


class BulkAssignForm(FlaskForm):
    """Give several people a seat at once."""

    emails = TextAreaField(
        _l("Emails"),
        validators=[InputRequired(), Length(max=30_000)],
        description=_l(
            "One per line (or separated by commas); up to %(max)d.", max=BULK_MAX_EMAILS
        ),
        render_kw={"rows": 5},
    )
    submit = SubmitField(_l("Assign seats"))

    def email_list(self) -> list[str]:
        """The addresses typed, in order, blanks dropped."""
        return [e for e in re.split(r"[\s,;]+", self.emails.data or "") if e]


class ReleaseForm(FlaskForm):
    """Take a seat back from a person."""

    user_email = HiddenField(validators=[InputRequired()])
    submit = SubmitField(_l("Release"))


class SeatRequestForm(FlaskForm):
    """A person asks their org admin for a seat."""

    note = StringField(
        _l("Note for your admin"),
        validators=[Optional(), Length(max=1000)],
        description=_l("Optional."),
    )
    submit = SubmitField(_l("Request a seat"))


class DecisionForm(FlaskForm):
    """An org admin approves or declines a seat request."""

    note = StringField(_l("Note to the person"), validators=[Optional(), Length(max=1000)])
    submit = SubmitField(_l("Confirm"))
