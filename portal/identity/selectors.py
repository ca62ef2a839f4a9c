"""Reading accounts and invitations, always within one organisation or the council."""

from __future__ import annotations

import sqlalchemy as sa
from sqlalchemy.orm import Session

from portal.identity.models import Invitation, User
from portal.kernel.errors import NotFound
from portal.pagination import Page, paginate


def user_in_scope(session: Session, *, organisation_id: int | None, user_id: int) -> User:
    """The account ``user_id`` if it belongs to ``organisation_id`` (None: council staff)."""
    scope = (
        User.organisation_id.is_(None)
        if organisation_id is None
        else User.organisation_id == organisation_id
    )
    user = session.scalar(sa.select(User).where(User.id == user_id, scope))
    if user is None:
        raise NotFound("No such person here.")
    return user


def users_list(
    session: Session,
    *,
    organisation_id: int | None,
    search: str | None = None,
    page: int = 1,
    per_page: int = 50,
) -> Page[User]:
    """The accounts of one organisation (None: council staff), by email."""
    scope = (
        User.organisation_id.is_(None)
        if organisation_id is None
        else User.organisation_id == organisation_id
    )
    query = sa.select(User).where(scope).order_by(User.email)
    if search:
        term = search.strip().lower()
        query = query.where(
            sa.or_(
                User.email.contains(term, autoescape=True),
                sa.func.lower(User.name).contains(term, autoescape=True),
            )
        )
    return paginate(session, query, page=page, per_page=per_page)


def invitations_pending(session: Session, *, organisation_id: int | None) -> list[Invitation]:
    """Invitations not yet accepted or withdrawn, newest first (expired ones included)."""
    scope = (
        Invitation.organisation_id.is_(None)
        if organisation_id is None
        else Invitation.organisation_id == organisation_id
    )
    return list(
        session.scalars(
            sa.select(Invitation)
            .where(scope, Invitation.accepted_at.is_(None), Invitation.revoked_at.is_(None))
            .order_by(Invitation.created_at.desc())
        )
    )


def invitation_in_scope(
    session: Session, *, organisation_id: int | None, invitation_id: int
) -> Invitation:
    """One invitation of this organisation (None: council), or :class:`NotFound`."""
    scope = (
        Invitation.organisation_id.is_(None)
        if organisation_id is None
        else Invitation.organisation_id == organisation_id
    )
    invitation = session.scalar(sa.select(Invitation).where(Invitation.id == invitation_id, scope))
    if invitation is None:
        raise NotFound("No such invitation here.")
    return invitation
