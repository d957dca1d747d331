"""engine.refunds (OR-2, GB-9, CM-1/CM-5, RP-3) and the commission decisions the service now only applies
(`commission.refund_line`, `commission.leader_reward`): examples and properties that they reconcile."""

from __future__ import annotations

import pytest
from hypothesis import given, settings as hsettings
from hypothesis import strategies as st

from engine import commission as cm
from engine.errors import ErrorCode, RuleViolation
from engine.ledger import Balances
from engine.refunds import OrderMoney, decide_refund


def test_OR2_a_refund_is_positive_and_never_more_than_paid_less_refunded():
    o = OrderMoney(paid=10_000, refunded=7_000, goods=9_000)
    for bad in (0, -1, True, "5"):
        with pytest.raises(RuleViolation) as e:
            decide_refund(o, bad, rule="OR-2")
        assert e.value.code == ErrorCode.INVALID_INPUT
    with pytest.raises(RuleViolation) as e:
        decide_refund(o, 3_001, rule="OR-2")
    assert e.value.code == ErrorCode.REFUND_EXCEEDS_PAID
    d = decide_refund(o, 3_000, rule="OR-2")
    assert (d.refunded_after, d.full, d.paid_orders_delta) == (10_000, True, -1)


def test_CM1_refunds_reduce_the_goods_first_then_shipping_and_tax():
    """docs/rules-readings-service.md 2: goods 9,000 + shipping 1,000 paid 10,000."""
    o = OrderMoney(paid=10_000, refunded=0, goods=9_000)
    d1 = decide_refund(o, 8_000, rule="OR-2")
    assert (d1.goods_refund, d1.net_spend_delta, d1.full) == (8_000, -8_000, False)
    d2 = decide_refund(OrderMoney(paid=10_000, refunded=8_000, goods=9_000), 2_000, rule="OR-2")
    assert (d2.goods_refund, d2.net_spend_delta, d2.full, d2.paid_orders_delta) == (1_000, -1_000, True, -1)


def test_GB9_a_late_payment_is_refunded_in_full_and_never_counted():
    """GB-9: money received for a seat it never took — paid rises to cover the refund, which moves no
    commission base and no buyer counter (readings 3)."""
    d = decide_refund(OrderMoney(paid=0, refunded=0, goods=8_000, counted=False), 8_000, rule="GB-9", full=True)
    assert (d.paid_after, d.refunded_after, d.goods_refund, d.net_spend_delta, d.paid_orders_delta) == (
        8_000,
        8_000,
        0,
        0,
        0,
    )
    with pytest.raises(RuleViolation):  # only GB-9 may raise what was paid
        decide_refund(OrderMoney(paid=0, refunded=0, goods=8_000, counted=False), 8_000, rule="GB-6")


@hsettings(max_examples=200, deadline=None)
@given(
    goods=st.integers(1, 50_000),
    extra=st.integers(0, 5_000),
    c1=st.integers(1, 5_000),
    c0=st.integers(1, 5_000),
    asks=st.lists(st.integers(-10, 20_000), max_size=12),
)
def test_CM5_OR2_LG1_property_refunds_reconcile_with_lines_and_ledger(goods, extra, c1, c0, asks):
    """A sequence of refunds decided by the engine: refunded never exceeds paid (OR-2); the goods refunds
    add up to min(refunded, goods) (CM-1); each line's reversals add up to `original − standing`, exactly its
    original once the goods are fully refunded (CM-5); the postings of every transition sum to the lines'
    standing (LG-1)."""
    paid = goods + extra
    money = OrderMoney(paid=paid, refunded=0, goods=goods)
    line, posted = cm.post_line(id="l1", order_id="o", beneficiary_id="a", level=1, amount=c1, paid_base=goods)
    journal = list(posted)
    goods_refunded = spend = 0
    for a in asks:
        try:
            d = decide_refund(money, a, rule="OR-2")
        except RuleViolation as e:
            assert e.code in (ErrorCode.INVALID_INPUT, ErrorCode.REFUND_EXCEEDS_PAID)
            assert a <= 0 or a > paid - money.refunded
            continue
        money = OrderMoney(paid=paid, refunded=d.refunded_after, goods=goods)
        goods_refunded += d.goods_refund
        spend += d.net_spend_delta
        line, ps = cm.refund_line(line, d.goods_refund)
        journal += ps
        assert money.refunded <= paid
        assert goods_refunded == min(money.refunded, goods) == -spend
        assert Balances.from_postings(journal).pending == line.standing == cm.standing_amount(c1, goods_refunded, goods)
    if money.refunded >= goods:
        assert line.standing == 0
    # a leader reward's base is the others' net: refunds of the leader's own order never reach it (R33)
    amount, base = cm.leader_reward(c0, enabled=True, leader_paid=True, other_members=[(paid, money.refunded)])
    assert base == paid - money.refunded and amount == (base * c0 // 10_000 if base > 0 else 0)


def test_leader_reward_needs_a_rate_commission_on_and_the_leader_paid():
    others = [(8_000, 0), (8_000, 1_000)]
    assert cm.leader_reward(500, enabled=True, leader_paid=True, other_members=others) == (750, 15_000)
    assert cm.leader_reward(500, enabled=False, leader_paid=True, other_members=others)[0] == 0  # CM-3
    assert cm.leader_reward(500, enabled=True, leader_paid=False, other_members=others)[0] == 0
    assert cm.leader_reward(None, enabled=True, leader_paid=True, other_members=others)[0] == 0


def test_CM5_refund_line_on_no_base_or_a_void_line_changes_nothing():
    line, _ = cm.post_line(id="l", order_id="o", beneficiary_id="a", level=1, amount=100, paid_base=0)
    assert cm.refund_line(line, 50) == (line, ())
    line, _ = cm.post_line(id="l", order_id="o", beneficiary_id="a", level=1, amount=100, paid_base=1_000)
    void, _ = cm.void_line(line)
    assert cm.refund_line(void, 1_000) == (void, ())
    assert cm.refund_line(line, 0) == (line, ())
