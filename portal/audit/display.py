"""An audit event's change as people read it: money as money, in the reader's locale.

Events store amounts as integer minor units (``{"total": 111654, "currency": "EUR"}``); the
audit pages show ``total: €1,116.54``. The currency of an amount is, in order: the
``<name>_currency`` beside a ``<name>_amount`` (``unit_cost_currency``), the event's own
``currency``, then the currency the page knows for the event (its invoice's or credit note's,
or its organisation's: :func:`changes` takes it). Without one, the integer is shown as stored.
Keys (``total``) are field names and stay as stored.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from portal.audit.chain import (
    BEYOND_HEAD,
    HASH_MISMATCH,
    PREV_HASH_MISMATCH,
    SEQUENCE_GAP,
    TRUNCATED,
)
from portal.i18n import money
from portal.kernel.i18n import _, _l

#: Keys whose integer values are amounts of money in minor units.
MONEY_KEYS = frozenset(
    {
        "amount",
        "amount_due",
        "amount_paid",
        "flat_amount",
        "subtotal",
        "tax",
        "total",
        "unit_amount",
        "unit_cost_amount",
    }
)


@dataclass(frozen=True)
class Change:
    key: str
    before: str | None  # None: the event records no value before
    after: str | None


def _currency_for(key: str, values: dict[str, Any], fallback: str | None) -> str | None:
    if key.endswith("_amount"):
        named = values.get(key[: -len("_amount")] + "_currency")
        if isinstance(named, str) and len(named) == 3:
            return named
    own = values.get("currency")
    if isinstance(own, str) and len(own) == 3:
        return own
    return fallback


def value_text(key: str, value: Any, values: dict[str, Any], currency: str | None) -> str:
    """One recorded value for people: money, a number, yes/no, or the value as stored."""
    if value is None:
        return "—"
    if isinstance(value, bool):
        return _("yes") if value else _("no")
    if isinstance(value, int):
        if key in MONEY_KEYS:
            chosen = _currency_for(key, values, currency)
            if chosen:
                return money(value, chosen)
        return str(value)  # counts, ids and years alike: as stored
    if isinstance(value, list):
        return "; ".join(value_text(key, v, values, currency) for v in value)
    if isinstance(value, dict):
        return ", ".join(
            f"{k}: {value_text(k, v, {**values, **value}, currency)}" for k, v in value.items()
        )
    if isinstance(value, str):
        return value
    return json.dumps(value, ensure_ascii=False, default=str)


def changes(
    before: dict[str, Any] | None, after: dict[str, Any] | None, currency: str | None = None
) -> list[Change]:
    """The keys an event records, each with its value before (if recorded) and after."""
    old, new = before or {}, after or {}
    both = {**old, **new}
    out = []
    for key in [*old, *(k for k in new if k not in old)]:
        out.append(
            Change(
                key=key,
                before=value_text(key, old[key], both, currency) if key in old else None,
                after=value_text(key, new.get(key), both, currency),
            )
        )
    return out


#: Why a chain is broken (codes of portal.audit.chain), as people read it.
PROBLEMS = {
    HASH_MISMATCH: _l("the event's hash does not match its content (it was changed)"),
    PREV_HASH_MISMATCH: _l("the event does not link to the event before it"),
    SEQUENCE_GAP: _l("events are missing from the sequence"),
    TRUNCATED: _l("events are missing at the end of the chain"),
    BEYOND_HEAD: _l("an event lies past the chain's recorded head"),
}


def broken_text(broken: dict[str, Any]) -> str:
    """Where and why a chain is broken (a ``BrokenLink.as_dict()``), in the reader's language."""
    label = PROBLEMS.get(broken.get("problem") or "")
    problem = str(label) if label is not None else str(broken.get("detail") or "")
    if broken.get("id") is None:
        return _("the chain: %(problem)s", problem=problem)
    return _(
        "event id %(id)s, seq %(seq)s (%(action)s): %(problem)s",
        id=broken.get("id"),
        seq=broken.get("seq"),
        action=broken.get("action") or "—",
        problem=problem,
    )
