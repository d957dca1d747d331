"""Money is an int of minor units; rates are int basis points. No float, ever."""

from __future__ import annotations

BP_DENOMINATOR = 10_000


def apply_bp(amount: int, rate_bp: int) -> int:
    """floor(amount × rate_bp / 10000) in exact integer arithmetic (CM-4, LG-2)."""
    assert isinstance(amount, int) and isinstance(rate_bp, int)
    return amount * rate_bp // BP_DENOMINATOR


# ISO 4217 minor digits for the currencies shops use; anything else defaults to 2.
MINOR_DIGITS = {"JPY": 0, "KRW": 0, "VND": 0, "CLP": 0, "ISK": 0, "BHD": 3, "KWD": 3, "JOD": 3, "OMR": 3, "TND": 3}


def minor_digits(currency: str) -> int:
    return MINOR_DIGITS.get(currency.upper(), 2)


def format_minor(amount: int, currency: str) -> str:
    """Decimal string of a minor-unit amount, e.g. 1234 CNY -> "12.34", -5 -> "-0.05"."""
    digits = minor_digits(currency)
    sign = "-" if amount < 0 else ""
    whole, frac = divmod(abs(amount), 10**digits)
    return f"{sign}{whole}.{frac:0{digits}d}" if digits else f"{sign}{whole}"
