"""Opaque cursors for API lists: keyset pagination on ``id``.

A cursor encodes the last id of a page; the next page is the rows with a
greater id. Unlike page numbers, a cursor neither skips nor repeats rows when
rows are added while a client walks the list. Selectors fetch ``limit + 1``
rows so :func:`page` can tell whether another page follows.
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

from portal.errors import ValidationFailed

T = TypeVar("T")

_VERSION = 1


def encode_cursor(last_id: int) -> str:
    """An opaque cursor pointing after ``last_id``."""
    raw = json.dumps({"v": _VERSION, "after": last_id}, separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(cursor: str | None) -> int | None:
    """The id a cursor points after (None for the first page), or :class:`ValidationFailed`."""
    if not cursor:
        return None
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        data = json.loads(raw)
        after = data["after"]
        if data.get("v") != _VERSION or not isinstance(after, int) or isinstance(after, bool):
            raise ValueError(cursor)
    except (ValueError, KeyError, TypeError, binascii.Error, UnicodeDecodeError) as exc:
        raise ValidationFailed(
            "The cursor is not one this API gave out.",
            errors={"cursor": ["Use the next_cursor of the previous page, or leave it out."]},
        ) from exc
    return after


def page(
    rows: Sequence[T], *, limit: int, serialise: Callable[[T], Any], key: Callable[[T], int]
) -> dict[str, Any]:
    """``{"data": [...], "next_cursor": ...}`` from up to ``limit + 1`` rows in key order."""
    items = list(rows[:limit])
    next_cursor = encode_cursor(key(items[-1])) if len(rows) > limit and items else None
    return {"data": [serialise(item) for item in items], "next_cursor": next_cursor}
