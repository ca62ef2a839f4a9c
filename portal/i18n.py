"""Languages and locale formats: who reads in which language, and how numbers look to them.

The reader's language (SPEC section 8.6) is, in order: the language chosen in the
profile (``users.locale``), the one chosen with the page's switcher before signing in
(a cookie), then the browser's ``Accept-Language``; English when none of them names
one the portal speaks. The API and SCIM answer in English unless the request's
``Accept-Language`` asks for another (codes and field names never change).

Catalogues live in ``portal/translations/<language>/LC_MESSAGES/messages.po`` and are
compiled to ``.mo`` by ``make translations`` (``make install`` runs it); see
docs/I18N.md. Formats come from Babel's CLDR data: money, numbers and dates in the
reader's locale (English dates stay ISO ``2026-12-01``: one reading for every member).
"""

from __future__ import annotations

import datetime as dt
import functools
from collections.abc import Iterator
from contextlib import contextmanager
from decimal import Decimal
from pathlib import Path
from typing import Any

from babel import Locale
from babel.dates import format_date as babel_format_date
from babel.numbers import NumberPattern, format_decimal, parse_pattern
from flask import Flask, has_request_context, request
from flask_babel import Babel, force_locale, get_locale

from portal.kernel.i18n import LANGUAGES, _l
from portal.kernel.money import format_money

babel = Babel()

# The cookie that keeps the switcher's choice for someone not signed in (a year).
LANGUAGE_COOKIE = "portal_language"
LANGUAGE_COOKIE_SECONDS = 365 * 24 * 3600

TRANSLATIONS = Path(__file__).resolve().parent / "translations"


def translation_directories() -> list[str]:
    """The catalogues' directories: the main one, and any part catalogues beside it.

    Parts (``translations/parts/<area>``) let several people translate at once; they
    merge into the main catalogue (docs/I18N.md). Flask-Babel merges every directory.
    """
    parts = sorted(p for p in (TRANSLATIONS / "parts").glob("*") if p.is_dir())
    return [str(TRANSLATIONS), *(str(p) for p in parts)]


def supported(code: str | None) -> str | None:
    """``code`` when the portal speaks it (``ru``, ``ru-RU`` → ``ru``), else None."""
    if not code:
        return None
    first = code.strip().replace("_", "-").split("-")[0].lower()
    return first if first in LANGUAGES else None


def _for_machines() -> bool:
    """The API and SCIM: English unless the request's Accept-Language asks otherwise."""
    path = request.path
    return path.startswith("/api/") or path.startswith("/scim/")


def select_language() -> str | None:
    """The reader's language for this request (None outside a request: English)."""
    if not has_request_context():
        return None
    if not _for_machines():
        from flask_login import current_user

        person = getattr(current_user, "user", None)  # the signed-in account, if any
        chosen = supported(getattr(person, "locale", None))
        if chosen:
            return chosen
        chosen = supported(request.cookies.get(LANGUAGE_COOKIE))
        if chosen:
            return chosen
    return request.accept_languages.best_match(LANGUAGES, default=LANGUAGES[0])


def language() -> str:
    """The language being spoken now: the request's, or ``in_language``'s, or English."""
    locale = get_locale()
    return locale.language if locale is not None else LANGUAGES[0]


@contextmanager
def in_language(code: str | None) -> Iterator[str]:
    """Speak ``code`` inside the block (a mail to someone who chose Russian, a PDF)."""
    chosen = supported(code) or LANGUAGES[0]
    with force_locale(chosen):
        yield chosen


# Formats --------------------------------------------------------------------------------


@functools.lru_cache(maxsize=16)
def _babel_locale(code: str) -> Locale:
    """Babel's locale for a language code, parsed once (pages format a number per row)."""
    return Locale.parse(code)


@functools.lru_cache(maxsize=16)
def _decimal_pattern(digits: int) -> NumberPattern:
    """``#,##0`` with at most ``digits`` decimals, parsed once."""
    return parse_pattern("#,##0" + ("." + "#" * digits if digits > 0 else ""))


def money(amount_minor: int | None, currency: str | None) -> str:
    """An amount in the reader's locale: ``€1,234.50`` / ``1 234,50 €`` (never wrapped: see CSS)."""
    return format_money(amount_minor, currency, locale=language())


def number(value: int | float | Decimal | None, digits: int = 0) -> str:
    """A number in the reader's locale with at most ``digits`` decimals, never in exponent form.

    ``number(Decimal("4140"))`` → ``4,140`` (en) / ``4 140`` (ru); ``number(0.1667, 2)`` → ``0.17``.
    """
    if value is None:
        return "—"
    return format_decimal(
        Decimal(str(value)), format=_decimal_pattern(digits), locale=_babel_locale(language())
    )


def date(value: dt.date | dt.datetime | None) -> str:
    """A day: ``2026-12-01`` (en) / ``1 дек. 2026 г.`` (ru)."""
    if value is None:
        return "—"
    if isinstance(value, dt.datetime):
        value = value.astimezone(dt.UTC).date()
    if language() == "en":
        return value.isoformat()
    return babel_format_date(value, format="medium", locale=language())


def datetime(value: dt.datetime | None) -> str:
    """An instant in UTC: ``2026-12-01 10:05 UTC`` (en) / ``1 дек. 2026 г., 10:05 UTC`` (ru)."""
    if value is None:
        return "—"
    value = value.astimezone(dt.UTC)
    if language() == "en":
        return value.strftime("%Y-%m-%d %H:%M UTC")
    return f"{date(value)}, {value:%H:%M} UTC"


def percent_bp(value: int | None) -> str:
    """Basis points as a percentage in the reader's locale: 2000 → ``20%``, 1250 → ``12.5%``."""
    if value is None:
        return "—"
    return number(Decimal(value) / 100, digits=2) + "%"


#: The words of states and statuses (badges, and states named in messages); the codes
#: themselves never change (they are API values). Another code reads as it is, its
#: underscores as spaces.
STATUS_WORDS = {
    "active": _l("active"),
    "inactive": _l("inactive"),
    "pending": _l("pending"),
    "under_review": _l("under review"),
    "suspended": _l("suspended"),
    "closed": _l("closed"),
    "waitlisted": _l("waitlisted"),
    "cancelled": _l("cancelled"),
    "accepted": _l("accepted"),
    "revoked": _l("revoked"),
    "expired": _l("expired"),
    "draft": _l("draft"),
    "open": _l("open"),
    "paid": _l("paid"),
    "void": _l("void"),
    "uncollectible": _l("uncollectible"),
    "queued": _l("queued"),
    "sent": _l("sent"),
    "failed": _l("failed"),
    "running": _l("running"),
    "succeeded": _l("succeeded"),
    "verified": _l("verified"),
}


def state_word(state: object) -> Any:
    """``state`` as a word for a sentence (lazy: read in the language of whoever reads it)."""
    code = str(getattr(state, "value", state))
    return STATUS_WORDS.get(code, code.replace("_", " "))


def status_word(value: object) -> str:
    """A status badge's word in the reader's language (``under_review`` → "under review")."""
    return str(state_word(value))


def init_app(app: Flask) -> None:
    """Flask-Babel with the portal's catalogues and language choice, and the template helpers."""
    app.config.setdefault("BABEL_DEFAULT_LOCALE", LANGUAGES[0])
    app.config.setdefault("BABEL_TRANSLATION_DIRECTORIES", ";".join(translation_directories()))
    babel.init_app(app, locale_selector=select_language)
    # Templates write plurals as _n("%(num)d seat", "%(num)d seats", n), as Python does.
    app.jinja_env.globals.setdefault("_n", app.jinja_env.globals["ngettext"])
    app.add_template_filter(money, "money")
    app.add_template_filter(number, "number")
    app.add_template_filter(date, "date")
    app.add_template_filter(datetime, "datetime")
    app.add_template_filter(percent_bp, "percent_bp")
    app.add_template_filter(status_word, "status_word")

    @app.context_processor
    def languages() -> dict:
        return {"current_language": language(), "LANGUAGES": LANGUAGES}


# Catalogues --------------------------------------------------------------------------------


def catalogue_files() -> list[Path]:
    """Every ``.po`` catalogue of the portal (the main ones, and parts being translated)."""
    return sorted(TRANSLATIONS.glob("*/LC_MESSAGES/messages.po")) + sorted(
        TRANSLATIONS.glob("parts/*/*/LC_MESSAGES/messages.po")
    )


def compile_catalogues(*, force: bool = False) -> list[Path]:
    """Compile each ``.po`` into the ``.mo`` Flask-Babel reads, when it is newer; the ones compiled.

    ``make install`` runs this (``python -m portal.i18n``), and the test suite does at its start.
    Fuzzy entries are left out: a guess is not a translation.
    """
    from babel.messages.mofile import write_mo
    from babel.messages.pofile import read_po

    compiled = []
    for po in catalogue_files():
        mo = po.with_suffix(".mo")
        if not force and mo.exists() and mo.stat().st_mtime >= po.stat().st_mtime:
            continue
        with po.open("rb") as source:
            catalogue = read_po(source, locale=po.parent.parent.name)
        with mo.open("wb") as target:
            write_mo(target, catalogue, use_fuzzy=False)
        compiled.append(mo)
    return compiled


if __name__ == "__main__":  # `python -m portal.i18n`: compile the catalogues
    for path in compile_catalogues(force=True):
        print(f"compiled {path}")
