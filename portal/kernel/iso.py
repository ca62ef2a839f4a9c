"""ISO 3166-1 countries and ISO 4217 currencies, from Babel's CLDR data."""

from __future__ import annotations

from functools import cache

from babel import Locale
from babel.numbers import get_currency_precision, get_territory_currencies

# Currencies that ISO lists but nobody invoices in (funds, metals, testing codes).
_NOT_FOR_INVOICING = {
    "XAU",
    "XAG",
    "XPT",
    "XPD",
    "XTS",
    "XXX",
    "XDR",
    "XBA",
    "XBB",
    "XBC",
    "XBD",
    "XSU",
    "XUA",
    "BOV",
    "CLF",
    "COU",
    "MXV",
    "USN",
    "UYI",
    "UYW",
    "CHE",
    "CHW",
}


@cache
def countries() -> dict[str, str]:
    """Two-letter country codes and their English names, sorted by name."""
    territories = Locale("en").territories
    pairs = [
        (code, name) for code, name in territories.items() if len(code) == 2 and code.isalpha()
    ]
    pairs = [(code, name) for code, name in pairs if code not in {"ZZ", "EU", "EZ", "UN", "QO"}]
    return dict(sorted(pairs, key=lambda pair: pair[1]))


@cache
def currencies() -> dict[str, str]:
    """ISO 4217 currency codes in use and their English names, sorted by code."""
    names = Locale("en").currencies
    in_use: set[str] = set()
    for territory in countries():
        in_use.update(get_territory_currencies(territory, tender=True))
    codes = sorted(c for c in in_use if c in names and c not in _NOT_FOR_INVOICING)
    return {code: names[code] for code in codes}


def is_country(code: str) -> bool:
    """Whether ``code`` is an ISO 3166-1 alpha-2 country code."""
    return code in countries()


def is_currency(code: str) -> bool:
    """Whether ``code`` is an ISO 4217 currency the portal can bill in."""
    return code in currencies()


def minor_unit_digits(currency: str) -> int:
    """Digits after the decimal point for a currency: 2 for EUR, 0 for JPY."""
    return get_currency_precision(currency)
