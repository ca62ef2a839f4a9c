"""The audit event model."""

from __future__ import annotations

import datetime as dt
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Mapped, mapped_column

from portal.db import Base, BigIntId, MixedTenantMixin, TenantKey, UTCDateTime
from portal.kernel.clock import now_utc


class AuditEvent(MixedTenantMixin, Base):
    """One change by one actor. Never updated or deleted by the portal.

    Events form a hash chain (see :mod:`portal.audit.chain`): ``seq`` counts them
    without gaps, ``prev_hash`` is the previous event's ``hash``, and ``hash``
    covers every field and ``prev_hash``.
    """

    __tablename__ = "audit_events"
    # The organisation the change concerns; empty for council-wide changes. Like the
    # actor's user, ON DELETE RESTRICT: deleting a user or an organisation must not
    # rewrite the (hashed) events about them.
    __tenant_key__ = TenantKey(ondelete="RESTRICT", index=False)
    # An organisation's events in the audit log's order (occurred_at, id): migration 0031.
    __table_args__ = (sa.Index("ix_audit_events_org_time", "organisation_id", "occurred_at", "id"),)

    id: Mapped[int] = mapped_column(BigIntId, primary_key=True)
    occurred_at: Mapped[dt.datetime] = mapped_column(
        UTCDateTime(), default=now_utc, nullable=False, index=True
    )
    actor_user_id: Mapped[int | None] = mapped_column(
        sa.ForeignKey("users.id", ondelete="RESTRICT"), index=True
    )
    # A readable name of the actor kept even if the account goes: an email, "cli", "token …".
    actor_label: Mapped[str] = mapped_column(sa.String(254), nullable=False)
    action: Mapped[str] = mapped_column(sa.String(80), nullable=False, index=True)
    target_type: Mapped[str] = mapped_column(sa.String(40), nullable=False)
    target_id: Mapped[str | None] = mapped_column(sa.String(80))
    target_label: Mapped[str | None] = mapped_column(sa.String(254))
    before: Mapped[dict[str, Any] | None] = mapped_column(sa.JSON)
    after: Mapped[dict[str, Any] | None] = mapped_column(sa.JSON)
    ip: Mapped[str | None] = mapped_column(sa.String(64))
    # The hash chain.
    seq: Mapped[int] = mapped_column(sa.BigInteger, nullable=False, unique=True)
    prev_hash: Mapped[str] = mapped_column(sa.String(64), nullable=False)
    hash: Mapped[str] = mapped_column(sa.String(64), nullable=False)


class AuditChainHead(Base):
    """The chain's last link, in one row (``id`` 1): where the next event attaches.

    Appending locks this row (``SELECT … FOR UPDATE``), so transactions append
    one at a time and the chain never forks; it is read by primary key, outside
    any organisation's row-level security, and lets a check notice events
    deleted from the end of the chain.
    """

    __tablename__ = "audit_chain_head"
    __table_args__ = (sa.CheckConstraint("id = 1", name="single_row"),)

    id: Mapped[int] = mapped_column(sa.Integer, primary_key=True, autoincrement=False)
    seq: Mapped[int] = mapped_column(sa.BigInteger, nullable=False)
    hash: Mapped[str] = mapped_column(sa.String(64), nullable=False)


@sa.event.listens_for(AuditEvent, "before_update")
@sa.event.listens_for(AuditEvent, "before_delete")
def _insert_only(mapper: Any, connection: Any, target: AuditEvent) -> None:
    """Audit events are insert-only: the portal never changes or deletes one."""
    raise RuntimeError(f"audit events are insert-only (event {target.id} was changed or deleted)")
