"""States named in messages (an organisation's, an invitation's, a domain claim's), in the
reader's language; the codes themselves never change (they are API values)."""

from __future__ import annotations

from typing import Any

from portal.kernel.i18n import _l

STATE_WORDS = {
    "active": _l("active"),
    "inactive": _l("inactive"),
    "pending": _l("pending"),
    "under_review": _l("under review"),
    "suspended": _l("suspended"),
    "closed": _l("closed"),
    "accepted": _l("accepted"),
    "revoked": _l("revoked"),
    "expired": _l("expired"),
    "verified": _l("verified"),
}


def state_word(state: Any) -> Any:
    """``state`` as a word for a sentence (lazy: read in the language of whoever reads it)."""
    code = getattr(state, "value", state)
    return STATE_WORDS.get(str(code), str(code).replace("_", " "))
