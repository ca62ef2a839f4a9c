"""Sign-in sessions pages: one's own (``/account/sessions``) and, for council
admins, any person's (from the organisation's people page or council staff)."""

from __future__ import annotations

from typing import Any

from flask import Blueprint, abort, flash, redirect, render_template, url_for
from flask_login import current_user, login_required

from portal.db import db_session
from portal.forms import committed
from portal.identity import auth, selectors, sessions
from portal.identity.forms import ConfirmForm
from portal.kernel.i18n import _
from portal.kernel.policy import Action, Reach
from portal.kernel.scope import Scope
from portal.tenancy.selectors import organisation_by_slug

bp = Blueprint("sessions", __name__)


def _render(user: Any, *, back: str | None, own: bool, slug: str | None = None):
    rows = sessions.sessions_active(db_session(), actor=auth.current_actor(), user=user)
    token = current_user.token if own else None
    return render_template(
        "identity/sessions.html",
        person=user,
        own=own,
        slug=slug,
        back=back,
        rows=[
            {
                "row": row,
                "device": sessions.device_label(row.user_agent),
                "current": sessions.is_current(row, token),
            }
            for row in rows
        ],
    )


def _revoke(user: Any, session_id: int | None, *, keep: str | None, done: str):
    if session_id is not None:  # another's session, or one already ended: 404
        sessions.session_of(
            db_session(), actor=auth.current_actor(), user=user, session_id=session_id
        )
    form = ConfirmForm()
    if form.validate_on_submit():
        with committed(form) as saved:
            if session_id is None:
                sessions.sessions_revoke_all(
                    db_session(), actor=auth.current_actor(), user=user, keep_token=keep
                )
            else:
                sessions.session_revoke_one(
                    db_session(), actor=auth.current_actor(), user=user, session_id=session_id
                )
        if saved:
            flash(done, "success")
    else:
        flash(_("The form expired; nothing was changed. Try again."), "error")


# ---------------------------------------------------------------- one's own


@bp.get("/account/sessions")
@login_required
def mine():
    """Where one is signed in, with a button to sign each out."""
    return _render(current_user.user, back=url_for("auth.profile"), own=True)


@bp.post("/account/sessions/<int:session_id>/revoke")
@login_required
def mine_revoke(session_id: int):
    """Sign out one of one's own sessions (the current one too: that is signing out)."""
    user = current_user.user
    _revoke(user, session_id, keep=None, done=_("That session is signed out."))
    return redirect(url_for("sessions.mine"))


@bp.post("/account/sessions/revoke-all")
@login_required
def mine_revoke_all():
    """Sign out everywhere but here."""
    _revoke(
        current_user.user,
        None,
        keep=current_user.token,
        done=_("Your other sessions are signed out."),
    )
    return redirect(url_for("sessions.mine"))


# ---------------------------------------------------------------- council admins


def _person(slug: str | None, user_id: int) -> Any:
    org = organisation_by_slug(db_session(), slug) if slug is not None else None
    if org is None:  # council staff
        return selectors.user_in_scope(
            db_session(), scope=Scope.council(), staff_only=True, user_id=user_id
        )
    return selectors.user_in_scope(db_session(), scope=Scope.organisation(org.id), user_id=user_id)


def _council_page(slug: str | None, user_id: int) -> str:
    if slug is None:
        return url_for("sessions.staff_sessions", user_id=user_id)
    return url_for("sessions.council_sessions", slug=slug, user_id=user_id)


@bp.get("/council/organisations/<slug>/users/<int:user_id>/sessions")
@auth.action_required(Action.SESSION_READ, Reach.ANY)
def council_sessions(slug: str, user_id: int):
    """A person's sessions, for council admins."""
    back = url_for("people.council_org_users", slug=slug)
    return _render(_person(slug, user_id), back=back, own=False, slug=slug)


@bp.get("/council/staff/<int:user_id>/sessions")
@auth.action_required(Action.SESSION_READ, Reach.ANY)
def staff_sessions(user_id: int):
    """A council staff member's sessions, for council admins."""
    return _render(_person(None, user_id), back=url_for("people.staff_users"), own=False)


def _end(slug: str | None, user_id: int, session_id: int | None):
    user = _person(slug, user_id)
    if user.id == current_user.id:
        abort(404)  # one's own sessions are ended from /account/sessions
    done = (
        _("The session is ended.")
        if session_id
        else _("All of %(email)s's sessions are ended.", email=user.email)
    )
    _revoke(user, session_id, keep=None, done=done)
    return redirect(_council_page(slug, user_id))


@bp.post("/council/organisations/<slug>/users/<int:user_id>/sessions/<int:session_id>/end")
@auth.action_required(Action.SESSION_REVOKE, Reach.ANY)
def council_end(slug: str, user_id: int, session_id: int):
    """End one of a person's sessions."""
    return _end(slug, user_id, session_id)


@bp.post("/council/organisations/<slug>/users/<int:user_id>/sessions/end-all")
@auth.action_required(Action.SESSION_REVOKE, Reach.ANY)
def council_end_all(slug: str, user_id: int):
    """End all of a person's sessions."""
    return _end(slug, user_id, None)


@bp.post("/council/staff/<int:user_id>/sessions/<int:session_id>/end")
@auth.action_required(Action.SESSION_REVOKE, Reach.ANY)
def staff_end(user_id: int, session_id: int):
    """End one of a staff member's sessions."""
    return _end(None, user_id, session_id)


@bp.post("/council/staff/<int:user_id>/sessions/end-all")
@auth.action_required(Action.SESSION_REVOKE, Reach.ANY)
def staff_end_all(user_id: int):
    """End all of a staff member's sessions."""
    return _end(None, user_id, None)
