"""``format_money`` gives Babel's ``format_currency`` text exactly, at less cost.

``portal.kernel.money`` writes each currency's symbol and decimals into the locale's
pattern once instead of for every amount; these tests hold it to Babel's own output.
"""

from __future__ import annotations

import random

import pytest
from babel import Locale
from babel.numbers import NumberPattern, format_currency

from portal.kernel import money
from portal.kernel.iso import currencies
from portal.kernel.money import format_money, from_minor

# The portal's languages, and locales whose patterns put the symbol after the number, use
# the code (¤¤), another digit grouping, a sign on the other side or other symbols.
LOCALES = ["en", "ru", "de", "de_CH", "fr", "ja", "ar", "hi_IN", "en_IN", "nl", "sv", "he"]


def _amounts(seed: int) -> list[int]:
    rng = random.Random(seed)
    fixed = [0, 1, -1, 5, 99, 100, 101, 1250, -1250, 12345, 100000, 123456789, -987654321]
    return fixed + [rng.randint(-(10**13), 10**13) for _ in range(20)]


@pytest.mark.parametrize("locale", LOCALES)
def test_every_invoicing_currency_reads_as_babel_writes_it(locale: str) -> None:
    compared = 0
    for i, currency in enumerate(currencies()):
        for amount in _amounts(i):
            expected = format_currency(from_minor(amount, currency), currency, locale=locale)
            assert format_money(amount, currency, locale) == expected, (currency, amount)
            compared += 1
    assert compared > 100 * 30


def test_a_babel_locale_object_is_taken_as_its_code() -> None:
    assert format_money(123456, "EUR", Locale.parse("ru")) == format_currency(
        from_minor(123456, "EUR"), "EUR", locale="ru"
    )


def test_a_pattern_naming_the_currency_in_words_is_left_to_babel(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A locale whose standard pattern spells the currency's name (``¤¤¤``: its plural
    form depends on the amount) is formatted by Babel itself, amount by amount."""
    money._currency_pattern.cache_clear()
    money._written.cache_clear()
    words = Locale.parse("en")
    standard = words.currency_formats["standard"]
    monkeypatch.setattr(standard, "prefix", ("", "-"))
    monkeypatch.setattr(standard, "suffix", (" ¤¤¤", " ¤¤¤"))
    try:
        assert money._currency_pattern("EUR", "en") is None
        assert format_money(100, "EUR", words) == "1.00 euro"  # Babel's plural of 1
        assert format_money(-250, "EUR", words) == "-2.50 euros"
    finally:
        money._currency_pattern.cache_clear()
        money._written.cache_clear()


def test_nothing_to_format() -> None:
    assert format_money(None, "EUR") == "—"
    assert format_money(100, None) == "—"
    assert format_money(100, "") == "—"


@pytest.mark.parametrize("locale", ["en", "ru"])
def test_the_portals_languages_write_amounts_without_babels_pattern(
    locale: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The portal's own languages take the short way (``_Written``) for every invoicing
    currency: Babel's ``NumberPattern.apply`` is not called (the test above holds the text
    to Babel's)."""

    def refuse(*args: object, **kwargs: object) -> str:
        raise AssertionError("NumberPattern.apply was called")

    monkeypatch.setattr(NumberPattern, "apply", refuse)
    for currency in currencies():
        assert format_money(-123456789, currency, locale)
        assert format_money(0, currency, locale)


def test_a_pattern_with_a_quote_is_left_to_the_pattern(monkeypatch: pytest.MonkeyPatch) -> None:
    """Babel drops quotes from the whole text it writes; the short way does not, so a
    pattern with one is applied by Babel, as before."""
    money._currency_pattern.cache_clear()
    money._written.cache_clear()
    quoted = Locale.parse("en")
    standard = quoted.currency_formats["standard"]
    monkeypatch.setattr(standard, "prefix", ("'x'¤", "-'x'¤"))
    try:
        assert money._written("EUR", "en") is None
        assert format_money(125, "EUR", quoted) == "x€1.25"
        assert format_money(-125, "EUR", quoted) == "-x€1.25"
    finally:
        money._currency_pattern.cache_clear()
        money._written.cache_clear()
