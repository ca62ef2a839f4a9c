"""Recording audit events (the acting :class:`~portal.kernel.actor.Actor` is in the kernel),
and checking the hash chain they form (:mod:`portal.audit.chain`)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any, cast

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from portal.audit import chain
from portal.audit.chain import BrokenLink, ChainReport
from portal.audit.models import AuditChainHead, AuditEvent
from portal.db import council_wide
from portal.kernel import policy
from portal.kernel.actor import Actor
from portal.kernel.clock import now_utc
from portal.kernel.errors import PermissionDenied
from portal.kernel.i18n import _l
from portal.kernel.policy import Action

#: The chain's head table (Core: appends lock and move it with plain statements).
_HEAD = cast(sa.Table, AuditChainHead.__table__)


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
    """Add one audit event to the session (committed with the change it describes).

    The event is linked to the chain here: the transaction's first event locks the
    chain's head row until the transaction ends, so events of concurrent
    transactions queue up behind one another instead of forking the chain. Cost:
    one primary-key read and one UPDATE per transaction (per flush), whatever the
    number of events.
    """
    fields: dict[str, Any] = {
        "occurred_at": now_utc(),
        "actor_user_id": actor.user_id,
        "actor_label": actor.label[:254],
        "organisation_id": organisation_id,
        "action": action,
        "target_type": target_type,
        "target_id": None if target_id is None else str(target_id),
        "target_label": target_label,
        "before": chain.as_stored_json(before),
        "after": chain.as_stored_json(after),
        "ip": actor.ip,
    }
    tip = _chain_tip(session)
    fields.update(seq=tip["seq"] + 1, prev_hash=tip["hash"])
    digest = chain.event_hash(**fields)
    event = AuditEvent(**fields, hash=digest)
    session.add(event)
    tip.update(seq=fields["seq"], hash=digest, unsaved=True)
    return event


#: ``session.info`` key: the chain's last link as this transaction sees it (its head
#: row locked), and whether the head row still has to be updated to it.
_TIP = "portal_audit_chain_tip"


def _chain_tip(session: Session) -> dict[str, Any]:
    """The chain's last link for this transaction: read (and locked) at its first event.

    Later events of the same transaction attach to the one before without a read:
    the lock keeps every other transaction from appending meanwhile. The head row is
    written once per flush (:func:`_save_chain_head`); the remembered link is
    forgotten whenever a transaction or savepoint ends (:func:`_forget_chain_tip`),
    so a savepoint rolled back with events in it leaves no hole.
    """
    tip = session.info.get(_TIP)
    if tip is None:
        seq, digest = _chain_head_locked(session)
        tip = session.info[_TIP] = {"seq": seq, "hash": digest, "unsaved": False}
    return tip


@sa.event.listens_for(Session, "before_flush")
def _save_chain_head(session: Session, flush_context: Any, instances: Any) -> None:
    """Move the head row to the last event this flush writes (one UPDATE per flush)."""
    tip = session.info.get(_TIP)
    if tip is not None and tip["unsaved"]:
        session.connection().execute(
            sa.update(_HEAD).where(_HEAD.c.id == 1).values(seq=tip["seq"], hash=tip["hash"])
        )
        tip["unsaved"] = False


@sa.event.listens_for(Session, "after_transaction_end")
def _forget_chain_tip(session: Session, transaction: Any) -> None:
    session.info.pop(_TIP, None)


def _chain_head_locked(session: Session) -> tuple[int, str]:
    """The chain's last (seq, hash), its row locked until this transaction ends.

    PostgreSQL holds the row lock (``FOR UPDATE``); SQLite transactions that write
    begin ``IMMEDIATE`` (:mod:`portal.db`), so they are one at a time already.
    A missing head (a fresh database after the tables were emptied) starts at the
    last event there is, or at the genesis of an empty chain.
    """
    query = sa.select(_HEAD.c.seq, _HEAD.c.hash).where(_HEAD.c.id == 1).with_for_update()
    row = session.execute(query).first()
    if row is None:
        with council_wide(session):
            last = session.execute(
                sa.select(AuditEvent.__table__.c.seq, AuditEvent.__table__.c.hash)
                .order_by(AuditEvent.__table__.c.seq.desc())
                .limit(1)
            ).first()
        seq, digest = (last.seq, last.hash) if last else (0, chain.GENESIS)
        dialect = session.get_bind().dialect.name
        insert = (postgresql.insert if dialect == "postgresql" else sqlite.insert)(_HEAD)
        session.execute(
            insert.values(id=1, seq=seq, hash=digest).on_conflict_do_nothing(index_elements=["id"])
        )
        row = session.execute(query).one()
    return int(row.seq), str(row.hash)


# ------------------------------------------------------------------ checking the chain

#: Events read per statement when walking the chain.
VERIFY_BATCH = 5000


def _events_in_order(session: Session, *, up_to: int, batch: int) -> Iterator[Any]:
    """Every event with ``seq <= up_to`` in ``seq`` order, fetched ``batch`` at a time."""
    table = AuditEvent.__table__
    columns = [table.c.id, *(table.c[name] for name in chain.HASHED_FIELDS), table.c.hash]
    after: int | None = None
    while True:
        query = sa.select(*columns).where(table.c.seq <= up_to).order_by(table.c.seq).limit(batch)
        if after is not None:
            query = query.where(table.c.seq > after)
        rows = session.execute(query).all()
        if not rows:
            return
        yield from rows
        after = rows[-1].seq


def audit_verify(session: Session, *, batch: int = VERIFY_BATCH) -> ChainReport:
    """Walk the chain in order, recompute every hash, and report the first broken link.

    Reads in batches (bounded memory, however long the log). Only the events up to
    the head read at the start are checked: events appended meanwhile wait for the
    next check. Needs to see every organisation's events (council-wide scope).
    """
    with council_wide(session):
        return _walk(session, batch=batch)


def _walk(session: Session, *, batch: int) -> ChainReport:
    head = session.execute(sa.select(_HEAD.c.seq, _HEAD.c.hash).where(_HEAD.c.id == 1)).first()
    head_seq = int(head.seq) if head else None
    expected_seq, prev_hash, count = 1, chain.GENESIS, 0
    last = None
    up_to = head_seq if head_seq is not None else 2**62
    for row in _events_in_order(session, up_to=up_to, batch=batch):
        broken = _check_link(row, expected_seq, prev_hash)
        if broken is not None:
            return ChainReport(
                events=count, last_seq=expected_seq - 1, last_hash=prev_hash, broken=broken
            )
        count += 1
        expected_seq, prev_hash, last = row.seq + 1, row.hash, row
    if head is not None and (head_seq != expected_seq - 1 or head.hash != prev_hash):
        detail = (
            f"the chain ends at seq {expected_seq - 1} but its head records seq {head_seq}: "
            "events were deleted from the end"
            if head_seq != expected_seq - 1
            else f"the head's hash differs from the hash of the last event (seq {head_seq})"
        )
        return ChainReport(
            events=count,
            last_seq=expected_seq - 1,
            last_hash=prev_hash,
            broken=_broken(last, chain.TRUNCATED, detail),
        )
    if head is None and count:
        detail = "the chain's head row is missing"
        return ChainReport(
            events=count,
            last_seq=expected_seq - 1,
            last_hash=prev_hash,
            broken=_broken(last, chain.TRUNCATED, detail),
        )
    beyond = _beyond_head(session) if head is not None else None
    if beyond is not None:
        row, head_now = beyond
        detail = (
            f"event seq {row.seq} is not in the chain: its head records seq {head_now} "
            "(the head was moved back, or the event was added behind the portal's back)"
        )
        return ChainReport(
            events=count,
            last_seq=expected_seq - 1,
            last_hash=prev_hash,
            broken=_broken(row, chain.BEYOND_HEAD, detail),
        )
    return ChainReport(events=count, last_seq=expected_seq - 1, last_hash=prev_hash, broken=None)


def _beyond_head(session: Session) -> tuple[Any, int] | None:
    """The first event past the chain's head, if any (every append moves the head with it).

    The highest ``seq`` is read before the head: an append committed in between
    only moves the head further, so a legitimate log never looks ahead of it.
    """
    table = AuditEvent.__table__
    top = session.scalar(sa.select(sa.func.max(table.c.seq)))
    head_now = session.scalar(sa.select(_HEAD.c.seq).where(_HEAD.c.id == 1))
    if top is None or head_now is None or top <= head_now:
        return None
    row = session.execute(
        sa.select(table.c.id, table.c.seq, table.c.occurred_at, table.c.action)
        .where(table.c.seq > head_now)
        .order_by(table.c.seq)
        .limit(1)
    ).one()
    return row, int(head_now)


def _broken(row: Any, problem: str, detail: str) -> BrokenLink:
    if row is None:
        return BrokenLink(None, None, None, None, problem, detail)
    return BrokenLink(row.id, row.seq, row.occurred_at, row.action, problem, detail)


def _check_link(row: Any, expected_seq: int, prev_hash: str) -> BrokenLink | None:
    """What is wrong with ``row`` as the next link after ``prev_hash``, if anything."""
    if row.seq != expected_seq:
        missing = (
            f"seq {expected_seq}"
            if row.seq == expected_seq + 1
            else f"seq {expected_seq} to {row.seq - 1}"
        )
        return _broken(
            row,
            chain.SEQUENCE_GAP,
            f"gap in sequence: expected seq {expected_seq}, found {row.seq} ({missing} missing)",
        )
    if row.prev_hash != prev_hash:
        return _broken(
            row,
            chain.PREV_HASH_MISMATCH,
            "prev_hash does not match the previous event's hash",
        )
    recomputed = chain.event_hash(**{name: row._mapping[name] for name in chain.HASHED_FIELDS})
    if recomputed != row.hash:
        return _broken(
            row,
            chain.HASH_MISMATCH,
            "hash mismatch: the event's recorded fields are not those it was hashed with",
        )
    return None


def may_verify_chain(actor: Actor) -> bool:
    """Council staff (admin, finance) and council-wide system work may check the chain."""
    return policy.allowed(actor, Action.AUDIT_VERIFY)


def audit_chain_check(session: Session, *, actor: Actor) -> ChainReport:
    """Check the chain (:func:`audit_verify`) and record the check and its result.

    When the check cannot be recorded because the chain's head was moved back onto
    events that exist (nothing can be appended until it is repaired), the report
    is returned all the same: it names the event past the head.
    """
    if not may_verify_chain(actor):
        raise PermissionDenied(_l("Only council staff may check the audit log's chain."))
    with council_wide(session):  # the chain spans every organisation
        report = audit_verify(session)
        try:
            with session.begin_nested():
                audit_record(
                    session,
                    actor=actor,
                    action=chain.CHAIN_VERIFIED,
                    target_type="audit_chain",
                    target_label="audit log",
                    after={
                        "intact": report.intact,
                        "events": report.events,
                        "last_seq": report.last_seq,
                        "broken": report.broken.as_dict() if report.broken else None,
                    },
                )
                session.flush()  # in council_wide: the event is council-wide (no organisation)
        except sa.exc.IntegrityError:
            if report.intact:
                raise
    return report
