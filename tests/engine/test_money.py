"""engine/money.py: the one rate multiplication (CM-4, LG-2) and minor-unit formatting (LG-3 exports, SH-2).
Added for the survivors of the first mutation run (docs/testing.md): these were proven only through the
settlement exports."""

from __future__ import annotations

import pytest

from engine.money import apply_bp, format_minor


def test_apply_bp_floors_in_integers():
    assert apply_bp(10_000, 1_000) == 1_000
    assert apply_bp(999, 250) == 24  # floor(24.975)
    assert apply_bp(1, 9_999) == 0
    assert apply_bp(10_000, 10_000) == 10_000


@pytest.mark.parametrize(
    "amount,digits,text",
    [
        (1234, 2, "12.34"),
        (-5, 2, "-0.05"),
        (0, 2, "0.00"),
        (5, 2, "0.05"),
        (100, 2, "1.00"),
        (1234, 0, "1234"),
        (-7, 0, "-7"),
        (0, 0, "0"),
        (1234, 3, "1.234"),
        (-1, 3, "-0.001"),
    ],
)
def test_format_minor(amount, digits, text):
    assert format_minor(amount, digits) == text
