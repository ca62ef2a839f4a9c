"""Second factors (issue 12): one's own security page (``/account/security``: an
authenticator app, recovery codes, and the passkeys section), a council admin's reset
of another person's factors, and an organisation's requirement of a second factor."""

from __future__ import annotations

from typing import Any

from flask import (
    Blueprint,
    Response,
    abort,
    current_app,
    flash,
    make_response,
    redirect,
    render_template,
    url_for,
)
from flask_login import current_user, login_required

from portal.db import db_session
from portal.forms import committed
from portal.identity import auth, factors, selectors
from portal.identity.forms import (
    ConfirmForm,
    RequireSecondFactorForm,
    TotpConfirmForm,
    TotpRemoveForm,
)
from portal.kernel.actor import Role
from portal.kernel.i18n import _
from portal.kernel.scope import Scope
from portal.tenancy.selectors import organisation_by_slug

bp = Blueprint("account", __name__)


def _issuer() -> str:
    return f"{current_app.config['PORTAL_COUNCIL_NAME']} portal"


def _page(
    *,
    confirm_form: TotpConfirmForm | None = None,
    remove_form: TotpRemoveForm | None = None,
    recovery_codes: list[str] | None = None,
    status: int = 200,
) -> Response:
    """The security page; fresh recovery codes are shown in this answer only (never stored
    in the cookie, never cached)."""
    user = current_user.user
    session = db_session()
    factor = factors.totp_factor(session, user.id)
    setup = None
    if factor is not None and factor.confirmed_at is None:
        setup = factors.totp_pending(
            session, actor=auth.current_actor(), user=user, issuer=_issuer()
        )
    has_factor = factors.user_has_second_factor(session, user)
    response = make_response(
        render_template(
            "account/security.html",
            user=user,
            factor=factor,
            setup=setup,
            has_factor=has_factor,
            required=factors.second_factor_required(user),
            sso_session=getattr(current_user, "amr", None) == factors.AMR_SSO,
            codes_left=factors.recovery_codes_left(session, user.id),
            recovery_codes=recovery_codes,
            confirm_form=confirm_form or TotpConfirmForm(prefix="totp"),
            remove_form=remove_form or TotpRemoveForm(prefix="remove"),
            confirm=ConfirmForm(),
        ),
        status,
    )
    response.headers["Cache-Control"] = "no-store"
    return response


@bp.get("/account/security")
@login_required
def security():
    """One's second factors: set up or remove an authenticator app, make recovery codes,
    and (from the passkeys section) register passkeys."""
    return _page()


@bp.post("/account/security/totp")
@login_required
def totp_begin():
    """Start setting up an authenticator app: a new secret, shown as a QR code."""
    form = ConfirmForm()
    if form.validate_on_submit():
        with committed(form):
            factors.totp_begin(
                db_session(), actor=auth.current_actor(), user=current_user.user, issuer=_issuer()
            )
    else:
        flash(_("The form expired; nothing was changed. Try again."), "error")
    return redirect(url_for("account.security"))


@bp.post("/account/security/totp/confirm")
@login_required
def totp_confirm():
    """Confirm the app with a code from it; the first time, recovery codes are shown."""
    form = TotpConfirmForm(prefix="totp")
    if form.validate_on_submit():
        codes: list[str] = []
        with committed(form) as saved:
            codes = factors.totp_confirm(
                db_session(),
                actor=auth.current_actor(),
                user=current_user.user,
                code=form.code.data,
            )
        if saved:
            flash(_("Your authenticator app is set up."), "success")
            if codes:
                return _page(recovery_codes=codes)
            return redirect(url_for("account.security"))
    return _page(confirm_form=form, status=400)


@bp.post("/account/security/totp/remove")
@login_required
def totp_remove():
    """Remove the authenticator app (a current code or the password proves it is you);
    a setup never finished is simply dropped."""
    form = TotpRemoveForm(prefix="remove")
    if form.validate_on_submit():
        with committed(form) as saved:
            factors.totp_remove(
                db_session(),
                actor=auth.current_actor(),
                user=current_user.user,
                code=form.code.data,
                password=form.password.data,
            )
        if saved:
            flash(_("The authenticator app is removed."), "success")
            return redirect(url_for("account.security"))
    return _page(remove_form=form, status=400)


@bp.post("/account/security/recovery-codes")
@login_required
def recovery_codes():
    """Make ten new recovery codes (the old ones stop working); shown once, here."""
    form = ConfirmForm()
    if form.validate_on_submit():
        codes: list[str] = []
        with committed(form) as saved:
            codes = factors.recovery_codes_generate(
                db_session(), actor=auth.current_actor(), user=current_user.user
            )
        if saved:
            flash(_("New recovery codes are made; the old ones no longer work."), "success")
            return _page(recovery_codes=codes)
        return _page(status=409)
    flash(_("The form expired; nothing was changed. Try again."), "error")
    return redirect(url_for("account.security"))


# ---------------------------------------------------------------- council admins


def _person(slug: str | None, user_id: int) -> Any:
    org = organisation_by_slug(db_session(), slug) if slug is not None else None
    if org is None:  # council staff
        return selectors.user_in_scope(
            db_session(), scope=Scope.council(), staff_only=True, user_id=user_id
        )
    return selectors.user_in_scope(db_session(), scope=Scope.organisation(org.id), user_id=user_id)


def _factors_page(slug: str | None, user_id: int):
    person = _person(slug, user_id)
    session = db_session()
    factor = factors.totp_factor(session, person.id)
    back = (
        url_for("people.council_org_users", slug=slug)
        if slug is not None
        else url_for("people.staff_users")
    )
    action = (
        url_for("account.council_factors_reset", slug=slug, user_id=user_id)
        if slug is not None
        else url_for("account.staff_factors_reset", user_id=user_id)
    )
    return render_template(
        "account/person_factors.html",
        person=person,
        totp=factor is not None and factor.confirmed_at is not None,
        passkeys=factors.passkey_count(session, person.id),
        codes_left=factors.recovery_codes_left(session, person.id),
        required=factors.second_factor_required(person),
        own=person.id == current_user.id,
        back=back,
        action=action,
        form=ConfirmForm(),
    )


def _reset(slug: str | None, user_id: int):
    person = _person(slug, user_id)
    form = ConfirmForm()
    if form.validate_on_submit():
        with committed(form) as saved:
            factors.factors_reset(db_session(), actor=auth.current_actor(), user=person)
        if saved:
            flash(
                _(
                    "%(email)s's second factors are removed and their sessions ended. "
                    "They sign in with their password and set up a new one.",
                    email=person.email,
                ),
                "success",
            )
    else:
        flash(_("The form expired; nothing was changed. Try again."), "error")
    if slug is None:
        return redirect(url_for("account.staff_factors", user_id=user_id))
    return redirect(url_for("account.council_factors", slug=slug, user_id=user_id))


@bp.get("/council/staff/<int:user_id>/second-factors")
@auth.role_required(Role.COUNCIL_ADMIN)
def staff_factors(user_id: int):
    """A council staff member's second factors, with the reset button (lost factors)."""
    return _factors_page(None, user_id)


@bp.post("/council/staff/<int:user_id>/second-factors/reset")
@auth.role_required(Role.COUNCIL_ADMIN)
def staff_factors_reset(user_id: int):
    """Remove a staff member's second factors (another council admin only)."""
    return _reset(None, user_id)


@bp.get("/council/organisations/<slug>/users/<int:user_id>/second-factors")
@auth.role_required(Role.COUNCIL_ADMIN)
def council_factors(slug: str, user_id: int):
    """A member's second factors, with the reset button (lost factors)."""
    return _factors_page(slug, user_id)


@bp.post("/council/organisations/<slug>/users/<int:user_id>/second-factors/reset")
@auth.role_required(Role.COUNCIL_ADMIN)
def council_factors_reset(slug: str, user_id: int):
    """Remove a member's second factors."""
    return _reset(slug, user_id)


# ---------------------------------------------------------------- the organisation's rule


@bp.post("/org/profile/second-factor")
@auth.role_required(Role.ORG_ADMIN)
def org_require_second_factor():
    """The org admin requires (or stops requiring) a second factor of everyone in it."""
    org = auth.current_organisation()
    form = RequireSecondFactorForm()
    if not form.validate_on_submit():
        abort(400)
    with committed(form) as saved:
        factors.second_factor_requirement_set(
            db_session(),
            actor=auth.current_actor(),
            organisation=org,
            required=bool(form.required.data),
        )
    if saved:
        flash(
            _(
                "Everyone in %(organisation)s must now sign in with a second factor.",
                organisation=org.name,
            )
            if form.required.data
            else _("A second factor is now optional in %(organisation)s.", organisation=org.name),
            "success",
        )
    return redirect(url_for("tenancy.org_profile"))
