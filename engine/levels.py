"""Distributor levels (LV-1..LV-4) and the rates they give (CM-3)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

from engine.distribution import DistributionSettings
from engine.errors import ErrorCode, refuse

CONDITIONS = (
    "min_direct_referrals",
    "min_team_size",
    "min_own_spend",
    "min_own_orders",
    "min_direct_sales",
    "min_team_sales",
)


@dataclass(frozen=True)
class Level:
    """LV-1: a level's rates (replacing the shop defaults), one-time bonus, and upgrade conditions (all must hold)."""

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
    """LV-1 metrics of one distributor (the shell computes them; money in minor units, net of refunds)."""

    direct_referrals: int = 0
    team_size: int = 0
    own_spend: int = 0
    own_orders: int = 0
    direct_sales: int = 0
    team_sales: int = 0


@dataclass(frozen=True)
class LevelDecision:
    """The grade to store and the upgrade bonuses `(grade, amount)` to credit now (LV-4), lowest grade first."""

    grade: int
    bonuses: tuple[tuple[int, int], ...] = ()


def _is_int(v: object) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def validate_levels(levels: Sequence[Level]) -> None:
    """LV-1: grades are 0, 1, 2, … in order without gaps; rates ints in 0..10000 bp; bonus and
    conditions ints ≥ 0. Grade 0 is the entry level every distributor holds: it has no conditions and no
    upgrade bonus (nobody is upgraded *to* it). An empty list is valid (the shop defaults apply, CM-3)."""
    for i, lv in enumerate(levels):
        if lv.grade != i:
            raise refuse(ErrorCode.INVALID_INPUT, "grades must be 0, 1, 2, … without gaps", field="levels", rule="LV-1")
        for name in ("level1_bp", "level2_bp"):
            v = getattr(lv, name)
            if not _is_int(v) or not 0 <= v <= 10_000:
                raise refuse(
                    ErrorCode.INVALID_INPUT, f"{name} of grade {i} must be in 0..10000 bp", field="levels", rule="LV-1"
                )
        for name in ("upgrade_bonus", *CONDITIONS):
            v = getattr(lv, name)
            if not _is_int(v) or v < 0:
                raise refuse(
                    ErrorCode.INVALID_INPUT, f"{name} of grade {i} must be an integer >= 0", field="levels", rule="LV-1"
                )
        if i == 0 and (lv.upgrade_bonus or any(getattr(lv, c) for c in CONDITIONS)):
            raise refuse(
                ErrorCode.INVALID_INPUT,
                "grade 0 is the entry level: no conditions, no upgrade bonus",
                field="levels",
                rule="LV-1",
            )


def qualifies(level: Level, m: Metrics) -> bool:
    """LV-1: every condition of the level holds (≥, inclusive)."""
    return (
        m.direct_referrals >= level.min_direct_referrals
        and m.team_size >= level.min_team_size
        and m.own_spend >= level.min_own_spend
        and m.own_orders >= level.min_own_orders
        and m.direct_sales >= level.min_direct_sales
        and m.team_sales >= level.min_team_sales
    )


def qualifying_grade(levels: Sequence[Level], metrics: Metrics) -> int:
    """LV-2: the highest grade whose conditions hold, skipping levels in between (whether or not the
    skipped ones' own conditions hold); 0 when none does."""
    return max((lv.grade for lv in levels if qualifies(lv, metrics)), default=0)


def _bonuses(levels: Sequence[Level], upto: int, credited: frozenset[int]) -> tuple[tuple[int, int], ...]:
    """LV-4: the bonus of every level at or below `upto` (reached or passed) not credited before, once."""
    return tuple(
        (lv.grade, lv.upgrade_bonus)
        for lv in levels
        if 0 < lv.grade <= upto and lv.grade not in credited and lv.upgrade_bonus > 0
    )


def evaluate_level(
    levels: Sequence[Level], *, current_grade: int, metrics: Metrics, bonuses_credited: frozenset[int]
) -> LevelDecision:
    """LV-2/LV-3/LV-4: after an event that can change a metric, move up to the highest qualifying grade
    and never down by itself; credit the bonus of every level reached or passed for the first time
    (skipped levels included), never one already in `bonuses_credited`. A grade above the defined levels
    (levels removed later) is kept."""
    grade = max(current_grade, qualifying_grade(levels, metrics))
    return LevelDecision(grade=grade, bonuses=_bonuses(levels, grade, bonuses_credited))


def admin_set_level(
    levels: Sequence[Level], *, current_grade: int, new_grade: int, bonuses_credited: frozenset[int]
) -> LevelDecision:
    """LV-3: an admin may set any defined grade, up or down (the shell records who and why).
    Raising credits the bonus of every level reached or passed for the first time (LV-4 speaks of reaching a
    level, however reached); lowering credits and takes back nothing, and a later re-raise never pays a bonus
    twice. An unknown grade is INVALID_INPUT. Note LV-2 still applies afterwards: the next event moves a
    lowered distributor back up if they qualify."""
    if not any(lv.grade == new_grade for lv in levels):
        raise refuse(ErrorCode.INVALID_INPUT, f"no level with grade {new_grade}", field="grade", rule="LV-3")
    return LevelDecision(grade=new_grade, bonuses=_bonuses(levels, new_grade, bonuses_credited))


def rates_for(levels: Sequence[Level], grade: int, settings: DistributionSettings) -> tuple[int, int]:
    """CM-3: `(level1_bp, level2_bp)` of the distributor's level at payment time, else the shop defaults
    (no levels defined, or a grade no longer defined)."""
    for lv in levels:
        if lv.grade == grade:
            return lv.level1_bp, lv.level2_bp
    return settings.level1_bp, settings.level2_bp
