"""Reading the audit log, always scoped to what the reader may see."""

from __future__ import annotations

import sqlalchemy as sa
from sqlalchemy.orm import Session

from portal.audit.models import AuditEvent
from portal.pagination import Page, paginate


def audit_events_list(
    session: Session,
    *,
    organisation_id: int | None,
    all_organisations: bool = False,
    action_prefix: str | None = None,
    page: int = 1,
    per_page: int = 50,
) -> Page[AuditEvent]:
    """Newest events first: one organisation's, or every event when ``all_organisations``.

    ``all_organisations`` is for council admins only; the caller decides, and the
    default is the narrow scope.
    """
    query = sa.select(AuditEvent).order_by(AuditEvent.occurred_at.desc(), AuditEvent.id.desc())
    if not all_organisations or organisation_id is not None:
        query = query.where(AuditEvent.organisation_id == organisation_id)
    if action_prefix:
        query = query.where(AuditEvent.action.startswith(action_prefix, autoescape=True))
    return paginate(session, query, page=page, per_page=per_page)
