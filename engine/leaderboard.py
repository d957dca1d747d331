"""RP-5 downline and leaderboard: the figures are sums the shell reads per period; the engine says how a
downline member's figures are taken from their orders and how distributors are ranked."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from enum import Enum
from typing import Sequence


class RankBy(str, Enum):
    """RP-5: what the leaderboard orders by."""

    COMMISSION_EARNED = "COMMISSION_EARNED"
    TEAM_SALES = "TEAM_SALES"
    NEW_DIRECT_REFERRALS = "NEW_DIRECT_REFERRALS"


@dataclass(frozen=True)
class Standing:
    """RP-5: one distributor's figures over a period — commission earned (posted less reversed and voided,
    leader rewards included, upgrade bonuses not), team sales (net base of orders where they are level 1 or
    2), new direct referrals (users bound to them in the period)."""

    user_id: str
    commission_earned: int
    team_sales: int
    new_direct_referrals: int

    def value(self, by: RankBy) -> int:
        return {
            RankBy.COMMISSION_EARNED: self.commission_earned,
            RankBy.TEAM_SALES: self.team_sales,
            RankBy.NEW_DIRECT_REFERRALS: self.new_direct_referrals,
        }[by]


def rank(rows: Sequence[Standing], by: RankBy) -> list[tuple[int, Standing]]:
    """RP-5: `(rank, row)` best first. Ordered by the chosen figure, then the other two (in the order of
    RankBy), then user id, so the order is total and stable; the rank is competition ranking on the chosen
    figure alone (1, 1, 3): 1 + the number of rows with a strictly greater value."""
    others = [b for b in RankBy if b != by]
    ordered = sorted(rows, key=lambda r: (-r.value(by), *(-r.value(o) for o in others), r.user_id))
    out: list[tuple[int, Standing]] = []
    for i, row in enumerate(ordered):
        same = out and out[-1][1].value(by) == row.value(by)
        out.append((out[-1][0] if same else i + 1, row))
    return out


@dataclass(frozen=True)
class MemberOrder:
    """One order of a downline member: paid when, its net commission base (goods − refunds), whether the
    distributor looking is its level 1 or level 2 (RF-2 snapshot) and whether it was refunded in full."""

    paid_at: datetime
    net_base: int
    earns_viewer: bool
    refunded_in_full: bool = False


def member_figures(orders: Sequence[MemberOrder], period_from: datetime, period_to: datetime) -> tuple[int, int]:
    """RP-5 `(paid orders, commission base brought)` of one member over [from, to): orders paid in the period,
    a fully refunded one not counting as paid (RP-3); the base is the net of those among them whose snapshot
    names the viewer as level 1 or 2 (what they brought the viewer)."""
    inside = [o for o in orders if period_from <= o.paid_at < period_to and not o.refunded_in_full]
    return len(inside), sum(o.net_base for o in inside if o.earns_viewer)
