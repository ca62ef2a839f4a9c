"""The vendor portal (issue 15, SPEC 8.1): a vendor admin's own vendor: profile, service status
and incidents, products' seat counts, usage-reporting health, API tokens.

Every ``/vendor`` page is for the ``vendor_admin`` role only (others: 403) and works on the
signed-in person's own vendor (``current_user.vendor_id``): no URL names a vendor, so there is
no other vendor to ask for, and an object of another vendor (an incident, a token) named in a
URL is not found (404). The services check the policy again with ``vendor_id``.

The council's side lives here too: on a vendor's council page (``catalogue.vendor_edit``) a
council admin invites the vendor's admins and deactivates them (:func:`admins_context` gives
that page what it shows).
"""

from __future__ import annotations

from flask import Blueprint, abort, flash, g, redirect, render_template, request, url_for
from flask.typing import ResponseReturnValue

from portal.api import selectors as token_selectors
from portal.api import services as token_services
from portal.api.forms import OrgTokenForm
from portal.api.models import TokenScope
from portal.catalogue.models import Vendor
from portal.catalogue.selectors import vendor_by_slug
from portal.db import db_session
from portal.forms import committed, confirmation_needed, expiry_arguments, submitted
from portal.identity import accounts, auth, factors, invitations
from portal.identity import selectors as people
from portal.identity.forms import ConfirmForm
from portal.kernel import policy
from portal.kernel.actor import Role
from portal.kernel.clock import now_utc
from portal.kernel.errors import DomainError
from portal.kernel.i18n import _
from portal.kernel.policy import Action
from portal.suppliers import services as supplier_services
from portal.suppliers import vendor_portal as portal
from portal.suppliers.selectors import reading_stale
from portal.suppliers.vendor_portal_forms import (
    IMPACT_LABELS,
    SERVICE_STATUS_LABELS,
    SOURCE_LABELS,
    STATE_LABELS,
    IncidentForm,
    IncidentUpdateForm,
    ProfileForm,
    StatusForm,
    VendorAdminInviteForm,
)

bp = Blueprint("vendor_portal", __name__)

vendor_admin_only = auth.role_required(Role.VENDOR_ADMIN)

LABELS = {
    "service_status_labels": SERVICE_STATUS_LABELS,
    "impact_labels": IMPACT_LABELS,
    "state_labels": STATE_LABELS,
    "source_labels": SOURCE_LABELS,
}


def _vendor() -> Vendor:
    """The signed-in vendor admin's own vendor (the service checks the policy)."""
    return portal.own_vendor(db_session(), g.actor)


def _form_status() -> int:
    return 400 if request.method == "POST" else 200


# ---------------------------------------------------------------- overview


@bp.get("/vendor")
@vendor_admin_only
def home() -> ResponseReturnValue:
    """The vendor's overview: service status, open incidents, seat totals, usage health."""
    vendor = _vendor()
    today = now_utc().date()
    open_incidents, _resolved = portal.incidents_of(db_session(), actor=g.actor, vendor=vendor)
    products = portal.products_seats(db_session(), actor=g.actor, vendor=vendor, day=today)
    health = portal.usage_health(db_session(), actor=g.actor, vendor=vendor, today=today, days=7)
    return render_template(
        "vendor_portal/home.html",
        vendor=vendor,
        open_incidents=open_incidents,
        totals=portal.seat_totals(products),
        health=health,
        stale=reading_stale(vendor, now=now_utc()),
        **LABELS,
    )


# ---------------------------------------------------------------- profile


@bp.route("/vendor/profile", methods=["GET", "POST"])
@vendor_admin_only
def profile() -> ResponseReturnValue:
    """The vendor's profile as members see it in the supplier directory."""
    vendor = _vendor()
    form = ProfileForm(obj=vendor)
    if submitted(form):
        with committed(form) as saved:
            supplier_services.update_profile(db_session(), g.actor, vendor, form.service_data())
        if saved:
            flash(_("The profile of %(vendor)s is saved.", vendor=vendor.name), "success")
            return redirect(url_for("vendor_portal.profile"))
    return render_template("vendor_portal/profile.html", vendor=vendor, form=form), _form_status()


# ---------------------------------------------------------------- service status, incidents


def _status_page(
    vendor: Vendor,
    *,
    status_form: StatusForm | None = None,
    incident_form: IncidentForm | None = None,
    update_forms: dict[int, IncidentUpdateForm] | None = None,
    status: int = 200,
) -> ResponseReturnValue:
    open_incidents, resolved = portal.incidents_of(db_session(), actor=g.actor, vendor=vendor)
    update_forms = dict(update_forms or {})
    for incident in open_incidents:
        update_forms.setdefault(
            incident.id, IncidentUpdateForm(prefix=f"update-{incident.id}", formdata=None)
        )
    if status_form is None:
        status_form = StatusForm(prefix="status", formdata=None)
        status_form.service_status.data = vendor.service_status.value
        status_form.message.data = vendor.service_status_message
    return (
        render_template(
            "vendor_portal/status.html",
            vendor=vendor,
            status_form=status_form,
            incident_form=incident_form or IncidentForm(prefix="incident", formdata=None),
            update_forms=update_forms,
            open_incidents=open_incidents,
            resolved=resolved,
            stale=reading_stale(vendor, now=now_utc()),
            **LABELS,
        ),
        status,
    )


@bp.get("/vendor/status")
@vendor_admin_only
def status() -> ResponseReturnValue:
    """Set the service status, open incidents and post their updates."""
    return _status_page(_vendor())


@bp.post("/vendor/status")
@vendor_admin_only
def status_set() -> ResponseReturnValue:
    vendor = _vendor()
    form = StatusForm(prefix="status")
    if submitted(form):
        with committed(form) as saved:
            changed = supplier_services.set_service_status(
                db_session(),
                g.actor,
                vendor,
                form.service_status.data or "",
                form.message.data,
            )
        if saved:
            label = SERVICE_STATUS_LABELS.get(vendor.service_status.value, vendor.service_status)
            if changed:
                flash(_("The service status is now: %(status)s.", status=label), "success")
            else:
                flash(_("The service status stays: %(status)s.", status=label), "info")
            return redirect(url_for("vendor_portal.status"))
    return _status_page(vendor, status_form=form, status=400)


@bp.post("/vendor/incidents")
@vendor_admin_only
def incident_open() -> ResponseReturnValue:
    vendor = _vendor()
    form = IncidentForm(prefix="incident")
    if submitted(form):
        with committed(form) as saved:
            incident = supplier_services.open_incident(
                db_session(),
                g.actor,
                vendor,
                title=form.title.data or "",
                impact=form.impact.data or "",
                body=form.body.data or "",
            )
        if saved:
            flash(_("Incident “%(title)s” is open.", title=incident.title), "success")
            return redirect(url_for("vendor_portal.status"))
    return _status_page(vendor, incident_form=form, status=400)


@bp.post("/vendor/incidents/<int:incident_id>/updates")
@vendor_admin_only
def incident_update(incident_id: int) -> ResponseReturnValue:
    vendor = _vendor()
    incident = portal.incident_of(
        db_session(), actor=g.actor, vendor=vendor, incident_id=incident_id
    )
    form = IncidentUpdateForm(prefix=f"update-{incident.id}")
    if submitted(form):
        with committed(form) as saved:
            supplier_services.add_incident_update(
                db_session(), g.actor, incident, **form.service_data()
            )
        if saved:
            if incident.is_open:
                flash(_("The update to “%(title)s” is posted.", title=incident.title), "success")
            else:
                flash(_("“%(title)s” is resolved.", title=incident.title), "success")
            return redirect(url_for("vendor_portal.status"))
    return _status_page(vendor, update_forms={incident.id: form}, status=400)


# ---------------------------------------------------------------- products and seats


@bp.get("/vendor/products")
@vendor_admin_only
def products() -> ResponseReturnValue:
    """The vendor's products with their pools and seat counts (sums, never who holds one)."""
    vendor = _vendor()
    entries = portal.products_seats(
        db_session(), actor=g.actor, vendor=vendor, day=now_utc().date()
    )
    return render_template(
        "vendor_portal/products.html",
        vendor=vendor,
        entries=entries,
        totals=portal.seat_totals(entries),
        today=now_utc().date(),
    )


# ---------------------------------------------------------------- usage reporting health


@bp.get("/vendor/usage-health")
@vendor_admin_only
def usage_health() -> ResponseReturnValue:
    """Per day: usage batches, events accepted, duplicate and rejected with the reasons."""
    vendor = _vendor()
    days = request.args.get("days", type=int) or portal.HEALTH_DAYS
    health = portal.usage_health(
        db_session(), actor=g.actor, vendor=vendor, today=now_utc().date(), days=days
    )
    return render_template("vendor_portal/usage_health.html", vendor=vendor, health=health)


# ---------------------------------------------------------------- API tokens


def _tokens_page(vendor: Vendor, form: OrgTokenForm, status: int = 200) -> ResponseReturnValue:
    tokens = token_selectors.vendor_tokens(db_session(), vendor_id=vendor.id)
    return (
        render_template(
            "vendor_portal/tokens.html",
            vendor=vendor,
            tokens=tokens,
            form=form,
            confirm_form=ConfirmForm(),
        ),
        status,
    )


@bp.get("/vendor/tokens")
@vendor_admin_only
def tokens() -> ResponseReturnValue:
    """The vendor's API tokens (usage reports, entitlement checks, its status and incidents)."""
    return _tokens_page(_vendor(), OrgTokenForm())


@bp.post("/vendor/tokens")
@vendor_admin_only
def token_create() -> ResponseReturnValue:
    """Create a vendor token; its value is shown once, on the answer."""
    vendor = _vendor()
    form = OrgTokenForm()
    if form.validate_on_submit():
        with committed(form) as saved:
            token, plaintext = token_services.token_create(
                db_session(),
                actor=g.actor,
                scope=TokenScope.VENDOR,
                vendor=vendor,
                name=form.name.data,
                **expiry_arguments(form.expires_in.data),
            )
        if saved:
            page = render_template(
                "api/token_created.html",
                token=token,
                plaintext=plaintext,
                back=url_for("vendor_portal.tokens"),
            )
            return page, 201, {"Cache-Control": "no-store"}
    return _tokens_page(vendor, form, status=400)


@bp.post("/vendor/tokens/<int:token_id>/revoke")
@vendor_admin_only
def token_revoke(token_id: int) -> ResponseReturnValue:
    """Revoke one of the vendor's tokens at once (another vendor's: 404)."""
    vendor = _vendor()
    token = token_selectors.vendor_token(db_session(), vendor_id=vendor.id, token_id=token_id)
    form = ConfirmForm()
    if not form.validate_on_submit():
        flash(_("The form expired; nothing was changed. Try again."), "error")
        return redirect(url_for("vendor_portal.tokens"))
    with committed(form) as saved:
        token_services.token_revoke(db_session(), actor=g.actor, token=token)
    if saved:
        flash(
            _(
                "Token %(prefix)s… “%(name)s” is revoked; it stops working at once.",
                prefix=token.prefix,
                name=token.name,
            ),
            "success",
        )
    return redirect(url_for("vendor_portal.tokens"))


# ---------------------------------------------------------------- the council: vendor admins


def admins_context(vendor: Vendor, invite_form: VendorAdminInviteForm | None = None) -> dict:
    """What the council's vendor page shows of the vendor's admins (``catalogue.vendor_edit``):
    nothing for finance, who reads vendors but not people (``user.read``)."""
    if not policy.allowed(g.actor, Action.USER_READ):
        return {}
    return {
        "vendor_admins": people.vendor_admins(db_session(), vendor_id=vendor.id),
        "vendor_invitations": people.vendor_invitations_pending(db_session(), vendor_id=vendor.id),
        "admin_invite_form": invite_form or VendorAdminInviteForm(prefix="admin", formdata=None),
        "admin_confirm_form": ConfirmForm(),
    }


def _council_vendor(slug: str) -> tuple[Vendor, str]:
    vendor = vendor_by_slug(db_session(), slug)
    return vendor, url_for("catalogue.vendor_edit", slug=vendor.slug)


@bp.post("/council/vendors/<slug>/admins/invite")
@auth.role_required(Role.COUNCIL_ADMIN)
def admin_invite(slug: str) -> ResponseReturnValue:
    """Invite someone to be an admin of the vendor (a single-use link by mail)."""
    vendor, back = _council_vendor(slug)
    form = VendorAdminInviteForm(prefix="admin")
    if submitted(form):
        with committed(form) as saved:
            invitations.invitation_create(
                db_session(),
                actor=g.actor,
                email=form.email.data or "",
                role=Role.VENDOR_ADMIN,
                organisation=None,
                vendor=vendor,
            )
        if saved:
            flash(
                _(
                    "Invitation to %(email)s as an admin of %(vendor)s created; "
                    "its mail is queued.",
                    email=form.email.data,
                    vendor=vendor.name,
                ),
                "success",
            )
            return redirect(back)
    elif form.csrf_token.errors:
        flash(_("The form expired; nothing was sent. Try again."), "error")
    # Only the invitation's form, with its message and what was typed kept.
    return render_template(
        "vendor_portal/council_invite.html", vendor=vendor, form=form, back=back
    ), 400


@bp.post("/council/vendors/<slug>/admins/<int:user_id>/<any(deactivate, reactivate):active>")
@auth.role_required(Role.COUNCIL_ADMIN)
def admin_set_active(slug: str, user_id: int, active: str) -> ResponseReturnValue:
    """Deactivate (after a confirm step) or reactivate one of the vendor's admins."""
    vendor, back = _council_vendor(slug)
    user = people.vendor_admin_of(db_session(), vendor_id=vendor.id, user_id=user_id)
    if not ConfirmForm().validate_on_submit():
        flash(_("The form expired; nothing was changed. Try again."), "error")
        return redirect(back)
    if active == "deactivate" and user.is_active:
        page = confirmation_needed(
            title=_("Deactivate %(person)s?", person=user.email),
            consequences=[
                _(
                    "%(person)s can no longer sign in, and every session of theirs ends now.",
                    person=user.email,
                ),
                _("The vendor's API tokens keep working; revoke them on the tokens page."),
                _("You can reactivate the account later."),
            ],
            confirm_label=_("Deactivate"),
            cancel_url=back,
        )
        if page is not None:
            return page
    try:
        accounts.user_set_active(
            db_session(), actor=g.actor, user=user, active=active == "reactivate"
        )
    except DomainError as error:
        db_session().rollback()
        flash(error.detail, "error")
    else:
        db_session().commit()
        if user.is_active:
            flash(_("%(email)s is active again.", email=user.email), "success")
        else:
            flash(_("%(email)s is deactivated.", email=user.email), "success")
    return redirect(back)


@bp.post("/council/vendors/<slug>/admins/invitations/<int:invitation_id>/revoke")
@auth.role_required(Role.COUNCIL_ADMIN)
def admin_invitation_revoke(slug: str, invitation_id: int) -> ResponseReturnValue:
    """Withdraw a pending invitation to be the vendor's admin."""
    vendor, back = _council_vendor(slug)
    pending = {
        i.id: i for i in people.vendor_invitations_pending(db_session(), vendor_id=vendor.id)
    }
    invitation = pending.get(invitation_id)
    if invitation is None:
        abort(404)
    if not ConfirmForm().validate_on_submit():
        flash(_("The form expired; nothing was changed. Try again."), "error")
        return redirect(back)
    try:
        invitations.invitation_revoke(db_session(), actor=g.actor, invitation=invitation)
    except DomainError as error:
        db_session().rollback()
        flash(error.detail, "error")
    else:
        db_session().commit()
        flash(_("The invitation to %(email)s is withdrawn.", email=invitation.email), "success")
    return redirect(back)


@bp.get("/council/vendors/<slug>/admins/<int:user_id>/second-factors")
@auth.role_required(Role.COUNCIL_ADMIN)
def admin_factors(slug: str, user_id: int) -> ResponseReturnValue:
    """A vendor admin's second factors, with the reset button (lost factors), as for staff."""
    vendor, back = _council_vendor(slug)
    person = people.vendor_admin_of(db_session(), vendor_id=vendor.id, user_id=user_id)
    session = db_session()
    factor = factors.totp_factor(session, person.id)
    return render_template(
        "account/person_factors.html",
        person=person,
        totp=factor is not None and factor.confirmed_at is not None,
        passkeys=factors.passkey_count(session, person.id),
        codes_left=factors.recovery_codes_left(session, person.id),
        required=factors.second_factor_required(person),
        own=False,
        back=back,
        action=url_for("vendor_portal.admin_factors_reset", slug=vendor.slug, user_id=person.id),
        form=ConfirmForm(),
    )


@bp.post("/council/vendors/<slug>/admins/<int:user_id>/second-factors/reset")
@auth.role_required(Role.COUNCIL_ADMIN)
def admin_factors_reset(slug: str, user_id: int) -> ResponseReturnValue:
    """Remove a vendor admin's second factors (they lost them); their sessions end."""
    vendor, _back = _council_vendor(slug)
    person = people.vendor_admin_of(db_session(), vendor_id=vendor.id, user_id=user_id)
    form = ConfirmForm()
    if form.validate_on_submit():
        with committed(form) as saved:
            factors.factors_reset(db_session(), actor=g.actor, user=person)
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
    return redirect(url_for("vendor_portal.admin_factors", slug=vendor.slug, user_id=person.id))
