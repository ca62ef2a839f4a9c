"""Reading SCIM tokens, the users and groups a SCIM client sees, and group → product seats."""

from __future__ import annotations

from dataclasses import dataclass

import sqlalchemy as sa
from sqlalchemy.orm import Session

from portal.identity.models import User
from portal.kernel.actor import ORG_ROLES
from portal.kernel.errors import NotFound
from portal.kernel.i18n import _l
from portal.scim.models import ScimGroup, ScimGroupMember, ScimGroupProduct, ScimToken
from portal.seats.models import SeatAssignment


def tokens_of(session: Session, *, organisation_id: int) -> list[ScimToken]:
    """The organisation's SCIM tokens, newest first."""
    return list(
        session.scalars(
            sa.select(ScimToken)
            .where(ScimToken.organisation_id == organisation_id)
            .order_by(ScimToken.created_at.desc(), ScimToken.id.desc())
        )
    )


def token_in_scope(session: Session, *, organisation_id: int, token_id: int) -> ScimToken:
    found = session.scalar(
        sa.select(ScimToken).where(
            ScimToken.id == token_id, ScimToken.organisation_id == organisation_id
        )
    )
    if found is None:
        raise NotFound(_l("No such SCIM token."))
    return found


def _resource_id(value: str) -> int | None:
    return int(value) if value.isdigit() and len(value) < 18 else None


def scim_users_query(organisation_id: int) -> sa.Select:
    """The accounts a SCIM client of the organisation sees (not those it deleted)."""
    return sa.select(User).where(
        User.organisation_id == organisation_id,
        User.role.in_([r.value for r in ORG_ROLES]),
        User.scim_deleted_at.is_(None),
    )


def scim_user(
    session: Session, *, organisation_id: int, resource_id: str, for_update: bool = False
) -> User:
    """One SCIM user of the organisation, or 404 (locked until commit with ``for_update``)."""
    user_id = _resource_id(resource_id)
    query = scim_users_query(organisation_id).where(User.id == user_id)
    if for_update:
        query = query.with_for_update(of=User)
    found = session.scalar(query) if user_id is not None else None
    if found is None:
        raise NotFound(
            _l("No user with id %(resource_id)s.", resource_id=resource_id), code="scim_not_found"
        )
    return found


def scim_group(
    session: Session, *, organisation_id: int, resource_id: str, for_update: bool = False
) -> ScimGroup:
    """One SCIM group of the organisation, or 404 (locked until commit with ``for_update``)."""
    group_id = _resource_id(resource_id)
    query = sa.select(ScimGroup).where(
        ScimGroup.id == group_id, ScimGroup.organisation_id == organisation_id
    )
    if for_update:
        query = query.with_for_update(of=ScimGroup)
    found = session.scalar(query) if group_id is not None else None
    if found is None:
        raise NotFound(
            _l("No group with id %(resource_id)s.", resource_id=resource_id), code="scim_not_found"
        )
    return found


def page(session: Session, query: sa.Select, *, start_index: int, count: int) -> tuple[int, list]:
    """(total, the ``count`` rows from the 1-based ``start_index``) of a query."""
    total = session.scalar(sa.select(sa.func.count()).select_from(query.subquery())) or 0
    if count == 0 or start_index > total:  # past the end (however far): nothing to read
        return total, []
    entity = query.column_descriptions[0]["entity"]
    rows = session.scalars(query.order_by(entity.id).offset(start_index - 1).limit(count)).all()
    return total, list(rows)


def members_of(session: Session, group_ids: list[int]) -> dict[int, list[User]]:
    """Each group's members, by group id."""
    out: dict[int, list[User]] = {gid: [] for gid in group_ids}
    if not group_ids:
        return out
    rows = session.execute(
        sa.select(ScimGroupMember.group_id, User)
        .join(User, User.id == ScimGroupMember.user_id)
        .where(ScimGroupMember.group_id.in_(group_ids))
        .order_by(User.email)
    ).all()
    for group_id, user in rows:
        out[group_id].append(user)
    return out


def groups_of_users(session: Session, user_ids: list[int]) -> dict[int, list[ScimGroup]]:
    """Each user's groups, by user id."""
    out: dict[int, list[ScimGroup]] = {uid: [] for uid in user_ids}
    if not user_ids:
        return out
    rows = session.execute(
        sa.select(ScimGroupMember.user_id, ScimGroup)
        .join(ScimGroup, ScimGroup.id == ScimGroupMember.group_id)
        .where(ScimGroupMember.user_id.in_(user_ids))
        .order_by(ScimGroup.display_name)
    ).all()
    for user_id, group in rows:
        out[user_id].append(group)
    return out


def groups_list(session: Session, *, organisation_id: int) -> list[ScimGroup]:
    """The organisation's SCIM groups by name."""
    return list(
        session.scalars(
            sa.select(ScimGroup)
            .where(ScimGroup.organisation_id == organisation_id)
            .order_by(ScimGroup.display_name)
        )
    )


def mappings_of(session: Session, *, organisation_id: int) -> list[ScimGroupProduct]:
    """The organisation's group → product mappings."""
    return list(
        session.scalars(
            sa.select(ScimGroupProduct)
            .join(ScimGroup, ScimGroup.id == ScimGroupProduct.group_id)
            .where(ScimGroupProduct.organisation_id == organisation_id)
            .order_by(ScimGroup.display_name, ScimGroupProduct.id)
        )
    )


def mapping_in_scope(
    session: Session, *, organisation_id: int, mapping_id: int
) -> ScimGroupProduct:
    found = session.scalar(
        sa.select(ScimGroupProduct).where(
            ScimGroupProduct.id == mapping_id, ScimGroupProduct.organisation_id == organisation_id
        )
    )
    if found is None:
        raise NotFound(_l("No such group mapping."))
    return found


def product_ids_for_user(session: Session, *, user_id: int) -> set[int]:
    """Products the user's groups are mapped to."""
    return set(
        session.scalars(
            sa.select(ScimGroupProduct.product_id)
            .join(ScimGroupMember, ScimGroupMember.group_id == ScimGroupProduct.group_id)
            .where(ScimGroupMember.user_id == user_id)
        )
    )


@dataclass
class Shortfall:
    """A mapped group's active member who holds no seat of the product."""

    mapping: ScimGroupProduct
    user: User


def shortfalls(session: Session, *, organisation_id: int) -> list[Shortfall]:
    """Who should have a seat through a mapped group and has none (for the admin's page)."""
    out: list[Shortfall] = []
    for mapping in mappings_of(session, organisation_id=organisation_id):
        rows = session.scalars(
            sa.select(User)
            .join(ScimGroupMember, ScimGroupMember.user_id == User.id)
            .where(
                ScimGroupMember.group_id == mapping.group_id,
                User.is_active,
                ~sa.exists().where(
                    SeatAssignment.user_id == User.id,
                    SeatAssignment.product_id == mapping.product_id,
                    SeatAssignment.released_at.is_(None),
                ),
            )
            .order_by(User.email)
        ).all()
        out.extend(Shortfall(mapping, user) for user in rows)
    return out
