"""Reading one's own notifications: the list (unread first) and the unread count.

A person reads only their own (``policy``: ``notification.read``, reach ``self``); the
queries filter by their user id, and on PostgreSQL row-level security keeps them to the
request's organisation as well.
"""

from __future__ import annotations

from dataclasses import dataclass

import sqlalchemy as sa
from sqlalchemy.orm import Session

from portal.kernel import policy
from portal.kernel.actor import Actor
from portal.kernel.errors import NotFound
from portal.kernel.i18n import _l
from portal.kernel.policy import Action
from portal.notifications import kinds
from portal.notifications.models import Notification
from portal.pagination import Page, paginate

PER_PAGE = 25
#: The header counts unread notifications up to this many ("99+" beyond).
COUNT_CAP = 100


@dataclass(frozen=True)
class Shown:
    """A notification as a page shows it: its words in the reader's language."""

    row: Notification
    title: str
    text: str

    @property
    def unread(self) -> bool:
        return self.row.read_at is None


def notifications_page(
    session: Session, *, actor: Actor, page: int = 1, unread_only: bool = False
) -> Page[Shown]:
    """One page of the actor's notifications, unread first, then newest first."""
    policy.require(actor, Action.NOTIFICATION_READ, user_id=actor.user_id)
    query = sa.select(Notification).where(Notification.user_id == actor.user_id)
    if unread_only:
        query = query.where(Notification.read_at.is_(None))
    query = query.order_by(
        sa.case((Notification.read_at.is_(None), 0), else_=1),
        Notification.created_at.desc(),
        Notification.id.desc(),
    )
    found = paginate(session, query, page=page, per_page=PER_PAGE)
    return Page(
        items=[
            Shown(row, kinds.title(row.kind, row.params), kinds.body(row.kind, row.params))
            for row in found.items
        ],
        page=found.page,
        per_page=found.per_page,
        total=found.total,
    )


def notification_of(session: Session, *, actor: Actor, notification_id: int) -> Notification:
    """One of the actor's own notifications; another's, or none: NotFound (a 404)."""
    row = None
    if actor.user_id is not None:
        row = session.scalars(
            sa.select(Notification).where(
                Notification.id == notification_id, Notification.user_id == actor.user_id
            )
        ).one_or_none()
    if row is None:
        raise NotFound(_l("No such notification."), code="notification_not_found")
    policy.require(actor, Action.NOTIFICATION_READ, user_id=row.user_id)
    return row


def unread_count(session: Session, *, actor: Actor) -> int:
    """How many of the actor's notifications are unread, up to :data:`COUNT_CAP` (one query)."""
    policy.require(actor, Action.NOTIFICATION_READ, user_id=actor.user_id)
    unread = (
        sa.select(sa.literal(1))
        .where(Notification.user_id == actor.user_id, Notification.read_at.is_(None))
        .limit(COUNT_CAP)
        .subquery()
    )
    return int(session.scalar(sa.select(sa.func.count()).select_from(unread)) or 0)
