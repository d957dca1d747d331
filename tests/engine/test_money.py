"""engine/money.py: the one rate multiplication (CM-4, LG-2) and minor-unit formatting (LG-3 exports, SH-2).
Added for the survivors of the first mutation run (docs/testing.md): these were proven only through the
settlement exports."""

from __future__ import annotations

import pytest

from engine.money import apply_bp, format_minor, minor_digits


def test_apply_bp_floors_in_integers():
    assert apply_bp(10_000, 1_000) == 1_000
    assert apply_bp(999, 250) == 24  # floor(24.975)
    assert apply_bp(1, 9_999) == 0
    assert apply_bp(10_000, 10_000) == 10_000


@pytest.mark.parametrize("currency,digits", [("CNY", 2), ("cny", 2), ("USD", 2), ("JPY", 0), ("KRW", 0),
                                             ("VND", 0), ("CLP", 0), ("ISK", 0), ("BHD", 3), ("KWD", 3),
                                             ("JOD", 3), ("OMR", 3), ("TND", 3), ("XYZ", 2)])
def test_minor_digits_follow_iso_4217(currency, digits):
    assert minor_digits(currency) == digits


@pytest.mark.parametrize("amount,currency,text", [
    (1234, "CNY", "12.34"), (-5, "CNY", "-0.05"), (0, "CNY", "0.00"), (5, "CNY", "0.05"), (100, "CNY", "1.00"),
    (1234, "JPY", "1234"), (-7, "JPY", "-7"), (0, "JPY", "0"), (1234, "KWD", "1.234"), (-1, "BHD", "-0.001"),
])
def test_format_minor(amount, currency, text):
    assert format_minor(amount, currency) == text
