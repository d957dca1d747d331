"""The arithmetic of a refund on an order (OR-2, CM-1, CM-5, GB-9, RP-3, LV-1).

One pure decision per refund: what the order's paid and refunded totals become, what part of the
refund reduces the goods (the commission base), and how the buyer's purchase counters move. The
shell records the refund row, applies the counters and hands `goods_refund` to every commission line
computed on the order (`commission.refund_line`).
"""

from __future__ import annotations

from dataclasses import dataclass

from engine.errors import ErrorCode, refuse


@dataclass(frozen=True)
class OrderMoney:
    """What a refund decision reads of an order: `paid`, `refunded` so far, `goods` (CM-1 base before
    refunds) and whether its payment counted as a purchase (`counted`: False for a late payment, GB-9)."""

    paid: int
    refunded: int
    goods: int
    counted: bool = True


@dataclass(frozen=True)
class RefundDecision:
    amount: int
    full: bool
    paid_after: int  # GB-9 may raise it: money received for a seat never taken
    refunded_after: int
    goods_refund: int  # CM-1/CM-5: the part of this refund that reduces the goods (readings 2: goods first)
    net_spend_delta: int  # LV-1 own_spend / RP-3: the goods refunded, for a counted purchase
    paid_orders_delta: int  # RP-3: −1 the moment a counted order is refunded in full


def decide_refund(order: OrderMoney, amount: object, *, rule: str, full: bool | None = None) -> RefundDecision:
    """OR-2: a refund is a positive amount and never more than paid less already refunded.

    - GB-9 (a late payment answered with a full refund): the money was received for a seat it never
      took, so `paid` rises to cover the refund when it must (the refund then always fits).
    - Refunds reduce the goods first (docs/rules-readings-service.md 2): `goods_refund` is the part of
      `[refunded, refunded + amount)` below `goods`; shipping and tax count as refunded last.
    - A payment that never counted as a purchase (GB-9) moves no buyer counter; a counted one loses the
      goods refunded from net spend, and one paid order the moment it is refunded in full (RP-3).
    - `full` defaults to "this refund brings the order to fully refunded"; a rule's instruction may say
      so itself (GB-5 partial, GB-6/7/8/9 full)."""
    if not isinstance(amount, int) or isinstance(amount, bool) or amount <= 0:
        raise refuse(ErrorCode.INVALID_INPUT, "refund amount must be positive", field="amount", rule="OR-2")
    paid = order.paid
    if rule == "GB-9" and paid < order.refunded + amount:
        paid = order.refunded + amount
    refundable = paid - order.refunded
    if amount > refundable:
        raise refuse(
            ErrorCode.REFUND_EXCEEDS_PAID,
            f"refund of {amount} exceeds what remains refundable ({refundable})",
            field="amount",
            rule="OR-2",
        )
    before, after = order.refunded, order.refunded + amount
    goods_refund = min(after, order.goods) - min(before, order.goods)
    fully_now = after >= paid and before < paid
    return RefundDecision(
        amount=amount,
        full=(after >= paid) if full is None else full,
        paid_after=paid,
        refunded_after=after,
        goods_refund=goods_refund if order.counted else 0,
        net_spend_delta=-goods_refund if order.counted else 0,
        paid_orders_delta=-1 if order.counted and fully_now else 0,
    )
