"""Distributor levels (LV-1..LV-4)."""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Sequence

from engine.distribution import DistributionSettings
from engine.errors import ErrorCode, refuse


@dataclass(frozen=True)
class Level:
    grade: int
    name: str
    level1_bp: int
    level2_bp: int
    upgrade_bonus: int = 0
    min_direct_referrals: int = 0
    min_team_size: int = 0
    min_own_spend: int = 0
    min_own_orders: int = 0
    min_direct_sales: int = 0
    min_team_sales: int = 0


@dataclass(frozen=True)
class Metrics:
    direct_referrals: int = 0
    team_size: int = 0
    own_spend: int = 0
    own_orders: int = 0
    direct_sales: int = 0
    team_sales: int = 0


@dataclass(frozen=True)
class LevelDecision:
    grade: int
    bonuses: tuple[tuple[int, int], ...] = ()


def validate_levels(levels: Sequence[Level]) -> None:
    """LV-1: grades 0..n-1 in order, rates in 0..10000 bp, thresholds and bonus ≥ 0."""
    for i, lv in enumerate(levels):
        if lv.grade != i:
            raise refuse(ErrorCode.INVALID_INPUT, "grades must be 0, 1, 2, … without gaps", field="levels",
                         rule="LV-1")
        if not (0 <= lv.level1_bp <= 10_000 and 0 <= lv.level2_bp <= 10_000):
            raise refuse(ErrorCode.INVALID_INPUT, "rates are 0..10000 bp", field="levels", rule="LV-1")
        for f in fields(Level):
            if f.name.startswith("min_") or f.name == "upgrade_bonus":
                if getattr(lv, f.name) < 0:
                    raise refuse(ErrorCode.INVALID_INPUT, f"{f.name} must be >= 0", field="levels", rule="LV-1")


def qualifies(level: Level, m: Metrics) -> bool:
    """LV-1: all conditions must hold."""
    return (m.direct_referrals >= level.min_direct_referrals and m.team_size >= level.min_team_size
            and m.own_spend >= level.min_own_spend and m.own_orders >= level.min_own_orders
            and m.direct_sales >= level.min_direct_sales and m.team_sales >= level.min_team_sales)


def qualifying_grade(levels: Sequence[Level], metrics: Metrics) -> int:
    """LV-2: the highest level whose conditions hold (levels may be skipped)."""
    return max((lv.grade for lv in levels if qualifies(lv, metrics)), default=0)


def _bonuses(levels: Sequence[Level], upto: int, credited: frozenset[int]) -> tuple[tuple[int, int], ...]:
    """LV-4: every level reached or passed for the first time, once."""
    return tuple((lv.grade, lv.upgrade_bonus) for lv in levels
                 if 0 < lv.grade <= upto and lv.grade not in credited and lv.upgrade_bonus > 0)


def evaluate_level(levels: Sequence[Level], *, current_grade: int, metrics: Metrics,
                   bonuses_credited: frozenset[int]) -> LevelDecision:
    """LV-2/LV-3/LV-4: move up to the highest qualifying level, never down by itself."""
    grade = max(current_grade, qualifying_grade(levels, metrics))
    return LevelDecision(grade=grade, bonuses=_bonuses(levels, grade, bonuses_credited))


def admin_set_level(levels: Sequence[Level], *, current_grade: int, new_grade: int,
                    bonuses_credited: frozenset[int]) -> LevelDecision:
    """LV-3: an admin may set any defined level (up or down). Raising credits the bonuses of levels
    reached for the first time (LV-4 says "the first time a distributor reaches"); lowering credits nothing
    and a later re-raise never pays a bonus twice."""
    if not any(lv.grade == new_grade for lv in levels):
        raise refuse(ErrorCode.INVALID_INPUT, f"no level with grade {new_grade}", field="grade", rule="LV-3")
    return LevelDecision(grade=new_grade, bonuses=_bonuses(levels, new_grade, bonuses_credited))


def rates_for(levels: Sequence[Level], grade: int, settings: DistributionSettings) -> tuple[int, int]:
    """CM-3: the rates of the distributor's level, else the shop defaults."""
    for lv in levels:
        if lv.grade == grade:
            return lv.level1_bp, lv.level2_bp
    return settings.level1_bp, settings.level2_bp
