"""Money is an int of minor units; rates are int basis points. No float, ever."""

from __future__ import annotations

BP_DENOMINATOR = 10_000


def apply_bp(amount: int, rate_bp: int) -> int:
    """floor(amount × rate_bp / 10000) in exact integer arithmetic (CM-4, LG-2)."""
    assert isinstance(amount, int) and isinstance(rate_bp, int)
    return amount * rate_bp // BP_DENOMINATOR


def format_minor(amount: int, digits: int) -> str:
    """Decimal string of a minor-unit amount with the currency's ISO 4217 minor digits (the shell looks
    them up: service.currencies.minor_digits), e.g. 1234 with 2 -> "12.34", -5 with 2 -> "-0.05",
    1234 with 0 -> "1234"."""
    assert isinstance(amount, int) and isinstance(digits, int) and 0 <= digits <= 4
    sign = "-" if amount < 0 else ""
    whole, frac = divmod(abs(amount), 10**digits)
    return f"{sign}{whole}.{frac:0{digits}d}" if digits else f"{sign}{whole}"
