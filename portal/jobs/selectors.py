"""Reading jobs: the council's Jobs page and a run's job."""

from __future__ import annotations

import sqlalchemy as sa
from sqlalchemy.orm import Session

from portal.jobs.models import Job, JobState
from portal.kernel.errors import NotFound
from portal.kernel.i18n import _l
from portal.pagination import Page, paginate

#: The page's filters: a state, or ``retried`` (jobs that needed more than one attempt).
FILTERS = ("queued", "running", "failed", "retried", "succeeded", "cancelled")
PER_PAGE = 50


def jobs_page(session: Session, *, show: str | None, page: int) -> Page[Job]:
    """Jobs newest first, filtered by ``show`` (one of :data:`FILTERS`, or None for all)."""
    query = sa.select(Job).order_by(Job.id.desc())
    if show == "retried":
        query = query.where(sa.or_(Job.attempts > 1, Job.last_error.is_not(None)))
    elif show in FILTERS:
        query = query.where(Job.state == JobState(show))
    return paginate(session, query, page=page, per_page=PER_PAGE)


def job_counts(session: Session) -> dict[str, int]:
    """How many jobs are in each state (every state present, zero if none)."""
    counts = dict.fromkeys((state.value for state in JobState), 0)
    for state, count in session.execute(sa.select(Job.state, sa.func.count()).group_by(Job.state)):
        counts[JobState(state).value] = count
    return counts


def job_by_id(session: Session, job_id: int) -> Job:
    row = session.get(Job, job_id)
    if row is None:
        raise NotFound(_l("No such job."))
    return row
