"""Telling people things: ``notify`` (once per person and event), marking read, choices.

Other domains call :func:`notify` (chosen people) or :func:`notify_council_staff` (every
active council admin, or the roles given) with a registered kind
(:mod:`portal.notifications.kinds`: how to register one) and a ``key`` naming the event.
Both are idempotent by ``(person, key)``: calling them again, from a job delivered twice
or a signal sent twice, tells nobody a second time. Each new notification of a person
who chose mail for the kind's group gets one mail (``mail_queue``: a recorded message
and its ``mail.send`` job, in the caller's transaction), in that person's language.

They flush and do not commit: the caller's request, CLI command or job commits.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from portal.db import council_wide
from portal.i18n import in_language
from portal.identity.models import User
from portal.kernel import policy
from portal.kernel.actor import Actor, Role
from portal.kernel.clock import now_utc
from portal.kernel.policy import Action
from portal.mail import build_message, mail_queue
from portal.notifications import kinds
from portal.notifications.models import Notification, NotificationPreference
from portal.notifications.selectors import notification_of

_SYSTEM = Actor.system("notifications")
#: People looked up (and rows inserted) per statement.
BATCH = 500
#: The longest key and link a notification keeps.
KEY_LENGTH = 200
LINK_LENGTH = 500
MAIL_TEMPLATE = "notification"


# ------------------------------------------------------------------ choices


def preferences_of(session: Session, *, user_id: int) -> NotificationPreference:
    """The person's choices: their row, or the defaults (everything on; not added)."""
    row = session.get(NotificationPreference, user_id)
    if row is not None:
        return row
    return NotificationPreference(
        user_id=user_id, mail_incidents=True, mail_standing=True, mail_operations=True, digest=True
    )


def _mails(preference: NotificationPreference | None, group: kinds.Group) -> bool:
    if preference is None:
        return True
    return bool(getattr(preference, f"mail_{group.value}", True))


def preferences_update(
    session: Session,
    *,
    actor: Actor,
    user: User,
    mail_incidents: bool,
    mail_standing: bool,
    mail_operations: bool,
    digest: bool,
) -> NotificationPreference:
    """Save a person's own choices of what is also mailed (and the digest)."""
    policy.require(actor, Action.NOTIFICATION_READ, user_id=user.id)
    row = session.get(NotificationPreference, user.id)
    if row is None:
        row = NotificationPreference(user_id=user.id, organisation_id=user.organisation_id)
        session.add(row)
    row.mail_incidents = bool(mail_incidents)
    row.mail_standing = bool(mail_standing)
    row.mail_operations = bool(mail_operations)
    row.digest = bool(digest)
    session.flush()
    return row


# ------------------------------------------------------------------ telling people


def _check(kind: str, key: str, params: Mapping[str, Any], link: str | None) -> None:
    if kinds.kind_of(kind) is None:
        raise LookupError(f"no notification kind {kind!r} is registered")
    if not key or len(key) > KEY_LENGTH:
        raise ValueError(f"a notification key must have 1 to {KEY_LENGTH} characters")
    if link is not None and (
        len(link) > LINK_LENGTH or not link.startswith("/") or link.startswith(("//", "/\\"))
    ):
        raise ValueError("a notification's link is a path inside the portal")
    if not isinstance(params, Mapping):
        raise TypeError("a notification's params are a mapping of JSON values")
    try:
        json.dumps(dict(params))
    except (TypeError, ValueError) as error:  # a date, a Decimal: say so before the insert
        raise TypeError(f"a notification's params must be JSON values: {error}") from None


def _insert(session: Session, rows: list[dict[str, Any]]) -> list[int]:
    """Insert the rows a person does not have yet (by key); the new rows' ids."""
    if not rows:
        return []
    dialect = session.get_bind().dialect.name
    insert = postgresql.insert if dialect == "postgresql" else sqlite.insert
    statement = (
        insert(Notification)
        .values(rows)
        .on_conflict_do_nothing(index_elements=[Notification.user_id, Notification.key])
        .returning(Notification.id)
    )
    return list(session.scalars(statement))


def _mail(session: Session, notification: Notification, user: Any, *, actor: Actor) -> None:
    with in_language(user.locale):
        subject = kinds.title(notification.kind, notification.params)
        text = kinds.body(notification.kind, notification.params)
        message = build_message(
            to=user.email,
            subject=subject,
            template=MAIL_TEMPLATE,
            locale=user.locale,
            title=subject,
            text=text,
            link=notification.link,
        )
    mail_queue(
        session,
        message,
        organisation_id=user.organisation_id,
        related=("notification", notification.id),
        kind=f"notification:{notification.kind}"[:60],
        actor=actor,
    )


def notify(
    session: Session,
    *,
    user_ids: Iterable[int],
    kind: str,
    key: str,
    params: Mapping[str, Any],
    link: str | None = None,
    actor: Actor | None = None,
) -> list[Notification]:
    """Tell each active person of ``user_ids`` the event ``key`` once; the new notifications.

    A person told ``key`` before is skipped (no row, no mail), so this may run again for
    the same event (a job delivered twice, a signal sent twice) without telling anyone
    twice. Each new row of a person who chose mail for ``kind``'s group queues one mail in
    their language. Runs council-wide (the people may be of many organisations). Raises
    ``LookupError`` for an unregistered kind and ``ValueError`` for an empty or too long key.
    """
    _check(kind, key, params, link)
    group = kinds.KINDS[kind].group
    actor = actor or _SYSTEM
    ids = sorted({int(i) for i in user_ids})
    created: list[Notification] = []
    now = now_utc()
    with council_wide(session):
        for start in range(0, len(ids), BATCH):
            chunk = ids[start : start + BATCH]
            people = session.execute(
                sa.select(User.id, User.organisation_id, User.email, User.locale)
                .where(
                    User.id.in_(chunk),
                    User.is_active.is_(True),
                    User.scim_deleted_at.is_(None),
                )
                .order_by(User.id)
            ).all()
            if not people:
                continue
            new_ids = _insert(
                session,
                [
                    {
                        "user_id": person.id,
                        "organisation_id": person.organisation_id,
                        "kind": kind,
                        "key": key,
                        "params": dict(params),
                        "link": link,
                        "created_at": now,
                    }
                    for person in people
                ],
            )
            if not new_ids:
                continue
            rows = session.scalars(
                sa.select(Notification)
                .where(Notification.id.in_(new_ids))
                .order_by(Notification.user_id)
            ).all()
            by_id = {person.id: person for person in people}
            choices = {
                p.user_id: p
                for p in session.scalars(
                    sa.select(NotificationPreference).where(
                        NotificationPreference.user_id.in_([r.user_id for r in rows])
                    )
                )
            }
            for row in rows:
                if _mails(choices.get(row.user_id), group):
                    _mail(session, row, by_id[row.user_id], actor=actor)
            created.extend(rows)
    return created


def notify_council_staff(
    session: Session,
    *,
    kind: str,
    key: str,
    params: Mapping[str, Any],
    link: str | None = None,
    roles: Sequence[Role] = (Role.COUNCIL_ADMIN,),
    actor: Actor | None = None,
) -> list[Notification]:
    """Tell each active council staff member of ``roles`` the event ``key`` (:func:`notify`)."""
    with council_wide(session):
        staff = session.scalars(
            sa.select(User.id).where(
                User.organisation_id.is_(None),
                User.role.in_([Role(r) for r in roles]),
                User.is_active.is_(True),
            )
        ).all()
    return notify(
        session, user_ids=staff, kind=kind, key=key, params=params, link=link, actor=actor
    )


# ------------------------------------------------------------------ reading


def mark_read(session: Session, *, actor: Actor, notification_id: int) -> Notification:
    """Mark one of one's own notifications read (another's, or none: NotFound)."""
    row = notification_of(session, actor=actor, notification_id=notification_id)
    if row.read_at is None:
        row.read_at = now_utc()
        session.flush()
    return row


def mark_all_read(session: Session, *, actor: Actor) -> int:
    """Mark all of one's own unread notifications read; how many were unread."""
    policy.require(actor, Action.NOTIFICATION_READ, user_id=actor.user_id)
    result = session.execute(
        sa.update(Notification)
        .where(Notification.user_id == actor.user_id, Notification.read_at.is_(None))
        .values(read_at=now_utc())
        .execution_options(synchronize_session=False)
    )
    return int(getattr(result, "rowcount", 0) or 0)
