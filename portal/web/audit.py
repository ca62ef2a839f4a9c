"""The audit log page: council admins see everything, org admins their own organisation."""

from flask import Blueprint, render_template, request
from flask_login import current_user

from portal.audit.selectors import audit_events_list
from portal.db import db_session
from portal.identity import auth
from portal.kernel.actor import Role
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
        events = audit_events_list(
            db_session(),
            organisation_id=org.id if org else None,
            all_organisations=True,
            action_prefix=action,
            page=page,
        )
    else:
        org = auth.current_organisation()
        events = audit_events_list(
            db_session(), organisation_id=org.id, action_prefix=action, page=page
        )
    return render_template("audit/log.html", events=events, org=org, action=action or "")
