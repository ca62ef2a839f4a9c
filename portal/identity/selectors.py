"""Reading accounts and invitations, always within a :class:`~portal.kernel.scope.Scope`.

An organisation's scope reads its people; the council's reads everyone, or with
``staff_only`` the council's own staff (the accounts with no organisation).
"""

from __future__ import annotations

import sqlalchemy as sa
from sqlalchemy.orm import Session

from portal.db import council_wide
from portal.identity.models import Invitation, User
from portal.kernel.actor import Role
from portal.kernel.errors import NotFound
from portal.kernel.i18n import LANGUAGES, _l
from portal.kernel.scope import Scope
from portal.pagination import Page, paginate


def _whose(column, scope: Scope, staff_only: bool) -> sa.ColumnElement[bool]:
    """Rows of ``scope``; with ``staff_only``, the council's own (no organisation, and no
    vendor: vendor admins are not staff) only."""
    if staff_only:
        return sa.and_(column.is_(None), column.table.c.vendor_id.is_(None), scope.filter(column))
    return sa.and_(sa.true(), scope.filter(column))


def user_in_scope(
    session: Session, *, scope: Scope, user_id: int, staff_only: bool = False
) -> User:
    """The account ``user_id`` if it is in ``scope`` (and council staff, with ``staff_only``)."""
    user = session.scalar(
        sa.select(User).where(User.id == user_id, _whose(User.organisation_id, scope, staff_only))
    )
    if user is None:
        raise NotFound(_l("No such person here."))
    return user


def users_list(
    session: Session,
    *,
    scope: Scope,
    staff_only: bool = False,
    search: str | None = None,
    page: int = 1,
    per_page: int = 50,
) -> Page[User]:
    """The accounts in ``scope`` (with ``staff_only``: council staff), by email."""
    query = (
        sa.select(User).where(_whose(User.organisation_id, scope, staff_only)).order_by(User.email)
    )
    if search:
        term = search.strip().lower()
        query = query.where(
            sa.or_(
                User.email.contains(term, autoescape=True),
                sa.func.lower(User.name).contains(term, autoescape=True),
            )
        )
    return paginate(session, query, page=page, per_page=per_page)


def invitations_pending(
    session: Session, *, scope: Scope, staff_only: bool = False
) -> list[Invitation]:
    """Invitations in ``scope`` not yet accepted or withdrawn, newest first (expired included).

    With ``staff_only``, the invitations to council staff roles only.
    """
    return list(
        session.scalars(
            sa.select(Invitation)
            .where(
                _whose(Invitation.organisation_id, scope, staff_only),
                Invitation.accepted_at.is_(None),
                Invitation.revoked_at.is_(None),
            )
            .order_by(Invitation.created_at.desc())
        )
    )


def invitation_in_scope(
    session: Session, *, scope: Scope, invitation_id: int, staff_only: bool = False
) -> Invitation:
    """One invitation in ``scope`` (to council staff, with ``staff_only``), or :class:`NotFound`."""
    invitation = session.scalar(
        sa.select(Invitation).where(
            Invitation.id == invitation_id,
            _whose(Invitation.organisation_id, scope, staff_only),
        )
    )
    if invitation is None:
        raise NotFound(_l("No such invitation here."))
    return invitation


def vendor_admins(session: Session, *, vendor_id: int) -> list[User]:
    """A vendor's admins (SPEC 8.1), active first, by email: for the council's vendor page."""
    with council_wide(session):
        return list(
            session.scalars(
                sa.select(User)
                .where(User.vendor_id == vendor_id, User.role == Role.VENDOR_ADMIN)
                .order_by(User.is_active.desc(), User.email)
            )
        )


def vendor_admin_of(session: Session, *, vendor_id: int, user_id: int) -> User:
    """One admin of the vendor, or :class:`NotFound` (another vendor's, or not an admin)."""
    with council_wide(session):
        user = session.scalar(
            sa.select(User).where(
                User.id == user_id, User.vendor_id == vendor_id, User.role == Role.VENDOR_ADMIN
            )
        )
    if user is None:
        raise NotFound(_l("No such person here."))
    return user


def vendor_invitations_pending(session: Session, *, vendor_id: int) -> list[Invitation]:
    """Invitations to be an admin of the vendor not yet accepted or withdrawn, newest first."""
    with council_wide(session):
        return list(
            session.scalars(
                sa.select(Invitation)
                .where(
                    Invitation.vendor_id == vendor_id,
                    Invitation.accepted_at.is_(None),
                    Invitation.revoked_at.is_(None),
                )
                .order_by(Invitation.created_at.desc())
            )
        )


def organisation_language(session: Session, organisation_id: int) -> str | None:
    """The language most of an organisation's active admins chose (SPEC section 8.6).

    English on a tie; None when none of them chose one: the caller's language then. Mail
    to one person uses their own ``users.locale``; this is for mail about the organisation
    to someone without an account yet (an invitation).
    """
    # Mail is written from jobs and other organisations' work: read this one's admins.
    with council_wide(session):
        rows = session.execute(
            sa.select(User.locale, sa.func.count())
            .where(
                User.organisation_id == organisation_id,
                User.role == Role.ORG_ADMIN,
                User.is_active,
                User.locale.is_not(None),
            )
            .group_by(User.locale)
        ).all()
    chosen = [(n, code == LANGUAGES[0], code) for code, n in rows if code in LANGUAGES]
    return max(chosen)[2] if chosen else None
