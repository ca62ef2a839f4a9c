"""Managing people: invitations, roles, deactivation.

The same actions serve three scopes, each with its own URL prefix:

* ``/org/users`` — an org admin, for their own organisation;
* ``/council/organisations/<slug>/users`` — a council admin, for any organisation;
* ``/council/staff`` — a council admin, for council staff (no organisation).

Each view resolves the scope first (who may act on which organisation), then
calls one service; services check permissions again.
"""

from __future__ import annotations

from typing import Any

from flask import Blueprint, abort, flash, redirect, render_template, request, url_for
from flask_login import current_user

from portal.db import db_session
from portal.forms import committed
from portal.identity import accounts, auth, invitations, selectors
from portal.identity.forms import ConfirmForm, InviteForm, RoleForm
from portal.kernel.actor import COUNCIL_ROLES, ORG_ROLES, Role
from portal.kernel.errors import DomainError
from portal.kernel.scope import Scope
from portal.mail import selectors as mail_selectors
from portal.tenancy.selectors import organisation_by_slug

bp = Blueprint("people", __name__)

SCOPES = {
    "org": "/org/users",
    "council_org": "/council/organisations/<slug>/users",
    "staff": "/council/staff",
}


def _resolve(scope: str, slug: str | None) -> tuple[Any, str]:
    """The organisation (None for council staff) and the page to go back to."""
    if not current_user.is_authenticated:
        abort(401)
    if scope == "org":
        if current_user.role != Role.ORG_ADMIN:
            abort(403)
        return auth.current_organisation(), url_for("people.org_users")
    if current_user.role != Role.COUNCIL_ADMIN:
        abort(403)
    if scope == "council_org":
        org = organisation_by_slug(db_session(), slug or "")
        return org, url_for("tenancy.organisation_detail", slug=org.slug)
    return None, url_for("people.staff_users")


def _people_of(org: Any) -> dict[str, Any]:
    """Selector arguments for an organisation's people, or (None) the council's staff."""
    if org is None:
        return {"scope": Scope.council(), "staff_only": True}
    return {"scope": Scope.organisation(org.id)}


def _roles_for(org: Any) -> list[tuple[str, str]]:
    roles = ORG_ROLES if org is not None else COUNCIL_ROLES
    return [(r.value, r.label) for r in roles]


def _list(scope: str, slug: str | None = None):
    org, _ = _resolve(scope, slug)
    search = request.args.get("q", "").strip()[:100]
    page = request.args.get("page", 1, type=int) or 1
    users = selectors.users_list(db_session(), **_people_of(org), search=search, page=page)
    invitations = selectors.invitations_pending(db_session(), **_people_of(org))
    invitation_mails = mail_selectors.messages_about(
        db_session(),
        scope=_people_of(org)["scope"],
        related_type="invitation",
        related_ids=[invitation.id for invitation in invitations],
        kind="invitation",
    )
    invite_form = InviteForm(prefix="invite")
    invite_form.role.choices = _roles_for(org)
    if org is not None and not invite_form.role.data:
        invite_form.role.data = Role.MEMBER.value  # colleagues are members unless chosen
    return render_template(
        "identity/people.html",
        org=org,
        scope=scope,
        users=users,
        invitations=invitations,
        invitation_mails=invitation_mails,
        invite_form=invite_form,
        role_choices=_roles_for(org),
        confirm_form=ConfirmForm(),
        role_form=RoleForm(),
        q=search,
    )


@bp.get("/org/users")
@auth.role_required(Role.ORG_ADMIN)
def org_users():
    """The organisation's people, for its admin."""
    return _list("org")


@bp.get("/council/organisations/<slug>/users")
@auth.role_required(Role.COUNCIL_ADMIN)
def council_org_users(slug: str):
    """An organisation's people, for council admins."""
    return _list("council_org", slug)


@bp.get("/council/staff")
@auth.role_required(Role.COUNCIL_ADMIN)
def staff_users():
    """Council staff accounts."""
    return _list("staff")


def invite(scope: str, slug: str | None = None):
    """Send an invitation with a role."""
    org, back = _resolve(scope, slug)
    form = InviteForm(prefix="invite")
    form.role.choices = _roles_for(org)
    if form.validate_on_submit():
        with committed(form) as saved:
            invitations.invitation_create(
                db_session(),
                actor=auth.current_actor(),
                email=form.email.data,
                role=form.role.data,
                organisation=org,
            )
        if saved:
            # The mail is sent by a job: the list below shows whether it went.
            flash(f"Invitation to {form.email.data} created; its mail is queued.", "success")
            return redirect(back)
    # The list page is another request: the form's messages go with the redirect.
    for field in (form.email, form.role):
        for message in field.errors:
            flash(f"{field.label.text}: {message}", "error")
    if form.csrf_token.errors:
        flash("The form expired; nothing was sent. Try again.", "error")
    return redirect(back)


def change_role(scope: str, user_id: int, slug: str | None = None):
    """Give a person another role."""
    org, back = _resolve(scope, slug)
    user = selectors.user_in_scope(db_session(), **_people_of(org), user_id=user_id)
    form = RoleForm()
    form.role.choices = _roles_for(org)
    if form.validate_on_submit():
        # Not forms.committed: the page redirects, so a refusal is flashed whole.
        try:
            accounts.user_change_role(
                db_session(), actor=auth.current_actor(), user=user, role=form.role.data
            )
        except DomainError as error:
            db_session().rollback()
            flash(error.detail, "error")
        else:
            db_session().commit()
            flash(f"{user.email} is now {user.role.label.lower()}.", "success")
    else:
        flash("Choose a role from the list; nothing was changed.", "error")
    return redirect(back)


def set_active(scope: str, user_id: int, active: str, slug: str | None = None):
    """Deactivate or reactivate a person."""
    org, back = _resolve(scope, slug)
    user = selectors.user_in_scope(db_session(), **_people_of(org), user_id=user_id)
    if not ConfirmForm().validate_on_submit():
        flash("The form expired; nothing was changed. Try again.", "error")
        return redirect(back)
    # Not forms.committed: the page redirects, so a refusal is flashed whole.
    try:
        accounts.user_set_active(
            db_session(), actor=auth.current_actor(), user=user, active=active == "reactivate"
        )
    except DomainError as error:
        db_session().rollback()
        flash(error.detail, "error")
    else:
        db_session().commit()
        flash(f"{user.email} is {'active again' if user.is_active else 'deactivated'}.", "success")
    return redirect(back)


def revoke_invitation(scope: str, invitation_id: int, slug: str | None = None):
    """Withdraw a pending invitation."""
    org, back = _resolve(scope, slug)
    invitation = selectors.invitation_in_scope(
        db_session(), **_people_of(org), invitation_id=invitation_id
    )
    if not ConfirmForm().validate_on_submit():
        flash("The form expired; nothing was changed. Try again.", "error")
        return redirect(back)
    # Not forms.committed: the page redirects, so a refusal is flashed whole.
    try:
        invitations.invitation_revoke(
            db_session(), actor=auth.current_actor(), invitation=invitation
        )
    except DomainError as error:
        db_session().rollback()
        flash(error.detail, "error")
    else:
        db_session().commit()
        flash(f"The invitation to {invitation.email} is withdrawn.", "success")
    return redirect(back)


for _scope, _prefix in SCOPES.items():
    # Signed-out people are sent to sign in, other roles get 403, as on the pages.
    _guard = auth.role_required(Role.ORG_ADMIN if _scope == "org" else Role.COUNCIL_ADMIN)
    bp.add_url_rule(
        f"{_prefix}/invite",
        f"{_scope}_invite",
        _guard(invite),
        methods=["POST"],
        defaults={"scope": _scope},
    )
    bp.add_url_rule(
        f"{_prefix}/<int:user_id>/role",
        f"{_scope}_role",
        _guard(change_role),
        methods=["POST"],
        defaults={"scope": _scope},
    )
    bp.add_url_rule(
        f"{_prefix}/<int:user_id>/<any(deactivate, reactivate):active>",
        f"{_scope}_active",
        _guard(set_active),
        methods=["POST"],
        defaults={"scope": _scope},
    )
    bp.add_url_rule(
        f"{_prefix}/invitations/<int:invitation_id>/revoke",
        f"{_scope}_revoke",
        _guard(revoke_invitation),
        methods=["POST"],
        defaults={"scope": _scope},
    )
