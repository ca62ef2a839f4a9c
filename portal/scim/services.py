"""Writes of SCIM provisioning: tokens, users, groups, and seats through mapped groups.

Every change goes through the owning domain's services: accounts are created
and (de)activated by :mod:`portal.identity.accounts` (deactivation ends
sessions and releases seats), seats are given and taken back by
:mod:`portal.seats.services` (so invariants 1 and 2 hold). Services flush,
never commit, and audit what they change; the SCIM endpoint commits once per
request.

Seats through groups: a group mapped to a product gives each active member a
seat of the organisation's live subscription to it, while seats last; a member
removed from the group (and in no other group mapped to the product) loses the
seat. Who could not get one is recorded in the audit log
(``scim.seat_not_assigned``) and listed on the organisation's SCIM page.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Annotated

import sqlalchemy as sa
from pydantic import BaseModel, ConfigDict, StringConstraints
from sqlalchemy.orm import Session

from portal.audit.services import audit_record
from portal.catalogue.models import Product
from portal.db import council_wide
from portal.i18n import state_word
from portal.identity import accounts as identity
from portal.identity.models import User
from portal.identity.security import new_token, token_digest, token_expiry
from portal.kernel import policy
from portal.kernel.actor import Actor, Role
from portal.kernel.clock import now_utc
from portal.kernel.errors import Conflict, DomainError, NotFound, ValidationFailed
from portal.kernel.i18n import _l
from portal.kernel.policy import Action
from portal.scim import schema, selectors
from portal.scim.models import ScimGroup, ScimGroupMember, ScimGroupProduct, ScimToken
from portal.seats import selectors as seat_selectors
from portal.seats import services as seats
from portal.signals import user_profile_changed
from portal.sso.selectors import email_domain_of, is_verified_domain_of
from portal.tenancy.models import Organisation, OrganisationStatus
from portal.validation import FutureDateTime, Stripped, check_email, parse

TOKEN_START = "scim_"  # noqa: S105 (a prefix, not a secret)
PREFIX_LENGTH = 12
LAST_USED_RESOLUTION = dt.timedelta(minutes=1)


class ScimProblem(DomainError):
    """A SCIM request the portal refuses; ``scim_type`` is RFC 7644 §3.12's keyword."""

    status = 400
    code = "scim_invalid"
    title = _l("Bad request")

    def __init__(self, detail: str, *, status: int = 400, scim_type: str | None = None) -> None:
        super().__init__(detail)
        self.status = status
        self.scim_type = scim_type


# ---------------------------------------------------------------- tokens


def _may_manage(actor: Actor, organisation_id: int | None, action: Action) -> None:
    """The organisation's admin (its SCIM client) or a council admin (the policy)."""
    policy.require(
        actor,
        action,
        organisation_id=organisation_id,
        message=_l("Only the organisation's admin manages its SCIM provisioning."),
    )


class _TokenFields(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: Annotated[str, Stripped, StringConstraints(min_length=1, max_length=200)]
    expires_at: FutureDateTime | None = None


def token_create(
    session: Session,
    *,
    actor: Actor,
    organisation: Organisation,
    name: str,
    expires_at: dt.datetime | None = None,
    never_expires: bool = False,
) -> tuple[ScimToken, str]:
    """A new SCIM bearer token; its plaintext is returned once and never stored.

    It expires at ``expires_at``, by default :data:`~portal.identity.security.TOKEN_LIFETIME`
    from now, as API tokens do; it lives until revoked only when ``never_expires`` is chosen.
    """
    _may_manage(actor, organisation.id, Action.SCIM_TOKEN_CREATE)
    expires_at = token_expiry(expires_at, never_expires)
    fields = parse(_TokenFields, {"name": name, "expires_at": expires_at})
    if organisation.status != OrganisationStatus.ACTIVE:
        raise ValidationFailed(
            _l(
                "%(organisation)s is %(status)s.",
                organisation=organisation.name,
                status=state_word(organisation.status),
            )
        )
    plaintext = new_token(TOKEN_START)
    token = ScimToken(
        organisation_id=organisation.id,
        name=fields.name,
        prefix=plaintext[:PREFIX_LENGTH],
        token_hash=token_digest(plaintext),
        created_by_id=actor.user_id,
        expires_at=fields.expires_at,
    )
    session.add(token)
    session.flush()
    audit_record(
        session,
        actor=actor,
        action="scim_token.create",
        target_type="scim_token",
        target_id=token.id,
        target_label=f"{token.prefix}… {token.name}",
        organisation_id=organisation.id,
        after={
            "name": token.name,
            "prefix": token.prefix,
            "expires_at": token.expires_at.isoformat() if token.expires_at else None,
        },
    )
    return token, plaintext


def token_revoke(session: Session, *, actor: Actor, token: ScimToken) -> ScimToken:
    """Revoke a SCIM token at once (revoking twice changes nothing)."""
    _may_manage(actor, token.organisation_id, Action.SCIM_TOKEN_REVOKE)
    if token.revoked_at is None:
        token.revoked_at = now_utc()
        session.flush()
        audit_record(
            session,
            actor=actor,
            action="scim_token.revoke",
            target_type="scim_token",
            target_id=token.id,
            target_label=f"{token.prefix}… {token.name}",
            organisation_id=token.organisation_id,
        )
    return token


def token_authenticate(session: Session, plaintext: str) -> ScimToken | None:
    """The live token for ``plaintext`` (not revoked or expired, its organisation active),
    or None."""
    if not plaintext.startswith(TOKEN_START) or len(plaintext) > 200:
        return None
    token = session.scalar(
        sa.select(ScimToken).where(ScimToken.token_hash == token_digest(plaintext))
    )
    if token is None or token.state != "active":
        return None
    if token.organisation.status != OrganisationStatus.ACTIVE:
        return None
    now = now_utc()
    if token.last_used_at is None or now - token.last_used_at >= LAST_USED_RESOLUTION:
        token.last_used_at = now
        session.flush()
    return token


def actor_for_token(token: ScimToken, ip: str | None = None) -> Actor:
    """A SCIM client acts as its organisation's admin, labelled by its token prefix."""
    return Actor.scim_token(f"SCIM {token.prefix}…", organisation_id=token.organisation_id, ip=ip)


# ---------------------------------------------------------------- users


@dataclass
class UserFields:
    """What the portal keeps of a SCIM User (:class:`portal.scim.schema.User`)."""

    email: str
    external_id: str | None = None
    given_name: str | None = None
    family_name: str | None = None
    display_name: str | None = None
    active: bool | None = None


def email_for(user_name: str | None, emails: Sequence[tuple[str, str | None, bool]]) -> str:
    """The address a SCIM user is known by: ``userName`` when it is an email, else the
    primary (or work) address. ``emails`` is (value, type, primary)."""
    candidates = [user_name or ""]
    candidates += [v for v, _, primary in emails if primary]
    candidates += [v for v, kind, _ in emails if kind == "work"]
    candidates += [v for v, _, _ in emails]
    for candidate in candidates:
        try:
            return check_email(candidate)
        except ValueError:
            continue
    raise ScimProblem(
        _l("userName (or a primary email) must be the person's email address."),
        scim_type="invalidValue",
    )


def _check_email_for(session: Session, organisation: Organisation, email: str) -> None:
    if not is_verified_domain_of(
        session, organisation_id=organisation.id, domain=email_domain_of(email)
    ):
        raise ScimProblem(
            _l(
                "%(email)s is not on an email domain verified for %(organisation)s; "
                "claim the domain and have the council verify it first.",
                email=email,
                organisation=organisation.name,
            ),
            scim_type="invalidValue",
        )


def _taken(email: str) -> ScimProblem:
    return ScimProblem(
        _l("%(email)s already has an account.", email=email), status=409, scim_type="uniqueness"
    )


def _longest(value: str | None, limit: int, attribute: str) -> str | None:
    if value is not None and len(value) > limit:
        raise ScimProblem(
            _l("%(attribute)s is at most %(limit)s characters.", attribute=attribute, limit=limit),
            scim_type="invalidValue",
        )
    return value or None


def _apply(user: User, fields: UserFields) -> None:
    """Store the fields as given: nothing is cut short, so what is read back is what was sent."""
    user.external_id = _longest(fields.external_id, schema.MAX_EXTERNAL_ID, "externalId")
    user.given_name = _longest(fields.given_name, schema.MAX_NAME_PART, "name.givenName")
    user.family_name = _longest(fields.family_name, schema.MAX_NAME_PART, "name.familyName")
    user.name = _longest(fields.display_name, schema.MAX_DISPLAY_NAME, "displayName") or ""


def _profile(user: User) -> dict:
    """What vendors are told of a person (a change of it is a profile change)."""
    return {
        "email": user.email,
        "name": user.name,
        "given_name": user.given_name,
        "family_name": user.family_name,
    }


def _snapshot(user: User) -> dict:
    return {
        "email": user.email,
        "name": user.name,
        "external_id": user.external_id,
        "is_active": user.is_active,
    }


def scim_user_create(
    session: Session, *, actor: Actor, organisation: Organisation, fields: UserFields
) -> User:
    """Create the account a SCIM client asks for (role member, no password: SSO signs in).

    An email the client deleted before comes back as the same account.
    """
    _may_manage(actor, organisation.id, Action.SCIM_PROVISION)
    _check_email_for(session, organisation, fields.email)
    # One account per email across the council: whose it is, read council-wide.
    with council_wide(session):
        holder = session.execute(
            sa.select(User.id, User.organisation_id, User.scim_deleted_at).where(
                User.email == fields.email
            )
        ).first()
    if holder is not None:
        if holder.organisation_id != organisation.id or holder.scim_deleted_at is None:
            raise _taken(fields.email)
        user = session.get(User, holder.id)
        assert user is not None  # the organisation's own account: in scope
        user.scim_deleted_at = None
        action = "scim.user_restore"
    else:
        user = identity.user_create(
            session, actor=actor, email=fields.email, role=Role.MEMBER, organisation=organisation
        )
        action = "scim.user_create"
    _apply(user, fields)
    session.flush()
    _set_active(session, actor=actor, user=user, active=fields.active is not False)
    audit_record(
        session,
        actor=actor,
        action=action,
        target_type="user",
        target_id=user.id,
        target_label=user.email,
        organisation_id=organisation.id,
        after=_snapshot(user),
    )
    return user


def scim_user_update(
    session: Session, *, actor: Actor, organisation: Organisation, user: User, fields: UserFields
) -> User:
    """Replace what the portal keeps of a SCIM user (PUT, or the result of a PATCH)."""
    _may_manage(actor, organisation.id, Action.SCIM_PROVISION)
    before = _snapshot(user)
    profile_before = _profile(user)
    if fields.email != user.email:
        _check_email_for(session, organisation, fields.email)
        with council_wide(session):  # taken by anyone, in any organisation
            taken = session.scalar(sa.select(User.id).where(User.email == fields.email))
        if taken is not None:
            raise _taken(fields.email)
        user.email = fields.email
    _apply(user, fields)
    session.flush()
    profile_after = _profile(user)
    changed = [k for k in profile_after if profile_after[k] != profile_before[k]]
    if changed:  # vendors holding the person hear of it (SPEC 8.4)
        user_profile_changed.send(user, session=session, actor=actor, fields=changed)
    if fields.active is not None:
        _set_active(session, actor=actor, user=user, active=fields.active)
    after = _snapshot(user)
    if after != before:
        audit_record(
            session,
            actor=actor,
            action="scim.user_update",
            target_type="user",
            target_id=user.id,
            target_label=user.email,
            organisation_id=organisation.id,
            before={k: v for k, v in before.items() if after[k] != v},
            after={k: v for k, v in after.items() if before[k] != v},
        )
    return user


def _set_active(session: Session, *, actor: Actor, user: User, active: bool) -> None:
    if user.is_active == active:
        return
    try:
        identity.user_set_active(session, actor=actor, user=user, active=active)
    except DomainError as error:
        raise ScimProblem(error.detail, status=409, scim_type="mutability") from error
    if active:  # back from deactivation: seats of mapped groups again
        _seats_for_user(session, actor=actor, user=user)


def scim_user_delete(session: Session, *, actor: Actor, user: User) -> None:
    """Delete as SCIM sees it: the account is deactivated (seats released, sessions ended),
    leaves its groups and disappears from ``/Users``; its history stays."""
    _may_manage(actor, user.organisation_id, Action.SCIM_PROVISION)
    _set_active(session, actor=actor, user=user, active=False)
    session.execute(sa.delete(ScimGroupMember).where(ScimGroupMember.user_id == user.id))
    user.scim_deleted_at = now_utc()
    session.flush()
    audit_record(
        session,
        actor=actor,
        action="scim.user_delete",
        target_type="user",
        target_id=user.id,
        target_label=user.email,
        organisation_id=user.organisation_id,
    )


# ---------------------------------------------------------------- groups


@dataclass
class SeatReport:
    """Seats given and taken by a group change, and who could not get one."""

    assigned: list[tuple[str, str]] = field(default_factory=list)  # (email, sku)
    released: list[tuple[str, str]] = field(default_factory=list)
    failed: list[tuple[str, str, str]] = field(default_factory=list)  # (email, sku, why)


def _check_display_name(
    session: Session, organisation_id: int, name: str | None, group_id: int | None = None
) -> str:
    name = (name or "").strip()
    if not name or len(name) > schema.MAX_GROUP_NAME:
        raise ScimProblem(
            _l(
                "displayName is required (at most %(max_group_name)s characters).",
                max_group_name=schema.MAX_GROUP_NAME,
            ),
            scim_type="invalidValue",
        )
    query = sa.select(ScimGroup.id).where(
        ScimGroup.organisation_id == organisation_id, ScimGroup.display_name == name
    )
    if group_id is not None:
        query = query.where(ScimGroup.id != group_id)
    if session.scalar(query) is not None:
        raise ScimProblem(
            _l("A group named “%(name)s” exists already.", name=name),
            status=409,
            scim_type="uniqueness",
        )
    return name


def _member_users(session: Session, organisation_id: int, ids: list[str]) -> list[User]:
    users = []
    for value in dict.fromkeys(ids):
        try:
            users.append(
                selectors.scim_user(session, organisation_id=organisation_id, resource_id=value)
            )
        except NotFound as exc:
            raise ScimProblem(
                _l("No user with id %(value)s to add to the group.", value=value),
                scim_type="invalidValue",
            ) from exc
    return users


def scim_group_create(
    session: Session,
    *,
    actor: Actor,
    organisation: Organisation,
    display_name: str | None,
    external_id: str | None,
    member_ids: list[str],
) -> tuple[ScimGroup, SeatReport]:
    """Create a group with its members."""
    _may_manage(actor, organisation.id, Action.SCIM_PROVISION)
    group = ScimGroup(
        organisation_id=organisation.id,
        display_name=_check_display_name(session, organisation.id, display_name),
        external_id=_longest(external_id, schema.MAX_EXTERNAL_ID, "externalId"),
    )
    session.add(group)
    session.flush()
    audit_record(
        session,
        actor=actor,
        action="scim.group_create",
        target_type="scim_group",
        target_id=group.id,
        target_label=group.display_name,
        organisation_id=organisation.id,
    )
    report = group_set_members(
        session,
        actor=actor,
        group=group,
        users=_member_users(session, organisation.id, member_ids),
    )
    return group, report


def scim_group_update(
    session: Session,
    *,
    actor: Actor,
    group: ScimGroup,
    display_name: str | None,
    external_id: str | None,
    member_ids: list[str] | None,
) -> SeatReport:
    """Replace a group's name, external id and (when given) its members."""
    _may_manage(actor, group.organisation_id, Action.SCIM_PROVISION)
    name = _check_display_name(session, group.organisation_id, display_name, group.id)
    if name != group.display_name or external_id != group.external_id:
        audit_record(
            session,
            actor=actor,
            action="scim.group_update",
            target_type="scim_group",
            target_id=group.id,
            target_label=name,
            organisation_id=group.organisation_id,
            before={"display_name": group.display_name},
            after={"display_name": name},
        )
    group.display_name = name
    group.external_id = _longest(external_id, schema.MAX_EXTERNAL_ID, "externalId")
    group.updated_at = now_utc()
    session.flush()
    if member_ids is None:
        return SeatReport()
    return group_set_members(
        session,
        actor=actor,
        group=group,
        users=_member_users(session, group.organisation_id, member_ids),
    )


def scim_group_change_members(
    session: Session, *, actor: Actor, group: ScimGroup, add: list[str], remove: list[str]
) -> SeatReport:
    """Add and remove members by id (a PATCH)."""
    _may_manage(actor, group.organisation_id, Action.SCIM_PROVISION)
    current = {m.id for m in selectors.members_of(session, [group.id])[group.id]}
    removing = {int(v) for v in remove if v.isdigit()}
    adding = {u.id for u in _member_users(session, group.organisation_id, add)}
    wanted = (current - removing) | adding
    users = session.scalars(sa.select(User).where(User.id.in_(wanted))).all() if wanted else []
    return group_set_members(session, actor=actor, group=group, users=list(users))


def group_set_members(
    session: Session, *, actor: Actor, group: ScimGroup, users: list[User]
) -> SeatReport:
    """Make ``users`` the group's members, giving and taking seats of mapped products."""
    _may_manage(actor, group.organisation_id, Action.SCIM_PROVISION)
    current = {m.id: m for m in selectors.members_of(session, [group.id])[group.id]}
    wanted = {u.id: u for u in users}
    added = [u for uid, u in wanted.items() if uid not in current]
    removed = [u for uid, u in current.items() if uid not in wanted]
    if removed:
        session.execute(
            sa.delete(ScimGroupMember).where(
                ScimGroupMember.group_id == group.id,
                ScimGroupMember.user_id.in_([u.id for u in removed]),
            )
        )
    for user in added:
        session.add(
            ScimGroupMember(
                organisation_id=group.organisation_id, group_id=group.id, user_id=user.id
            )
        )
    if added or removed:
        group.updated_at = now_utc()
    session.flush()
    for user, verb in [(u, "add") for u in added] + [(u, "remove") for u in removed]:
        audit_record(
            session,
            actor=actor,
            action=f"scim.group_member_{verb}",
            target_type="scim_group",
            target_id=group.id,
            target_label=f"{group.display_name} ← {user.email}",
            organisation_id=group.organisation_id,
        )
    report = SeatReport()
    mappings = session.scalars(
        sa.select(ScimGroupProduct).where(ScimGroupProduct.group_id == group.id)
    ).all()
    for mapping in mappings:
        for user in added:
            _give_seat(session, actor=actor, user=user, product=mapping.product, report=report)
        for user in removed:
            _take_seat(session, actor=actor, user=user, product=mapping.product, report=report)
    return report


def scim_group_delete(session: Session, *, actor: Actor, group: ScimGroup) -> SeatReport:
    """Delete a group: its members lose the seats it gave them."""
    _may_manage(actor, group.organisation_id, Action.SCIM_PROVISION)
    report = group_set_members(session, actor=actor, group=group, users=[])
    audit_record(
        session,
        actor=actor,
        action="scim.group_delete",
        target_type="scim_group",
        target_id=group.id,
        target_label=group.display_name,
        organisation_id=group.organisation_id,
    )
    session.delete(group)
    session.flush()
    return report


# ---------------------------------------------------------------- seats through groups


def _give_seat(
    session: Session, *, actor: Actor, user: User, product: Product, report: SeatReport
) -> None:
    if not user.is_active:
        return
    org_id = user.organisation_id
    assert org_id is not None
    if seat_selectors.seat_of_user(
        session, organisation_id=org_id, user_id=user.id, product_id=product.id
    ):
        return
    subscription = seat_selectors.live_subscription(
        session, organisation_id=org_id, product_id=product.id
    )
    why = None
    if subscription is None:
        why = f"the organisation does not subscribe to {product.name}"
    else:
        try:
            with session.begin_nested():
                seats.seat_assign(
                    session, actor=actor, subscription=subscription, user_email=user.email
                )
        except DomainError as error:
            why = error.detail
    if why is None:
        report.assigned.append((user.email, product.sku))
        return
    report.failed.append((user.email, product.sku, why))
    audit_record(
        session,
        actor=actor,
        action="scim.seat_not_assigned",
        target_type="user",
        target_id=user.id,
        target_label=f"{product.sku} → {user.email}",
        organisation_id=org_id,
        after={"product": product.sku, "reason": why},
    )


def _take_seat(
    session: Session, *, actor: Actor, user: User, product: Product, report: SeatReport
) -> None:
    if product.id in selectors.product_ids_for_user(session, user_id=user.id):
        return  # another of the person's groups still maps to the product
    org_id = user.organisation_id
    assert org_id is not None
    subscription = seat_selectors.live_subscription(
        session, organisation_id=org_id, product_id=product.id
    )
    if subscription is None:
        return
    try:
        with session.begin_nested():
            seats.seat_release(
                session,
                actor=actor,
                subscription=subscription,
                user_email=user.email,
                reason="scim_group",
            )
    except NotFound:
        return
    report.released.append((user.email, product.sku))


def _seats_for_user(session: Session, *, actor: Actor, user: User) -> SeatReport:
    report = SeatReport()
    product_ids = selectors.product_ids_for_user(session, user_id=user.id)
    for product in session.scalars(sa.select(Product).where(Product.id.in_(product_ids))):
        _give_seat(session, actor=actor, user=user, product=product, report=report)
    return report


def mapping_create(
    session: Session,
    *,
    actor: Actor,
    organisation: Organisation,
    group: ScimGroup,
    product: Product,
) -> tuple[ScimGroupProduct, SeatReport]:
    """Map a group to a product: its members get seats now, and whoever joins later."""
    _may_manage(actor, organisation.id, Action.SCIM_PROVISION)
    if group.organisation_id != organisation.id:
        raise NotFound(_l("No such group."))
    exists = session.scalar(
        sa.select(ScimGroupProduct.id).where(
            ScimGroupProduct.group_id == group.id, ScimGroupProduct.product_id == product.id
        )
    )
    if exists is not None:
        raise Conflict(
            _l(
                "%(display_name)s is already mapped to %(product)s.",
                display_name=group.display_name,
                product=product.name,
            ),
            code="mapping_exists",
        )
    mapping = ScimGroupProduct(
        organisation_id=organisation.id,
        group_id=group.id,
        product_id=product.id,
        created_by_id=actor.user_id,
    )
    session.add(mapping)
    session.flush()
    audit_record(
        session,
        actor=actor,
        action="scim.mapping_create",
        target_type="scim_group",
        target_id=group.id,
        target_label=f"{group.display_name} → {product.sku}",
        organisation_id=organisation.id,
    )
    report = SeatReport()
    for user in selectors.members_of(session, [group.id])[group.id]:
        _give_seat(session, actor=actor, user=user, product=product, report=report)
    return mapping, report


def mapping_delete(session: Session, *, actor: Actor, mapping: ScimGroupProduct) -> SeatReport:
    """Unmap a group: members lose the seats unless another of their groups maps the product."""
    _may_manage(actor, mapping.organisation_id, Action.SCIM_PROVISION)
    group, product = mapping.group, mapping.product
    audit_record(
        session,
        actor=actor,
        action="scim.mapping_delete",
        target_type="scim_group",
        target_id=group.id,
        target_label=f"{group.display_name} → {product.sku}",
        organisation_id=mapping.organisation_id,
    )
    session.delete(mapping)
    session.flush()
    report = SeatReport()
    for user in selectors.members_of(session, [group.id])[group.id]:
        _take_seat(session, actor=actor, user=user, product=product, report=report)
    return report


def mappings_sync(session: Session, *, actor: Actor, organisation: Organisation) -> SeatReport:
    """Try again to give seats to mapped groups' members who lack one (after adding seats)."""
    _may_manage(actor, organisation.id, Action.SCIM_PROVISION)
    report = SeatReport()
    for shortfall in selectors.shortfalls(session, organisation_id=organisation.id):
        _give_seat(
            session,
            actor=actor,
            user=shortfall.user,
            product=shortfall.mapping.product,
            report=report,
        )
    return report
