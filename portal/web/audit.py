"""The audit log page: council admins see everything, org admins their own organisation."""

from flask import Blueprint, flash, redirect, render_template, request, url_for
from flask_login import current_user

from portal.audit.selectors import audit_chain_state, audit_events_list
from portal.audit.services import audit_chain_check
from portal.db import db_session
from portal.forms import committed
from portal.identity import auth
from portal.identity.forms import ConfirmForm
from portal.kernel.actor import Role
from portal.kernel.scope import Scope, scope_of
from portal.tenancy.selectors import organisation_by_slug

bp = Blueprint("audit", __name__)


@bp.get("/audit")
@auth.role_required(Role.COUNCIL_ADMIN, Role.ORG_ADMIN)
def audit_log():
    """Newest changes first, filterable by action (and by organisation for the council)."""
    page = request.args.get("page", 1, type=int) or 1
    action = request.args.get("action", "").strip()[:80] or None
    org = None
    if current_user.role == Role.COUNCIL_ADMIN:
        slug = request.args.get("organisation", "").strip()
        org = organisation_by_slug(db_session(), slug) if slug else None
        scope = Scope.organisation(org.id) if org else scope_of(auth.current_actor())
    else:
        org = auth.current_organisation()
        scope = Scope.organisation(org.id)
    events = audit_events_list(db_session(), scope=scope, action_prefix=action, page=page)
    return render_template("audit/log.html", events=events, org=org, action=action or "")


@bp.get("/audit/chain")
@auth.role_required(Role.COUNCIL_ADMIN, Role.FINANCE)
def chain():
    """The audit log's hash chain: its length, last link and the last check's result."""
    return render_template(
        "audit/chain.html", state=audit_chain_state(db_session()), form=ConfirmForm()
    )


@bp.post("/audit/chain/verify")
@auth.role_required(Role.COUNCIL_ADMIN, Role.FINANCE)
def chain_verify():
    """Walk the whole chain now (in the request, streaming), record and show the result."""
    form = ConfirmForm()
    if not form.validate_on_submit():
        flash("The form expired; nothing was checked. Try again.", "error")
        return redirect(url_for("audit.chain"))
    with committed(form) as saved:
        report = audit_chain_check(db_session(), actor=auth.current_actor())
    if saved:
        if report.intact:
            flash(f"Chain intact: {report.events} events checked.", "success")
        else:
            flash(f"The chain is {report.describe()}", "error")
    return redirect(url_for("audit.chain"))
