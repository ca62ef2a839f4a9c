"""Organisation pages: the public application, the council's tenant pages, the org profile."""

from __future__ import annotations

from decimal import Decimal

from flask import Blueprint, abort, flash, g, redirect, render_template, request, url_for

from portal.db import db_session
from portal.extensions import limiter
from portal.forms import committed, form_values
from portal.identity import auth
from portal.identity import selectors as people
from portal.identity.forms import ConfirmForm, InviteForm
from portal.identity.invitations import organisation_change_status
from portal.kernel.actor import Role
from portal.kernel.clock import now_utc
from portal.kernel.errors import DomainError
from portal.kernel.i18n import _
from portal.kernel.scope import Scope
from portal.settings.services import settings_get
from portal.tenancy import selectors, services
from portal.tenancy.forms import ApplicationForm, OrganisationForm, OrgProfileForm, StatusForm
from portal.tenancy.models import OrganisationStatus
from portal.web.overview import (
    latest_audit_events,
    organisation_overview,
    people_count,
    seat_days_this_month,
)

bp = Blueprint("tenancy", __name__)

COUNCIL = (Role.COUNCIL_ADMIN, Role.FINANCE)


def _percent_to_bp(value: Decimal | None) -> int | None:
    return None if value is None else int((value * 100).to_integral_value())


def _organisation_data(form: OrganisationForm) -> dict:
    data = form_values(
        form,
        "slug",
        "name",
        "country",
        "currency",
        "tax_id",
        "billing_email",
        "billing_provider",
        "reverse_charge",
        "billing_address",
        "invoice_language",
    )
    data["tax_rate_bp"] = _percent_to_bp(form.tax_rate_percent.data)
    return data


def _every_problem(form, data: dict, *, kind: str, aliases: dict | None = None) -> None:
    """After the form's own checks refused it, add the service's messages for the other fields.

    So every field's problem shows on the first submit (issue 14: a bad tax rate hid the
    slug and email errors until the next one). A stale form (CSRF) shows only that.
    """
    if "csrf_token" in form.errors:
        return
    problems = services.organisation_problems(db_session(), data=data, kind=kind)
    for field, messages in problems.items():
        name = (aliases or {}).get(field, field)
        if name in form._fields and not form[name].errors:
            form[name].errors = list(messages)


# ---------------------------------------------------------------- public


@bp.route("/apply", methods=["GET", "POST"])
@limiter.limit("20 per hour", methods=["POST"])
def apply():
    """The public membership application; council admins review it."""
    form = ApplicationForm()
    if form.validate_on_submit():
        with committed(form) as saved:
            services.organisation_apply(
                db_session(), actor=auth.current_actor(), data=form_values(form)
            )
        if saved:
            return render_template("tenancy/applied.html", email=form.applicant_email.data)
    elif request.method == "POST":
        _every_problem(form, form_values(form), kind="apply")
    status = 400 if request.method == "POST" else 200
    return render_template("tenancy/apply.html", form=form), status


# ---------------------------------------------------------------- council


@bp.get("/council")
@auth.role_required(*COUNCIL)
def council_dashboard():
    """The council's overview of its tenants."""
    counts = selectors.organisation_status_counts(db_session())
    pending = selectors.organisations_list(
        db_session(), status=OrganisationStatus.PENDING, per_page=10
    )
    return render_template("tenancy/council_dashboard.html", counts=counts, pending=pending)


@bp.get("/council/organisations")
@auth.role_required(*COUNCIL)
def organisations():
    """Organisations with search, a status filter and pages."""
    search = request.args.get("q", "").strip()[:100]
    status = request.args.get("status", "")
    if status and status not in OrganisationStatus.__members__.values():
        status = ""
    page = request.args.get("page", 1, type=int) or 1
    result = selectors.organisations_list(
        db_session(), search=search, status=status or None, page=page
    )
    return render_template(
        "tenancy/organisations.html",
        page=result,
        q=search,
        status=status,
        statuses=list(OrganisationStatus),
        status_names=services.STATUS_NAMES,
    )


@bp.route("/council/organisations/new", methods=["GET", "POST"])
@auth.role_required(Role.COUNCIL_ADMIN)
def organisation_new():
    """Create an organisation; it starts active."""
    form = OrganisationForm()
    if form.validate_on_submit():
        with committed(form, aliases={"tax_rate_bp": "tax_rate_percent"}) as saved:
            org = services.organisation_create(
                db_session(), actor=g.actor, data=_organisation_data(form)
            )
        if saved:
            flash(_("%(name)s is created. Invite its first admin below.", name=org.name), "success")
            return redirect(url_for("tenancy.organisation_detail", slug=org.slug))
    elif request.method == "POST":
        _every_problem(
            form,
            _organisation_data(form),
            kind="create",
            aliases={"tax_rate_bp": "tax_rate_percent"},
        )
    status = 400 if request.method == "POST" else 200
    return render_template("tenancy/organisation_form.html", form=form, org=None), status


@bp.get("/council/organisations/<slug>")
@auth.role_required(*COUNCIL)
def organisation_detail(slug: str):
    """One organisation: profile, status actions, people and recent activity."""
    org = selectors.organisation_by_slug(db_session(), slug)
    # The first 25 people; the people page lists them all a page at a time (an organisation
    # may have thousands).
    users = people.users_list(db_session(), scope=Scope.organisation(org.id), per_page=25)
    invitations = people.invitations_pending(db_session(), scope=Scope.organisation(org.id))
    # The latest ten, without counting the organisation's whole history (the page links to
    # the full log; scale-big has 40,000 events).
    events = latest_audit_events(db_session(), organisation_id=org.id, limit=10)
    invite_form = InviteForm(prefix="invite")
    invite_form.role.choices = [
        (Role.ORG_ADMIN.value, Role.ORG_ADMIN.label),
        (Role.MEMBER.value, Role.MEMBER.label),
    ]
    return render_template(
        "tenancy/organisation_detail.html",
        org=org,
        users=users,
        invitations=invitations,
        events=events,
        actions=[
            (a, to, services.ACTION_LABELS.get(a, a))
            for a, to in services.status_actions(org.status)
        ],
        status_form=StatusForm(),
        invite_form=invite_form,
        confirm_form=ConfirmForm(),
    )


@bp.route("/council/organisations/<slug>/edit", methods=["GET", "POST"])
@auth.role_required(Role.COUNCIL_ADMIN)
def organisation_edit(slug: str):
    """Change an organisation's profile and billing settings (the slug stays)."""
    org = selectors.organisation_by_slug(db_session(), slug)
    form = OrganisationForm(obj=org)
    if request.method == "GET" and org.tax_rate_bp is not None:
        form.tax_rate_percent.data = Decimal(org.tax_rate_bp) / 100
    form.slug.data = org.slug
    if form.validate_on_submit():
        data = _organisation_data(form)
        data.pop("slug")
        with committed(form, aliases={"tax_rate_bp": "tax_rate_percent"}) as saved:
            services.organisation_update(db_session(), actor=g.actor, organisation=org, data=data)
        if saved:
            flash(_("Organisation saved."), "success")
            return redirect(url_for("tenancy.organisation_detail", slug=org.slug))
    elif request.method == "POST":
        data = _organisation_data(form)
        data.pop("slug")
        _every_problem(form, data, kind="update", aliases={"tax_rate_bp": "tax_rate_percent"})
    status = 400 if request.method == "POST" else 200
    return render_template("tenancy/organisation_form.html", form=form, org=org), status


@bp.post("/council/organisations/<slug>/status/<action>")
@auth.role_required(Role.COUNCIL_ADMIN)
def organisation_status(slug: str, action: str):
    """Approve, decline, suspend, reactivate or close an organisation."""
    if action not in services.ACTION_TARGETS:
        abort(404)
    org = selectors.organisation_by_slug(db_session(), slug)
    form = StatusForm()
    if not form.validate_on_submit():
        flash(_("The form expired or was incomplete; nothing was changed. Try again."), "error")
        return redirect(url_for("tenancy.organisation_detail", slug=slug))
    # Not forms.committed: the page redirects, so every refusal is flashed whole.
    try:
        change = organisation_change_status(
            db_session(),
            actor=g.actor,
            organisation=org,
            to_status=services.ACTION_TARGETS[action],
            reason=form.reason.data,
            action=action,
        )
    except DomainError as error:
        db_session().rollback()
        flash(error.detail, "error")
    else:
        db_session().commit()
        message = _(
            "%(name)s is now %(status)s.",
            name=change.organisation.name,
            status=services.STATUS_NAMES[change.organisation.status],
        )
        if change.invited:
            # Its mail is sent by a job; the people page shows whether it went.
            message = _(
                "%(name)s is now %(status)s. An invitation to %(email)s is queued to be mailed.",
                name=change.organisation.name,
                status=services.STATUS_NAMES[change.organisation.status],
                email=change.invited,
            )
        flash(message, "success")
        if change.not_invited:
            flash(
                _(
                    "%(reason)s No invitation was sent; invite the first admin below.",
                    reason=change.not_invited,
                ),
                "error",
            )
    return redirect(url_for("tenancy.organisation_detail", slug=slug))


# ---------------------------------------------------------------- organisation admin


@bp.get("/org")
@auth.role_required(Role.ORG_ADMIN)
def org_dashboard():
    """The organisation admin's overview."""
    org = auth.current_organisation()
    user_count = people_count(db_session(), organisation_id=org.id)
    invitations = people.invitations_pending(db_session(), scope=Scope.organisation(org.id))
    events = latest_audit_events(db_session(), organisation_id=org.id)
    overview = organisation_overview(
        db_session(),
        organisation_id=org.id,
        idle_days=settings_get(db_session()).idle_seat_days,
        now=now_utc(),
    )
    seat_days = seat_days_this_month(db_session(), organisation_id=org.id, now=now_utc())
    return render_template(
        "tenancy/org_dashboard.html",
        seat_days=seat_days,
        org=org,
        user_count=user_count,
        invitations=invitations,
        events=events,
        overview=overview,
    )


@bp.route("/org/profile", methods=["GET", "POST"])
@auth.role_required(Role.ORG_ADMIN)
def org_profile():
    """The organisation's own profile; billing settings are the council's to change."""
    org = auth.current_organisation()
    form = OrgProfileForm(obj=org)
    if form.validate_on_submit():
        with committed(form) as saved:
            services.organisation_update(
                db_session(), actor=g.actor, organisation=org, data=form_values(form)
            )
        if saved:
            flash(_("Profile saved."), "success")
            return redirect(url_for("tenancy.org_profile"))
    elif request.method == "POST":
        _every_problem(form, form_values(form), kind="update")
    status = 400 if request.method == "POST" else 200
    return render_template("tenancy/org_profile.html", form=form, org=org), status
