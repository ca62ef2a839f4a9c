"""Opaque cursors for API lists: keyset pagination on ``id``.

A cursor encodes the last id of a page; the next page is the rows with a
greater id. Unlike page numbers, a cursor neither skips nor repeats rows when
rows are added while a client walks the list. Selectors fetch ``limit + 1``
rows so :func:`page` can tell whether another page follows.
"""

from __future__ import annotations

import base64
import re
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

from portal.api.schemas import CURSOR_PATTERN
from portal.kernel.errors import ValidationFailed
from portal.kernel.i18n import _l

T = TypeVar("T")

_CURSOR_RE = re.compile(CURSOR_PATTERN)


def encode_cursor(last_id: int) -> str:
    """An opaque cursor pointing after ``last_id`` (8 bytes, unpadded base64url)."""
    return base64.urlsafe_b64encode(last_id.to_bytes(8, "big")).decode().rstrip("=")


def decode_cursor(cursor: str | None) -> int | None:
    """The id a cursor points after (None for the first page), or :class:`ValidationFailed`.

    Every string of the documented form (:data:`~portal.api.schemas.CURSOR_PATTERN`)
    is a cursor; anything else is refused.
    """
    if not cursor:
        return None
    if not _CURSOR_RE.match(cursor):
        raise ValidationFailed(
            _l("The cursor is not one this API gave out."),
            errors={"cursor": [_l("Use the next_cursor of the previous page, or leave it out.")]},
        )
    return int.from_bytes(base64.urlsafe_b64decode(cursor + "="), "big")


def page(
    rows: Sequence[T], *, limit: int, serialise: Callable[[T], Any], key: Callable[[T], int]
) -> dict[str, Any]:
    """``{"data": [...], "next_cursor": ...}`` from up to ``limit + 1`` rows in key order."""
    items = list(rows[:limit])
    next_cursor = encode_cursor(key(items[-1])) if len(rows) > limit and items else None
    return {"data": [serialise(item) for item in items], "next_cursor": next_cursor}
