"""Commission (CM-1..CM-6) and the group leader's reward (团长佣金)."""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import Enum
from typing import Sequence

from engine.distribution import DistributionSettings, DistributorStatus, in_good_standing
from engine.money import apply_bp


@dataclass(frozen=True)
class ProductTerms:
    earns_commission: bool = True
    level1_amount: int | None = None
    level2_amount: int | None = None


@dataclass(frozen=True)
class LineBase:
    """CM-1: `base` is what the buyer paid for the goods of the line, after discounts."""

    product_ref: str
    quantity: int
    base: int
    terms: ProductTerms = field(default_factory=ProductTerms)


@dataclass(frozen=True)
class Beneficiary:
    user_id: str
    level: int
    status: DistributorStatus
    rate_bp: int


@dataclass(frozen=True)
class CommissionAmount:
    user_id: str
    level: int
    amount: int


class CommissionState(str, Enum):
    PENDING = "PENDING"
    FROZEN = "FROZEN"
    AVAILABLE = "AVAILABLE"
    VOID = "VOID"


def beneficiaries(settings: DistributionSettings, *, buyer_id: str, buyer_status: DistributorStatus,
                  level1_referrer: str | None, level2_referrer: str | None) -> tuple[str | None, str | None]:
    """CM-2: level 1 = the buyer's referrer, level 2 = theirs; with self_purchase on and a buyer in good
    standing, level 1 is the buyer and level 2 the buyer's referrer."""
    if settings.self_purchase and in_good_standing(buyer_status):
        return buyer_id, level1_referrer
    return level1_referrer, level2_referrer


def order_commission_base(lines: Sequence[LineBase]) -> int:
    """The base the cap of CM-4 applies to: the goods paid on lines that earn commission."""
    return sum(ln.base for ln in lines if ln.terms.earns_commission)


def _amount_for(b: Beneficiary, lines: Sequence[LineBase]) -> int:
    total = 0
    for ln in lines:
        if not ln.terms.earns_commission:
            continue
        fixed = ln.terms.level1_amount if b.level == 1 else ln.terms.level2_amount
        overridden = ln.terms.level1_amount is not None or ln.terms.level2_amount is not None
        if overridden:  # CM-3: a product override applies whatever the levels
            total += (fixed or 0) * ln.quantity
        else:
            total += apply_bp(ln.base, b.rate_bp)
    return total


def compute_commissions(settings: DistributionSettings, *, lines: Sequence[LineBase], level1: Beneficiary | None,
                        level2: Beneficiary | None, enabled: bool = True) -> tuple[CommissionAmount, ...]:
    """CM-3/CM-4: per beneficiary floor(base × rate / 10000) (or fixed × quantity); a beneficiary not in
    good standing gets nothing and nothing moves to anyone else; over the cap
    floor(base × max_total_bp / 10000) level 2 is cut first, then level 1."""
    if not enabled:
        return ()
    a1 = _amount_for(level1, lines) if level1 and in_good_standing(level1.status) else 0
    a2 = _amount_for(level2, lines) if level2 and in_good_standing(level2.status) else 0
    cap = apply_bp(order_commission_base(lines), settings.max_total_bp)
    excess = max(0, a1 + a2 - cap)
    cut2 = min(a2, excess)
    a2 -= cut2
    a1 -= min(a1, excess - cut2)
    out = []
    if level1 and a1 > 0:
        out.append(CommissionAmount(level1.user_id, 1, a1))
    if level2 and a2 > 0:
        out.append(CommissionAmount(level2.user_id, 2, a2))
    return tuple(out)


def standing_amount(original: int, refunded: int, paid_base: int) -> int:
    """CM-5: C − floor(C × R / B); exactly 0 once R ≥ B."""
    if paid_base <= 0 or refunded >= paid_base:
        return 0
    return original - original * max(refunded, 0) // paid_base


def reversal_for_refund(original: int, refunded_before: int, refunded_after: int, paid_base: int) -> int:
    """CM-5: what one refund reverses — the difference of standings, so reversals sum exactly to C."""
    return standing_amount(original, refunded_before, paid_base) - standing_amount(original, refunded_after,
                                                                                   paid_base)


def leader_commission(rate_bp: int | None, other_members_net: int) -> int:
    """团长佣金: a rate on the net amount paid by the other members at forming (after GB-5/GB-7)."""
    if not rate_bp or other_members_net <= 0:
        return 0
    return apply_bp(other_members_net, rate_bp)
