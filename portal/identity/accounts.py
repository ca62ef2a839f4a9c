"""Writes on accounts: creating them, roles, (de)activation, one's own profile.

Services take the database session and an :class:`Actor`, flush but never
commit, and raise domain errors with stable codes.
"""

from __future__ import annotations

from typing import Annotated

import sqlalchemy as sa
from pydantic import BaseModel, ConfigDict, StringConstraints
from sqlalchemy.orm import Session

from portal.audit.services import audit_record
from portal.db import council_wide
from portal.identity.models import User
from portal.identity.security import hash_password, password_problems
from portal.identity.sign_in import sessions_revoke_for_user
from portal.kernel import policy
from portal.kernel.actor import ORG_ROLES, Actor, Role
from portal.kernel.errors import (
    Conflict,
    InvalidState,
    PermissionDenied,
    ValidationFailed,
)
from portal.kernel.i18n import LANGUAGES, _l
from portal.kernel.policy import Action
from portal.signals import user_deactivated, user_profile_changed
from portal.tenancy.models import Organisation
from portal.validation import Email, Stripped, parse

PersonName = Annotated[str, Stripped, StringConstraints(max_length=200)]


def ensure_email_free(session: Session, email: str) -> None:
    # One account per email across the council: the rule reads every organisation's.
    with council_wide(session):
        taken = session.scalar(sa.select(User.id).where(User.email == email)) is not None
    if taken:
        raise Conflict(
            _l("%(email)s already has an account.", email=email),
            code="email_taken",
            errors={"email": [_l("This email already has an account.")]},
        )


def check_password(password: str, field: str = "password") -> None:
    problems = password_problems(password or "")
    if problems:
        raise ValidationFailed(_l("Choose another password."), errors={field: problems})


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
    vendor_id: int | None = None,
) -> User:
    """Create an account directly (the CLI's ``create-admin``, demo data, SSO provisioning).

    ``vendor_id`` goes with the ``vendor_admin`` role only (SPEC 8.1: no organisation).
    """
    try:
        role = Role(role)
    except ValueError as exc:
        raise ValidationFailed(
            _l("Choose a role."), errors={"role": [_l("Choose a role.")]}
        ) from exc
    require_people_manager(
        actor, Action.USER_CREATE, organisation.id if organisation else None, role
    )
    fields = parse(_NewAccount, {"email": email, "name": name})
    if role == Role.VENDOR_ADMIN:
        fits = organisation is None and vendor_id is not None
    else:
        fits = role.is_council == (organisation is None) and vendor_id is None
    if not fits:
        raise ValidationFailed(
            _l("Council roles have no organisation; organisation roles need one."),
            errors={"role": [_l("This role does not fit the organisation given.")]},
        )
    ensure_email_free(session, fields.email)
    if password is not None:
        check_password(password)
    user = User(
        email=fields.email,
        name=fields.name,
        role=role,
        organisation_id=organisation.id if organisation else None,
        vendor_id=vendor_id,
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


def require_people_manager(
    actor: Actor, action: Action, organisation_id: int | None, role: Role | None = None
) -> None:
    """Refuse unless ``actor`` may do ``action`` to the people of ``organisation_id`` (None:
    council staff), giving ``role``: council admins manage everyone, org admins their own
    organisation's people in organisation roles (:mod:`portal.kernel.policy`)."""
    policy.require(
        actor, action, organisation_id=organisation_id, message=_l("You may not manage accounts.")
    )
    if role is not None and role not in ORG_ROLES and not policy.allowed(actor, action):
        raise PermissionDenied(_l("Only council admins give council roles."))


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
        raise ValidationFailed(
            _l("Choose a role."), errors={"role": [_l("Choose a role.")]}
        ) from exc
    require_people_manager(actor, Action.USER_CHANGE_ROLE, user.organisation_id, role)
    if Role.VENDOR_ADMIN in (role, user.role) and role != user.role:
        raise ValidationFailed(
            _l("A vendor admin stays a vendor admin; invite the person again for another role."),
            errors={"role": [_l("Choose a role on the same side.")]},
        )
    if role.is_council != user.role.is_council:
        raise ValidationFailed(
            _l("Council and organisation roles cannot be swapped."),
            errors={"role": [_l("Choose a role on the same side.")]},
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
            _l("This is the organisation's only admin. Make someone else an admin first."),
            code="last_org_admin",
        )
    before = {"role": user.role}
    user.role = role
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
    require_people_manager(actor, Action.USER_SET_ACTIVE, user.organisation_id)
    if user.id == actor.user_id and not active:
        raise InvalidState(_l("You cannot deactivate your own account."), code="self_deactivation")
    if user.is_active == active:
        return user
    if (
        not active
        and user.role == Role.ORG_ADMIN
        and user.organisation_id is not None
        and _active_org_admins(session, user.organisation_id) <= 1
    ):
        raise InvalidState(
            _l("This is the organisation's only admin. Make someone else an admin first."),
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


class _Profile(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: Annotated[str, Stripped, StringConstraints(min_length=1, max_length=200)]


def profile_update(session: Session, *, actor: Actor, user: User, name: str) -> User:
    """Change one's own display name."""
    policy.require(
        actor,
        Action.USER_PROFILE_UPDATE,
        organisation_id=user.organisation_id,
        user_id=user.id,
        message=_l("You may change only your own profile."),
    )
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
    if before["name"] != user.name:
        user_profile_changed.send(user, session=session, actor=actor, fields=["name"])
    return user


def language_choose(session: Session, *, actor: Actor, user: User, language: str | None) -> User:
    """Choose the language of one's own pages and mail (``None``: the browser's)."""
    policy.require(
        actor,
        Action.USER_PROFILE_UPDATE,
        organisation_id=user.organisation_id,
        user_id=user.id,
        message=_l("You may change only your own profile."),
    )
    if language is not None and language not in LANGUAGES:
        raise ValidationFailed(
            _l("The portal speaks English and Russian only."),
            errors={"language": [_l("Choose English or Russian.")]},
        )
    if user.locale == language:
        return user
    before = {"locale": user.locale}
    user.locale = language
    session.flush()
    audit_record(
        session,
        actor=actor,
        action="user.choose_language",
        target_type="user",
        target_id=user.id,
        target_label=user.email,
        organisation_id=user.organisation_id,
        before=before,
        after={"locale": language},
    )
    return user
