"""CSV output that spreadsheets cannot mistake for formulas, with headers in the reader's language.

A CSV's columns have stable codes (``unit_amount_minor``): English readers, the CLI and
API clients that do not ask for another language get the codes, which scripts and
accounting imports read; a reader who chose Russian (a page) or an API request with
``Accept-Language: ru`` gets each column's label in Russian (SPEC section 8.6).
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable
from typing import Any

from portal.i18n import language
from portal.kernel.i18n import LANGUAGES

_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def safe_cell(value: Any) -> Any:
    """A text cell starting like a formula gets a leading apostrophe (OWASP's advice).

    Numbers stay numbers: a negative amount is data, not a formula.
    """
    if isinstance(value, str) and value.startswith(_FORMULA_START):
        return "'" + value
    return value


def csv_text(header: Iterable[str], rows: Iterable[Iterable[Any]]) -> str:
    """A whole CSV document with every text cell made safe."""
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(list(header))
    writer.writerows([safe_cell(cell) for cell in row] for row in rows)
    return out.getvalue()


def localised_header(columns: Iterable[str], labels: dict[str, Any]) -> list[str]:
    """The header row: the column codes in English, each column's label in another language.

    ``labels`` maps a code to its lazy label (``_l("Unit price, minor units")``); a code
    without a label stays a code.
    """
    codes = list(columns)
    if language() == LANGUAGES[0]:
        return codes
    return [str(labels.get(code, code)) for code in codes]
