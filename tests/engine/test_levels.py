"""Distributor levels LV-1..LV-4 and level rates (CM-3)."""

from __future__ import annotations

from dataclasses import replace

import pytest
from hypothesis import given, settings as hsettings
from hypothesis import strategies as st

from engine.distribution import DistributionSettings
from engine.errors import ErrorCode, RuleViolation
from engine.levels import (
    Level,
    LevelDecision,
    Metrics,
    admin_set_level,
    evaluate_level,
    qualifying_grade,
    rates_for,
    validate_levels,
)

LEVELS = (
    Level(0, "Member", 1000, 500),
    Level(1, "Silver", 1200, 600, upgrade_bonus=500, min_direct_referrals=2),
    Level(2, "Gold", 1500, 800, upgrade_bonus=2000, min_direct_referrals=5, min_team_sales=100_000),
    Level(3, "Diamond", 2000, 1000, upgrade_bonus=0, min_direct_referrals=10, min_own_orders=3),
)
NONE = frozenset()


def test_LV1_all_conditions_must_hold_inclusive():
    lv = Level(
        1,
        "x",
        0,
        0,
        min_direct_referrals=1,
        min_team_size=2,
        min_own_spend=3,
        min_own_orders=4,
        min_direct_sales=5,
        min_team_sales=6,
    )
    ok = Metrics(1, 2, 3, 4, 5, 6)
    assert qualifying_grade([Level(0, "e", 0, 0), lv], ok) == 1
    for f in ("direct_referrals", "team_size", "own_spend", "own_orders", "direct_sales", "team_sales"):
        assert qualifying_grade([Level(0, "e", 0, 0), lv], replace(ok, **{f: getattr(ok, f) - 1})) == 0


@pytest.mark.parametrize(
    "levels",
    [
        [Level(1, "a", 0, 0)],
        [Level(0, "a", 0, 0), Level(2, "b", 0, 0)],
        [Level(0, "a", 10_001, 0)],
        [Level(0, "a", 0, -1)],
        [Level(0, "a", 0, 0), Level(1, "b", 0, 0, upgrade_bonus=-1)],
        [Level(0, "a", 0, 0), Level(1, "b", 0, 0, min_team_size=-3)],
        [Level(0, "a", 0, 0, upgrade_bonus=100)],
        [Level(0, "a", 0, 0, min_own_orders=1)],
    ],
)
def test_LV1_validate_levels_refuses(levels):
    with pytest.raises(RuleViolation) as e:
        validate_levels(levels)
    assert (e.value.code, e.value.rule) == (ErrorCode.INVALID_INPUT, "LV-1")


def test_LV1_valid_levels_pass():
    validate_levels(LEVELS)
    validate_levels([])


def test_LV2_skips_levels_and_LV4_credits_every_bonus_passed():
    d = evaluate_level(
        LEVELS, current_grade=0, metrics=Metrics(direct_referrals=6, team_sales=120_000), bonuses_credited=NONE
    )
    assert d == LevelDecision(grade=2, bonuses=((1, 500), (2, 2000)))


def test_LV3_never_down_by_itself_and_LV4_never_twice():
    d = evaluate_level(LEVELS, current_grade=2, metrics=Metrics(), bonuses_credited=frozenset({1, 2}))
    assert d == LevelDecision(grade=2, bonuses=())


def test_LV4_zero_bonus_levels_credit_nothing():
    d = evaluate_level(
        LEVELS,
        current_grade=2,
        metrics=Metrics(direct_referrals=10, own_orders=3, team_sales=0),
        bonuses_credited=frozenset({1, 2}),
    )
    assert d == LevelDecision(grade=3, bonuses=())


def test_LV3_admin_lowers_then_raises_without_double_bonus():
    low = admin_set_level(LEVELS, current_grade=2, new_grade=0, bonuses_credited=frozenset({1, 2}))
    assert low == LevelDecision(grade=0, bonuses=())
    up = admin_set_level(LEVELS, current_grade=0, new_grade=2, bonuses_credited=frozenset({1, 2}))
    assert up == LevelDecision(grade=2, bonuses=())


def test_LV3_LV4_admin_raise_credits_first_time_bonuses():
    assert admin_set_level(LEVELS, current_grade=0, new_grade=2, bonuses_credited=NONE).bonuses == ((1, 500), (2, 2000))
    with pytest.raises(RuleViolation) as e:
        admin_set_level(LEVELS, current_grade=0, new_grade=7, bonuses_credited=NONE)
    assert e.value.code == ErrorCode.INVALID_INPUT


def test_LV2_after_admin_lowering_the_next_event_moves_up_again_if_qualified():
    d = evaluate_level(LEVELS, current_grade=0, metrics=Metrics(direct_referrals=2), bonuses_credited=frozenset({1}))
    assert d == LevelDecision(grade=1, bonuses=())


def test_CM3_rates_for_level_else_shop_default():
    s = DistributionSettings(level1_bp=700, level2_bp=300)
    assert rates_for(LEVELS, 2, s) == (1500, 800)
    assert rates_for(LEVELS, 9, s) == (700, 300)
    assert rates_for((), 0, s) == (700, 300)


metrics = st.builds(
    Metrics, *(st.sampled_from([0, 1, 2, 3, 5, 9, 10, 11, 99_999, 100_000]) | st.integers(0, 200_000) for _ in range(6))
)

# LV-1 condition of each metric, spelled out here rather than taken from engine.levels
THRESHOLDS = {
    "direct_referrals": "min_direct_referrals",
    "team_size": "min_team_size",
    "own_spend": "min_own_spend",
    "own_orders": "min_own_orders",
    "direct_sales": "min_direct_sales",
    "team_sales": "min_team_sales",
}


def highest_qualifying(levels, m: Metrics) -> int:
    """LV-2 computed in the test: the highest grade all of whose conditions hold (≥), whatever lies between."""
    best = 0
    for lv in levels:
        if all(getattr(m, metric) >= getattr(lv, limit) for metric, limit in THRESHOLDS.items()):
            best = max(best, lv.grade)
    return best


@hsettings(max_examples=200, deadline=None)
@given(seq=st.lists(st.one_of(metrics, st.integers(0, 3)), max_size=25))
def test_LV3_LV4_property_levels_never_go_down_and_each_bonus_at_most_once(seq):
    """LV-3: evaluation never lowers the grade; LV-4: over any sequence of metrics (and admin sets, ints in the
    sequence) each level's bonus is credited at most once, and every level ≤ the highest grade reached that
    has a bonus has been credited."""
    grade, credited, paid = 0, frozenset(), []
    highest = 0
    for item in seq:
        if isinstance(item, Metrics):
            d = evaluate_level(LEVELS, current_grade=grade, metrics=item, bonuses_credited=credited)
            # LV-2 (move to the highest qualifying level, skipping) and LV-3 (never down by itself)
            assert d.grade == max(grade, highest_qualifying(LEVELS, item))
        else:
            d = admin_set_level(LEVELS, current_grade=grade, new_grade=item, bonuses_credited=credited)
            assert d.grade == item
        for g, amount in d.bonuses:
            assert g not in credited and amount == LEVELS[g].upgrade_bonus > 0
        paid += [g for g, _ in d.bonuses]
        credited |= {g for g, _ in d.bonuses}
        grade = d.grade
        highest = max(highest, grade)
    assert len(paid) == len(set(paid))
    assert set(paid) == {lv.grade for lv in LEVELS if 0 < lv.grade <= highest and lv.upgrade_bonus}
