"""The org admins' daily digest: the scheduled job ``notifications.daily_digest``.

Once a day (the schedule's slot at 00:00 UTC) each active org admin whose organisation's
people were told of suppliers' incidents or standing changes the day before (UTC) gets
one mail listing those events, each once however many of their people were told, in the
admin's language, unless they turned the digest off. A ``notification_digests`` row per
admin and day is the job's memory: run again (a second worker, a redelivered job), it
mails nobody twice. A day the workers did not run at all is not made up.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from portal.db import council_wide
from portal.i18n import in_language
from portal.identity.models import User
from portal.jobs.queue import job
from portal.kernel import policy
from portal.kernel.actor import Actor, Role
from portal.kernel.clock import now_utc
from portal.kernel.i18n import _ln
from portal.kernel.policy import Action
from portal.mail import build_message, mail_queue
from portal.notifications import kinds
from portal.notifications.models import Notification, NotificationDigest, NotificationPreference
from portal.tenancy.models import Organisation

JOB = "notifications.daily_digest"
TEMPLATE = "notification_digest"
DIGEST_EVERY = dt.timedelta(days=1)


@dataclass(frozen=True)
class Event:
    """One event of the day, as the digest lists it."""

    kind: str
    key: str
    params: dict[str, Any]
    link: str | None
    people: int  # how many of the organisation's people were told


def _digest_kinds() -> list[str]:
    return [name for name, kind in kinds.KINDS.items() if kind.group in kinds.DIGEST_GROUPS]


def day_events(session: Session, *, day: dt.date) -> dict[int, list[Event]]:
    """Each organisation's events of ``day`` (UTC) in the digest's groups, oldest first."""
    start = dt.datetime.combine(day, dt.time(0), tzinfo=dt.UTC)
    end = start + dt.timedelta(days=1)
    rows = session.execute(
        sa.select(
            Notification.organisation_id,
            Notification.key,
            sa.func.min(Notification.id).label("first_id"),
            sa.func.count().label("people"),
        )
        .where(
            Notification.organisation_id.is_not(None),
            Notification.created_at >= start,
            Notification.created_at < end,
            Notification.kind.in_(_digest_kinds()),
        )
        .group_by(Notification.organisation_id, Notification.key)
    ).all()
    if not rows:
        return {}
    firsts = {
        n.id: n
        for n in session.scalars(
            sa.select(Notification).where(Notification.id.in_([r.first_id for r in rows]))
        )
    }
    events: dict[int, list[Event]] = {}
    for row in sorted(rows, key=lambda r: r.first_id):
        first = firsts[row.first_id]
        events.setdefault(row.organisation_id, []).append(
            Event(first.kind, row.key, dict(first.params or {}), first.link, row.people)
        )
    return events


def _claim(session: Session, *, user: Any, day: dt.date, events: int) -> bool:
    """Record the admin's digest of ``day``; False when it was recorded before."""
    dialect = session.get_bind().dialect.name
    insert = postgresql.insert if dialect == "postgresql" else sqlite.insert
    statement = (
        insert(NotificationDigest)
        .values(
            organisation_id=user.organisation_id,
            user_id=user.id,
            day=day,
            events=events,
            sent_at=now_utc(),
        )
        .on_conflict_do_nothing(index_elements=[NotificationDigest.user_id, NotificationDigest.day])
        .returning(NotificationDigest.id)
    )
    return session.scalar(statement) is not None


def digest_send(session: Session, *, actor: Actor, day: dt.date) -> list[int]:
    """Mail each org admin concerned the digest of ``day`` once; the admins' ids mailed."""
    policy.require(actor, Action.JOB_RUN)
    mailed: list[int] = []
    with council_wide(session):
        events = day_events(session, day=day)
        if not events:
            return mailed
        admins = session.scalars(
            sa.select(User)
            .where(
                User.organisation_id.in_(list(events)),
                User.role == Role.ORG_ADMIN,
                User.is_active.is_(True),
                User.scim_deleted_at.is_(None),
            )
            .order_by(User.id)
        ).all()
        off = set(
            session.scalars(
                sa.select(NotificationPreference.user_id).where(
                    NotificationPreference.user_id.in_([a.id for a in admins]),
                    NotificationPreference.digest.is_(False),
                )
            )
        )
        names = dict(
            session.execute(
                sa.select(Organisation.id, Organisation.name).where(
                    Organisation.id.in_(list(events))
                )
            ).all()
        )
        for admin in admins:
            organisation_id = admin.organisation_id
            if admin.id in off or organisation_id is None:
                continue
            listed = events[organisation_id]
            if not _claim(session, user=admin, day=day, events=len(listed)):
                continue  # this admin's digest of the day went out already
            with in_language(admin.locale):
                lines = [
                    {
                        "title": kinds.title(e.kind, e.params),
                        "text": kinds.body(e.kind, e.params),
                        "link": e.link,
                        "people": e.people,
                    }
                    for e in listed
                ]
                message = build_message(
                    to=admin.email,
                    subject=_ln(
                        "%(num)d supplier event at %(organisation)s on %(day)s",
                        "%(num)d supplier events at %(organisation)s on %(day)s",
                        len(listed),
                        organisation=names.get(organisation_id, ""),
                        day=day.isoformat(),
                    ),
                    template=TEMPLATE,
                    locale=admin.locale,
                    events=lines,
                    day=day,
                    organisation=names.get(organisation_id, ""),
                )
            mail_queue(
                session,
                message,
                organisation_id=admin.organisation_id,
                related=("user", admin.id),
                kind=TEMPLATE,
                actor=actor,
            )
            mailed.append(admin.id)
    return mailed


@job(JOB, max_attempts=3, backoff=(300, 1800), every=DIGEST_EVERY)
def daily_digest_job(session: Session, *, actor: Actor, day: str | None = None) -> None:
    """Send yesterday's (UTC) digests, or ``day``'s (``YYYY-MM-DD``) when given."""
    policy.require(actor, Action.JOB_RUN)
    when = dt.date.fromisoformat(day) if day else (now_utc() - dt.timedelta(days=1)).date()
    digest_send(session, actor=actor, day=when)
