"""Single sign-on pages: sending people to their provider, the callbacks, and the settings.

* ``/sso/org/<slug>/callback`` and ``/sso/council/callback`` — where providers
  send people back (one address per connection, so one provider's response
  can never be taken for another's);
* ``/login/realm`` — which provider an email goes to (the sign-in page's script);
* ``/org/sso``, ``/org/domains`` — an org admin's connection and domain claims;
* ``/council/domains`` — council admins verify claims.

The state, nonce and PKCE verifier of a sign-in in flight are kept in the
browser's (signed) session under its ``state``, and removed when it returns:
a callback whose state is missing, unknown, expired or already used is refused.
"""

from __future__ import annotations

from typing import Any

from flask import (
    Blueprint,
    current_app,
    flash,
    g,
    jsonify,
    redirect,
    render_template,
    request,
    session,
    url_for,
)
from flask_login import current_user

from portal.crypto import SecretUnreadable
from portal.db import db_session
from portal.extensions import limiter
from portal.forms import committed
from portal.identity import auth, factors
from portal.identity.forms import ConfirmForm
from portal.kernel.actor import Role
from portal.kernel.errors import DomainError
from portal.kernel.i18n import _, _l
from portal.kernel.scope import Scope, scope_of
from portal.sso import selectors, services
from portal.sso.forms import ConnectionForm, DomainForm
from portal.sso.selectors import Realm
from portal.tenancy.selectors import organisation_by_slug

bp = Blueprint("sso", __name__)

PENDING_KEY = "sso_pending"
MAX_PENDING = 4  # sign-ins in flight per browser (several tabs)


# ---------------------------------------------------------------- sign-ins in flight


def _remember(pending: services.Pending) -> None:
    waiting = dict(session.get(PENDING_KEY) or {})
    waiting = {k: v for k, v in waiting.items() if not services.Pending.from_dict(v).expired}
    while len(waiting) >= MAX_PENDING:
        waiting.pop(min(waiting, key=lambda k: waiting[k]["created"]))
    waiting[pending.state] = pending.as_dict()
    session[PENDING_KEY] = waiting


def _take(state: str | None) -> services.Pending | None:
    """The sign-in a callback's ``state`` belongs to, removed so it works once."""
    waiting = dict(session.get(PENDING_KEY) or {})
    found = waiting.pop(state, None) if state else None
    session[PENDING_KEY] = waiting
    return services.Pending.from_dict(found) if found else None


def _failed(detail: str, status: int = 400, *, stage: str | None = None, code: str | None = None):
    db_session().rollback()
    return (
        render_template(
            "sso/failed.html",
            detail=detail,
            stage=stage,
            stage_label=_stage_name(stage) if stage else None,
            code=code,
        ),
        status,
    )


def start_sign_in(realm: Realm, *, email: str | None, next_url: str | None):
    """Send the browser to the realm's provider (the sign-in page calls this)."""
    try:
        if realm.kind == "council":
            connection = None
            context: dict[str, Any] = {"purpose": "council"}
        else:
            assert realm.connection is not None and realm.organisation is not None
            connection = realm.connection
            context = {"purpose": "sign_in", "slug": realm.organisation.slug}
        context["next"] = auth.safe_next(next_url, "") or None
        url, pending = services.sign_in_begin(connection, login_hint=email, context=context)
    except services.SsoFailed as error:
        return _failed(
            _(
                "The sign-in of %(realm)s could not be started. %(detail)s",
                realm=realm.label,
                detail=error.detail,
            ),
            error.status,
            stage=error.stage,
            code=error.code,
        )
    except SecretUnreadable as error:
        return _failed(str(error), 500, stage="configuration")
    _remember(pending)
    return redirect(url)


@bp.get("/login/realm")
@limiter.limit("60 per minute")
def realm():
    """Where an email signs in: ``{"sso": true, "label": …}`` or ``{"sso": false}``."""
    found = selectors.realm_for_email(db_session(), request.args.get("email", "")[:254])
    if found is None:
        return jsonify(sso=False)
    return jsonify(sso=True, label=found.label)


@bp.get("/sso/council/start")
def council_start():
    """Council staff sign in through the council's own provider."""
    if not selectors.council_sso_configured():
        return _failed(_("The council has no single sign-on configured."), 404)
    label = current_app.config["PORTAL_COUNCIL_NAME"]
    return start_sign_in(
        Realm(kind="council", label=label), email=None, next_url=request.args.get("next")
    )


# ---------------------------------------------------------------- callbacks


def _callback_pending():
    pending = _take(request.args.get("state"))
    if pending is None:
        return None, _failed(
            _(
                "This sign-in response is not valid here: it was used already, it expired, or it "
                "did not start in this browser. Nobody was signed in. Start again from the "
                "sign-in page."
            ),
            400,
            stage="state",
            code="state_invalid",
        )
    return pending, None


@bp.get("/sso/org/<slug>/callback")
def org_callback(slug: str):
    """The organisation's provider sends the person back here with a code."""
    pending, refusal = _callback_pending()
    if refusal is not None:
        return refusal
    context = pending.context
    if context.get("slug") != slug:
        return _failed(
            _("This response belongs to another organisation's sign-in. Nobody was signed in."),
            400,
            stage="state",
            code="sso_mixup",
        )
    try:
        org = organisation_by_slug(db_session(), slug)
    except DomainError:
        return _failed(_("No such organisation."), 404)
    connection = selectors.connection_of(db_session(), organisation_id=org.id)
    if connection is None or (not connection.enabled and context.get("purpose") != "test"):
        return _failed(
            _("%(organisation)s has no single sign-on turned on.", organisation=org.name), 404
        )
    if context.get("purpose") == "test":
        return _finish_test(connection, pending)
    try:
        claims = services.sign_in_finish(connection, pending, request.args.to_dict())
        user = services.sso_account(
            db_session(), connection=connection, claims=claims, ip=auth.client_ip()
        )
    except DomainError as error:
        return _failed(
            error.detail, error.status, stage=getattr(error, "stage", None), code=error.code
        )
    if current_user.is_authenticated:
        auth.sign_out()
    provider_amr, provider_acr = factors.provider_amr_acr(claims)
    auth.sign_in(user, amr=factors.AMR_SSO, sso_amr=provider_amr, sso_acr=provider_acr)
    db_session().commit()
    return redirect(auth.safe_next(context.get("next"), auth.home_for(user)))


@bp.get("/sso/council/callback")
def council_callback():
    """The council's provider sends staff back here."""
    pending, refusal = _callback_pending()
    if refusal is not None:
        return refusal
    if pending.context.get("purpose") != "council":
        return _failed(_("This response belongs to another sign-in."), 400, stage="state")
    try:
        claims = services.sign_in_finish(None, pending, request.args.to_dict())
        user = services.council_account(db_session(), claims=claims)
    except DomainError as error:
        return _failed(
            error.detail, error.status, stage=getattr(error, "stage", None), code=error.code
        )
    if current_user.is_authenticated:
        auth.sign_out()
    provider_amr, provider_acr = factors.provider_amr_acr(claims)
    auth.sign_in(user, amr=factors.AMR_SSO, sso_amr=provider_amr, sso_acr=provider_acr)
    db_session().commit()
    return redirect(auth.safe_next(pending.context.get("next"), auth.home_for(user)))


# ---------------------------------------------------------------- test connection


STAGES = (
    ("discovery", _l("Discovery (the provider's metadata)")),
    ("authorisation", _l("Authorisation (the provider signed someone in)")),
    ("client_auth", _l("Client authentication (client id and secret)")),
    ("token", _l("Token exchange")),
    ("id_token", _l("ID token (signature, issuer, audience, expiry, nonce)")),
    ("claims", _l("Claims (email, domain, group) and the portal's rules")),
)
STAGE_NAMES = {
    "discovery": _l("discovery"),
    "authorisation": _l("authorisation"),
    "client_auth": _l("client authentication"),
    "token": _l("token exchange"),
    "id_token": _l("ID token"),
    "claims": _l("claims"),
    "state": _l("state"),
    "configuration": _l("configuration"),
}


def _stage_name(stage: str | None) -> str:
    return str(STAGE_NAMES.get(stage or "", (stage or "").replace("_", " ")))


def _report(failed_stage: str | None) -> list[tuple[str, str]]:
    """Each stage with ok / failed / not reached, for the report."""
    rows: list[tuple[str, str]] = []
    reached = True
    for stage, lazy_label in STAGES:
        label = str(lazy_label)
        if not reached:
            rows.append((label, "not reached"))
        elif stage == failed_stage:
            rows.append((label, "failed"))
            reached = False
        else:
            rows.append((label, "ok"))
    return rows


def _finish_test(connection, pending: services.Pending):
    actor = auth.current_actor()
    if not services.connection_may_test(actor, connection):
        return _failed(_("Only your organisation's admin can test its connection."), 403)
    claims: dict[str, Any] = {}
    failed_stage, detail = None, ""
    try:
        claims = services.sign_in_finish(connection, pending, request.args.to_dict())
        email, user = services.check_claims(db_session(), connection=connection, claims=claims)
        detail = (
            _("%(email)s would sign in to their account.", email=email)
            if user is not None
            else _("%(email)s would get a new member account at their first sign-in.", email=email)
        )
    except services.SsoFailed as error:
        db_session().rollback()
        failed_stage, detail = error.stage, error.detail
    except services.SsoRefused as error:
        db_session().rollback()
        failed_stage, detail = "claims", error.detail
    ok = failed_stage is None
    summary = (
        _("Connection works. %(detail)s", detail=detail)
        if ok
        else _("Failed at %(stage)s: %(detail)s", stage=_stage_name(failed_stage), detail=detail)
    )
    services.connection_record_test(
        db_session(), actor=actor, connection=connection, ok=ok, message=summary
    )
    db_session().commit()
    shown = {
        k: claims[k]
        for k in ("iss", "sub", "email", "email_verified", "name", connection.group_claim)
        if k and k in claims
    }
    return render_template(
        "sso/test_report.html",
        ok=ok,
        detail=summary,
        rows=_report(failed_stage),
        claims=shown,
        connection=connection,
    ), (200 if ok else 422)


@bp.post("/org/sso/test")
@auth.role_required(Role.ORG_ADMIN)
def org_sso_test():
    """Run a real sign-in at the provider and report each step (nobody's session changes)."""
    org = auth.current_organisation()
    connection = selectors.connection_of(db_session(), organisation_id=org.id)
    if connection is None or not ConfirmForm().validate_on_submit():
        flash(_("Save the connection first."), "error")
        return redirect(url_for("sso.org_sso"))
    # Not forms.committed: a failure to start is recorded on the connection and committed.
    try:
        url, pending = services.sign_in_begin(
            connection, prompt="login", context={"purpose": "test", "slug": org.slug}
        )
    except (services.SsoFailed, SecretUnreadable) as error:
        detail = getattr(error, "detail", str(error))
        services.connection_record_test(
            db_session(),
            actor=g.actor,
            connection=connection,
            ok=False,
            message=_(
                "Failed at %(stage)s: %(detail)s", stage=_stage_name("discovery"), detail=detail
            ),
        )
        db_session().commit()
        return render_template(
            "sso/test_report.html",
            ok=False,
            detail=detail,
            rows=_report("discovery"),
            claims={},
            connection=connection,
        ), 422
    _remember(pending)
    return redirect(url)


# ---------------------------------------------------------------- settings pages


def _connection_form(connection) -> ConnectionForm:
    form = ConnectionForm(obj=connection)
    if connection is not None and request.method == "GET":
        form.break_glass_email.data = (
            connection.break_glass_user.email if connection.break_glass_user else ""
        )
    return form


@bp.route("/org/sso", methods=["GET", "POST"])
@auth.role_required(Role.ORG_ADMIN)
def org_sso():
    """The organisation's OpenID connection: settings, redirect URI, last test."""
    org = auth.current_organisation()
    connection = selectors.connection_of(db_session(), organisation_id=org.id)
    form = _connection_form(connection)
    status = 200
    if request.method == "POST":
        if form.validate_on_submit():
            data = {
                name: form[name].data
                for name in (
                    "issuer",
                    "client_id",
                    "client_secret",
                    "enabled",
                    "enforce_sso",
                    "break_glass_email",
                    "jit_enabled",
                    "group_claim",
                    "required_group",
                )
            }
            with committed(form) as saved:
                services.connection_save(db_session(), actor=g.actor, organisation=org, data=data)
            if saved:
                flash(_("Single sign-on settings saved. Test the connection now."), "success")
                return redirect(url_for("sso.org_sso"))
        status = 400
    return render_template(
        "sso/settings.html",
        org=org,
        connection=connection,
        form=form,
        redirect_uri=services.redirect_uri_for(org),
        domains=selectors.domains_of(db_session(), organisation_id=org.id),
        confirm_form=ConfirmForm(),
    ), status


@bp.post("/org/sso/delete")
@auth.role_required(Role.ORG_ADMIN)
def org_sso_delete():
    """Remove the connection."""
    org = auth.current_organisation()
    connection = selectors.connection_of(db_session(), organisation_id=org.id)
    # Not forms.committed: a confirmation button; a refusal is the error page's.
    if connection is not None and ConfirmForm().validate_on_submit():
        services.connection_delete(db_session(), actor=g.actor, connection=connection)
        db_session().commit()
        flash(_("Single sign-on is removed; people sign in with passwords again."), "success")
    return redirect(url_for("sso.org_sso"))


@bp.route("/org/domains", methods=["GET", "POST"])
@auth.role_required(Role.ORG_ADMIN)
def org_domains():
    """The organisation's email domains, and a form to claim one."""
    org = auth.current_organisation()
    form = DomainForm()
    status = 200
    if request.method == "POST":
        if form.validate_on_submit():
            with committed(form) as saved:
                services.domain_claim(
                    db_session(), actor=g.actor, organisation=org, domain=form.domain.data
                )
            if saved:
                flash(
                    _(
                        "%(domain)s is claimed; a council admin will verify it.",
                        domain=form.domain.data.strip().lower(),
                    ),
                    "success",
                )
                return redirect(url_for("sso.org_domains"))
        status = 400
    return render_template(
        "sso/domains.html",
        org=org,
        form=form,
        domains=selectors.domains_of(db_session(), organisation_id=org.id),
    ), status


@bp.post("/org/domains/<int:domain_id>/remove")
@auth.role_required(Role.ORG_ADMIN)
def org_domain_remove(domain_id: int):
    """Withdraw one of the organisation's own claims."""
    org = auth.current_organisation()
    claim = selectors.domain_in_scope(
        db_session(), scope=Scope.organisation(org.id), domain_id=domain_id
    )
    # Not forms.committed: a confirmation button; a refusal is the error page's.
    if ConfirmForm().validate_on_submit():
        services.domain_remove(db_session(), actor=g.actor, claim=claim)
        db_session().commit()
        flash(_("%(domain)s is removed.", domain=claim.domain), "success")
    return redirect(url_for("sso.org_domains"))


@bp.get("/council/domains")
@auth.role_required(Role.COUNCIL_ADMIN)
def council_domains():
    """Every organisation's domain claims, pending first."""
    return render_template(
        "sso/council_domains.html",
        domains=selectors.domains_for_council(db_session()),
    )


@bp.post("/council/domains/<int:domain_id>/<any(verify, reject):action>")
@auth.role_required(Role.COUNCIL_ADMIN)
def council_domain_decide(domain_id: int, action: str):
    """Verify a claim (the domain then routes to the organisation's provider) or reject it."""
    claim = selectors.domain_in_scope(
        db_session(), scope=scope_of(auth.current_actor()), domain_id=domain_id
    )
    if not ConfirmForm().validate_on_submit():
        flash(_("The form expired; nothing was changed. Try again."), "error")
        return redirect(url_for("sso.council_domains"))
    label, org_name = claim.domain, claim.organisation.name
    # Not forms.committed: the page redirects, so a refusal is flashed whole.
    try:
        if action == "verify":
            services.domain_verify(db_session(), actor=g.actor, claim=claim)
        else:
            services.domain_remove(db_session(), actor=g.actor, claim=claim)
    except DomainError as error:
        db_session().rollback()
        flash(error.detail, "error")
    else:
        db_session().commit()
        if action == "verify":
            flash(
                _(
                    "%(domain)s is verified for %(organisation)s.",
                    domain=label,
                    organisation=org_name,
                ),
                "success",
            )
        else:
            flash(
                _(
                    "%(domain)s is rejected for %(organisation)s.",
                    domain=label,
                    organisation=org_name,
                ),
                "success",
            )
    return redirect(url_for("sso.council_domains"))
