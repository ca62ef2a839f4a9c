"""Reading the audit log, always scoped to what the reader may see."""

from __future__ import annotations

from dataclasses import dataclass

import sqlalchemy as sa
from sqlalchemy.orm import Session

from portal.audit.chain import CHAIN_VERIFIED
from portal.audit.models import AuditChainHead, AuditEvent
from portal.kernel.scope import Scope
from portal.pagination import Page, paginate


def audit_events_list(
    session: Session,
    *,
    scope: Scope,
    action_prefix: str | None = None,
    page: int = 1,
    per_page: int = 50,
) -> Page[AuditEvent]:
    """Newest events first: one organisation's, or (``Scope.council()``) every event.

    Council scope includes the council-wide events (no organisation).
    """
    query = (
        sa.select(AuditEvent)
        .where(scope.filter(AuditEvent.organisation_id))
        .order_by(AuditEvent.occurred_at.desc(), AuditEvent.id.desc())
    )
    if action_prefix:
        query = query.where(AuditEvent.action.startswith(action_prefix, autoescape=True))
    return paginate(session, query, page=page, per_page=per_page)


@dataclass(frozen=True)
class ChainState:
    """What the chain page shows: its length (the head's seq) and last link, and the last check."""

    head_seq: int
    head_hash: str | None
    last_check: AuditEvent | None


def audit_chain_state(session: Session) -> ChainState:
    """The chain's head and the latest recorded check (two indexed reads, no walk)."""
    head = session.get(AuditChainHead, 1)
    last_check = session.scalars(
        sa.select(AuditEvent)
        .where(AuditEvent.action == CHAIN_VERIFIED)
        .order_by(AuditEvent.seq.desc())
        .limit(1)
    ).first()
    return ChainState(
        head_seq=head.seq if head else 0,
        head_hash=head.hash if head else None,
        last_check=last_check,
    )
