"""RP-2: formation-rate comparison between A/B variants, in integer basis points.

A formation rate is formed / decided groups (formed + failed). The 95 % interval on the difference
of two rates is Newcombe's hybrid score interval (Newcombe 1998, "Interval estimation for the
difference between independent proportions", method 10): with Wilson score limits (l₁, u₁), (l₂, u₂)
of each rate and d = p₁ − p₂,

    low  = d − sqrt((p₁ − l₁)² + (u₂ − p₂)²)
    high = d + sqrt((u₁ − p₁)² + (p₂ − l₂)²)

Unlike the Wald interval d ± 1.96·sqrt(p₁(1−p₁)/n₁ + p₂(1−p₂)/n₂), it does not collapse to a point
at 0 % or 100 % (1/1 against 0/1 gave Wald [10000, 10000] bp, a "winner" from two groups), and it
keeps close to 95 % coverage for small samples. Everything is exact rational arithmetic
(`fractions.Fraction`, square roots by `math.isqrt` at 10⁻¹² resolution); the limits are rounded
outwards to whole basis points, so results are reproducible to the unit on every platform.

A comparison only reports a winner once each variant has at least `MIN_DECIDED` decided groups:
below that the interval is still shown, but an admin peeking at a handful of groups should not stop
a test on it.
"""

from __future__ import annotations

from dataclasses import dataclass
from fractions import Fraction
from math import isqrt

BP = 10_000
Z95 = Fraction(196, 100)  # two-sided 95 %
MIN_DECIDED = 30  # decided groups per variant before a comparison may call a winner
_SCALE = 10**12


def rate_bp(successes: int, trials: int) -> int | None:
    return None if trials <= 0 else successes * BP // trials


@dataclass(frozen=True)
class RateDifference:
    difference_bp: int  # rate(a) − rate(b), each rate floored to bp as shown beside it
    low_bp: int  # 95 % limits, rounded outwards
    high_bp: int
    enough_data: bool = True  # both variants have ≥ MIN_DECIDED decided groups

    @property
    def has_winner(self) -> bool:
        return self.enough_data and (self.low_bp > 0 or self.high_bp < 0)


def _sqrt_floor(q: Fraction) -> Fraction:
    return Fraction(isqrt(q.numerator * _SCALE * _SCALE // q.denominator), _SCALE)


def _sqrt_ceil(q: Fraction) -> Fraction:
    r = _sqrt_floor(q)
    return r if r * r == q else r + Fraction(1, _SCALE)


def wilson_interval(successes: int, trials: int, z: Fraction = Z95) -> tuple[Fraction, Fraction]:
    """Wilson score interval of successes/trials: (2x + z² ∓ z·sqrt(z² + 4x(n−x)/n)) / (2(n + z²)),
    widened by at most 10⁻¹² (outward) and kept within [0, p] and [p, 1]."""
    if trials <= 0 or not 0 <= successes <= trials:
        raise ValueError("need 0 <= successes <= trials and trials > 0")
    p = Fraction(successes, trials)
    z2 = z * z
    centre = 2 * successes + z2
    spread = z * _sqrt_ceil(z2 + Fraction(4 * successes * (trials - successes), trials))
    denom = 2 * (trials + z2)
    low, high = (centre - spread) / denom, (centre + spread) / denom
    return max(Fraction(0), min(low, p)), min(Fraction(1), max(high, p))


def newcombe_interval(x1: int, n1: int, x2: int, n2: int, z: Fraction = Z95) -> tuple[Fraction, Fraction]:
    """Newcombe's hybrid score interval on p₁ − p₂ (exact fractions, limits widened outwards)."""
    p1, p2 = Fraction(x1, n1), Fraction(x2, n2)
    l1, u1 = wilson_interval(x1, n1, z)
    l2, u2 = wilson_interval(x2, n2, z)
    d = p1 - p2
    return (d - _sqrt_ceil((p1 - l1) ** 2 + (u2 - p2) ** 2), d + _sqrt_ceil((u1 - p1) ** 2 + (p2 - l2) ** 2))


def _floor_bp(q: Fraction) -> int:
    return (q.numerator * BP) // q.denominator


def _ceil_bp(q: Fraction) -> int:
    return -((-q.numerator * BP) // q.denominator)


def formation_rate_difference(
    formed_a: int, decided_a: int, formed_b: int, decided_b: int, *, min_decided: int = MIN_DECIDED
) -> RateDifference | None:
    """95 % interval on rate(a) − rate(b) in bp; None until both variants have decided groups.
    `has_winner` needs the interval to exclude 0 and both variants to have ≥ `min_decided` decided groups."""
    if decided_a <= 0 or decided_b <= 0:
        return None
    low, high = newcombe_interval(formed_a, decided_a, formed_b, decided_b)
    rate_a, rate_b = rate_bp(formed_a, decided_a), rate_bp(formed_b, decided_b)
    assert rate_a is not None and rate_b is not None  # both decided counts are > 0 here
    diff = rate_a - rate_b
    # the displayed difference (floored rates) always lies inside the outward-rounded limits
    return RateDifference(
        difference_bp=diff,
        low_bp=min(_floor_bp(low), diff),
        high_bp=max(_ceil_bp(high), diff),
        enough_data=decided_a >= min_decided and decided_b >= min_decided,
    )
