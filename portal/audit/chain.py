"""The audit log's hash chain: how one event's hash is computed, and what a check finds.

Every audit event carries a sequence number (1, 2, 3, … with no gaps), the hash
of the event before it (``prev_hash``; the first event's is :data:`GENESIS`) and
its own ``hash``: SHA-256 over :func:`canonical` — a JSON document of the
event's fields with sorted keys and no whitespace, the time in UTC with
microseconds, and ``prev_hash``. Changing any recorded field of one event
changes its hash; rewriting that hash too breaks the next event's
``prev_hash``; deleting an event leaves a gap in the sequence.

This module is pure (no database): ``services`` appends and verifies, and the
migration that chained the rows existing before (0009) keeps a frozen copy of
:func:`canonical`, which must not change for rows already written. A new format
would need a new ``v`` and both kept.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
from dataclasses import dataclass
from typing import Any

#: The ``prev_hash`` of the first event.
GENESIS = "0" * 64

#: The version of :func:`canonical` written into every hashed document.
FORMAT_VERSION = 1


def utc_text(moment: dt.datetime) -> str:
    """``moment`` in UTC as ``YYYY-MM-DDTHH:MM:SS.ffffffZ`` (naive means UTC, as SQLite stores)."""
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=dt.UTC)
    return moment.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def as_stored_json(value: Any) -> Any:
    """``value`` as it comes back from a JSON column (tuples become lists, keys strings).

    The hash is computed over what will be read back, so the value stored is this one.
    """
    if value is None:
        return None
    return json.loads(json.dumps(value))


def canonical(
    *,
    seq: int,
    occurred_at: dt.datetime,
    actor_user_id: int | None,
    actor_label: str,
    organisation_id: int | None,
    action: str,
    target_type: str,
    target_id: str | None,
    target_label: str | None,
    before: Any,
    after: Any,
    ip: str | None,
    prev_hash: str,
) -> bytes:
    """The bytes an event's hash is taken over."""
    document = {
        "v": FORMAT_VERSION,
        "seq": seq,
        "occurred_at": utc_text(occurred_at),
        "actor_user_id": actor_user_id,
        "actor_label": actor_label,
        "organisation_id": organisation_id,
        "action": action,
        "target_type": target_type,
        "target_id": target_id,
        "target_label": target_label,
        "before": before,
        "after": after,
        "ip": ip,
        "prev_hash": prev_hash,
    }
    return json.dumps(
        document, sort_keys=True, separators=(",", ":"), ensure_ascii=True, allow_nan=False
    ).encode("ascii")


def event_hash(**fields: Any) -> str:
    """The SHA-256 hex digest of :func:`canonical` of ``fields``."""
    return hashlib.sha256(canonical(**fields)).hexdigest()


#: Where an event's link sits in :func:`canonical` of it with ``seq=0, prev_hash=""``.
_LINK = '"prev_hash":"","seq":0,'


def canonical_around_link(**fields: Any) -> tuple[str, str, str]:
    """:func:`canonical` of an event whose place in the chain is not known yet, in three
    parts: ``before + prev_hash + between + str(seq) + after`` is ``canonical(seq=seq,
    prev_hash=prev_hash, **fields)``. The database can then link the event in the statement
    that locks the chain's head (the lean seat path on PostgreSQL hashes the five parts with
    its ``sha256``), instead of a round trip to read the head first.

    ``prev_hash`` and ``seq`` are adjacent top-level keys (the keys are sorted). The marker
    is found from the end: the keys after it (``target_*``, ``v``) hold strings, in which
    every ``"`` is escaped, and only ``before`` and ``after`` (sorted before it) may hold a
    key of that name.
    """
    text = canonical(seq=0, prev_hash="", **fields).decode("ascii")
    at = text.rindex(_LINK)
    return text[: at + len('"prev_hash":"')], '","seq":', text[at + len(_LINK) - 1 :]


#: The fields of an event that :func:`canonical` takes (and the verifier reads).
HASHED_FIELDS = (
    "seq",
    "occurred_at",
    "actor_user_id",
    "actor_label",
    "organisation_id",
    "action",
    "target_type",
    "target_id",
    "target_label",
    "before",
    "after",
    "ip",
    "prev_hash",
)


#: The action of the audit event that records a check of the chain.
CHAIN_VERIFIED = "audit.chain_verify"

# What can be wrong with a link (``BrokenLink.problem``).
HASH_MISMATCH = "hash_mismatch"
PREV_HASH_MISMATCH = "prev_hash_mismatch"
SEQUENCE_GAP = "sequence_gap"
TRUNCATED = "truncated"
BEYOND_HEAD = "beyond_head"


@dataclass(frozen=True)
class BrokenLink:
    """The first event at which the chain does not hold, and why."""

    id: int | None
    seq: int | None
    occurred_at: dt.datetime | None
    action: str | None
    problem: str
    detail: str

    def describe(self) -> str:
        """One line: which event, when, what, and what is wrong."""
        where = f"event id {self.id}, seq {self.seq}" if self.id is not None else "the chain"
        when = f", {utc_text(self.occurred_at)}" if self.occurred_at else ""
        what = f", {self.action}" if self.action else ""
        return f"{where}{when}{what}: {self.detail}"

    def as_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "seq": self.seq,
            "occurred_at": utc_text(self.occurred_at) if self.occurred_at else None,
            "action": self.action,
            "problem": self.problem,
            "detail": self.detail,
        }


@dataclass(frozen=True)
class ChainReport:
    """What a walk of the chain found: how many events were checked, and the first break."""

    events: int
    last_seq: int
    last_hash: str
    broken: BrokenLink | None

    @property
    def intact(self) -> bool:
        return self.broken is None

    def describe(self) -> str:
        """``OK: N events, chain intact`` or ``BROKEN at …``."""
        if self.broken is None:
            return f"OK: {self.events} events, chain intact"
        return f"BROKEN at {self.broken.describe()}"
