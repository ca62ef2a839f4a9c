"""A rejected usage event's problems in the reader's language (the upload page).

Ingestion (``portal.metering.ingest``) writes each problem in English: the API answers
with them as they are (machines read the ``code``; English unless asked, docs/I18N.md),
and the hot path builds no translated text. The upload page reads them here, in the
reader's language: a known message (or a known message with its values) is translated;
anything else (a decoder's own wording) is shown as written.
"""

from __future__ import annotations

import re
from collections.abc import Callable

from portal.kernel.i18n import _

#: Problems written without values, by their English text.
FIXED: dict[str, Callable[[], str]] = {
    "This field is required.": lambda: _("This field is required."),
    "This field is not accepted.": lambda: _("This field is not accepted."),
    "Arrays and objects are nested too deeply.": lambda: _(
        "Arrays and objects are nested too deeply."
    ),
    "Must not contain a NUL character (U+0000).": lambda: _(
        "Must not contain a NUL character (U+0000)."
    ),
    "Give a finite number.": lambda: _("Give a finite number."),
    "Quantities cannot be negative.": lambda: _("Quantities cannot be negative."),
    "Numbers must fit in 64 bits (at most 9223372036854775807).": lambda: _(
        "Numbers must fit in 64 bits (at most 9223372036854775807)."
    ),
    "No such organisation.": lambda: _("No such organisation."),
    "No such product.": lambda: _("No such product."),
    "This product is not one of yours.": lambda: _("This product is not one of yours."),
    "Give a time zone (RFC 3339, e.g. 2026-11-28T10:00:00Z).": lambda: _(
        "Give a time zone (RFC 3339, e.g. 2026-11-28T10:00:00Z)."
    ),
    "This is more than 5 minutes in the future.": lambda: _(
        "This is more than 5 minutes in the future."
    ),
    "This is older than the portal accepts.": lambda: _("This is older than the portal accepts."),
    "Give a valid email address.": lambda: _("Give a valid email address."),
}

#: Problems written with values: the English pattern, and the message given the values.
PATTERNS: list[tuple[re.Pattern[str], Callable[[re.Match[str]], str]]] = [
    (
        re.compile(r"At most (?P<max>[\d,]+) per event\."),
        lambda m: _("At most %(max)s per event.", max=m["max"]),
    ),
    (
        re.compile(r"Use at most (?P<digits>\d+) digits after the decimal point\."),
        lambda m: _("Use at most %(digits)s digits after the decimal point.", digits=m["digits"]),
    ),
    (
        re.compile(r"Nest objects and arrays at most (?P<levels>\d+) levels deep\."),
        lambda m: _("Nest objects and arrays at most %(levels)s levels deep.", levels=m["levels"]),
    ),
    (
        re.compile(r"Give 1 to (?P<most>\d+) characters\."),
        lambda m: _("Give 1 to %(most)s characters.", most=m["most"]),
    ),
    (
        re.compile(r"Keep properties under (?P<bytes>\d+) bytes of JSON\."),
        lambda m: _("Keep properties under %(bytes)s bytes of JSON.", bytes=m["bytes"]),
    ),
    (
        re.compile(r"This is not a person of (?P<organisation>.+)\."),
        lambda m: _("This is not a person of %(organisation)s.", organisation=m["organisation"]),
    ),
    (
        re.compile(r"(?P<product>.+) has no meter “(?P<meter>.*)”\."),
        lambda m: _(
            "%(product)s has no meter “%(meter)s”.", product=m["product"], meter=m["meter"]
        ),
    ),
    (
        re.compile(
            r"(?P<organisation>.+) holds no subscription of (?P<product>.+) "
            r"in force on (?P<day>\d{4}-\d{2}-\d{2})\."
        ),
        lambda m: _(
            "%(organisation)s holds no subscription of %(product)s in force on %(day)s.",
            organisation=m["organisation"],
            product=m["product"],
            day=m["day"],
        ),
    ),
]


def problem_text(message: str) -> str:
    """``message`` (an ingestion problem in English) in the reader's language."""
    fixed = FIXED.get(message)
    if fixed is not None:
        return fixed()
    for pattern, translated in PATTERNS:
        match = pattern.fullmatch(message)
        if match:
            return translated(match)
    return message
