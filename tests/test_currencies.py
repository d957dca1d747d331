"""SH-2 / issue 13: shop currencies are ISO 4217 codes with ISO's minor digits (service.currencies, from
the `iso4217` package), and shop time zones are IANA names (zoneinfo) — no hand-written table."""

from __future__ import annotations

import pytest

from engine.errors import ErrorCode, RuleViolation
from engine.money import format_minor
from service.currencies import check_currency, check_timezone, minor_digits


@pytest.mark.parametrize(
    "code, digits",
    [
        ("CNY", 2),
        ("USD", 2),
        ("EUR", 2),
        ("JPY", 0),
        ("KRW", 0),
        ("XOF", 0),
        ("UGX", 0),
        ("PYG", 0),
        ("KWD", 3),
        ("BHD", 3),
        ("CLF", 4),
        ("IDR", 2),
        ("HUF", 2),
    ],
)
def test_minor_digits_are_iso_4217s(code, digits):
    """IDR and HUF are 2 in ISO 4217 (CLDR/babel says 0: a display habit, not the unit amounts are kept in)."""
    assert minor_digits(code) == digits
    assert check_currency(code) == code


@pytest.mark.parametrize("bad", ["ABC", "QQQ", "cny", "CN", "CNYY", "", "XAU", "XXX", "XTS", " CNY"])
def test_a_code_that_is_not_a_currency_with_minor_units_is_refused_SH2(bad):
    with pytest.raises(RuleViolation) as e:
        check_currency(bad)
    assert e.value.code == ErrorCode.INVALID_INPUT and e.value.field == "currency"


@pytest.mark.parametrize(
    "amount, code, text",
    [
        (1234, "CNY", "12.34"),
        (-5, "CNY", "-0.05"),
        (1234, "XOF", "1234"),
        (1234, "UGX", "1234"),
        (7, "KWD", "0.007"),
        (0, "PYG", "0"),
    ],
)
def test_format_minor_uses_the_currencys_digits(amount, code, text):
    assert format_minor(amount, minor_digits(code)) == text


@pytest.mark.parametrize("name", ["UTC", "Asia/Shanghai", "America/New_York", "Europe/Paris"])
def test_iana_time_zones_are_accepted(name):
    assert check_timezone(name) == name


@pytest.mark.parametrize(
    "bad", ["Mars/Base", "", "Asia/Shanghai ", "../../etc/passwd", "/etc/localtime", "X" * 80, "Asia/"]
)
def test_other_time_zone_names_are_refused(bad):
    with pytest.raises(RuleViolation) as e:
        check_timezone(bad)
    assert e.value.code == ErrorCode.INVALID_INPUT and e.value.field == "timezone"


async def test_create_shop_refuses_a_bad_currency_or_time_zone_and_creates_nothing(svc):
    """issue 13: `--timezone Mars/Base` used to be stored (then close-period crashed) and `ABC` accepted."""
    import secrets

    from service.usecases.shops import create_shop, get_shop

    for kw in ({"currency": "ABC"}, {"currency": "CNY", "timezone": "Mars/Base"}):
        sid = f"t-{secrets.token_hex(5)}"
        with pytest.raises(RuleViolation) as e:
            await create_shop(svc, shop_id=sid, name="x", **kw)
        assert e.value.code == ErrorCode.INVALID_INPUT
        assert await get_shop(svc, sid) is None
