"""Keeping the notifications table small: the daily job ``notifications.sweep``.

A notification read more than :data:`KEEP_READ` ago is deleted; an unread one stays until
its person reads it. Digest records older than :data:`KEEP_DIGESTS` are deleted too (the
digest job only looks at yesterday). A deleted notification's key could be told again,
but only by a signal of an event that old, which nothing sends.
"""

from __future__ import annotations

import datetime as dt

import sqlalchemy as sa
from sqlalchemy.orm import Session

from portal.db import council_wide
from portal.jobs.queue import job
from portal.kernel import policy
from portal.kernel.actor import Actor
from portal.kernel.clock import now_utc
from portal.kernel.policy import Action
from portal.notifications.models import Notification, NotificationDigest

JOB = "notifications.sweep"
KEEP_READ = dt.timedelta(days=180)
KEEP_DIGESTS = dt.timedelta(days=400)


def notifications_sweep(session: Session, *, actor: Actor, now: dt.datetime) -> tuple[int, int]:
    """Delete notifications read before ``now - KEEP_READ`` and old digest records; counts."""
    policy.require(actor, Action.JOB_RUN)
    with council_wide(session):
        read = session.execute(
            sa.delete(Notification)
            .where(Notification.read_at.is_not(None), Notification.read_at < now - KEEP_READ)
            .execution_options(synchronize_session=False)
        )
        digests = session.execute(
            sa.delete(NotificationDigest)
            .where(NotificationDigest.day < (now - KEEP_DIGESTS).date())
            .execution_options(synchronize_session=False)
        )
    return int(getattr(read, "rowcount", 0) or 0), int(getattr(digests, "rowcount", 0) or 0)


@job(JOB, max_attempts=3, backoff=(300, 1800), every=dt.timedelta(days=1))
def notifications_sweep_job(session: Session, *, actor: Actor) -> None:
    """Delete long-read notifications and old digest records (daily)."""
    policy.require(actor, Action.JOB_RUN)
    notifications_sweep(session, actor=actor, now=now_utc())
