"""Commission (CM-1..CM-6) and the group leader's reward (团长佣金).

Amounts are computed once at payment (CM-2..CM-4) from the RF-2 snapshot; afterwards a commission line
only moves between buckets (CM-6) and shrinks with refunds (CM-5). Every transition is a pure function
returning `(new_line, postings)`; the shell stores both in one transaction (LG-1).
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from enum import Enum
from typing import Sequence

from engine.distribution import DistributionSettings, DistributorStatus, in_good_standing
from engine.errors import ErrorCode, refuse
from engine.ledger import Bucket, EntryKind, Posting, move
from engine.money import apply_bp


# ---------------------------------------------------------------- amounts at payment (CM-1..CM-4)
@dataclass(frozen=True)
class ProductTerms:
    """OR-3/CM-3: whether a product earns commission, and optional fixed per-unit amounts per level.
    Each level is independent: `None` = that level earns its rate; an int (0 allowed) = that amount × qty."""

    earns_commission: bool = True
    level1_amount: int | None = None
    level2_amount: int | None = None

    def fixed_for(self, level: int) -> int | None:
        return self.level1_amount if level == 1 else self.level2_amount if level == 2 else None


@dataclass(frozen=True)
class LineBase:
    """CM-1: `base` is what the buyer paid for the goods of the line, after discounts, no shipping or tax."""

    product_ref: str
    quantity: int
    base: int
    terms: ProductTerms = field(default_factory=ProductTerms)


@dataclass(frozen=True)
class Beneficiary:
    """CM-2/CM-3: a level-1 or level-2 beneficiary with status and rate resolved at payment time."""

    user_id: str
    level: int
    status: DistributorStatus
    rate_bp: int


@dataclass(frozen=True)
class CommissionAmount:
    user_id: str
    level: int
    amount: int


def beneficiaries(
    settings: DistributionSettings,
    *,
    buyer_id: str,
    buyer_status: DistributorStatus,
    level1_referrer: str | None,
    level2_referrer: str | None,
) -> tuple[str | None, str | None]:
    """CM-2: level 1 = the buyer's referrer, level 2 = the level-1 referrer's referrer (the RF-2 snapshot).
    With `self_purchase` on and a buyer who is a distributor in good standing, level 1 is the buyer and
    level 2 is the buyer's referrer. (A SUSPENDED buyer falls back to the plain chain: self-purchase is a
    privilege of good standing, and the plain chain is what a non-distributor buyer would produce.)"""
    if settings.self_purchase and in_good_standing(buyer_status):
        return buyer_id, level1_referrer
    return level1_referrer, level2_referrer


def order_commission_base(lines: Sequence[LineBase]) -> int:
    """CM-4: the base the cap applies to — the sum of `base` over the lines that earn commission
    (lines with `earns_commission=False` are outside the programme and widen no cap). Lines with fixed
    amounts count: their goods are commissionable."""
    return sum(ln.base for ln in lines if ln.terms.earns_commission)


def raw_amount(level: int, rate_bp: int, lines: Sequence[LineBase]) -> int:
    """CM-3/CM-4 for one beneficiary before the cap: `floor(Σ rate-line bases × rate / 10000)` — one floor
    over the lines paid at the rate — plus `fixed × quantity` for every line whose product fixes this level."""
    rate_base = 0
    fixed = 0
    for ln in lines:
        if not ln.terms.earns_commission:
            continue
        amount = ln.terms.fixed_for(level)
        if amount is None:
            rate_base += ln.base
        else:
            fixed += amount * ln.quantity
    return apply_bp(rate_base, rate_bp) + fixed


def compute_commissions(
    settings: DistributionSettings,
    *,
    lines: Sequence[LineBase],
    level1: Beneficiary | None,
    level2: Beneficiary | None,
    enabled: bool = True,
) -> tuple[CommissionAmount, ...]:
    """CM-2..CM-4: the commission of one order, level 1 first, zero amounts omitted.

    - `enabled=False` (a campaign switched commission off, CM-3) → nothing.
    - Each beneficiary's raw amount is `raw_amount` (CM-3/CM-4).
    - Cap (CM-4): `cap = floor(order_commission_base × max_total_bp / 10000)`; if a1 + a2 > cap the excess
      is cut from level 2 first, then level 1.
    - Good standing (CM-2): the cap is applied to the amounts as if every named beneficiary earned, and
      only then is a beneficiary not in good standing dropped. So "nothing moves to anyone else": a
      suspended level 1 never frees cap room for level 2, and level 2 is never promoted.
    """
    if not enabled:
        return ()
    a1 = raw_amount(1, level1.rate_bp, lines) if level1 else 0
    a2 = raw_amount(2, level2.rate_bp, lines) if level2 else 0
    cap = apply_bp(order_commission_base(lines), settings.max_total_bp)
    excess = max(0, a1 + a2 - cap)
    cut2 = min(a2, excess)
    a2 -= cut2
    a1 -= min(a1, excess - cut2)
    out = []
    for b, amount in ((level1, a1), (level2, a2)):
        if b is not None and amount > 0 and in_good_standing(b.status):
            out.append(CommissionAmount(b.user_id, b.level, amount))
    return tuple(out)


# ---------------------------------------------------------------- refunds (CM-5)
def standing_amount(original: int, refunded: int, paid_base: int) -> int:
    """CM-5: after refunds totalling R of a paid base B, a line of original C stands at
    `C − floor(C × R / B)`; exactly 0 once R ≥ B (and 0 when B ≤ 0). Negative R counts as 0."""
    if paid_base <= 0 or refunded >= paid_base:
        return 0
    return original - original * max(refunded, 0) // paid_base


def reversal_for_refund(original: int, refunded_before: int, refunded_after: int, paid_base: int) -> int:
    """CM-5: what one refund reverses — the difference of standings, never negative (a replayed or
    out-of-order refund reverses nothing), so the reversals of a line add up to at most C, exactly C
    after a full refund."""
    return max(
        0, standing_amount(original, refunded_before, paid_base) - standing_amount(original, refunded_after, paid_base)
    )


def leader_commission(rate_bp: int | None, other_members_net: int) -> int:
    """团长佣金 (section 2, `leader_commission_bp`): `floor(net × rate / 10000)` on the net amount paid by the
    other members at forming (after GB-5 and GB-7 refunds); 0 without a rate or a positive net."""
    if not rate_bp or other_members_net <= 0:
        return 0
    return apply_bp(other_members_net, rate_bp)


# ---------------------------------------------------------------- life cycle (CM-6)
class CommissionState(str, Enum):
    PENDING = "PENDING"
    FROZEN = "FROZEN"
    AVAILABLE = "AVAILABLE"
    VOID = "VOID"


STATE_BUCKET = {
    CommissionState.PENDING: Bucket.PENDING,
    CommissionState.FROZEN: Bucket.FROZEN,
    CommissionState.AVAILABLE: Bucket.AVAILABLE,
}


@dataclass(frozen=True)
class CommissionLine:
    """CM-6: one beneficiary's commission on one order. `level` 0 is a group leader's reward.
    `standing` is what is left after CM-5 reversals and sits in the bucket of `state`.
    `releasable` is False for group orders until the group forms. `paid_base`/`refunded` are the line's own
    CM-5 base and refunds so far (for a leader reward: the other members' net and their refunds)."""

    id: str
    order_id: str
    beneficiary_id: str
    level: int
    original: int
    standing: int
    state: CommissionState
    releasable: bool
    available_at: datetime | None = None
    paid_base: int = 0
    refunded: int = 0
    held: bool = False  # FR-3: flagged for review — follows its life cycle but is never released to AVAILABLE


Transition = tuple[CommissionLine, tuple[Posting, ...]]


def post_line(
    *, id: str, order_id: str, beneficiary_id: str, level: int, amount: int, releasable: bool = True, paid_base: int
) -> Transition:
    """CM-6: a new line at payment — PENDING, `amount` posted to pending (COMMISSION_POSTED).
    `amount` must be > 0 (compute_commissions omits zeros); `level` is 0 (leader), 1 or 2."""
    if not isinstance(amount, int) or isinstance(amount, bool) or amount <= 0:
        raise refuse(ErrorCode.INVALID_INPUT, "a commission line needs a positive amount", field="amount", rule="CM-6")
    if level not in (0, 1, 2):
        raise refuse(ErrorCode.INVALID_INPUT, "level is 0 (leader), 1 or 2", field="level", rule="CM-2")
    line = CommissionLine(
        id=id,
        order_id=order_id,
        beneficiary_id=beneficiary_id,
        level=level,
        original=amount,
        standing=amount,
        state=CommissionState.PENDING,
        releasable=releasable,
        paid_base=paid_base,
    )
    return line, (Posting(Bucket.PENDING, amount, EntryKind.COMMISSION_POSTED),)


def mark_releasable(line: CommissionLine) -> CommissionLine:
    """CM-6: the group formed — its PENDING lines may now follow their order's completion. No money moves."""
    return line if line.releasable else replace(line, releasable=True)


def freeze_line(line: CommissionLine, completed_at: datetime, freeze_days: int) -> Transition:
    """CM-6/OR-4: on completion a releasable PENDING line becomes FROZEN with
    `available_at = completed_at + freeze_days`; what still stands moves pending → frozen
    (COMMISSION_FROZEN, no zero postings). Any other line is returned unchanged with no postings:
    not yet releasable (group not formed — freeze again when it forms), already FROZEN/AVAILABLE (a retried
    completion, GB-10) or VOID."""
    if line.state != CommissionState.PENDING or not line.releasable:
        return line, ()
    new = replace(line, state=CommissionState.FROZEN, available_at=completed_at + timedelta(days=freeze_days))
    postings = move(line.standing, Bucket.PENDING, Bucket.FROZEN, EntryKind.COMMISSION_FROZEN) if line.standing else ()
    return new, postings


def make_available(line: CommissionLine, now: datetime) -> Transition:
    """CM-6: a FROZEN line becomes AVAILABLE once `now ≥ available_at`; its standing moves frozen → available
    (COMMISSION_RELEASED). Before that, in any other state, or while the line is held for review (FR-3),
    nothing changes."""
    if line.state != CommissionState.FROZEN or line.available_at is None or now < line.available_at or line.held:
        return line, ()
    new = replace(line, state=CommissionState.AVAILABLE)
    postings = (
        move(line.standing, Bucket.FROZEN, Bucket.AVAILABLE, EntryKind.COMMISSION_RELEASED) if line.standing else ()
    )
    return new, postings


def void_line(line: CommissionLine) -> Transition:
    """CM-6: the group failed — a PENDING line is voided and what still stands leaves pending
    (COMMISSION_VOIDED); standing becomes 0. Voiding a VOID line changes nothing; a FROZEN/AVAILABLE line
    cannot be voided (INVALID_STATE — refunds reverse it instead, CM-5)."""
    if line.state == CommissionState.VOID:
        return line, ()
    if line.state != CommissionState.PENDING:
        raise refuse(ErrorCode.INVALID_STATE, "only a pending commission line can be voided", rule="CM-6")
    postings = (Posting(Bucket.PENDING, -line.standing, EntryKind.COMMISSION_VOIDED),) if line.standing else ()
    return replace(line, state=CommissionState.VOID, standing=0), postings


def reverse_line(line: CommissionLine, refunded_after: int, paid_base: int) -> Transition:
    """CM-5/CM-6: refunds now total `refunded_after` of `paid_base`; the line drops to
    `standing_amount(original, refunded_after, paid_base)` and only the difference is posted
    (COMMISSION_REVERSED) against the bucket the line sits in — PENDING, FROZEN or AVAILABLE. From
    AVAILABLE the balance may go negative: clawback is never skipped or capped. A VOID line, or a refund
    total that does not lower the standing (replay), changes nothing."""
    if line.state == CommissionState.VOID:
        return line, ()
    refunded = max(line.refunded, min(refunded_after, paid_base))
    target = standing_amount(line.original, refunded, paid_base)
    delta = line.standing - target
    if delta <= 0:
        return (replace(line, refunded=refunded, paid_base=paid_base) if refunded != line.refunded else line), ()
    new = replace(line, standing=target, refunded=refunded, paid_base=paid_base)
    return new, (Posting(STATE_BUCKET[line.state], -delta, EntryKind.COMMISSION_REVERSED),)


def refund_line(line: CommissionLine, goods_refunded: int) -> Transition:
    """CM-5 for one refund of `goods_refunded` of the line's base: refunds so far become
    `min(paid_base, refunded + goods_refunded)` and the line drops by the difference of standings
    (`reverse_line`). A line computed on no base (`paid_base ≤ 0`) or a non-positive refund changes nothing."""
    if line.paid_base <= 0 or goods_refunded <= 0:
        return line, ()
    return reverse_line(line, min(line.paid_base, line.refunded + goods_refunded), line.paid_base)


def leader_reward(
    rate_bp: int | None, *, enabled: bool, leader_paid: bool, other_members: Sequence[tuple[int, int]]
) -> tuple[int, int]:
    """团长佣金 (section 2) at forming: `(amount, base)` where `base` is the net the *other* paid members
    paid — `Σ (paid − refunded)` over `other_members`, after GB-5 and GB-7 refunds — and `amount` is
    `leader_commission(rate_bp, base)`. Nothing (amount 0) when the campaign switched commission off
    (CM-3), has no rate, or the leader's own seat is not paid."""
    base = sum(paid - refunded for paid, refunded in other_members)
    if not enabled or not leader_paid:
        return 0, base
    return leader_commission(rate_bp, base), base
