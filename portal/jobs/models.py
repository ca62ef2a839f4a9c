"""The ``jobs`` table: every job the portal enqueues, and what became of it.

A row is written in the same transaction as the change that asked for the job
(an outbox): a rolled-back change leaves no job, and a committed one always has
its row, even when the message to the queue could not be sent (the schedule's
sweep sends it again). The row, not the queue, is the job's truth: its state,
its attempts and its last error are what the council's Jobs page shows and what
a worker checks before it runs the job (a cancelled or finished job is skipped
when its message comes again).
"""

from __future__ import annotations

import datetime as dt
import enum
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Mapped, mapped_column

from portal.db import Base, BigIntId, UTCDateTime, enum_column
from portal.kernel.clock import now_utc


class JobState(enum.StrEnum):
    QUEUED = "queued"  # waiting for a worker (a first try, or a retry after a failure)
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"  # gave up after its attempts; a person may retry it
    CANCELLED = "cancelled"


#: States a job does not leave by itself.
FINISHED = (JobState.SUCCEEDED, JobState.FAILED, JobState.CANCELLED)


class Job(Base):
    """One job: its name and arguments (no secrets), state, attempts, last error, times."""

    __tablename__ = "jobs"
    __table_args__ = (
        sa.CheckConstraint(
            "state IN ('queued', 'running', 'succeeded', 'failed', 'cancelled')",
            name="state_known",
        ),
        sa.CheckConstraint("attempts >= 0", name="attempts_not_negative"),
        sa.Index("ix_jobs_state_enqueued_at", "state", "enqueued_at"),
    )

    id: Mapped[int] = mapped_column(BigIntId, primary_key=True)
    name: Mapped[str] = mapped_column(sa.String(100), nullable=False)
    arguments: Mapped[dict[str, Any]] = mapped_column(sa.JSON, nullable=False, default=dict)
    state: Mapped[JobState] = mapped_column(
        enum_column(JobState, 16), nullable=False, default=JobState.QUEUED
    )
    attempts: Mapped[int] = mapped_column(sa.Integer, nullable=False, default=0)
    max_attempts: Mapped[int] = mapped_column(sa.Integer, nullable=False, default=1)
    # The last failure's message (a type and a line, never a stack trace).
    last_error: Mapped[str | None] = mapped_column(sa.Text)
    # A scheduled job's slot (``payments.collect@2026-12-01T10:05:00+00:00``): one job per slot
    # however many workers run the schedule.
    dedupe_key: Mapped[str | None] = mapped_column(sa.String(200), unique=True)
    enqueued_by: Mapped[str] = mapped_column(sa.String(254), nullable=False)
    request_id: Mapped[str | None] = mapped_column(sa.String(64))
    enqueued_at: Mapped[dt.datetime] = mapped_column(UTCDateTime(), nullable=False, default=now_utc)
    # When the message last went to the queue (None: not sent yet, the sweep sends it).
    dispatched_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime())
    # A queued job that failed before: when its next attempt is due.
    retry_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime())
    started_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime())
    finished_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime())
