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
from portal.forms import committed, confirmation_needed
from portal.identity import accounts, auth, invitations, selectors
from portal.identity.forms import ConfirmForm, InviteForm, RoleForm
from portal.kernel.actor import COUNCIL_ROLES, ORG_ROLES, Role
from portal.kernel.errors import DomainError
from portal.kernel.i18n import _, _n
from portal.kernel.scope import Scope
from portal.mail import selectors as mail_selectors
from portal.seats.selectors import my_seats
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


def _role_label(value: str) -> str:
    try:
        return Role(value).label
    except ValueError:
        return value


def _list(scope: str, slug: str | None = None, invite_form: InviteForm | None = None):
    org, _back = _resolve(scope, slug)
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
    if invite_form is None:
        invite_form = InviteForm(prefix="invite", formdata=None)
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
        role_label=_role_label,
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
            flash(
                _("Invitation to %(email)s created; its mail is queued.", email=form.email.data),
                "success",
            )
            return redirect(back)
    if form.csrf_token.errors:
        flash(_("The form expired; nothing was sent. Try again."), "error")
    # The list again, with every field's message and what was typed kept.
    return _list(scope, slug, invite_form=form), 400


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
            flash(
                _(
                    "%(email)s is now %(role)s.",
                    email=user.email,
                    role=_role_label(user.role).lower(),
                ),
                "success",
            )
    else:
        flash(_("Choose a role from the list; nothing was changed."), "error")
    return redirect(back)


def _confirm_deactivation(user, back: str):
    """The confirm step of a deactivation: who, their sessions, and the seats they lose."""
    person = f"{user.name} ({user.email})" if user.name else user.email
    consequences = [
        _(
            "%(person)s can no longer sign in, and every session of theirs ends now.",
            person=person,
        )
    ]
    if user.organisation_id is not None:
        seats = my_seats(db_session(), organisation_id=user.organisation_id, user_id=user.id)
        if seats:
            consequences.append(
                _n(
                    "Their %(num)d seat (%(products)s) is released; it stays reserved for "
                    "the organisation.",
                    "Their %(num)d seats (%(products)s) are released; they stay reserved for "
                    "the organisation.",
                    len(seats),
                    products=", ".join(seat.subscription.product.name for seat in seats),
                )
            )
    consequences.append(
        _("You can reactivate the account later; released seats are not given back.")
    )
    return confirmation_needed(
        title=_("Deactivate %(person)s?", person=person),
        consequences=consequences,
        confirm_label=_("Deactivate"),
        cancel_url=back,
    )


def set_active(scope: str, user_id: int, active: str, slug: str | None = None):
    """Deactivate or reactivate a person."""
    org, back = _resolve(scope, slug)
    user = selectors.user_in_scope(db_session(), **_people_of(org), user_id=user_id)
    if not ConfirmForm().validate_on_submit():
        flash(_("The form expired; nothing was changed. Try again."), "error")
        return redirect(back)
    if active == "deactivate" and user.is_active:
        page = _confirm_deactivation(user, back)
        if page is not None:
            return page  # the confirm step: nothing changes until it is confirmed
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
        if user.is_active:
            flash(_("%(email)s is active again.", email=user.email), "success")
        else:
            flash(_("%(email)s is deactivated.", email=user.email), "success")
    return redirect(back)


def revoke_invitation(scope: str, invitation_id: int, slug: str | None = None):
    """Withdraw a pending invitation."""
    org, back = _resolve(scope, slug)
    invitation = selectors.invitation_in_scope(
        db_session(), **_people_of(org), invitation_id=invitation_id
    )
    if not ConfirmForm().validate_on_submit():
        flash(_("The form expired; nothing was changed. Try again."), "error")
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
        flash(_("The invitation to %(email)s is withdrawn.", email=invitation.email), "success")
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
