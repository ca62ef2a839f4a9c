"""Invitations: single-use links to create an account with a role, and accepting them.

Approving a membership application invites its applicant as the organisation's
first admin (:func:`organisation_change_status`): tenancy keeps the status
lifecycle, and identity, which sits above it, adds the invitation.

Services take the database session and an :class:`Actor`, flush but never
commit, and raise domain errors with stable codes.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Annotated, Any

import sqlalchemy as sa
from flask import current_app
from pydantic import BaseModel, ConfigDict, StringConstraints
from sqlalchemy.orm import Session

from portal.audit.services import audit_record
from portal.db import council_wide
from portal.i18n import state_word
from portal.identity.accounts import check_password, ensure_email_free, require_people_manager
from portal.identity.models import Invitation, InvitationState, User
from portal.identity.security import hash_password, new_token, token_digest
from portal.identity.selectors import organisation_language
from portal.kernel.actor import Actor, Role
from portal.kernel.clock import now_utc
from portal.kernel.errors import (
    Conflict,
    InvalidState,
    NotFound,
    ValidationFailed,
)
from portal.kernel.i18n import _l
from portal.kernel.policy import Action
from portal.mail import build_message, mail_queue
from portal.tenancy.models import Organisation, OrganisationStatus
from portal.tenancy.services import organisation_transition
from portal.validation import Email, Stripped, parse


class _InvitationFields(BaseModel):
    model_config = ConfigDict(extra="forbid")
    email: Email


def invitation_create(
    session: Session,
    *,
    actor: Actor,
    email: str,
    role: Role | str,
    organisation: Organisation | None,
    vendor: Any = None,
) -> tuple[Invitation, str]:
    """Invite someone to create an account with ``role``; mails a single-use link.

    An earlier pending invitation for the same email and organisation (or vendor) is
    revoked, so only the newest link works. Returns the invitation and its token.

    ``vendor`` (a :class:`portal.catalogue.models.Vendor`: identity sits below the
    catalogue, so any object with ``id`` and ``name``) goes with the ``vendor_admin``
    role only, which has no organisation (SPEC 8.1); only council admins invite one.
    """
    try:
        role = Role(role)
    except ValueError as exc:
        raise ValidationFailed(
            _l("Choose a role."), errors={"role": [_l("Choose a role.")]}
        ) from exc
    fields = parse(_InvitationFields, {"email": email})
    if role == Role.VENDOR_ADMIN:
        fits = organisation is None and vendor is not None
    else:
        fits = role.is_council == (organisation is None) and vendor is None
    if not fits:
        raise ValidationFailed(
            _l("That role does not fit."), errors={"role": [_l("This role does not fit.")]}
        )
    require_people_manager(
        actor, Action.USER_INVITE, organisation.id if organisation else None, role
    )
    if organisation is not None and organisation.status != OrganisationStatus.ACTIVE:
        raise InvalidState(
            _l(
                "%(organisation)s is %(status)s; invitations can be sent once it is active.",
                organisation=organisation.name,
                status=state_word(organisation.status),
            ),
            code="organisation_not_active",
        )
    org_id = organisation.id if organisation else None
    vendor_id = vendor.id if vendor is not None else None
    # One account per email across the council: whose it is, whatever the inviter's scope.
    with council_wide(session):
        existing = session.scalar(sa.select(User).where(User.email == fields.email))
    if existing is not None and not _awaits_activation(existing, org_id, role):
        ensure_email_free(session, fields.email)
    now = now_utc()
    session.execute(
        sa.update(Invitation)
        .where(
            Invitation.email == fields.email,
            Invitation.organisation_id.is_(None)
            if org_id is None
            else Invitation.organisation_id == org_id,
            Invitation.vendor_id.is_(None)
            if vendor_id is None
            else Invitation.vendor_id == vendor_id,
            Invitation.accepted_at.is_(None),
            Invitation.revoked_at.is_(None),
        )
        .values(revoked_at=now)
    )
    token = new_token()
    days = current_app.config["PORTAL_INVITATION_DAYS"]
    invitation = Invitation(
        organisation_id=org_id,
        email=fields.email,
        role=role,
        vendor_id=vendor_id,
        token_hash=token_digest(token),
        invited_by_id=actor.user_id,
        expires_at=now + dt.timedelta(days=days),
    )
    session.add(invitation)
    session.flush()
    audit_record(
        session,
        actor=actor,
        action="invitation.create",
        target_type="invitation",
        target_id=invitation.id,
        target_label=fields.email,
        organisation_id=org_id,
        after={
            "email": fields.email,
            "role": role.value,
            **({"vendor": vendor.name} if vendor is not None else {}),
        },
    )
    base = current_app.config["PORTAL_BASE_URL"]
    mail_queue(
        session,
        build_message(
            to=fields.email,
            subject=_l(
                "You are invited to the %(council)s portal",
                council=current_app.config["PORTAL_COUNCIL_NAME"],
            ),
            # Someone without an account yet: their organisation's admins' language, else
            # the language the inviter is using.
            locale=organisation_language(session, org_id) if org_id is not None else None,
            template="invitation",
            link=f"{base}/invitations/{token}",
            organisation=organisation,
            vendor_name=vendor.name if vendor is not None else None,
            role=role,
            inviter=actor.label,
            days=days,
        ),
        organisation_id=org_id,
        related=("invitation", invitation.id),
        actor=actor,
    )
    return invitation, token


def _awaits_activation(user: User, organisation_id: int | None, role: Role) -> bool:
    """An account created without a password (provisioned), waiting for its person."""
    return (
        user.password_hash is None
        and user.is_active
        and user.organisation_id == organisation_id
        and user.organisation_id is not None
        and role == Role.MEMBER
    )


def invitation_by_token(session: Session, token: str) -> Invitation:
    """The pending invitation a link carries, or an error that says why it no longer works."""
    invitation = session.scalar(
        sa.select(Invitation).where(Invitation.token_hash == token_digest(token or ""))
    )
    if invitation is None:
        raise NotFound(
            _l("This invitation link is not valid. Ask for a new invitation."),
            code="invitation_invalid",
        )
    state = invitation.state
    if state == InvitationState.ACCEPTED:
        raise InvalidState(
            _l("This invitation has already been used. Sign in instead."), code="invitation_used"
        )
    if state == InvitationState.REVOKED:
        raise InvalidState(
            _l("This invitation was replaced or withdrawn. Use the newest link you got."),
            code="invitation_revoked",
        )
    if state == InvitationState.EXPIRED:
        raise InvalidState(
            _l("This invitation has expired. Ask for a new one."), code="invitation_expired"
        )
    return invitation


class _AcceptFields(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: Annotated[str, Stripped, StringConstraints(min_length=1, max_length=200)]


def invitation_accept(
    session: Session, *, token: str, name: str, password: str, ip: str | None = None
) -> User:
    """Turn a pending invitation into an account with a password; the link is then spent."""
    invitation = invitation_by_token(session, token)
    # Lock the row and re-read it (populate_existing): a parallel acceptance that
    # committed while we waited must be seen, not the copy loaded before the lock.
    locked = session.execute(
        sa.select(Invitation)
        .where(Invitation.id == invitation.id)
        .with_for_update(of=Invitation)
        .execution_options(populate_existing=True)
    ).scalar_one()
    if locked.accepted_at is not None:
        raise InvalidState(_l("This invitation has already been used."), code="invitation_used")
    fields = parse(_AcceptFields, {"name": name})
    check_password(password)
    org = locked.organisation
    if org is not None and org.status != OrganisationStatus.ACTIVE:
        raise InvalidState(
            _l(
                "%(org)s is %(status)s; the invitation cannot be used now.",
                org=org.name,
                status=state_word(org.status),
            ),
            code="organisation_not_active",
        )
    user = session.scalar(sa.select(User).where(User.email == locked.email))
    if user is not None and _awaits_activation(user, locked.organisation_id, locked.role):
        # An account provisioned before (a seat given to a new email): activate it.
        user.name = fields.name
        user.password_hash = hash_password(password)
    else:
        ensure_email_free(session, locked.email)
        user = User(
            email=locked.email,
            name=fields.name,
            role=locked.role,
            organisation_id=locked.organisation_id,
            vendor_id=locked.vendor_id,
            password_hash=hash_password(password),
        )
        session.add(user)
    locked.accepted_at = now_utc()
    session.flush()
    audit_record(
        session,
        actor=Actor.person(user, ip),
        action="invitation.accept",
        target_type="user",
        target_id=user.id,
        target_label=user.email,
        organisation_id=user.organisation_id,
        after={"email": user.email, "role": user.role},
    )
    return user


def invitation_revoke(session: Session, *, actor: Actor, invitation: Invitation) -> None:
    """Withdraw a pending invitation."""
    require_people_manager(actor, Action.USER_INVITATION_REVOKE, invitation.organisation_id)
    if invitation.state != InvitationState.PENDING:
        raise InvalidState(
            _l("This invitation is %(state)s.", state=state_word(invitation.state)),
            code="invitation_not_pending",
        )
    invitation.revoked_at = now_utc()
    session.flush()
    audit_record(
        session,
        actor=actor,
        action="invitation.revoke",
        target_type="invitation",
        target_id=invitation.id,
        target_label=invitation.email,
        organisation_id=invitation.organisation_id,
    )


# ---------------------------------------------------------------- approving applications


@dataclass(frozen=True)
class StatusChange:
    """What changing an organisation's status did.

    ``invited`` is the applicant's email when approving sent them an invitation;
    ``not_invited`` says why approving sent none although there is an applicant
    (their email already has an account): the approval stands, and the council
    invites the first admin by hand.
    """

    organisation: Organisation
    invited: str | None = None
    not_invited: str | None = None


def organisation_change_status(
    session: Session,
    *,
    actor: Actor,
    organisation: Organisation,
    to_status: OrganisationStatus | str,
    reason: str | None = None,
    action: str | None = None,
) -> StatusChange:
    """Move an organisation through its lifecycle; approving invites the applicant.

    The transition is :func:`portal.tenancy.services.organisation_transition`'s
    (same ``action`` check). When it approves an application that names an
    applicant, an invitation to become the organisation's admin goes to them, in
    a savepoint: an email that already has an account leaves the approval
    standing without an invitation; any other refusal undoes both.
    """
    was_pending = organisation.status == OrganisationStatus.PENDING
    org = organisation_transition(
        session,
        actor=actor,
        organisation=organisation,
        to_status=to_status,
        reason=reason,
        action=action,
    )
    approved = was_pending and org.status == OrganisationStatus.ACTIVE
    if not approved or not org.applicant_email:
        return StatusChange(org)
    try:
        with session.begin_nested():
            invitation_create(
                session,
                actor=actor,
                email=org.applicant_email,
                role=Role.ORG_ADMIN,
                organisation=org,
            )
    except Conflict as error:
        if error.code != "email_taken":
            raise
        return StatusChange(org, not_invited=error.detail)
    return StatusChange(org, invited=org.applicant_email)
