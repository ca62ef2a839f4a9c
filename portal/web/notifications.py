"""Notifications (issue 15): a person's notifications list, its unread count, and their choices.

* ``/notifications``: one's own notifications, unread first (``?show=unread``: only those),
  each with its link and a "Mark read" button; "Mark all read".
* ``/notifications/settings``: what is mailed as well (by group), and the digest.
* Every page's header shows "Notifications (3)" for a signed-in person: one query per page
  (:func:`unread_for_header`, cached for the request, never an error).
"""

from __future__ import annotations

import logging
from typing import Any

from flask import (
    Blueprint,
    flash,
    g,
    has_request_context,
    redirect,
    render_template,
    request,
    url_for,
)
from flask_login import current_user

from portal.db import db_session, is_database_unavailable
from portal.forms import committed
from portal.identity import auth
from portal.kernel.actor import Role
from portal.kernel.i18n import _, _n
from portal.kernel.policy import Action
from portal.notifications import selectors, services
from portal.notifications.forms import MarkReadForm, PreferencesForm
from portal.notifications.selectors import COUNT_CAP

bp = Blueprint("notifications", __name__)
log = logging.getLogger("portal.notifications")

_UNREAD_KEY = "portal_notifications_unread"


def unread_for_header() -> int | None:
    """The signed-in person's unread count for the header (None: nobody, or unknown)."""
    if not has_request_context() or not current_user.is_authenticated:
        return None
    if _UNREAD_KEY not in g:
        try:
            count: int | None = selectors.unread_count(db_session(), actor=auth.current_actor())
        except Exception as exc:
            if is_database_unavailable(exc):
                # Not swallowed: the session's transaction is dead, and the page's next
                # statement would fail on it as an "unhandled" error. Raised, the page answers
                # 503 like any other (an error page drawn then is the layout-free 503 page).
                raise
            log.debug("Unread notifications could not be counted", exc_info=True)
            count = None
        setattr(g, _UNREAD_KEY, count)
    return g.get(_UNREAD_KEY)


@bp.app_context_processor
def _header_helpers() -> dict:
    return {"notifications_unread": unread_for_header, "notifications_badge": badge}


def badge(count: int) -> str:
    """An unread count as the header shows it: ``3``, or ``99+`` from the cap on."""
    return f"{COUNT_CAP - 1}+" if count >= COUNT_CAP else str(count)


def _show() -> str:
    return "unread" if request.args.get("show") == "unread" else "all"


@bp.get("/notifications")
@auth.action_required(Action.NOTIFICATION_READ)
def index():
    """One's notifications, unread first, newest first; 25 a page."""
    show = _show()
    page = request.args.get("page", 1, type=int) or 1
    found = selectors.notifications_page(
        db_session(), actor=g.actor, page=page, unread_only=show == "unread"
    )
    return render_template(
        "notifications/index.html",
        page=found,
        show=show,
        unread=unread_for_header() or 0,
    )


def _back() -> str:
    show = "unread" if request.form.get("show") == "unread" else None
    page = request.form.get("page", 1, type=int) or 1
    args: dict[str, Any] = {"show": show, "page": page if page > 1 else None}
    return url_for("notifications.index", **{k: v for k, v in args.items() if v})


@bp.post("/notifications/<int:notification_id>/read")
@auth.action_required(Action.NOTIFICATION_READ)
def mark_read(notification_id: int):
    """Mark one of one's own notifications read (another's: 404)."""
    selectors.notification_of(db_session(), actor=g.actor, notification_id=notification_id)
    form = MarkReadForm()
    if form.validate_on_submit():
        with committed(form) as saved:
            services.mark_read(db_session(), actor=g.actor, notification_id=notification_id)
        if saved:
            flash(_("Marked read."), "success")
    else:
        flash(_("The form expired; nothing was changed. Try again."), "error")
    return redirect(_back())


@bp.post("/notifications/read-all")
@auth.action_required(Action.NOTIFICATION_READ)
def mark_all_read():
    """Mark every one of one's unread notifications read."""
    form = MarkReadForm()
    if form.validate_on_submit():
        with committed(form) as saved:
            count = services.mark_all_read(db_session(), actor=g.actor)
        if saved:
            flash(
                _n(
                    "%(num)d notification marked read.", "%(num)d notifications marked read.", count
                ),
                "success",
            )
    else:
        flash(_("The form expired; nothing was changed. Try again."), "error")
    return redirect(url_for("notifications.index"))


def _preferences_page(form: PreferencesForm | None = None, status: int = 200):
    user = current_user.user
    if form is None:
        chosen = services.preferences_of(db_session(), user_id=user.id)
        form = PreferencesForm(
            formdata=None,
            mail_incidents=chosen.mail_incidents,
            mail_standing=chosen.mail_standing,
            mail_operations=chosen.mail_operations,
            digest=chosen.digest,
        )
    return render_template(
        "notifications/preferences.html",
        form=form,
        **_shown_choices(user),
    ), status


def _shown_choices(user: Any) -> dict[str, bool]:
    """Which of the choices concern this person: the digest (org admins), council work."""
    return {
        "is_org_admin": user.organisation_id is not None and user.role == Role.ORG_ADMIN,
        "is_council": user.organisation_id is None and user.vendor_id is None,
    }


@bp.get("/notifications/settings")
@auth.action_required(Action.NOTIFICATION_READ)
def preferences():
    """One's choices: what is mailed as well as shown here, and the daily digest."""
    return _preferences_page()


@bp.post("/notifications/settings")
@auth.action_required(Action.NOTIFICATION_READ)
def preferences_save():
    """Save one's choices."""
    form = PreferencesForm()
    user = current_user.user
    if form.validate_on_submit():
        # A choice the page did not show (the digest to a member) stays as it was.
        kept = services.preferences_of(db_session(), user_id=user.id)
        shown = _shown_choices(user)
        with committed(form) as saved:
            services.preferences_update(
                db_session(),
                actor=g.actor,
                user=user,
                mail_incidents=bool(form.mail_incidents.data),
                mail_standing=bool(form.mail_standing.data),
                mail_operations=bool(form.mail_operations.data)
                if shown["is_council"]
                else kept.mail_operations,
                digest=bool(form.digest.data) if shown["is_org_admin"] else kept.digest,
            )
        if saved:
            flash(_("Your notification choices are saved."), "success")
            return redirect(url_for("notifications.preferences"))
    return _preferences_page(form, status=400)
