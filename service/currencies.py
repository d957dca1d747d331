"""Shop currencies and time zones, checked against maintained sources instead of hand-written tables.

- Currencies: the ISO 4217 list (current codes, "list one") and each currency's minor digits come from
  the `iso4217` package, which ships the list published by the ISO 4217 maintenance agency. A code
  without minor units (XAU gold, XXX "no currency", XTS testing …) is not money a shop can take.
  Why not babel: CLDR's currency digits are display conventions and differ from ISO 4217 for some
  currencies (IDR, HUF, COP: 0 in CLDR, 2 in ISO); amounts are stored in ISO minor units, so the
  digits must be ISO's or a stored 1234 would change meaning.
- Time zones: the IANA database through `zoneinfo` (the `tzdata` package provides it where the
  system has none, as in slim container images).
"""

from __future__ import annotations

import functools
import re
import zoneinfo

from iso4217 import Currency

from engine.errors import ErrorCode, refuse

CODE = re.compile(r"^[A-Z]{3}$")


@functools.cache
def _digits() -> dict[str, int]:
    return {c.code: c.exponent for c in Currency if c.exponent is not None}


def minor_digits(currency: str) -> int:
    """ISO 4217 minor digits (CNY 2, JPY 0, XOF 0, KWD 3, CLF 4); KeyError for what is not a currency."""
    return _digits()[currency]


def check_currency(currency: str) -> str:
    """SH-2: an ISO 4217 currency code with minor units, else INVALID_INPUT."""
    if not isinstance(currency, str) or not CODE.match(currency) or currency not in _digits():
        raise refuse(
            ErrorCode.INVALID_INPUT,
            f"currency {currency!r} is not an ISO 4217 currency code (three capital letters, e.g. CNY, USD, JPY)",
            field="currency",
            rule="SH-2",
        )
    return currency


def check_timezone(name: str) -> str:
    """An IANA time zone name (Asia/Shanghai, UTC), else INVALID_INPUT."""
    try:
        if not isinstance(name, str) or not name or len(name) > 64 or name != name.strip():
            raise ValueError(name)
        zoneinfo.ZoneInfo(name)
    except (ValueError, zoneinfo.ZoneInfoNotFoundError):
        raise refuse(
            ErrorCode.INVALID_INPUT,
            f"time zone {name!r} is not an IANA time zone name (e.g. Asia/Shanghai, Europe/Paris, UTC)",
            field="timezone",
        ) from None
    return name
