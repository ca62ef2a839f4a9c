"""Money at the edges: amounts people type and read, against integer minor units.

The portal stores money as an integer of the currency's minor unit beside an
ISO 4217 code (SPEC invariant 7). People type and read amounts in the major
unit ("12.50 EUR", "1500 JPY", "12.345 BHD"). :func:`to_minor` and
:func:`from_minor` are the one conversion between the two; it goes through
:class:`~decimal.Decimal` and the currency's own number of decimals
(:func:`portal.kernel.iso.minor_unit_digits`), never through ``float``.
"""

from __future__ import annotations

from decimal import Decimal, InvalidOperation

from babel import Locale
from babel.numbers import format_currency

from portal.kernel.i18n import _
from portal.kernel.iso import minor_unit_digits


def to_minor(amount: Decimal | str | int, currency: str) -> int:
    """``amount`` in the major unit of ``currency`` as whole minor units.

    ``to_minor("12.50", "EUR") == 1250``; ``to_minor("1500", "JPY") == 1500``.
    An amount with more decimals than the currency has (``"0.001"`` EUR, ``"1.5"``
    JPY) is refused with :class:`ValueError` rather than rounded: nobody should
    find a price silently changed.
    """
    if isinstance(amount, float):
        raise TypeError("Money is never a float; pass a Decimal or a string.")
    try:
        value = Decimal(str(amount).strip()) if not isinstance(amount, Decimal) else amount
    except InvalidOperation as exc:
        raise ValueError(_("Enter an amount such as 12.50.")) from exc
    if not value.is_finite():
        raise ValueError(_("Enter an amount such as 12.50."))
    digits = minor_unit_digits(currency)
    scaled = value.scaleb(digits)
    if scaled != scaled.to_integral_value():
        if digits == 0:
            raise ValueError(f"{currency} has no decimals; enter a whole amount.")
        raise ValueError(
            f"{currency} has {digits} decimal{'s' if digits != 1 else ''}; "
            f"use at most {digits} digit{'s' if digits != 1 else ''} after the point."
        )
    return int(scaled)


def from_minor(amount_minor: int, currency: str) -> Decimal:
    """Whole minor units as a :class:`Decimal` in the major unit, with the currency's decimals.

    ``from_minor(1250, "EUR") == Decimal("12.50")``; ``from_minor(12345, "BHD") ==
    Decimal("12.345")``; ``from_minor(1500, "JPY") == Decimal("1500")``.
    """
    digits = minor_unit_digits(currency)
    return Decimal(int(amount_minor)).scaleb(-digits).quantize(Decimal(1).scaleb(-digits))


def format_money(
    amount_minor: int | None, currency: str | None, locale: str | Locale = "en"
) -> str:
    """A stored amount as people read it: ``€12.50``, ``¥1,500``, ``BHD12.345``."""
    if amount_minor is None or not currency:
        return "—"
    return format_currency(from_minor(amount_minor, currency), currency, locale=locale)
