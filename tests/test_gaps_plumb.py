"""Survivors of the per-module mutation runs of branch `plumb` (docs/testing.md, "Session 2026-12-02 c") that need no database:
service/settings.py, service/availability.py, service/currencies.py."""

from __future__ import annotations

import asyncpg
import pytest
from pydantic import ValidationError
from sqlalchemy import exc as sa_exc

from engine.errors import ErrorCode, RuleViolation
from service.availability import is_database_unavailable
from service.currencies import check_currency, check_timezone
from service.settings import ConfigError, Settings, check_settings

# ---------------------------------------------------------------- service/settings.py


@pytest.mark.parametrize(
    "var, lowest, below",
    [
        ("SHARECART_READY_WORKER_MAX_AGE", "0", "-0.5"),  # 0 leaves the worker out of readiness
        ("SHARECART_HEARTBEAT_INTERVAL", "0.5", "0"),  # any positive number of seconds
        ("SHARECART_WORKER_BACKOFF_MAX", "0.5", "0"),
        ("SHARECART_DB_POOL", "1", "0"),
        ("SHARECART_DB_OVERFLOW", "0", "-1"),
    ],
)
def test_each_numeric_setting_takes_its_lowest_value_and_refuses_one_below(monkeypatch, var, lowest, below):
    """docs/configuration.md: the bounds of the numeric settings (service/settings.py `ge=`/`gt=`)."""
    field = {env: name for name, env in ((n, f.validation_alias) for n, f in Settings.model_fields.items())}[var]
    monkeypatch.setenv(var, lowest)
    assert getattr(check_settings(), field) == float(lowest)
    monkeypatch.setenv(var, below)
    with pytest.raises(ConfigError) as e:
        check_settings()
    assert str(e.value).startswith(f"{var}={below!r}: Input should be greater than")


def test_a_start_with_several_bad_values_names_each_in_one_line(monkeypatch):
    """service/settings.py `check_settings`/`describe_error`: one line, each bad variable with its value and
    what is wrong, in the order pydantic reports them (the field order)."""
    monkeypatch.setenv("SHARECART_LOG_LEVEL", "LOUD")
    monkeypatch.setenv("SHARECART_DB_POOL", "0")
    with pytest.raises(ConfigError) as e:
        check_settings()
    assert str(e.value) == (
        "SHARECART_LOG_LEVEL='LOUD': Input should be 'DEBUG', 'INFO', 'WARNING' or 'ERROR'; "
        "SHARECART_DB_POOL='0': Input should be greater than or equal to 1"
    )
    assert e.value.__cause__ is None and e.value.__suppress_context__  # `from None`: no pydantic traceback


def test_the_settings_read_are_read_only():
    """service/settings.py `frozen=True`: what `settings()` returned cannot be changed by a caller."""
    conf = check_settings()
    with pytest.raises(ValidationError):
        conf.db_pool = conf.db_pool + 1


# ---------------------------------------------------------------- service/availability.py


def _chain(depth: int, bottom: BaseException) -> BaseException:
    """`bottom` wrapped `depth` times (`raise … from`), the outermost returned."""
    e = bottom
    for n in range(depth):
        outer = RuntimeError(f"wrap {n}")
        outer.__cause__ = e
        e = outer
    return e


def test_a_lost_connection_is_found_seven_causes_deep_and_not_eight():
    """service/availability.py `is_database_unavailable` follows at most 8 links of the chain: the error
    itself and 7 causes (a cycle or a very long chain cannot hold it)."""
    assert is_database_unavailable(_chain(7, ConnectionResetError("reset"))) is True
    assert is_database_unavailable(_chain(8, ConnectionResetError("reset"))) is False


def test_a_lost_connection_raised_while_handling_is_found_by_its_context():
    """An error raised inside an `except` without `from` keeps the lost connection as `__context__` only."""
    try:
        try:
            raise asyncpg.exceptions.ConnectionDoesNotExistError("closed")
        except Exception:
            raise RuntimeError("while handling")  # noqa: B904 - the implicit context is the point
    except RuntimeError as e:
        assert e.__cause__ is None and e.__context__ is not None
        assert is_database_unavailable(e) is True


def test_sqlalchemys_invalidated_connection_is_the_database_away_and_another_dbapi_error_is_not():
    invalidated = sa_exc.DBAPIError("SELECT 1", {}, ValueError("x"), connection_invalidated=True)
    other = sa_exc.DBAPIError("SELECT 1", {}, ValueError("x"), connection_invalidated=False)
    assert (is_database_unavailable(invalidated), is_database_unavailable(other)) == (True, False)


@pytest.mark.parametrize("e", [FileNotFoundError("x"), PermissionError("x"), IsADirectoryError("x")])
def test_a_file_error_is_an_oserror_but_not_the_database_away(e):
    assert is_database_unavailable(e) is False
    assert is_database_unavailable(TimeoutError()) is True


# ---------------------------------------------------------------- service/currencies.py


@pytest.mark.parametrize("bad", [None, 156, b"CNY"])
def test_a_currency_or_time_zone_that_is_not_text_is_refused_SH2(bad):
    """service/currencies.py: what is not a string is INVALID_INPUT like any bad code, not a TypeError."""
    with pytest.raises(RuleViolation) as e:
        check_currency(bad)
    assert (e.value.code, e.value.field) == (ErrorCode.INVALID_INPUT, "currency")
    with pytest.raises(RuleViolation) as e:
        check_timezone(bad)
    assert (e.value.code, e.value.field) == (ErrorCode.INVALID_INPUT, "timezone")


# ---------------------------------------------------------------- service/metrics.py


@pytest.mark.parametrize("delivered", [True, False])
def test_a_webhook_post_counts_as_an_attempt_by_outcome_and_a_failure_only_when_it_failed(delivered):
    """docs/operations.md: `sharecart_webhook_attempts{outcome}` counts every POST, `sharecart_webhook_failures`
    the failed ones (service/metrics.py `webhook_attempt`)."""
    from service import metrics

    def counts():
        return (
            metrics.WEBHOOK_ATTEMPTS.labels("delivered")._value.get(),
            metrics.WEBHOOK_ATTEMPTS.labels("failed")._value.get(),
            metrics.WEBHOOK_FAILURES._value.get(),
        )

    before = counts()
    metrics.webhook_attempt(delivered)
    assert tuple(a - b for a, b in zip(counts(), before)) == ((1, 0, 0) if delivered else (0, 1, 1))


def test_the_latency_histograms_use_the_documented_buckets():
    """service/metrics.py `LATENCY_BUCKETS`: 2 ms … 10 s for HTTP and GraphQL latency, not prometheus' default."""
    from service import metrics

    for h in (metrics.HTTP_LATENCY.labels("/graphql"), metrics.GRAPHQL_LATENCY.labels("query x")):
        assert tuple(h._upper_bounds) == (*metrics.LATENCY_BUCKETS, float("inf"))
