"""Form helpers shared by every domain's pages.

Forms carry CSRF protection and HTML hints (``required``, ``maxlength``). The
rules themselves live in the services: a view passes the form's data to a
service and, on :class:`~portal.errors.ValidationFailed`, shows each message
beside its field with :func:`show_errors`.
"""

from __future__ import annotations

from typing import Any

from flask import flash
from flask_wtf import FlaskForm

from portal.errors import DomainError


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
