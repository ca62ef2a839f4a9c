"""Form helpers shared by every domain's pages.

Forms carry CSRF protection and HTML hints (``required``, ``maxlength``). The
rules themselves live in the services: a view passes the form's data to a
service inside :func:`committed`, which commits the request's transaction when
the service succeeds and, on a domain error such as
:class:`~portal.errors.ValidationFailed`, rolls it back and shows each message
beside its field (:func:`show_errors`)::

    if form.validate_on_submit():
        with committed(form) as saved:
            meter = services.meter_create(db_session(), actor=g.actor, ...)
        if saved:
            flash(f"Meter “{meter.key}” is added.", "success")
            return redirect(...)
    return page(form, status=400)

Every field's error on the first submit (issue 14): with ``validate_on_submit`` a form
whose own checks fail (a tax rate that is not a number) never reaches its service, so
the service's checks (a slug already taken, an email refused) only show after the
next submit. A view that wants them all at once asks :func:`submitted` instead, and
runs its service inside :func:`committed` even when fields are wrong: the service's
messages join the fields' own, and nothing is kept (the block is rolled back
whenever the form has errors)::

    if submitted(form):
        with committed(form) as saved:
            org = services.organisation_create(db_session(), actor=g.actor, data=...)
        if saved:
            ...

The values typed stay in the form (WTForms keeps them), so the page shows them again
beside their messages.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from typing import Any

from flask import flash, render_template, request
from flask.typing import ResponseReturnValue
from flask_wtf import FlaskForm
from wtforms import SelectField

from portal.db import db_session
from portal.kernel.clock import now_utc
from portal.kernel.errors import DomainError
from portal.kernel.i18n import _l

#: A bearer token's term on the pages that make one (API and SCIM tokens): 90 days is
#: preselected (the services' default); "never" must be chosen.
NEVER = "never"
EXPIRY_CHOICES = [
    ("30", _l("In 30 days")),
    ("90", _l("In 90 days")),
    ("365", _l("In a year")),
    (NEVER, _l("Never (until revoked)")),
]


def expiry_field() -> SelectField:
    """The "Expires" choice of a token form (give it :data:`EXPIRY_CHOICES` per instance)."""
    return SelectField(
        _l("Expires"),
        default="90",
        description=_l("A token that never expires keeps working until someone revokes it."),
    )


def expiry_arguments(choice: str) -> dict[str, Any]:
    """A token service's expiry arguments for a validated :func:`expiry_field` choice."""
    if choice == NEVER:
        return {"never_expires": True}
    return {"expires_at": now_utc() + dt.timedelta(days=int(choice))}


def form_values(form: FlaskForm, *names: str) -> dict[str, Any]:
    """The submitted values of ``names`` (all fields but the CSRF token when none given)."""
    fields = names or tuple(n for n in form._fields if n not in ("csrf_token", "submit"))
    return {name: form[name].data for name in fields}


def show_errors(form: FlaskForm, error: DomainError, aliases: dict[str, str] | None = None) -> None:
    """Attach a domain error's field messages to the form, and flash the rest."""
    aliases = aliases or {}
    unplaced = []
    for field, messages in (error.errors or {}).items():
        name = aliases.get(field, field)
        if name in form._fields:
            if form[name].errors:
                continue  # the field's own message already says what is wrong with it
            form[name].errors = list(messages)
        else:
            unplaced.extend(messages)
    if not error.errors or unplaced:
        flash(error.detail if not unplaced else f"{error.detail} {' '.join(unplaced)}", "error")


class Saved:
    """Whether the block of :func:`committed` succeeded and was committed (true) or not."""

    def __init__(self) -> None:
        self.ok = False

    def __bool__(self) -> bool:
        return self.ok


@contextmanager
def committed(form: FlaskForm, *, aliases: dict[str, str] | None = None) -> Iterator[Saved]:
    """Run a page's service calls in the request's transaction, for ``form``.

    When the block finishes, the transaction is committed and the :class:`Saved`
    it yields turns true. When a service raises a
    :class:`~portal.errors.DomainError`, the transaction is rolled back (nothing
    of the block is kept), the error's messages go beside the form's fields
    (``aliases`` maps a service's field names to the form's), and the block's
    ``Saved`` stays false, so the view shows the form again. Other exceptions
    pass through.
    """
    saved = Saved()
    try:
        yield saved
    except DomainError as error:
        db_session().rollback()
        show_errors(form, error, aliases)
    else:
        if has_errors(form):  # the block ran only to find the service's messages too
            db_session().rollback()
            return
        db_session().commit()
        saved.ok = True


def has_errors(form: FlaskForm) -> bool:
    """Whether any field of ``form`` carries a message."""
    return any(field.errors for field in form)


def submitted(form: FlaskForm) -> bool:
    """Whether ``form`` was posted with a valid CSRF token; every field's checks have run.

    Unlike ``validate_on_submit`` it is true when some fields are wrong: the view then
    runs its service in :func:`committed` all the same, so the service's messages show
    beside the fields' own on the first submit, and :func:`committed` keeps nothing.
    A missing or stale CSRF token answers false (nothing may run).
    """
    if not form.is_submitted():
        return False
    form.validate()
    csrf = form._fields.get("csrf_token")
    return not (csrf is not None and csrf.errors)


# ---------------------------------------------------------------- confirming irreversible actions

#: The field a confirm step posts back: the action goes ahead only when it is "1".
CONFIRMED = "confirmed"


def is_confirmed() -> bool:
    """Whether this POST carries the confirm step's ``confirmed=1``."""
    return request.method == "POST" and request.form.get(CONFIRMED) == "1"


def confirmation_needed(
    *,
    title: str,
    consequences: Iterable[str],
    confirm_label: str,
    cancel_url: str,
) -> ResponseReturnValue | None:
    """Ask before an irreversible action: None when the POST is confirmed, else the confirm page.

    A view calls it after checking its form (CSRF included) and before changing
    anything; when it answers a page, the view returns that page and nothing is done::

        page = confirmation_needed(
            title=_("Release the seat of %(email)s?", email=email),
            consequences=[_("…"), _("…")],
            confirm_label=_("Release the seat"),
            cancel_url=url_for("seats.subscription_detail", sub_id=sub.id),
        )
        if page is not None:
            return page

    The page (templates/confirm.html) says what will happen, one sentence per item of
    ``consequences``, and holds a form that posts the same fields again to the same
    address with a fresh CSRF token and ``confirmed=1``, so it works without
    JavaScript; "Cancel" goes back to ``cancel_url`` (the view's own page, never the
    Referer) having changed nothing.
    """
    if is_confirmed():
        return None
    fields = [
        (name, value)
        for name, value in request.form.items(multi=True)
        if name not in ("csrf_token", CONFIRMED)
    ]
    action = request.path
    if request.query_string:
        action += "?" + request.query_string.decode("utf-8", "replace")
    page = render_template(
        "confirm.html",
        title=title,
        consequences=list(consequences),
        confirm_label=confirm_label,
        cancel_url=cancel_url,
        action=action,
        fields=fields,
    )
    return page, 200
