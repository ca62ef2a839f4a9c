"""Reads of recorded mail: the messages about an object, one message in a scope, a page."""

from __future__ import annotations

import sqlalchemy as sa
from sqlalchemy.orm import Session

from portal.kernel.errors import NotFound
from portal.kernel.i18n import _l
from portal.kernel.scope import Scope
from portal.mail.models import MailMessage


def messages_about(
    session: Session,
    *,
    scope: Scope,
    related_type: str,
    related_ids: list[int],
    kind: str | None = None,
) -> dict[int, MailMessage]:
    """The latest message (of ``kind``, if given) about each of ``related_ids``, by id."""
    if not related_ids:
        return {}
    rows = session.scalars(
        sa.select(MailMessage)
        .where(
            MailMessage.related_type == related_type,
            MailMessage.related_id.in_(related_ids),
            scope.filter(MailMessage.organisation_id),
            MailMessage.kind == kind if kind is not None else sa.true(),
        )
        .order_by(MailMessage.id)
    )
    latest: dict[int, MailMessage] = {}
    for row in rows:
        assert row.related_id is not None
        latest[row.related_id] = row
    return latest


def message_in_scope(session: Session, *, scope: Scope, message_id: int) -> MailMessage:
    """One message visible in ``scope``; :class:`NotFound` otherwise."""
    row = session.scalar(
        sa.select(MailMessage).where(
            MailMessage.id == message_id, scope.filter(MailMessage.organisation_id)
        )
    )
    if row is None:
        raise NotFound(_l("No such message."))
    return row


def messages_recent(session: Session, *, scope: Scope, limit: int = 50, offset: int = 0):
    """Messages in ``scope``, newest first."""
    return list(
        session.scalars(
            sa.select(MailMessage)
            .where(scope.filter(MailMessage.organisation_id))
            .order_by(MailMessage.queued_at.desc(), MailMessage.id.desc())
            .limit(limit)
            .offset(offset)
        )
    )
