"""The language switcher: a small form in every page's header (works without JavaScript).

Signed in, the choice is saved in the profile (``users.locale``) and follows the person to
every device and into their mail; before signing in it is kept in a cookie. See
``portal.i18n`` for the order in which a request's language is chosen.
"""

from __future__ import annotations

from flask import Blueprint, flash, redirect, request, url_for
from flask.typing import ResponseReturnValue
from flask_login import current_user

from portal import i18n
from portal.db import db_session
from portal.identity import accounts, auth
from portal.kernel.i18n import _

bp = Blueprint("language", __name__)


@bp.post("/language")
def choose() -> ResponseReturnValue:
    """Speak the chosen language from the next page on; back to the page it was chosen on."""
    chosen = i18n.supported(request.form.get("language"))
    back = auth.safe_next(request.form.get("next"), url_for("web.home"))
    if chosen is None:
        flash(_("Choose English or Russian."), "error")
        return redirect(back)
    if current_user.is_authenticated:
        accounts.language_choose(
            db_session(), actor=auth.current_actor(), user=current_user.user, language=chosen
        )
        db_session().commit()
    response = redirect(back)
    response.set_cookie(
        i18n.LANGUAGE_COOKIE,
        chosen,
        max_age=i18n.LANGUAGE_COOKIE_SECONDS,
        secure=request.is_secure,
        httponly=True,
        samesite="Lax",
    )
    return response
