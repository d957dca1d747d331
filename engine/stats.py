"""RP-2: formation-rate comparison between A/B variants, in integer basis points.

A formation rate is formed / decided groups (formed + failed). The 95 % interval on the difference
of two rates is the Wald interval  d ± 1.96 × sqrt(p1(1−p1)/n1 + p2(1−p2)/n2), computed exactly
in integers (basis points, isqrt), so it is reproducible to the unit. A test "has a winner" when
the interval excludes 0.
"""

from __future__ import annotations

from dataclasses import dataclass
from math import isqrt

BP = 10_000


def rate_bp(successes: int, trials: int) -> int | None:
    return None if trials <= 0 else successes * BP // trials


@dataclass(frozen=True)
class RateDifference:
    difference_bp: int  # rate(a) − rate(b)
    low_bp: int
    high_bp: int

    @property
    def has_winner(self) -> bool:
        return self.low_bp > 0 or self.high_bp < 0


def formation_rate_difference(formed_a: int, decided_a: int, formed_b: int, decided_b: int) -> RateDifference | None:
    """95 % Wald interval on rate(a) − rate(b); None until both variants have decided groups."""
    if decided_a <= 0 or decided_b <= 0:
        return None
    # variance in bp² with full precision: p(1−p)/n = formed·(n−formed)·BP² / n³
    var = (formed_a * (decided_a - formed_a) * BP * BP // decided_a ** 3
           + formed_b * (decided_b - formed_b) * BP * BP // decided_b ** 3)
    margin = 196 * isqrt(var) // 100
    diff = formed_a * BP // decided_a - formed_b * BP // decided_b
    return RateDifference(difference_bp=diff, low_bp=diff - margin, high_bp=diff + margin)
