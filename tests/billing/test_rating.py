"""Rating against hand-computed tables (SPEC section 5)."""

from decimal import Decimal

import pytest

from portal.billing.rating import Tier, metered_amount, round_half_up, seat_amount, tax_amount

# ---------------------------------------------------------------- rounding


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (Decimal("0.5"), 1),
        (Decimal("1.49"), 1),
        (Decimal("1.5"), 2),
        (Decimal("2.5"), 3),
        (Decimal("0.4999999"), 0),
        (0, 0),
        (7, 7),
    ],
)
def test_round_half_up(value, expected):
    assert round_half_up(value) == expected


# ---------------------------------------------------------------- seats


@pytest.mark.parametrize(
    ("days", "unit", "quantities", "expected"),
    [
        # full month of 10 seats at 30.00 in months of every length: exactly 300.00
        (28, 3000, [10] * 28, 30000),
        (29, 3000, [10] * 29, 30000),
        (30, 3000, [10] * 30, 30000),
        (31, 3000, [10] * 31, 30000),
        # 10 seats for 15 days then 20 seats for 16 days of a 31-day month at 31.00:
        # 10*15 + 20*16 = 470 seat-days × 3100 / 31 = 47000
        (31, 3100, [10] * 15 + [20] * 16, 47000),
        # 1 seat for 1 day of 30 at 10.00 = 33.333… → 33
        (30, 1000, [1], 33),
        # exactly half a minor unit rounds up: 1 seat-day × 15 / 30 = 0.5 → 1
        (30, 15, [1], 1),
        # JPY (no minor unit): 3 seats × 7 days × ¥1,000 / 28 = 750
        (28, 1000, [3] * 7, 750),
        # zero seats
        (31, 5000, [0] * 31, 0),
    ],
)
def test_seat_amount_by_day(days, unit, quantities, expected):
    assert (
        seat_amount(unit_amount=unit, daily_quantities=quantities, days_in_month=days) == expected
    )


def test_seat_amount_refuses_an_impossible_month():
    with pytest.raises(ValueError):
        seat_amount(unit_amount=100, daily_quantities=[1], days_in_month=32)


# ---------------------------------------------------------------- metered

GRADUATED = [
    Tier(up_to=1000, unit_amount=0),
    Tier(up_to=10_000, unit_amount=2),
    Tier(up_to=None, unit_amount=1),
]
WITH_FLAT = [
    Tier(up_to=100, unit_amount=10, flat_amount=500),
    Tier(up_to=None, unit_amount=5, flat_amount=1000),
]


@pytest.mark.parametrize(
    ("quantity", "expected"),
    [
        (Decimal(0), 0),
        (Decimal(1000), 0),  # boundary: all in the free tier
        (Decimal(1001), 2),
        (Decimal(10_000), 9000 * 2),  # boundary of tier 2
        (Decimal(10_001), 9000 * 2 + 1),
        (Decimal("1000.5"), 1),  # half a unit at 2 = 1.0
        (Decimal("1000.25"), 1),  # 0.25 × 2 = 0.5 → 1 (half up)
    ],
)
def test_graduated_tiers(quantity, expected):
    assert (
        metered_amount(quantity=quantity, unit_amount=0, tier_mode="graduated", tiers=GRADUATED)
        == expected
    )


@pytest.mark.parametrize(
    ("quantity", "expected"),
    [
        (Decimal(0), 0),
        (Decimal(1000), 0),  # falls in the free tier
        (Decimal(1001), 1001 * 2),  # all units at tier 2's price
        (Decimal(10_000), 10_000 * 2),
        (Decimal(10_001), 10_001 * 1),  # all units at tier 3's price
    ],
)
def test_volume_tiers(quantity, expected):
    assert (
        metered_amount(quantity=quantity, unit_amount=0, tier_mode="volume", tiers=GRADUATED)
        == expected
    )


def test_flat_amounts_per_tier():
    # graduated 150 units: tier 1 100×10 + 500, tier 2 50×5 + 1000 = 1000+500+250+1000
    assert (
        metered_amount(quantity=Decimal(150), unit_amount=0, tier_mode="graduated", tiers=WITH_FLAT)
        == 2750
    )
    # graduated 100 units: only tier 1 has units
    assert (
        metered_amount(quantity=Decimal(100), unit_amount=0, tier_mode="graduated", tiers=WITH_FLAT)
        == 1500
    )
    # volume 150 units: all at tier 2: 150×5 + 1000
    assert (
        metered_amount(quantity=Decimal(150), unit_amount=0, tier_mode="volume", tiers=WITH_FLAT)
        == 1750
    )


def test_flat_price_per_unit_with_fractional_quantities():
    assert metered_amount(quantity=Decimal("2.5"), unit_amount=3) == 8  # 7.5 → 8
    assert metered_amount(quantity=Decimal("0.000001"), unit_amount=100_000) == 0  # 0.1
    assert metered_amount(quantity=Decimal("123456789.123456"), unit_amount=1) == 123456789


def test_tax():
    assert tax_amount(net=10_000, rate_bp=2000, reverse_charge=False) == 2000
    assert tax_amount(net=10_005, rate_bp=1900, reverse_charge=False) == 1901  # 1900.95
    assert tax_amount(net=10_000, rate_bp=2000, reverse_charge=True) == 0


# ---------------------------------------------------------------- quantity history → days


def test_daily_quantities_from_changes():
    import datetime as dt

    from portal.seats.history import daily_quantities

    utc = dt.UTC
    changes = [
        (dt.datetime(2026, 1, 31, 9, tzinfo=utc), 5),  # before the month
        (dt.datetime(2026, 2, 10, 0, tzinfo=utc), 8),  # at midnight: from the 10th
        (dt.datetime(2026, 2, 20, 15, tzinfo=utc), 3),  # mid-day decrease: the 20th counts 8
        (dt.datetime(2026, 2, 25, 12, tzinfo=utc), 0),  # cancelled mid-day: the 25th counts 3
    ]
    days = daily_quantities(changes, dt.date(2026, 2, 1), dt.date(2026, 2, 28))
    assert len(days) == 28
    assert days[:9] == [5] * 9
    assert days[9:19] == [8] * 10
    assert days[19] == 8
    assert days[20:24] == [3] * 4
    assert days[24] == 3
    assert days[25:] == [0] * 3
    # 45 + 80 + 8 + 12 + 3 = 148 seat-days; at 28.00 per seat-month in a 28-day month: 148.00
    from portal.billing.rating import seat_amount

    assert seat_amount(unit_amount=2800, daily_quantities=days, days_in_month=28) == 14800
