"""Recording audit events (the acting :class:`~portal.kernel.actor.Actor` is in the kernel)."""

from __future__ import annotations

from typing import Any

from sqlalchemy.orm import Session

from portal.audit.models import AuditEvent
from portal.kernel.actor import Actor


def snapshot(obj: Any, fields: tuple[str, ...]) -> dict[str, Any]:
    """A JSON-safe dict of some attributes of a model, for before/after."""
    out: dict[str, Any] = {}
    for field in fields:
        value = getattr(obj, field)
        if hasattr(value, "isoformat"):
            value = value.isoformat()
        out[field] = value
    return out


def changed(before: dict[str, Any], after: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """Only the keys whose values differ, as (before, after)."""
    keys = [k for k in after if before.get(k) != after.get(k)]
    return {k: before.get(k) for k in keys}, {k: after[k] for k in keys}


def audit_record(
    session: Session,
    *,
    actor: Actor,
    action: str,
    target_type: str,
    target_id: Any = None,
    target_label: str | None = None,
    organisation_id: int | None = None,
    before: dict[str, Any] | None = None,
    after: dict[str, Any] | None = None,
) -> AuditEvent:
    """Add one audit event to the session (committed with the change it describes)."""
    event = AuditEvent(
        actor_user_id=actor.user_id,
        actor_label=actor.label[:254],
        organisation_id=organisation_id,
        action=action,
        target_type=target_type,
        target_id=None if target_id is None else str(target_id),
        target_label=target_label,
        before=before,
        after=after,
        ip=actor.ip,
    )
    session.add(event)
    return event
