"""Month partitions of ``usage_events`` on PostgreSQL, made ahead by a scheduled job.

Migration 0013 partitions ``usage_events`` by the UTC month of ``occurred_at`` (the
month an event is billed in), with a DEFAULT partition that takes any event of a month
without a partition of its own: ingestion never fails for want of one. The job
``metering.usage_partitions`` (once a day, :data:`CHECK_EVERY`) and
``portal usage partitions`` make the partitions of the current month and the
:data:`MONTHS_AHEAD` after it, on the portal's clock, through the database function
``usage_partition_ensure`` (``SECURITY DEFINER``: only the tables' owner may add a
partition, and the portal connects as the application role). Making a partition that
exists does nothing, so the job may run any number of times; a month that already has
events in the default partition gets its partition with those events moved into it, and
the job does that for every month it finds there (late events of a past month, events
loaded before the month's partition was made), so the default partition stays small.

SQLite has no partitions: the job and the command do nothing there.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

import sqlalchemy as sa
from sqlalchemy.orm import Session

from portal.jobs.queue import job
from portal.kernel import policy
from portal.kernel.actor import Actor
from portal.kernel.clock import now_utc
from portal.kernel.policy import Action

#: The schema the partitions live in (migration 0013), apart from the application's tables.
SCHEMA = "usage_partitions"
#: The partition that takes events of a month without a partition of its own.
DEFAULT_PARTITION = "usage_events_default"
#: Months made ahead of the current one.
MONTHS_AHEAD = 3
#: How often the schedule makes sure (a missed day changes nothing: 3 months are ahead).
CHECK_EVERY = dt.timedelta(days=1)


@dataclass(frozen=True)
class Partition:
    """One partition of ``usage_events``: its table, and the months it takes (UTC,
    ``start`` inclusive, ``end`` exclusive; both None for the default partition)."""

    name: str
    start: dt.datetime | None
    end: dt.datetime | None


def partitioned(session: Session) -> bool:
    """Whether ``usage_events`` is partitioned here (PostgreSQL after migration 0013)."""
    if session.get_bind().dialect.name != "postgresql":
        return False
    return bool(
        session.scalar(
            sa.text(
                "SELECT c.relkind = 'p' FROM pg_class c JOIN pg_namespace n "
                "ON n.oid = c.relnamespace WHERE n.nspname = 'public' "
                "AND c.relname = 'usage_events'"
            )
        )
    )


def month_starts(now: dt.datetime, ahead: int = MONTHS_AHEAD) -> list[dt.date]:
    """The first day of ``now``'s UTC month and of the ``ahead`` months after it."""
    if ahead < 0:
        raise ValueError("ahead must not be negative")
    moment = now.astimezone(dt.UTC)
    year, month = moment.year, moment.month
    out = []
    for _ in range(ahead + 1):
        out.append(dt.date(year, month, 1))
        year, month = (year + 1, 1) if month == 12 else (year, month + 1)
    return out


def usage_partitions_ensure(
    session: Session, *, actor: Actor, now: dt.datetime, ahead: int = MONTHS_AHEAD
) -> list[dt.date]:
    """Make the partitions that are missing of ``now``'s month, of the ``ahead`` after it
    and of every month with events in the default partition; the months made, in order
    (none when all exist, and always none on SQLite). The partitions are made in the
    session's transaction."""
    policy.require(actor, Action.JOB_RUN)
    months = month_starts(now, ahead)
    if not partitioned(session):
        return []
    stranded = session.scalars(sa.text("SELECT usage_partition_default_months()")).all()
    made = []
    for first in sorted(set(months) | set(stranded)):
        if session.scalar(sa.text("SELECT usage_partition_ensure(:m)"), {"m": first}):
            made.append(first)
    return made


def usage_partitions_list(session: Session) -> list[Partition]:
    """The partitions of ``usage_events`` in order of their months, the default one last
    (an empty list on SQLite)."""
    if not partitioned(session):
        return []
    rows = session.execute(
        sa.text(
            "SELECT c.relname, pg_get_expr(c.relpartbound, c.oid) FROM pg_inherits i "
            "JOIN pg_class c ON c.oid = i.inhrelid "
            "WHERE i.inhparent = 'public.usage_events'::regclass"
        )
    ).all()
    out = []
    for name, bound in rows:
        if bound == "DEFAULT":
            out.append(Partition(name, None, None))
            continue
        # FOR VALUES FROM ('2026-12-01 00:00:00+00') TO ('2027-01-01 00:00:00+00')
        low, high = (part.split("'")[1] for part in bound.split(" TO "))
        # (written in the session's time zone: read back as UTC)
        out.append(
            Partition(
                name,
                dt.datetime.fromisoformat(low).astimezone(dt.UTC),
                dt.datetime.fromisoformat(high).astimezone(dt.UTC),
            )
        )
    out.sort(key=lambda p: (p.start is None, p.start or dt.datetime.min.replace(tzinfo=dt.UTC)))
    return out


@job("metering.usage_partitions", max_attempts=3, backoff=(300, 1800), every=CHECK_EVERY)
def usage_partitions_job(session: Session, *, actor: Actor) -> None:
    """Make the partitions of usage_events for this month and the next three (PostgreSQL)."""
    policy.require(actor, Action.JOB_RUN)
    usage_partitions_ensure(session, actor=actor, now=now_utc())
