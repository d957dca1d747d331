"""Property tests: GB-5 final prices and refunds, GB-7 winners inside a formed group,
and the section-2 tier rules of validate_campaign."""

from __future__ import annotations

from collections import defaultdict
from datetime import datetime, timedelta, timezone

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from engine import groupbuy as gb
from engine.errors import ErrorCode, RuleViolation
from engine.groupbuy import Campaign, FinalPrice, GroupFormed, GroupState, RefundOwed, Tier

T0 = datetime(2025, 3, 1, tzinfo=timezone.utc)
M = timedelta(minutes=1)


@st.composite
def ladders(draw):
    n = draw(st.integers(1, 4))
    members = sorted(draw(st.sets(st.integers(2, 9), min_size=n, max_size=n)))
    prices = sorted(draw(st.sets(st.integers(0, 20_000), min_size=n, max_size=n)), reverse=True)
    return tuple(Tier(m, p) for m, p in zip(members, prices))


@st.composite
def formed_scenarios(draw):
    tiers = draw(ladders())
    list_price = tiers[0].unit_price + draw(st.integers(0, 5000))
    min_size, cap = tiers[0].members, tiers[-1].members
    fill = draw(st.none() | st.integers(1, min_size - 1)) if min_size > 1 else None
    c = Campaign(
        id="c",
        list_price=list_price,
        tiers=tiers,
        duration=timedelta(hours=24),
        payment_window=15 * M,
        starts_at=T0,
        ends_at=T0 + timedelta(days=3),
        leader_discount=draw(st.integers(0, 25_000)),
        max_quantity_per_order=3,
        fill_at_expiry=fill,
        lottery_winners=draw(st.integers(0, min_size - 1)),
        lottery_seed=draw(st.text(min_size=1, max_size=8)),
    )
    gb.validate_campaign(c)
    lower = fill if fill is not None else min_size
    paid = draw(st.integers(lower, cap))
    qtys = draw(st.lists(st.integers(1, 3), min_size=paid, max_size=paid))
    leader_leaves = draw(st.booleans()) and paid >= 2 and paid + 1 <= cap
    return c, qtys, leader_leaves


def build_and_form(c, qtys, leader_leaves):
    """Leader + members pay; optionally the leader leaves and a new member replaces them (GB-8);
    the group forms at capacity or at expiry. Returns (group, all instructions, paid amount per order)."""
    out, paid = [], {}
    d = gb.open_group(
        c, group_id="g", order_id="o0", user_id="u0", quantity=qtys[0], now=T0, stock_left=None, user_units_held=0
    )
    d = gb.pay_seat(c, d.group, order_id="o0", amount=d.group.seats[0].amount, now=T0)
    out += d.instructions
    paid["o0"] = d.group.seats[0].amount
    g = d.group
    members = list(enumerate(qtys))[1:]
    if leader_leaves:
        members.append((len(qtys), 1))
    for i, q in members:
        now = T0 + i * M
        if leader_leaves and i == len(qtys):
            d = gb.leave_group(c, g, user_id="u0", now=now)
            out += d.instructions
            g = d.group
        d = gb.join_group(
            c,
            g,
            order_id=f"o{i}",
            user_id=f"u{i}",
            quantity=q,
            now=now,
            stock_left=None,
            user_units_held=0,
            user_has_paid_order=False,
        )
        s = d.group.seat_for_order(f"o{i}")
        d = gb.pay_seat(c, d.group, order_id=s.order_id, amount=s.amount, now=now)
        out += d.instructions
        paid[s.order_id] = s.amount
        g = d.group
    d = gb.advance(c, g, now=g.expires_at)
    out += d.instructions
    return d.group, out, paid


@settings(max_examples=300, deadline=None)
@given(formed_scenarios())
def test_GB5_GB7_final_price_never_above_paid_and_refunds_equal_paid_minus_final(scenario):
    c, qtys, leader_leaves = scenario
    g, out, paid = build_and_form(c, qtys, leader_leaves)
    assert g.state is GroupState.FORMED
    (formed,) = [i for i in out if isinstance(i, GroupFormed)]
    refunds = defaultdict(int)
    kinds = defaultdict(list)
    for i in out:
        if isinstance(i, RefundOwed):
            refunds[i.order_id] += i.amount
            kinds[i.order_id].append(i.rule)
    finals = {i.order_id: i.final_unit_price for i in out if isinstance(i, FinalPrice)}
    paid_seats = [s for s in g.seats if s.state is gb.SeatState.PAID]
    assert set(finals) == {s.order_id for s in paid_seats}
    assert formed.tier_members == g.tier_members
    # GB-5, computed here and not by the engine: the last tier whose members <= paid seats, or the
    # first tier for a group that formed below min_size (fill-at-expiry, GB-4).
    n_paid = len(qtys)  # every order paid; a leader who left was replaced by one more payer
    assert len(paid_seats) == n_paid
    reached = [t for t in c.tiers if t.members <= n_paid]
    expected_tier = reached[-1] if reached else c.tiers[0]
    assert g.tier_members == expected_tier.members
    # GB-7: K = min(lottery_winners, paid) distinct winners among the paid seats
    assert len(g.winners) == min(c.lottery_winners, len(paid_seats)) == len(set(g.winners))
    assert set(g.winners) <= {s.order_id for s in paid_seats}
    first = c.tiers[0].unit_price
    for s in paid_seats:
        # the price role is fixed by who opened the group (GB-3/GB-8), not read back from the seat
        leader = s.order_id == "o0"
        qty = qtys[0] if leader else 1 if s.order_id == f"o{len(qtys)}" else qtys[int(s.order_id[1:])]
        paid_unit = max(0, first - c.leader_discount) if leader else first
        assert paid[s.order_id] == paid_unit * qty
        final = finals[s.order_id]
        if s.order_id in g.winners:
            expected_final = 0  # GB-7: a free order
            assert kinds[s.order_id] == ["GB-7"]
        else:
            expected_final = (
                max(0, expected_tier.unit_price - c.leader_discount) if leader else expected_tier.unit_price
            )
            assert kinds[s.order_id] == (["GB-5"] if expected_final < paid_unit else [])
        assert final == expected_final <= paid_unit
        assert refunds[s.order_id] == paid[s.order_id] - expected_final * qty
    for s in g.seats:  # GB-8: the leader who left got everything back, no more
        if s.state is gb.SeatState.LEFT:
            assert refunds[s.order_id] == paid[s.order_id] and kinds[s.order_id] == ["GB-8"]


def tiers_ok(tiers, list_price) -> bool:
    """Section 2, written independently of the engine."""
    if not tiers:
        return False
    ms = [t.members for t in tiers]
    ps = [t.unit_price for t in tiers]
    return (
        all(m >= 2 for m in ms)
        and all(0 <= p <= list_price for p in ps)
        and all(a < b for a, b in zip(ms, ms[1:]))
        and all(a > b for a, b in zip(ps, ps[1:]))
    )


@settings(max_examples=300, deadline=None)
@given(st.lists(st.builds(Tier, st.integers(-1, 8), st.integers(-5, 120)), max_size=4), st.integers(0, 120))
def test_validate_campaign_accepts_exactly_the_valid_tier_lists(tiers, list_price):
    c = Campaign(
        id="c",
        list_price=list_price,
        tiers=tuple(tiers),
        duration=timedelta(hours=1),
        payment_window=M,
        starts_at=T0,
        ends_at=T0 + timedelta(days=1),
    )
    if tiers_ok(tiers, list_price):
        gb.validate_campaign(c)
    else:
        with pytest.raises(RuleViolation) as e:
            gb.validate_campaign(c)
        assert e.value.code == ErrorCode.INVALID_INPUT and e.value.field.startswith("tiers")


@settings(max_examples=100, deadline=None)
@given(ladders(), st.integers(-3, 10), st.integers(-3, 10))
def test_validate_campaign_bounds_fill_at_expiry_and_lottery(tiers, m, k):
    c = Campaign(
        id="c",
        list_price=20_000,
        tiers=tiers,
        duration=timedelta(hours=1),
        payment_window=M,
        starts_at=T0,
        ends_at=T0 + timedelta(days=1),
        fill_at_expiry=m,
        lottery_winners=k,
        lottery_seed="s",
    )
    ok = 1 <= m < tiers[0].members and 0 <= k < tiers[0].members
    if ok:
        gb.validate_campaign(c)
    else:
        with pytest.raises(RuleViolation):
            gb.validate_campaign(c)
