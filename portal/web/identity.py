"""Pages for signing in and out, invitations, password resets and one's profile."""

from __future__ import annotations

from flask import Blueprint, flash, redirect, render_template, request, url_for
from flask_login import current_user, login_required

from portal import i18n, ratelimit
from portal.catalogue.models import Vendor
from portal.db import db_session
from portal.extensions import limiter
from portal.forms import committed, show_errors
from portal.identity import accounts, auth, factors, invitations, passwords
from portal.identity.forms import (
    AcceptInvitationForm,
    ChangePasswordForm,
    ForgotPasswordForm,
    LanguageForm,
    LoginForm,
    ProfileForm,
    ResetPasswordForm,
    SecondFactorForm,
)
from portal.identity.sign_in import SignInRefused
from portal.kernel.actor import Role
from portal.kernel.errors import DomainError, ValidationFailed
from portal.kernel.i18n import LANGUAGES, _, _n
from portal.observability import login_failed
from portal.sso import selectors as sso_selectors
from portal.sso import services as sso_services
from portal.web.sso import start_sign_in

bp = Blueprint("auth", __name__)


# Failed sign-ins count per (email, address) pair, and per address only at a much
# higher ceiling: others mistyping from the same office lock nobody else out.
@bp.route("/login", methods=["GET", "POST"])
@limiter.limit(
    ratelimit.setting("PORTAL_LOGIN_ADDRESS_RATE_LIMIT"),
    methods=["POST"],
    deduct_when=ratelimit.failed_sign_in,
    error_message=lambda: _(
        "Too many failed sign-ins from your network address. Wait and try again."
    ),
)
@limiter.limit(
    ratelimit.setting("PORTAL_LOGIN_RATE_LIMIT"),
    methods=["POST"],
    key_func=ratelimit.email_address_key("login"),
    deduct_when=ratelimit.failed_sign_in,
    error_message=lambda: _("Too many failed sign-ins for this email. Wait and try again."),
)
def login():
    """Sign in: one POST with ``email``, ``password`` and the CSRF token signs a password in.

    Home-realm discovery: an email sent without a password (or with the "single
    sign-on" button) whose domain is verified for an organisation with SSO goes
    to that organisation's provider; other emails are asked for their password.
    Where an organisation enforces SSO, passwords are refused for its domains
    (but for its break-glass admin).
    """
    if current_user.is_authenticated:
        return redirect(auth.safe_next(request.args.get("next"), auth.home_for(current_user)))
    auth.clear_second_factor()  # a new sign-in starts over
    form = LoginForm(next=request.args.get("next", ""))
    council_sso = sso_selectors.council_sso_configured()
    if form.validate_on_submit():
        password = form.password.data or ""
        # Not forms.committed: a refused sign-in names no field and answers 401.
        if form.sso.data or not password:
            realm = sso_selectors.realm_for_email(db_session(), form.email.data)
            if realm is not None:
                return start_sign_in(realm, email=form.email.data, next_url=form.next.data)
            if form.sso.data:
                flash(
                    _(
                        "No single sign-on is set up for that email's domain. "
                        "Sign in with your password."
                    ),
                    "info",
                )
            form.password.errors = [_("Enter your password.")]
            return render_template(
                "identity/login.html", form=form, council_sso=council_sso, ask_password=True
            ), 400
        try:
            user = sso_services.password_sign_in(
                db_session(), email=form.email.data, password=password
            )
        except SignInRefused as refused:
            db_session().rollback()
            flash(refused.detail, "error")
            return render_template("identity/login.html", form=form, council_sso=council_sso), 401
        if factors.user_has_second_factor(db_session(), user):
            # Not signed in yet: the second step asks for the code (or a passkey).
            db_session().rollback()
            auth.begin_second_factor(user, form.next.data)
            return redirect(url_for("auth.second_factor"))
        auth.sign_in(user)
        db_session().commit()
        return redirect(auth.safe_next(form.next.data, auth.home_for(user)))
    status = 400 if request.method == "POST" else 200
    return render_template("identity/login.html", form=form, council_sso=council_sso), status


# Wrong codes count per person (whatever the address) and per address, like passwords.
@bp.route("/login/second-factor", methods=["GET", "POST"])
@limiter.limit(
    ratelimit.setting("PORTAL_LOGIN_ADDRESS_RATE_LIMIT"),
    methods=["POST"],
    deduct_when=ratelimit.failed_sign_in,
    error_message=lambda: _("Too many wrong codes from your network address. Wait and try again."),
)
@limiter.limit(
    ratelimit.setting("PORTAL_LOGIN_RATE_LIMIT"),
    methods=["POST"],
    key_func=ratelimit.second_factor_key,
    deduct_when=ratelimit.failed_sign_in,
    error_message=lambda: _("Too many wrong codes for this account. Wait and try again."),
)
def second_factor():
    """The second sign-in step: within five minutes of the password, a code from the
    authenticator app or a recovery code (or a passkey, offered on the same page)."""
    if current_user.is_authenticated:
        return redirect(auth.home_for(current_user))
    user = auth.pending_second_factor_user()
    if user is None:
        flash(_("Your sign-in took too long or was not started. Sign in again."), "info")
        return redirect(url_for("auth.login"))
    form = SecondFactorForm()
    status = 200
    if form.validate_on_submit():
        # Not forms.committed: a refused code answers 401 (counted by the limits above).
        try:
            method = factors.verify_second_factor(
                db_session(), user=user, code=form.code.data, ip=auth.client_ip()
            )
        except factors.SecondFactorRefused as refused:
            db_session().rollback()
            login_failed("second_factor")  # portal_login_failures_total
            form.code.errors = [refused.detail]
            status = 401
        else:
            target = auth.pending_second_factor_next()
            auth.complete_second_factor(user, method)
            db_session().commit()
            if method == factors.AMR_RECOVERY:
                left = factors.recovery_codes_left(db_session(), user.id)
                flash(
                    _n(
                        "You signed in with a recovery code; %(num)d left. "
                        "Make new ones on your security page if you are running out.",
                        "You signed in with a recovery code; %(num)d left. "
                        "Make new ones on your security page if you are running out.",
                        left,
                    ),
                    "info",
                )
            return redirect(target)
    elif request.method == "POST":
        status = 400
    return render_template("identity/second_factor.html", form=form, pending_user=user), status


@bp.post("/logout")
def logout():
    """Sign out: the server-side session ends, so the old cookie stops working."""
    auth.sign_out()
    db_session().commit()
    flash(_("You are signed out."), "info")
    return redirect(url_for("auth.login"))


@bp.route("/invitations/<token>", methods=["GET", "POST"])
def accept_invitation(token: str):
    """Set a name and password from an invitation link, then sign in."""
    try:
        invitation = invitations.invitation_by_token(db_session(), token)
    except DomainError as error:
        return render_template(
            "identity/invitation_invalid.html", detail=error.detail
        ), error.status
    form = AcceptInvitationForm()
    if form.validate_on_submit():
        # Not forms.committed: only a refused name or password returns to the form.
        try:
            user = invitations.invitation_accept(
                db_session(),
                token=token,
                name=form.name.data,
                password=form.password.data,
                ip=auth.client_ip(),
            )
        except ValidationFailed as error:
            db_session().rollback()
            show_errors(form, error)
        else:
            if current_user.is_authenticated:
                auth.sign_out()
            auth.sign_in(user)
            db_session().commit()
            flash(_("Welcome! Your account is ready."), "success")
            return redirect(auth.home_for(user))
    return render_template(
        "identity/accept_invitation.html",
        form=form,
        invitation=invitation,
        role_label=Role(invitation.role).label,
        vendor=db_session().get(Vendor, invitation.vendor_id) if invitation.vendor_id else None,
    ), (400 if request.method == "POST" else 200)


@bp.route("/password/forgot", methods=["GET", "POST"])
@limiter.limit(
    ratelimit.setting("PORTAL_RESET_ADDRESS_RATE_LIMIT"),
    methods=["POST"],
    deduct_when=ratelimit.reset_requested,
    error_message=lambda: _(
        "Too many reset requests from your network address. Wait and try again."
    ),
)
@limiter.limit(
    ratelimit.setting("PORTAL_RESET_RATE_LIMIT"),
    methods=["POST"],
    key_func=ratelimit.email_address_key("reset"),
    deduct_when=ratelimit.reset_requested,
    error_message=lambda: _("Too many reset requests for this email. Wait and try again."),
)
def forgot_password():
    """Ask for a reset link. The answer is the same whether the email is known or not."""
    form = ForgotPasswordForm()
    if form.validate_on_submit():
        with committed(form) as saved:
            passwords.password_reset_request(
                db_session(), email=form.email.data, ip=auth.client_ip()
            )
        if saved:
            flash(
                _("If that email has an account, a reset link is on its way. It works once."),
                "info",
            )
            return redirect(url_for("auth.login"))
    status = 400 if request.method == "POST" else 200
    return render_template("identity/forgot_password.html", form=form), status


@bp.route("/password/reset/<token>", methods=["GET", "POST"])
def reset_password(token: str):
    """Choose a new password from a reset link."""
    try:
        user = passwords.password_reset_user(db_session(), token)
    except DomainError as error:
        return render_template(
            "identity/invitation_invalid.html", detail=error.detail
        ), error.status
    form = ResetPasswordForm()
    if form.validate_on_submit():
        # Not forms.committed: only a refused password returns to the form.
        try:
            passwords.password_reset_complete(
                db_session(), token=token, password=form.password.data, ip=auth.client_ip()
            )
        except ValidationFailed as error:
            db_session().rollback()
            show_errors(form, error)
        else:
            if current_user.is_authenticated:
                auth.sign_out()
            db_session().commit()
            flash(_("Your password is changed. Sign in with it now."), "success")
            return redirect(url_for("auth.login"))
    status = 400 if request.method == "POST" else 200
    return render_template("identity/reset_password.html", form=form, user=user), status


def _profile_page(profile_form=None, password_form=None, language_form=None, status: int = 200):
    user = current_user.user
    if language_form is None:
        language_form = LanguageForm(prefix="language", formdata=None, language=user.locale or "")
    return render_template(
        "identity/profile.html",
        profile_form=profile_form or ProfileForm(prefix="profile", obj=user),
        password_form=password_form or ChangePasswordForm(prefix="password"),
        language_form=language_form,
        user=user,
    ), status


@bp.get("/profile")
@login_required
def profile():
    """See one's own account, and forms to change name and password."""
    return _profile_page()


@bp.post("/profile")
@login_required
def profile_save():
    """Change one's own display name."""
    form = ProfileForm(prefix="profile")
    if form.validate_on_submit():
        with committed(form) as saved:
            accounts.profile_update(
                db_session(),
                actor=auth.current_actor(),
                user=current_user.user,
                name=form.name.data,
            )
        if saved:
            flash(_("Profile saved."), "success")
            return redirect(url_for("auth.profile"))
    return _profile_page(profile_form=form, status=400)


@bp.post("/profile/password")
@login_required
def password_save():
    """Change one's own password; other sessions of the account end."""
    form = ChangePasswordForm(prefix="password")
    if form.validate_on_submit():
        with committed(form) as saved:
            passwords.password_change(
                db_session(),
                actor=auth.current_actor(),
                user=current_user.user,
                current=form.current_password.data,
                new=form.new_password.data,
                keep_token=current_user.token,
            )
        if saved:
            flash(_("Password changed. Your other sessions were signed out."), "success")
            return redirect(url_for("auth.profile"))
    return _profile_page(password_form=form, status=400)


@bp.post("/profile/language")
@login_required
def language_save():
    """Choose the language of one's pages and mail: English, Russian, or the browser's."""
    form = LanguageForm(prefix="language")
    if form.validate_on_submit():
        chosen = i18n.supported(form.language.data)
        with committed(form) as saved:
            accounts.language_choose(
                db_session(), actor=auth.current_actor(), user=current_user.user, language=chosen
            )
        if saved:
            # Flashed in the language just chosen, as the next page will be.
            with i18n.in_language(chosen or request.accept_languages.best_match(LANGUAGES)):
                flash(_("Language saved."), "success")
            response = redirect(url_for("auth.profile"))
            if chosen is None:
                # The browser's language from now on: the switcher's cookie would win over it.
                response.delete_cookie(i18n.LANGUAGE_COOKIE)
            else:
                response.set_cookie(
                    i18n.LANGUAGE_COOKIE,
                    chosen,
                    max_age=i18n.LANGUAGE_COOKIE_SECONDS,
                    secure=request.is_secure,
                    httponly=True,
                    samesite="Lax",
                )
            return response
    return _profile_page(language_form=form, status=400)
