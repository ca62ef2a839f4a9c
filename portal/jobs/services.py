"""A council admin retries or cancels a job (the Jobs page); both audited."""

from __future__ import annotations

import sqlalchemy as sa
from sqlalchemy.orm import Session

from portal.audit.services import audit_record
from portal.jobs.labels import state_label
from portal.jobs.models import Job, JobState
from portal.jobs.queue import REGISTRY, dispatch_after_commit
from portal.kernel import policy
from portal.kernel.actor import Actor
from portal.kernel.clock import now_utc
from portal.kernel.errors import InvalidState, NotFound
from portal.kernel.i18n import _l
from portal.kernel.policy import Action

#: From which states a person may retry, or cancel, a job.
RETRYABLE = (JobState.FAILED, JobState.CANCELLED)
CANCELLABLE = (JobState.QUEUED, JobState.FAILED)

MANAGE_ONLY = _l("Only council admins retry or cancel jobs.")


def _locked(session: Session, job_id: int) -> Job:
    row = session.scalars(sa.select(Job).where(Job.id == job_id).with_for_update()).one_or_none()
    if row is None:
        raise NotFound(_l("No such job."))
    return row


def job_retry(session: Session, *, actor: Actor, job_id: int) -> Job:
    """Queue a failed or cancelled job again, with its full number of attempts."""
    policy.require(actor, Action.JOB_MANAGE, message=MANAGE_ONLY)
    row = _locked(session, job_id)
    if row.state not in RETRYABLE:
        raise InvalidState(
            _l(
                "Job %(id)d is %(state)s; only failed or cancelled jobs can be retried.",
                id=row.id,
                state=state_label(row.state.value),
            ),
            code="job_not_retryable",
        )
    before = {"state": row.state.value, "attempts": row.attempts}
    row.state = JobState.QUEUED
    row.attempts = 0
    row.retry_at = None
    row.finished_at = None
    row.dispatched_at = now_utc()  # sent as this commits (portal.jobs.queue.enqueue)
    session.flush()
    dispatch_after_commit(session, row.id)
    audit_record(
        session,
        actor=actor,
        action="job.retry",
        target_type="job",
        target_id=row.id,
        target_label=row.name,
        before=before,
        after={"state": row.state.value},
    )
    return row


def job_cancel(session: Session, *, actor: Actor, job_id: int) -> Job:
    """Cancel a queued (or failed) job: a worker that receives it drops it."""
    policy.require(actor, Action.JOB_MANAGE, message=MANAGE_ONLY)
    row = _locked(session, job_id)
    if row.state not in CANCELLABLE:
        raise InvalidState(
            _l(
                "Job %(id)d is %(state)s; only queued or failed jobs can be cancelled.",
                id=row.id,
                state=state_label(row.state.value),
            ),
            code="job_not_cancellable",
        )
    before = {"state": row.state.value}
    row.state = JobState.CANCELLED
    row.retry_at = None
    row.finished_at = now_utc()
    session.flush()
    spec = REGISTRY.get(row.name)
    if spec is not None and spec.on_give_up is not None and before["state"] == JobState.QUEUED:
        # What the job was for says it will not happen (an invoice run: failed, and why).
        spec.on_give_up(session, error=f"cancelled by {actor.label}", **row.arguments)
    audit_record(
        session,
        actor=actor,
        action="job.cancel",
        target_type="job",
        target_id=row.id,
        target_label=row.name,
        before=before,
        after={"state": row.state.value},
    )
    return row
