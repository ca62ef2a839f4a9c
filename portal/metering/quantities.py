"""Quantities as people read them: a meter's value with its precision and its unit, pluralised.

Meters declare a unit (``meters.unit``, free text such as ``minute``, ``GB``, ``row``) and an
aggregation, but no precision. The precision shown follows from the aggregation:

* ``count`` and ``unique_count`` are whole numbers: no decimals;
* ``sum`` and ``max`` (and seat-months) show at most 2 decimals, trailing zeros dropped
  (``12``, ``42.5``, ``0.17``); a value under 1 shows 2 significant digits, up to the
  6 decimals quantities are stored with (``0.0012``), so a small non-zero value never reads 0.

Never exponent form: ``4,140`` (``4 140`` in Russian), not ``4.14E+3``. CSV files carry the
exact stored value in plain decimal notation (:func:`plain`), without grouping.

Units people commonly give are pluralised per language (:data:`UNITS`: 1 row, 2 rows;
1 строка, 2 строки, 5 строк); any other unit is shown as it was typed. A fractional value
takes the form of 2 (English "1.5 minutes", Russian "1,5 минуты").
"""

from __future__ import annotations

from collections.abc import Callable
from decimal import Decimal

from flask_babel.speaklater import LazyString

from portal.i18n import number
from portal.kernel.i18n import _, _l, _n

#: Decimals shown at most per aggregation (see the module's docstring).
DIGITS = {"count": 0, "unique_count": 0, "sum": 2, "max": 2}
DEFAULT_DIGITS = 2
STORED_DIGITS = 6  # portal.metering.models.QUANTITY_SCALE

#: Units pluralised per language, keyed by the unit as typed (lower case).
_Unit = Callable[[int, str], str]
UNITS: dict[str, _Unit] = {
    "minute": lambda n, q: _n("%(count)s minute", "%(count)s minutes", n, count=q),
    "hour": lambda n, q: _n("%(count)s hour", "%(count)s hours", n, count=q),
    "second": lambda n, q: _n("%(count)s second", "%(count)s seconds", n, count=q),
    "day": lambda n, q: _n("%(count)s day", "%(count)s days", n, count=q),
    "query": lambda n, q: _n("%(count)s query", "%(count)s queries", n, count=q),
    "user": lambda n, q: _n("%(count)s user", "%(count)s users", n, count=q),
    "row": lambda n, q: _n("%(count)s row", "%(count)s rows", n, count=q),
    "character": lambda n, q: _n("%(count)s character", "%(count)s characters", n, count=q),
    "call": lambda n, q: _n("%(count)s call", "%(count)s calls", n, count=q),
    "api call": lambda n, q: _n("%(count)s API call", "%(count)s API calls", n, count=q),
    "request": lambda n, q: _n("%(count)s request", "%(count)s requests", n, count=q),
    "event": lambda n, q: _n("%(count)s event", "%(count)s events", n, count=q),
    "message": lambda n, q: _n("%(count)s message", "%(count)s messages", n, count=q),
    "document": lambda n, q: _n("%(count)s document", "%(count)s documents", n, count=q),
    "page": lambda n, q: _n("%(count)s page", "%(count)s pages", n, count=q),
    "file": lambda n, q: _n("%(count)s file", "%(count)s files", n, count=q),
    "word": lambda n, q: _n("%(count)s word", "%(count)s words", n, count=q),
    "seat": lambda n, q: _n("%(count)s seat", "%(count)s seats", n, count=q),
    "unit": lambda n, q: _n("%(count)s unit", "%(count)s units", n, count=q),
    "seat-day": lambda n, q: _n("%(count)s seat-day", "%(count)s seat-days", n, count=q),
    "seat-month": lambda n, q: _n("%(count)s seat-month", "%(count)s seat-months", n, count=q),
}
#: The same unit typed in the plural.
_PLURALS = {
    "minutes": "minute",
    "hours": "hour",
    "seconds": "second",
    "days": "day",
    "queries": "query",
    "users": "user",
    "rows": "row",
    "characters": "character",
    "calls": "call",
    "api calls": "api call",
    "requests": "request",
    "events": "event",
    "messages": "message",
    "documents": "document",
    "pages": "page",
    "files": "file",
    "words": "word",
    "seats": "seat",
    "units": "unit",
    "seat-days": "seat-day",
    "seat-months": "seat-month",
}
#: Abbreviations: the same for every count, but written differently per language.
ABBREVIATIONS: dict[str, Callable[[str], str]] = {
    "kb": lambda q: _("%(count)s KB", count=q),
    "mb": lambda q: _("%(count)s MB", count=q),
    "gb": lambda q: _("%(count)s GB", count=q),
    "tb": lambda q: _("%(count)s TB", count=q),
}

AGGREGATIONS = {
    "sum": _l("sum"),
    "max": _l("maximum"),
    "count": _l("count"),
    "unique_count": _l("distinct count"),
}


def digits_for(aggregation: str | None, value: Decimal | int | float | None = None) -> int:
    """How many decimals to show of ``value`` of a meter adding up as ``aggregation``."""
    digits = DIGITS.get(aggregation or "", DEFAULT_DIGITS)
    if digits and value:
        exact = Decimal(str(value))
        if exact and abs(exact) < 1:
            digits = max(digits, min(STORED_DIGITS, -exact.adjusted() + 1))
    return digits


def rounded(value: Decimal | int | float, digits: int) -> Decimal:
    """``value`` rounded to ``digits`` decimals, as it is shown."""
    return Decimal(str(value)).quantize(Decimal(1).scaleb(-digits))


def _plural_count(shown: Decimal) -> int:
    """The count that picks the plural form of ``shown``: a fraction reads as 2 does."""
    if shown == shown.to_integral_value():
        return int(shown)
    return 2


def quantity(
    value: Decimal | int | float | None, unit: str | None = None, aggregation: str | None = None
) -> str:
    """``value`` in the reader's locale with its aggregation's precision and ``unit``:
    ``4,140 rows``, ``1 строка``, ``12.5 GB``; a unit the portal does not know as typed."""
    if value is None:
        return "—"
    digits = digits_for(aggregation, value)
    text = number(value, digits)
    key = (unit or "").strip().lower()
    key = _PLURALS.get(key, key)
    if not key:
        return text
    if key in UNITS:
        return UNITS[key](_plural_count(rounded(value, digits)), text)
    if key in ABBREVIATIONS:
        return ABBREVIATIONS[key](text)
    return f"{text} {(unit or '').strip()}"


def aggregation_label(aggregation: str) -> str:
    """``sum`` → "sum", ``unique_count`` → "distinct count", in the reader's language."""
    label = AGGREGATIONS.get(aggregation)
    return str(label) if label is not None else aggregation.replace("_", " ")


def plain(value: Decimal | int | float | None) -> str:
    """``value`` for a CSV file: exact, plain decimal notation, no grouping (``4140``, ``0.5``)."""
    if value is None:
        return ""
    exact = Decimal(str(value))
    text = format(exact, "f")
    if "." in text:
        text = text.rstrip("0").rstrip(".")
    return text or "0"


def lazy_number(value: Decimal | int | float) -> LazyString:
    """``value`` formatted when the message holding it is read (``10,000`` / ``10 000``)."""
    return LazyString(number, value)
