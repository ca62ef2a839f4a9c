"""Rating: turning seat-days and meter aggregates into money (SPEC section 5).

Pure functions over integers and exact decimals: no database, no floats. Every
amount is in minor units of the price's currency. Rounding happens in one place,
:func:`round_half_up`, once per invoice line.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from decimal import ROUND_HALF_UP, Decimal, localcontext
from fractions import Fraction


def round_half_up(value: Fraction | Decimal | int) -> int:
    """The nearest whole minor unit, halves away from zero (amounts are never negative here)."""
    if isinstance(value, int):
        return value
    if isinstance(value, Fraction):
        return _round_ratio(value.numerator, value.denominator)
    return _round_ratio(*value.as_integer_ratio())  # exact: a Decimal is a ratio of integers


def _round_ratio(numerator: int, denominator: int) -> int:
    """``numerator / denominator`` (denominator > 0) to a whole number, halves up."""
    whole, rest = divmod(numerator, denominator)
    return whole + (1 if 2 * rest >= denominator else 0)


def seat_amount(*, unit_amount: int, daily_quantities: Sequence[int], days_in_month: int) -> int:
    """A seat price over a month: for each day, quantity × unit_amount / days in the month.

    ``daily_quantities`` has one entry per day billed (the quantity reserved that
    day); the sum is rounded once.
    """
    if days_in_month not in (28, 29, 30, 31):
        raise ValueError("a month has 28 to 31 days")
    return _round_ratio(unit_amount * sum(daily_quantities), days_in_month)


@dataclass(frozen=True)
class Tier:
    """Units up to ``up_to`` (inclusive; None: no limit) at ``unit_amount``, plus a flat amount."""

    up_to: int | None
    unit_amount: int
    flat_amount: int = 0


def volume_tier(tiers: Sequence[Tier], quantity: int) -> tuple[int, Tier]:
    """The tier ``quantity`` falls in (limits inclusive) and its number (1, 2, …).

    A quantity of zero falls in the first tier; past every limit, the last tier.
    Council volume pricing (SPEC 8.3) chooses a seat price's tier this way by the
    council-wide average reserved seats of the product in the month.
    """
    if not tiers:
        raise ValueError("a tiered price needs tiers")
    for number, tier in enumerate(tiers, start=1):
        if tier.up_to is None or quantity <= tier.up_to:
            return number, tier
    return len(tiers), tiers[-1]


def council_average_seats(*, seat_days: int, days_in_month: int) -> int:
    """The council-wide average reserved seats: all seat-days ÷ days in the month, rounded down."""
    if days_in_month not in (28, 29, 30, 31):
        raise ValueError("a month has 28 to 31 days")
    if seat_days < 0:
        raise ValueError("seat-days cannot be negative")
    return seat_days // days_in_month


def metered_amount(
    *,
    quantity: Decimal,
    unit_amount: int,
    tier_mode: str | None = None,
    tiers: Sequence[Tier] = (),
) -> int:
    """A metered price for a period's aggregate ``quantity``.

    * flat (no tiers): quantity × unit_amount;
    * ``graduated``: each unit at the price of the tier it falls in, plus the flat
      amount of every tier that has units;
    * ``volume``: every unit at the price of the tier the total falls in, plus
      that tier's flat amount.

    Zero usage costs nothing, whatever the tiers. Tier limits are inclusive.
    """
    if quantity < 0:
        raise ValueError("quantity cannot be negative")
    if quantity == 0:
        return 0
    with localcontext() as ctx:
        ctx.prec = 60
        ctx.rounding = ROUND_HALF_UP
        if not tiers:
            return round_half_up(quantity * unit_amount)
        if tier_mode == "volume":
            tier = next((t for t in tiers if t.up_to is None or quantity <= t.up_to), tiers[-1])
            return round_half_up(quantity * tier.unit_amount + tier.flat_amount)
        if tier_mode != "graduated":
            raise ValueError("tiers need a tier mode: graduated or volume")
        total = Decimal(0)
        lower = Decimal(0)
        for tier in tiers:
            upper = Decimal(tier.up_to) if tier.up_to is not None else quantity
            units = min(quantity, upper) - lower
            if units <= 0:
                break
            total += units * tier.unit_amount + tier.flat_amount
            lower = upper
            if quantity <= upper:
                break
        return round_half_up(total)


def tax_amount(*, net: int, rate_bp: int, reverse_charge: bool) -> int:
    """Tax on a net amount at ``rate_bp`` basis points; 0 under reverse charge."""
    if reverse_charge:
        return 0
    return _round_ratio(net * rate_bp, 10_000)
