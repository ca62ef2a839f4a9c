"""Writes on accounts: sign-in, sessions, invitations, roles, passwords.

Services take the database session and an :class:`Actor`, flush but never
commit, and raise domain errors with stable codes.
"""

from __future__ import annotations

import datetime as dt
import hashlib
from typing import Annotated, Any

import sqlalchemy as sa
from flask import current_app
from itsdangerous import BadSignature, SignatureExpired, URLSafeTimedSerializer
from pydantic import BaseModel, ConfigDict, StringConstraints
from sqlalchemy.orm import Session

from portal.audit.services import audit_record
from portal.identity.models import Invitation, User, UserSession
from portal.identity.security import (
    hash_password,
    new_token,
    password_problems,
    token_digest,
    verify_password,
)
from portal.kernel.actor import COUNCIL_ROLES, ORG_ROLES, Actor, Role
from portal.kernel.clock import now_utc
from portal.kernel.errors import (
    Conflict,
    DomainError,
    InvalidState,
    NotFound,
    PermissionDenied,
    ValidationFailed,
)
from portal.mail import build_message, mail_queue
from portal.signals import organisation_status_changed, user_deactivated
from portal.tenancy.models import Organisation, OrganisationStatus
from portal.validation import Email, Stripped, parse

PersonName = Annotated[str, Stripped, StringConstraints(max_length=200)]


class SignInRefused(DomainError):
    """Sign-in was refused. The message says no more than the person may know."""

    status = 401
    code = "invalid_credentials"
    title = "Sign-in refused"


GENERIC_SIGN_IN_FAILURE = "That email and password do not match an account."


# ---------------------------------------------------------------- sign-in


def authenticate(session: Session, *, email: str, password: str) -> User:
    """The account for ``email`` and ``password``, or :class:`SignInRefused`.

    Unknown emails and wrong passwords get the same generic message and take the
    same time. Only after a correct password does the message say that the
    account is deactivated or the organisation suspended or closed.
    """
    normalised = (email or "").strip().lower()
    user = session.scalar(sa.select(User).where(User.email == normalised)) if normalised else None
    ok = verify_password(user.password_hash if user else None, password or "")
    if user is None or not ok:
        raise SignInRefused(GENERIC_SIGN_IN_FAILURE)
    refusal = sign_in_refusal(user)
    if refusal:
        raise SignInRefused(refusal, code="account_unavailable")
    return user


def sign_in_refusal(user: User) -> str | None:
    """Why this account may not be signed in now, or ``None`` when it may."""
    if not user.is_active:
        return "This account has been deactivated. Ask your organisation's admin to restore it."
    org = user.organisation
    if org is not None and org.status != OrganisationStatus.ACTIVE:
        if org.status == OrganisationStatus.SUSPENDED:
            why = f" Reason: {org.status_reason}." if org.status_reason else ""
            return (
                f"{org.name} is suspended, so its accounts cannot sign in.{why} "
                "Contact the council."
            )
        if org.status == OrganisationStatus.CLOSED:
            return f"{org.name}'s membership is closed, so its accounts cannot sign in."
        return f"{org.name}'s membership application is still under review."
    return None


def session_start(session: Session, *, user: User, ip: str | None, user_agent: str | None) -> str:
    """Open a server-side sign-in session and return its token (kept only in the cookie)."""
    token = new_token()
    session.add(
        UserSession(
            user_id=user.id,
            organisation_id=user.organisation_id,
            token_hash=token_digest(token),
            ip=ip,
            user_agent=(user_agent or "")[:300],
        )
    )
    user.last_login_at = now_utc()
    session.flush()
    audit_record(
        session,
        actor=Actor.for_user(user, ip),
        action="user.sign_in",
        target_type="user",
        target_id=user.id,
        target_label=user.email,
        organisation_id=user.organisation_id,
    )
    return token


def session_user(session: Session, token: str) -> User | None:
    """The user a sign-in session token belongs to, if it is still good."""
    row = session.scalar(
        sa.select(UserSession).where(
            UserSession.token_hash == token_digest(token), UserSession.revoked_at.is_(None)
        )
    )
    if row is None or sign_in_refusal(row.user) is not None:
        return None
    return row.user


def session_revoke(session: Session, token: str) -> None:
    """End one sign-in session (sign-out)."""
    session.execute(
        sa.update(UserSession)
        .where(UserSession.token_hash == token_digest(token), UserSession.revoked_at.is_(None))
        .values(revoked_at=now_utc())
    )


def sessions_revoke_for_user(session: Session, *, user_id: int) -> None:
    """End every sign-in session of a user (deactivation, password change)."""
    session.execute(
        sa.update(UserSession)
        .where(UserSession.user_id == user_id, UserSession.revoked_at.is_(None))
        .values(revoked_at=now_utc())
    )


@organisation_status_changed.connect
def _revoke_sessions_of_unavailable_org(organisation: Organisation, **kwargs: Any) -> None:
    """A suspended or closed organisation's people are signed out at once."""
    if organisation.status in (OrganisationStatus.SUSPENDED, OrganisationStatus.CLOSED):
        kwargs["session"].execute(
            sa.update(UserSession)
            .where(UserSession.organisation_id == organisation.id, UserSession.revoked_at.is_(None))
            .values(revoked_at=now_utc())
        )


# ---------------------------------------------------------------- accounts


def _ensure_email_free(session: Session, email: str) -> None:
    if session.scalar(sa.select(User.id).where(User.email == email)) is not None:
        raise Conflict(
            f"{email} already has an account.",
            code="email_taken",
            errors={"email": ["This email already has an account."]},
        )


def _check_password(password: str, field: str = "password") -> None:
    problems = password_problems(password or "")
    if problems:
        raise ValidationFailed("Choose another password.", errors={field: problems})


class _NewAccount(BaseModel):
    model_config = ConfigDict(extra="forbid")
    email: Email
    name: PersonName = ""


def user_create(
    session: Session,
    *,
    actor: Actor,
    email: str,
    role: Role | str,
    organisation: Organisation | None = None,
    name: str = "",
    password: str | None = None,
) -> User:
    """Create an account directly (the CLI's ``create-admin``, demo data, SSO provisioning)."""
    fields = parse(_NewAccount, {"email": email, "name": name})
    role = Role(role)
    if role.is_council != (organisation is None):
        raise ValidationFailed(
            "Council roles have no organisation; organisation roles need one.",
            errors={"role": ["This role does not fit the organisation given."]},
        )
    _ensure_email_free(session, fields.email)
    if password is not None:
        _check_password(password)
    user = User(
        email=fields.email,
        name=fields.name,
        role=role.value,
        organisation_id=organisation.id if organisation else None,
        password_hash=hash_password(password) if password else None,
    )
    session.add(user)
    session.flush()
    audit_record(
        session,
        actor=actor,
        action="user.create",
        target_type="user",
        target_id=user.id,
        target_label=user.email,
        organisation_id=user.organisation_id,
        after={"email": user.email, "role": user.role},
    )
    return user


def _may_manage_people(actor: Actor, organisation_id: int | None, role: Role | None = None) -> None:
    """Council admins manage everyone; org admins only their own organisation's people."""
    if actor.role is None or actor.role == Role.COUNCIL_ADMIN:
        return
    if actor.role == Role.ORG_ADMIN and organisation_id is not None:
        if actor.organisation_id != organisation_id:
            raise NotFound("No such person in your organisation.")
        if role is not None and role not in ORG_ROLES:
            raise PermissionDenied("Organisation admins can only give organisation roles.")
        return
    raise PermissionDenied("You may not manage accounts.")


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
) -> tuple[Invitation, str]:
    """Invite someone to create an account with ``role``; mails a single-use link.

    An earlier pending invitation for the same email and organisation is revoked,
    so only the newest link works. Returns the invitation and its token.
    """
    try:
        role = Role(role)
    except ValueError as exc:
        raise ValidationFailed("Choose a role.", errors={"role": ["Choose a role."]}) from exc
    fields = parse(_InvitationFields, {"email": email})
    if role.is_council != (organisation is None):
        raise ValidationFailed(
            "That role does not fit.", errors={"role": ["This role does not fit."]}
        )
    _may_manage_people(actor, organisation.id if organisation else None, role)
    if role.is_council and actor.role not in (None, Role.COUNCIL_ADMIN):
        raise PermissionDenied("Only council admins invite council staff.")
    if organisation is not None and organisation.status != OrganisationStatus.ACTIVE:
        raise InvalidState(
            f"{organisation.name} is {organisation.status}; "
            "invitations can be sent once it is active.",
            code="organisation_not_active",
        )
    org_id = organisation.id if organisation else None
    existing = session.scalar(sa.select(User).where(User.email == fields.email))
    if existing is not None and not _awaits_activation(existing, org_id, role):
        _ensure_email_free(session, fields.email)
    now = now_utc()
    session.execute(
        sa.update(Invitation)
        .where(
            Invitation.email == fields.email,
            Invitation.organisation_id.is_(None)
            if org_id is None
            else Invitation.organisation_id == org_id,
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
        role=role.value,
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
        after={"email": fields.email, "role": role.value},
    )
    base = current_app.config["PORTAL_BASE_URL"]
    mail_queue(
        session,
        build_message(
            to=fields.email,
            subject=f"You are invited to the {current_app.config['PORTAL_COUNCIL_NAME']} portal",
            template="invitation",
            link=f"{base}/invitations/{token}",
            organisation=organisation,
            role=role,
            inviter=actor.label,
            days=days,
        ),
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


def _not_assignable(email: str, organisation: Organisation) -> Conflict:
    """The one answer for an address this organisation cannot give a seat to.

    An account in another organisation (or on the council's staff) and a new
    address on a domain another organisation has verified get the same answer,
    which names neither: it must not tell an organisation's admin who has an
    account elsewhere.
    """
    return Conflict(
        f"{email} cannot be given a seat in {organisation.name}.",
        code="email_not_assignable",
        errors={"user_email": ["This address cannot be given a seat in this organisation."]},
    )


def _domain_verified_elsewhere(session: Session, email: str, organisation_id: int) -> bool:
    """Whether another organisation has verified the address's domain (its people sign in
    through that organisation's provider, so they cannot be provisioned here)."""
    from portal.sso.models import EmailDomain

    domain = email.rpartition("@")[2]
    return (
        session.scalar(
            sa.select(EmailDomain.id).where(
                EmailDomain.domain == domain,
                EmailDomain.status == "verified",
                EmailDomain.organisation_id != organisation_id,
            )
        )
        is not None
    )


def user_provision(
    session: Session, *, actor: Actor, organisation: Organisation, email: str
) -> User:
    """The member account for ``email`` in ``organisation``, created and invited if new.

    A new account has no password until its person follows the invitation. An
    email that belongs to another organisation or to council staff, or a new one on
    a domain another organisation has verified, is refused with one answer
    (:func:`_not_assignable`) that does not say which.
    """
    fields = parse(_InvitationFields, {"email": email})
    user = session.scalar(sa.select(User).where(User.email == fields.email))
    if user is not None:
        if user.organisation_id != organisation.id:
            raise _not_assignable(fields.email, organisation)
        return user
    if _domain_verified_elsewhere(session, fields.email, organisation.id):
        raise _not_assignable(fields.email, organisation)
    user = user_create(
        session, actor=actor, email=fields.email, role=Role.MEMBER, organisation=organisation
    )
    invitation_create(
        session, actor=actor, email=fields.email, role=Role.MEMBER, organisation=organisation
    )
    return user


def invitation_by_token(session: Session, token: str) -> Invitation:
    """The pending invitation a link carries, or an error that says why it no longer works."""
    invitation = session.scalar(
        sa.select(Invitation).where(Invitation.token_hash == token_digest(token or ""))
    )
    if invitation is None:
        raise NotFound(
            "This invitation link is not valid. Ask for a new invitation.",
            code="invitation_invalid",
        )
    state = invitation.state
    if state == "accepted":
        raise InvalidState(
            "This invitation has already been used. Sign in instead.", code="invitation_used"
        )
    if state == "revoked":
        raise InvalidState(
            "This invitation was replaced or withdrawn. Use the newest link you got.",
            code="invitation_revoked",
        )
    if state == "expired":
        raise InvalidState(
            "This invitation has expired. Ask for a new one.", code="invitation_expired"
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
        raise InvalidState("This invitation has already been used.", code="invitation_used")
    fields = parse(_AcceptFields, {"name": name})
    _check_password(password)
    org = locked.organisation
    if org is not None and org.status != OrganisationStatus.ACTIVE:
        raise InvalidState(
            f"{org.name} is {org.status}; the invitation cannot be used now.",
            code="organisation_not_active",
        )
    user = session.scalar(sa.select(User).where(User.email == locked.email))
    if user is not None and _awaits_activation(user, locked.organisation_id, Role(locked.role)):
        # An account provisioned before (a seat given to a new email): activate it.
        user.name = fields.name
        user.password_hash = hash_password(password)
    else:
        _ensure_email_free(session, locked.email)
        user = User(
            email=locked.email,
            name=fields.name,
            role=locked.role,
            organisation_id=locked.organisation_id,
            password_hash=hash_password(password),
        )
        session.add(user)
    locked.accepted_at = now_utc()
    session.flush()
    audit_record(
        session,
        actor=Actor(
            label=user.email,
            user_id=user.id,
            role=user.role,
            organisation_id=user.organisation_id,
            ip=ip,
        ),
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
    _may_manage_people(actor, invitation.organisation_id)
    if invitation.state != "pending":
        raise InvalidState(f"This invitation is {invitation.state}.", code="invitation_not_pending")
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


def _active_org_admins(session: Session, organisation_id: int) -> int:
    return (
        session.scalar(
            sa.select(sa.func.count())
            .select_from(User)
            .where(
                User.organisation_id == organisation_id,
                User.role == Role.ORG_ADMIN,
                User.is_active,
            )
        )
        or 0
    )


def user_change_role(session: Session, *, actor: Actor, user: User, role: Role | str) -> User:
    """Give an account another role within its side (council or organisation)."""
    try:
        role = Role(role)
    except ValueError as exc:
        raise ValidationFailed("Choose a role.", errors={"role": ["Choose a role."]}) from exc
    _may_manage_people(actor, user.organisation_id, role)
    if role.is_council != user.role_enum.is_council:
        raise ValidationFailed(
            "Council and organisation roles cannot be swapped.",
            errors={"role": ["Choose a role on the same side."]},
        )
    if user.role == role:
        return user
    if (
        user.role == Role.ORG_ADMIN
        and user.is_active
        and user.organisation_id is not None
        and _active_org_admins(session, user.organisation_id) <= 1
    ):
        raise InvalidState(
            "This is the organisation's only admin. Make someone else an admin first.",
            code="last_org_admin",
        )
    before = {"role": user.role}
    user.role = role.value
    session.flush()
    audit_record(
        session,
        actor=actor,
        action="user.change_role",
        target_type="user",
        target_id=user.id,
        target_label=user.email,
        organisation_id=user.organisation_id,
        before=before,
        after={"role": user.role},
    )
    return user


def user_set_active(session: Session, *, actor: Actor, user: User, active: bool) -> User:
    """Deactivate (ends every session, releases seats) or reactivate an account."""
    _may_manage_people(actor, user.organisation_id)
    if user.id == actor.user_id and not active:
        raise InvalidState("You cannot deactivate your own account.", code="self_deactivation")
    if user.is_active == active:
        return user
    if (
        not active
        and user.role == Role.ORG_ADMIN
        and user.organisation_id is not None
        and _active_org_admins(session, user.organisation_id) <= 1
    ):
        raise InvalidState(
            "This is the organisation's only admin. Make someone else an admin first.",
            code="last_org_admin",
        )
    user.is_active = active
    session.flush()
    if not active:
        sessions_revoke_for_user(session, user_id=user.id)
        user_deactivated.send(user, session=session, actor=actor)
    audit_record(
        session,
        actor=actor,
        action="user.reactivate" if active else "user.deactivate",
        target_type="user",
        target_id=user.id,
        target_label=user.email,
        organisation_id=user.organisation_id,
        before={"is_active": not active},
        after={"is_active": active},
    )
    return user


# ---------------------------------------------------------------- profile and passwords


class _Profile(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: Annotated[str, Stripped, StringConstraints(min_length=1, max_length=200)]


def profile_update(session: Session, *, actor: Actor, user: User, name: str) -> User:
    """Change one's own display name."""
    fields = parse(_Profile, {"name": name})
    before = {"name": user.name}
    user.name = fields.name
    session.flush()
    audit_record(
        session,
        actor=actor,
        action="user.update_profile",
        target_type="user",
        target_id=user.id,
        target_label=user.email,
        organisation_id=user.organisation_id,
        before=before,
        after={"name": user.name},
    )
    return user


def password_change(
    session: Session, *, actor: Actor, user: User, current: str, new: str, keep_token: str | None
) -> None:
    """Change one's own password; every other sign-in session of the account ends."""
    if not verify_password(user.password_hash, current or ""):
        raise ValidationFailed(
            "The current password is not right.",
            errors={"current_password": ["This is not your current password."]},
        )
    _check_password(new, "new_password")
    user.password_hash = hash_password(new)
    keep = token_digest(keep_token) if keep_token else ""
    session.execute(
        sa.update(UserSession)
        .where(
            UserSession.user_id == user.id,
            UserSession.revoked_at.is_(None),
            UserSession.token_hash != keep,
        )
        .values(revoked_at=now_utc())
    )
    audit_record(
        session,
        actor=actor,
        action="user.change_password",
        target_type="user",
        target_id=user.id,
        target_label=user.email,
        organisation_id=user.organisation_id,
    )


def _reset_serializer() -> URLSafeTimedSerializer:
    return URLSafeTimedSerializer(current_app.config["SECRET_KEY"], salt="password-reset")


def _password_fingerprint(user: User) -> str:
    # Changes whenever the password does, so a reset link works once.
    return hashlib.sha256((user.password_hash or "none").encode()).hexdigest()[:16]


def password_reset_request(session: Session, *, email: str, ip: str | None = None) -> None:
    """Mail a reset link if an active account has this email. Says nothing either way."""
    normalised = (email or "").strip().lower()
    user = session.scalar(sa.select(User).where(User.email == normalised)) if normalised else None
    if user is None or sign_in_refusal(user) is not None:
        return
    token = _reset_serializer().dumps({"u": user.id, "f": _password_fingerprint(user)})
    minutes = current_app.config["PORTAL_PASSWORD_RESET_MINUTES"]
    mail_queue(
        session,
        build_message(
            to=user.email,
            subject="Reset your portal password",
            template="password_reset",
            link=f"{current_app.config['PORTAL_BASE_URL']}/password/reset/{token}",
            minutes=minutes,
            user=user,
        ),
    )
    audit_record(
        session,
        actor=Actor(label=user.email, ip=ip),
        action="user.request_password_reset",
        target_type="user",
        target_id=user.id,
        target_label=user.email,
        organisation_id=user.organisation_id,
    )


def password_reset_user(session: Session, token: str) -> User:
    """The account a reset link is for, or an error if the link expired or was used."""
    minutes = current_app.config["PORTAL_PASSWORD_RESET_MINUTES"]
    try:
        data = _reset_serializer().loads(token, max_age=minutes * 60)
    except SignatureExpired as exc:
        raise InvalidState(
            "This reset link has expired. Ask for a new one.", code="reset_expired"
        ) from exc
    except BadSignature as exc:
        raise NotFound("This reset link is not valid.", code="reset_invalid") from exc
    user = session.get(User, data.get("u"))
    if user is None or _password_fingerprint(user) != data.get("f"):
        raise InvalidState(
            "This reset link has already been used. Ask for a new one.", code="reset_used"
        )
    return user


def password_reset_complete(
    session: Session, *, token: str, password: str, ip: str | None = None
) -> User:
    """Set a new password from a reset link; the link and all old sessions stop working."""
    user = password_reset_user(session, token)
    _check_password(password)
    user.password_hash = hash_password(password)
    sessions_revoke_for_user(session, user_id=user.id)
    session.flush()
    audit_record(
        session,
        actor=Actor(label=user.email, user_id=user.id, ip=ip),
        action="user.reset_password",
        target_type="user",
        target_id=user.id,
        target_label=user.email,
        organisation_id=user.organisation_id,
    )
    return user


def council_roles() -> tuple[Role, ...]:
    """Roles of council staff."""
    return COUNCIL_ROLES
