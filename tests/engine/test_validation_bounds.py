"""Settings and campaign fields are validated at their boundaries (survivors of the first engine mutation run)."""

from __future__ import annotations

import pytest

from engine.distribution import BindingMode, DistributionSettings, validate_settings
from engine.errors import RuleViolation


def test_rf1_expiring_binding_takes_one_day_and_no_less():
    validate_settings(DistributionSettings(binding=BindingMode.EXPIRING, binding_days=1))
    for bad in (0, -1, None):
        with pytest.raises(RuleViolation):
            validate_settings(DistributionSettings(binding=BindingMode.EXPIRING, binding_days=bad))


@pytest.mark.parametrize("name", ["level1_bp", "level2_bp", "max_total_bp", "payout_fee_bp"])
def test_rates_are_0_to_10000_bp_inclusive(name):
    validate_settings(DistributionSettings(**{name: 0}))
    validate_settings(DistributionSettings(**{name: 10_000}))
    for bad in (-1, 10_001):
        with pytest.raises(RuleViolation):
            validate_settings(DistributionSettings(**{name: bad}))


@pytest.mark.parametrize("name", ["freeze_days", "min_payout", "spend_threshold"])
def test_days_and_amounts_are_whole_and_not_negative(name):
    validate_settings(DistributionSettings(**{name: 0}))
    with pytest.raises(RuleViolation):
        validate_settings(DistributionSettings(**{name: -1}))


def test_leader_commission_bp_takes_0_to_10000_inclusive():
    """Section 2 `leader_commission_bp`: 0 (no reward) and 10000 are valid, outside is refused."""
    from dataclasses import replace
    from datetime import datetime, timedelta, timezone

    from engine.groupbuy import Campaign, Tier, validate_campaign

    t0 = datetime(2026, 1, 1, tzinfo=timezone.utc)
    c = Campaign(id="c", list_price=10_000, tiers=(Tier(2, 8_000),), duration=timedelta(hours=1),
                 payment_window=timedelta(minutes=5), starts_at=t0, ends_at=t0 + timedelta(days=1))
    for ok in (None, 0, 10_000):
        validate_campaign(replace(c, leader_commission_bp=ok))
    for bad in (-1, 10_001):
        with pytest.raises(RuleViolation):
            validate_campaign(replace(c, leader_commission_bp=bad))


def test_every_engine_dataclass_is_frozen():
    """docs/architecture.md: every value the rules decide over is a frozen dataclass."""
    import dataclasses
    import importlib
    import inspect
    import pkgutil

    import engine

    found = 0
    for info in pkgutil.iter_modules(engine.__path__):
        module = importlib.import_module(f"engine.{info.name}")
        for _, cls in inspect.getmembers(module, inspect.isclass):
            if dataclasses.is_dataclass(cls) and cls.__module__ == module.__name__:
                found += 1
                assert cls.__dataclass_params__.frozen, f"{module.__name__}.{cls.__name__} is not frozen"
    assert found > 30


def test_rp2_winner_needs_an_interval_that_excludes_zero():
    """RP-2 (engine/stats.py): a difference whose interval touches 0 names no winner."""
    from engine.stats import RateDifference

    assert not RateDifference(difference_bp=10, low_bp=0, high_bp=20).has_winner
    assert RateDifference(difference_bp=10, low_bp=1, high_bp=20).has_winner
    assert RateDifference(difference_bp=-10, low_bp=-20, high_bp=-1).has_winner
    assert not RateDifference(difference_bp=-10, low_bp=-20, high_bp=0).has_winner
    assert not RateDifference(difference_bp=10, low_bp=1, high_bp=20, enough_data=False).has_winner


def test_rp2_intervals_need_decided_groups():
    from engine.stats import formation_rate_difference, wilson_interval

    assert formation_rate_difference(1, 1, 0, 0) is None
    assert formation_rate_difference(0, 0, 1, 1) is None
    for successes, trials in ((0, 0), (1, 0), (3, 2), (-1, 2)):
        with pytest.raises(ValueError):
            wilson_interval(successes, trials)


def test_lg2_approving_nothing_is_refused():
    from engine.ledger import approve_payout

    with pytest.raises(RuleViolation):
        approve_payout(0, fee=0)
