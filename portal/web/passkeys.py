"""Passkey pages (issue 12): one's passkeys on the security page (``account/_passkeys.html``,
included by ``/account/security``) and the passkey option of the second sign-in step
(``identity/_passkey_option.html``, included by ``/login/second-factor``).

The ceremonies need ``navigator.credentials``, so ``static/js/passkeys.js`` asks for the
options (a JSON POST with the CSRF token in ``X-CSRFToken``), lets the browser talk to
the authenticator, writes the answer into the form's hidden ``credential`` field and
submits the form as usual: the answer is an ordinary form POST, answered with a page.
Without JavaScript the sections say so and the rest of each page works.
"""

from __future__ import annotations

from typing import Any

from flask import Blueprint, Response, flash, make_response, redirect, render_template, url_for
from flask_login import current_user, login_required

from portal import ratelimit
from portal.db import db_session
from portal.extensions import limiter
from portal.forms import committed
from portal.identity import auth, factors, passkeys
from portal.identity.forms import (
    ConfirmForm,
    PasskeyRegisterForm,
    PasskeyRenameForm,
    PasskeySignInForm,
    SecondFactorForm,
)
from portal.kernel.errors import DomainError
from portal.kernel.i18n import _, _l
from portal.observability import login_failed
from portal.web import account as account_pages

bp = Blueprint("passkeys", __name__)


def _json(options: str) -> Response:
    response = make_response(options)
    response.mimetype = "application/json"
    response.headers["Cache-Control"] = "no-store"
    return response


def _security_page(status: int) -> Response:
    """The security page again (with this request's messages), answering ``status``."""
    response = make_response(account_pages.security())
    response.status_code = status
    return response


# ---------------------------------------------------------------- template helpers


@bp.app_template_global()
def my_passkeys() -> list[Any]:
    """The signed-in person's passkeys, for ``account/_passkeys.html``."""
    if not current_user.is_authenticated:
        return []
    return passkeys.passkeys_list(db_session(), actor=auth.current_actor(), user=current_user.user)


@bp.app_template_global()
def passkeys_available() -> bool:
    """Whether the portal's address (``PORTAL_BASE_URL``) allows passkeys."""
    return passkeys.passkeys_available()


@bp.app_template_global()
def passkey_sign_in_offered(user: Any) -> bool:
    """Whether the second sign-in step offers ``user`` a passkey (they have one)."""
    return (
        user is not None
        and passkeys.passkeys_available()
        and passkeys.passkey_count(db_session(), user.id) > 0
    )


@bp.app_template_global()
def passkey_forms() -> dict[str, Any]:
    """Fresh forms for the passkeys section."""
    return {"register": PasskeyRegisterForm(prefix="passkey")}


# ---------------------------------------------------------------- one's passkeys


@bp.post("/account/security/passkeys/options")
@login_required
def register_options():
    """Registration options for ``navigator.credentials.create()`` (JSON); the challenge
    stays in the session for the form that follows."""
    return _json(
        passkeys.registration_options(
            db_session(), actor=auth.current_actor(), user=current_user.user
        )
    )


@bp.post("/account/security/passkeys")
@login_required
def register():
    """Keep the passkey whose answer the script put in the form."""
    form = PasskeyRegisterForm(prefix="passkey")
    if form.validate_on_submit():
        with committed(form) as saved:
            passkey = passkeys.passkey_register(
                db_session(),
                actor=auth.current_actor(),
                user=current_user.user,
                credential=form.credential.data or "",
                name=form.name.data,
            )
        if saved:
            flash(_("Passkey “%(name)s” is added.", name=passkey.name), "success")
            if not factors.recovery_codes_left(db_session(), current_user.id):
                flash(
                    _(
                        "Make recovery codes (below) for the day you do not have your passkey "
                        "with you."
                    ),
                    "info",
                )
            return redirect(url_for("account.security"))
    else:
        _form_errors(form)
    return _security_page(400)


@bp.post("/account/security/passkeys/<int:passkey_id>/rename")
@login_required
def rename(passkey_id: int):
    """Give a passkey another name."""
    _passkey(passkey_id)
    form = PasskeyRenameForm()
    if form.validate_on_submit():
        with committed(form) as saved:
            passkey = passkeys.passkey_rename(
                db_session(),
                actor=auth.current_actor(),
                user=current_user.user,
                passkey_id=passkey_id,
                name=form.name.data,
            )
        if saved:
            flash(_("The passkey is now called “%(name)s”.", name=passkey.name), "success")
            return redirect(url_for("account.security"))
        _form_errors(form)
    else:
        _form_errors(form)
    return _security_page(400)


@bp.post("/account/security/passkeys/<int:passkey_id>/remove")
@login_required
def remove(passkey_id: int):
    """Remove a passkey: it no longer signs in."""
    _passkey(passkey_id)
    form = ConfirmForm()
    if form.validate_on_submit():
        with committed(form) as saved:
            passkeys.passkey_remove(
                db_session(),
                actor=auth.current_actor(),
                user=current_user.user,
                passkey_id=passkey_id,
            )
        if saved:
            flash(_("The passkey is removed."), "success")
            return redirect(url_for("account.security"))
    else:
        _form_errors(form)
    return _security_page(400)


def _passkey(passkey_id: int) -> Any:
    """One's own passkey, or 404 (another's, or gone)."""
    return passkeys.passkey_of(
        db_session(), actor=auth.current_actor(), user=current_user.user, passkey_id=passkey_id
    )


def _form_errors(form: Any) -> None:
    """A form's field errors as messages on the page (the section's fields have no place
    of their own on the security page)."""
    for name, errors in form.errors.items():
        for error in errors:
            if name == "csrf_token":
                flash(_("The form expired; nothing was changed. Try again."), "error")
            else:
                flash(
                    _("%(field)s: %(message)s", field=form[name].label.text, message=error),
                    "error",
                )


# ---------------------------------------------------------------- the second sign-in step


def _pending_user() -> Any:
    user = auth.pending_second_factor_user()
    if user is None:
        raise passkeys.PasskeyRefused(
            _l("Your sign-in took too long or was not started. Sign in again."),
            code="sign_in_expired",
        )
    return user


@bp.post("/login/passkey/options")
def sign_in_options():
    """Authentication options for the person whose password was just accepted (JSON)."""
    return _json(passkeys.authentication_options(db_session(), user=_pending_user()))


# Refused answers count like wrong codes at the second step (same keys and limits).
@bp.post("/login/passkey")
@limiter.limit(
    ratelimit.setting("PORTAL_LOGIN_ADDRESS_RATE_LIMIT"),
    deduct_when=ratelimit.failed_sign_in,
    error_message=lambda: _(
        "Too many failed sign-ins from your network address. Wait and try again."
    ),
)
@limiter.limit(
    ratelimit.setting("PORTAL_LOGIN_RATE_LIMIT"),
    key_func=ratelimit.second_factor_key,
    deduct_when=ratelimit.failed_sign_in,
    error_message=lambda: _("Too many failed sign-ins for this account. Wait and try again."),
)
def sign_in():
    """Finish signing in with the passkey answer the script put in the form."""
    if current_user.is_authenticated:
        return redirect(auth.home_for(current_user))
    user = auth.pending_second_factor_user()
    if user is None:
        flash(_("Your sign-in took too long or was not started. Sign in again."), "info")
        return redirect(url_for("auth.login"))
    form = PasskeySignInForm()
    status = 400
    if form.validate_on_submit():
        # Not forms.committed: a refused passkey answers 401 (counted by the limits above).
        try:
            passkeys.passkey_authenticate(
                db_session(), user=user, credential=form.credential.data or ""
            )
        except DomainError as refused:
            db_session().rollback()
            login_failed("second_factor")  # portal_login_failures_total
            if isinstance(refused, passkeys.PasskeyRefused):
                passkeys.passkey_sign_in_refused(
                    db_session(), user=user, refused=refused, ip=auth.client_ip()
                )
                db_session().commit()
            flash(refused.detail, "error")
            status = 401
        else:
            target = auth.pending_second_factor_next()
            auth.complete_second_factor(user, factors.AMR_PASSKEY)
            db_session().commit()
            return redirect(target)
    else:
        flash(_("The form expired. Try again."), "error")
    return render_template(
        "identity/second_factor.html", form=SecondFactorForm(), pending_user=user
    ), status
