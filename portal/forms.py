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
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from flask import flash
from flask_wtf import FlaskForm

from portal.db import db_session
from portal.kernel.errors import DomainError


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
            form[name].errors = list(form[name].errors or []) + list(messages)
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
        db_session().commit()
        saved.ok = True
