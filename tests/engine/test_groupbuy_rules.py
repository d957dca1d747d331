"""Unit tests, one or more per group-buy rule (GB-1..GB-11, ER-1)."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest

from engine import groupbuy as gb
from engine.errors import ErrorCode, RuleViolation
from engine.groupbuy import (
    CancelOrder,
    Campaign,
    FinalPrice,
    GroupCancelled,
    GroupFailed,
    GroupFormed,
    GroupOpened,
    GroupState,
    LeaderChanged,
    OrderPaid,
    PriceRole,
    RefundOwed,
    ReturnStock,
    SeatState,
    Tier,
    Variant,
)

T0 = datetime(2025, 3, 1, 12, 0, tzinfo=timezone.utc)
H = timedelta(hours=1)
M = timedelta(minutes=1)


def campaign(**kw) -> Campaign:
    base = dict(
        id="camp",
        list_price=10_000,
        tiers=(Tier(2, 8_000),),
        duration=24 * H,
        payment_window=15 * M,
        starts_at=T0,
        ends_at=T0 + 7 * 24 * H,
    )
    base.update(kw)
    c = Campaign(**base)
    gb.validate_campaign(c)
    return c


def opened(c: Campaign, *, leader="L", qty=1, now=T0, gid="g1") -> gb.Group:
    """A group whose leader has reserved and paid (OPEN)."""
    d = gb.open_group(
        c, group_id=gid, order_id="o-L", user_id=leader, quantity=qty, now=now, stock_left=None, user_units_held=0
    )
    d = gb.pay_seat(c, d.group, order_id="o-L", amount=d.group.seats[0].amount, now=now)
    assert d.group.state is GroupState.OPEN
    return d.group


def join(c, g, user, *, now=T0 + M, qty=1, **kw) -> gb.Decision:
    args = dict(stock_left=None, user_units_held=0, user_has_paid_order=False)
    args.update(kw)
    return gb.join_group(c, g, order_id=f"o-{user}", user_id=user, quantity=qty, now=now, **args)


def join_pay(c, g, user, *, now=T0 + M, qty=1) -> gb.Decision:
    d = join(c, g, user, now=now, qty=qty)
    seat = d.group.seat_for_order(f"o-{user}")
    return gb.pay_seat(c, d.group, order_id=seat.order_id, amount=seat.amount, now=now)


def codes(fn):
    with pytest.raises(RuleViolation) as e:
        fn()
    return e.value.code


def of(instrs, kind):
    return [i for i in instrs if isinstance(i, kind)]


# ------------------------------------------------------------------ validation (section 2 fields)
@pytest.mark.parametrize(
    "kw, field",
    [
        (dict(tiers=()), "tiers"),
        (dict(tiers=(Tier(1, 8000),)), "tiers[0]"),
        (dict(tiers=(Tier(3, 8000), Tier(3, 7000))), "tiers[1]"),
        (dict(tiers=(Tier(3, 8000), Tier(2, 7000))), "tiers[1]"),
        (dict(tiers=(Tier(2, 8000), Tier(3, 8000))), "tiers[1]"),
        (dict(tiers=(Tier(2, 8000), Tier(3, 9000))), "tiers[1]"),
        (dict(tiers=(Tier(2, 10_001),)), "tiers[0]"),
        (dict(tiers=(Tier(2, -1),)), "tiers[0]"),
        (dict(list_price=-5, tiers=(Tier(2, -10),)), "list_price"),
        (dict(leader_discount=-1), "leader_discount"),
        (dict(ends_at=T0), "ends_at"),
        (dict(duration=timedelta(0)), "duration"),
        (dict(payment_window=-M), "payment_window"),
        (dict(stock=-1), "stock"),
        (dict(per_user_limit=0), "per_user_limit"),
        (dict(max_quantity_per_order=0), "max_quantity_per_order"),
        (dict(fill_at_expiry=0, tiers=(Tier(3, 8000),)), "fill_at_expiry"),
        (dict(fill_at_expiry=3, tiers=(Tier(3, 8000),)), "fill_at_expiry"),
        (dict(lottery_winners=2, lottery_seed="s"), "lottery_winners"),
        (dict(lottery_winners=-1), "lottery_winners"),
        (dict(lottery_winners=1, tiers=(Tier(3, 8000),)), "lottery_seed"),
        (dict(leader_commission_bp=10_001), "leader_commission_bp"),
        (dict(starts_at=T0.replace(tzinfo=None)), "starts_at"),
        (dict(variants=(Variant("a", (Tier(2, 8000),), 0),)), "variants[0].weight"),
        (dict(variants=(Variant("a", (Tier(2, 8000),), 1), Variant("a", (Tier(3, 7000),), 1))), "variants[1].name"),
        (dict(variants=(Variant("a", (Tier(3, 8000), Tier(2, 7000)), 1),)), "variants[0].tiers[1]"),
        (
            dict(variants=(Variant("a", (Tier(2, 8000),), 1),), tiers=(Tier(4, 8000),), fill_at_expiry=3),
            "fill_at_expiry",
        ),
        (dict(tiers=(Tier(2, 80.5),)), "tiers[0]"),
    ],
)
def test_validate_campaign_rejects_bad_fields(kw, field):
    """Section 2 campaign fields: each bad input is INVALID_INPUT naming its field (ER-1)."""
    with pytest.raises(RuleViolation) as e:
        campaign(**kw)
    assert e.value.code == ErrorCode.INVALID_INPUT
    assert e.value.field == field


def test_validate_campaign_accepts_ladder_with_variants_fill_and_lottery():
    campaign(
        tiers=(Tier(3, 9000), Tier(5, 8000), Tier(10, 7000)),
        fill_at_expiry=2,
        lottery_winners=2,
        lottery_seed="seed",
        variants=(Variant("small", (Tier(3, 8500),), 1), Variant("big", (Tier(4, 8000), Tier(6, 7500)), 3)),
    )


# ------------------------------------------------------------------ GB-1
def test_GB1_GB3_open_reserves_leader_seat_pending_with_leader_price():
    """GB-1 opens PENDING; GB-3: the leader pays the first tier minus leader_discount (8000 − 500)."""
    c = campaign(leader_discount=500)
    d = gb.open_group(c, group_id="g", order_id="o1", user_id="L", quantity=1, now=T0, stock_left=10, user_units_held=0)
    g = d.group
    assert g.state is GroupState.PENDING and g.leader_user_id == "L" and g.expires_at is None
    (s,) = g.seats
    assert (s.role, s.state, s.unit_price, s.pay_by) == (PriceRole.LEADER, SeatState.RESERVED, 7500, T0 + 15 * M)
    assert d.instructions == ()


def test_GB1_leader_payment_opens_group_expiry_capped_at_campaign_end():
    c = campaign(ends_at=T0 + 10 * H)
    d = gb.open_group(
        c, group_id="g", order_id="o1", user_id="L", quantity=1, now=T0, stock_left=None, user_units_held=0
    )
    d = gb.pay_seat(c, d.group, order_id="o1", amount=8000, now=T0 + 5 * M)
    assert d.group.state is GroupState.OPEN
    assert d.group.expires_at == T0 + 10 * H  # not T0+5m+24h
    assert d.instructions == (
        OrderPaid("o1", PriceRole.LEADER, "GB-1"),
        GroupOpened("g", T0 + 10 * H, "GB-1"),
        gb.GroupNudged("g", "almost_full", 1, T0 + 10 * H, "GB-15"),
    )  # 2 seats, 1 paid


def test_GB1_leader_pay_window_capped_at_campaign_end():
    c = campaign(ends_at=T0 + 5 * M)
    d = gb.open_group(
        c, group_id="g", order_id="o1", user_id="L", quantity=1, now=T0, stock_left=None, user_units_held=0
    )
    assert d.group.seats[0].pay_by == T0 + 5 * M


@pytest.mark.parametrize("now", [T0 - M, T0 + 7 * 24 * H, T0 + 8 * 24 * H])
def test_GB1_open_outside_campaign_window_is_refused(now):
    c = campaign()
    assert (
        codes(
            lambda: gb.open_group(
                c, group_id="g", order_id="o", user_id="L", quantity=1, now=now, stock_left=None, user_units_held=0
            )
        )
        == ErrorCode.CAMPAIGN_NOT_ACTIVE
    )


@pytest.mark.parametrize(
    "kw, qty, code",
    [
        (dict(), 0, ErrorCode.QUANTITY_LIMIT),
        (dict(max_quantity_per_order=2), 3, ErrorCode.QUANTITY_LIMIT),
        (dict(max_quantity_per_order=3), 3, None),
    ],
)
def test_GB1_quantity_limits(kw, qty, code):
    c = campaign(**kw)
    f = lambda: gb.open_group(  # noqa: E731
        c,
        group_id="g",
        order_id="o",
        user_id="L",
        quantity=qty,
        now=T0,
        stock_left=None,
        user_units_held=0,
    )
    if code is None:
        assert f().group.seats[0].quantity == qty
    else:
        assert codes(f) == code


def test_GB1_out_of_stock_and_per_user_limit():
    c = campaign(stock=5, per_user_limit=3, max_quantity_per_order=3)
    f = lambda **kw: gb.open_group(c, group_id="g", order_id="o", user_id="L", now=T0, **kw)  # noqa: E731
    assert codes(lambda: f(quantity=2, stock_left=1, user_units_held=0)) == ErrorCode.OUT_OF_STOCK
    assert codes(lambda: f(quantity=2, stock_left=5, user_units_held=2)) == ErrorCode.PER_USER_LIMIT
    f(quantity=1, stock_left=1, user_units_held=2)  # exactly at both limits is fine


def test_GB1_unpaid_leader_release_cancels_group():
    c = campaign()
    g = gb.open_group(
        c, group_id="g", order_id="o1", user_id="L", quantity=1, now=T0, stock_left=None, user_units_held=0
    ).group
    assert gb.next_due_at(g) == T0 + 15 * M
    assert gb.advance(c, g, now=T0 + 15 * M - timedelta(seconds=1)).instructions == ()
    d = gb.advance(c, g, now=T0 + 15 * M)
    assert d.group.state is GroupState.CANCELLED and d.group.closed_at == T0 + 15 * M
    assert d.instructions == (CancelOrder("o1", "GB-2"), ReturnStock("o1", 1, "GB-2"), GroupCancelled("g", "GB-1"))
    assert gb.next_due_at(d.group) is None


def test_variant_tiers_are_used_by_the_group():
    v = Variant("big", (Tier(3, 7000),), 1)
    c = campaign(variants=(Variant("small", (Tier(2, 8000),), 1), v))
    g = gb.open_group(
        c, group_id="g", order_id="o", user_id="L", quantity=1, now=T0, stock_left=None, user_units_held=0, variant=v
    ).group
    assert g.tiers == v.tiers and g.variant == "big" and g.seats[0].unit_price == 7000 and g.capacity == 3


# ------------------------------------------------------------------ GB-2
def test_GB2_join_reserves_member_seat_at_first_tier_price():
    c = campaign(tiers=(Tier(2, 8000), Tier(3, 7000)), leader_discount=300)
    g = opened(c)
    d = join(c, g, "A")
    s = d.group.seat_of("A")
    assert (s.role, s.state, s.unit_price, s.pay_by) == (PriceRole.MEMBER, SeatState.RESERVED, 8000, T0 + 16 * M)
    assert d.group.held_seats == 2 and d.group.paid_seats == 1 and d.group.seats_left == 1


def test_GB2_join_refusals_ER1():
    c = campaign(tiers=(Tier(3, 8000),), new_members_only=True, stock=5, per_user_limit=1)
    pending = gb.open_group(
        c, group_id="g", order_id="o-L", user_id="L", quantity=1, now=T0, stock_left=5, user_units_held=0
    ).group
    assert codes(lambda: join(c, pending, "A")) == ErrorCode.GROUP_NOT_OPEN
    g = gb.pay_seat(c, pending, order_id="o-L", amount=8000, now=T0).group
    assert codes(lambda: join(c, g, "L", user_has_paid_order=True)) == ErrorCode.ALREADY_IN_GROUP
    assert codes(lambda: join(c, g, "A", user_has_paid_order=True)) == ErrorCode.NEW_MEMBERS_ONLY
    assert codes(lambda: join(c, g, "A", qty=2)) == ErrorCode.QUANTITY_LIMIT
    assert codes(lambda: join(c, g, "A", stock_left=0)) == ErrorCode.OUT_OF_STOCK
    assert codes(lambda: join(c, g, "A", user_units_held=1)) == ErrorCode.PER_USER_LIMIT
    g = join(c, g, "A").group
    g = join(c, g, "B").group  # 3 held = capacity (A, B unpaid)
    assert codes(lambda: join(c, g, "C")) == ErrorCode.GROUP_FULL
    assert codes(lambda: join(c, g, "C", now=T0 + 24 * H)) == ErrorCode.GROUP_EXPIRED


def test_GB2_expired_is_refused_even_before_worker_runs():
    c = campaign(tiers=(Tier(3, 8000),))
    g = opened(c)
    assert g.state is GroupState.OPEN
    with pytest.raises(RuleViolation) as e:
        join(c, g, "A", now=g.expires_at)
    assert (e.value.code, e.value.rule) == (ErrorCode.GROUP_EXPIRED, "GB-2")


def test_GB2_joining_formed_or_failed_group_refused():
    c = campaign()
    g = join_pay(c, opened(c), "A").group
    assert g.state is GroupState.FORMED
    assert codes(lambda: join(c, g, "B")) == ErrorCode.GROUP_NOT_OPEN
    failed = gb.advance(c, opened(campaign(tiers=(Tier(3, 8000),))), now=T0 + 24 * H).group
    assert failed.state is GroupState.FAILED
    assert codes(lambda: join(c, failed, "B", now=T0 + 25 * H)) == ErrorCode.GROUP_EXPIRED


def test_GB2_unpaid_reservation_released_after_window_frees_the_seat():
    c = campaign()
    g = join(c, opened(c), "A").group
    assert codes(lambda: join(c, g, "B", now=T0 + 10 * M)) == ErrorCode.GROUP_FULL
    assert gb.next_due_at(g) == T0 + 16 * M
    d = gb.advance(c, g, now=T0 + 16 * M)
    assert d.instructions == (CancelOrder("o-A", "GB-2"), ReturnStock("o-A", 1, "GB-2"))
    assert d.group.seat_for_order("o-A").state is SeatState.RELEASED and d.group.state is GroupState.OPEN
    # join catches up by itself (GB-11) when the worker has not run yet
    d2 = join(c, g, "B", now=T0 + 16 * M)
    assert d2.instructions == d.instructions and d2.group.seat_of("B") is not None


def test_GB2_user_holds_at_most_one_seat_but_may_rejoin_after_release():
    c = campaign(tiers=(Tier(3, 8000),))
    g = gb.advance(c, join(c, opened(c), "A").group, now=T0 + 20 * M).group
    d = gb.join_group(
        c,
        g,
        order_id="o-A2",
        user_id="A",
        quantity=1,
        now=T0 + 21 * M,
        stock_left=None,
        user_units_held=0,
        user_has_paid_order=False,
    )
    assert [s.state for s in d.group.seats if s.user_id == "A"] == [SeatState.RELEASED, SeatState.RESERVED]


# ------------------------------------------------------------------ GB-3 / GB-4 / GB-5
def test_GB4_forms_the_moment_paid_seats_reach_capacity():
    c = campaign(tiers=(Tier(2, 8000), Tier(3, 7000)))
    g = join_pay(c, opened(c), "A").group
    assert g.state is GroupState.OPEN  # 2 paid = min_size, but capacity is 3: waits
    d = join_pay(c, g, "B", now=T0 + 2 * H)
    assert d.group.state is GroupState.FORMED and d.group.formed_at == T0 + 2 * H and d.group.tier_members == 3
    assert of(d.instructions, GroupFormed) == [GroupFormed("g1", 3, 7000, 7000, (), "GB-4")]
    assert of(d.instructions, RefundOwed) == [RefundOwed(o, 1000, "GB-5", False) for o in ("o-L", "o-A", "o-B")]
    assert gb.next_due_at(d.group) is None


def test_GB4_GB5_GB12_forms_after_the_grace_at_reached_tier_and_cancels_reservations():
    """v2: C's reservation is still inside its window at expiry (pay_by 24:05), so the group waits for it
    (GB-12); C does not pay, its seat is released at 24:05 and the group forms then, at the tier reached."""
    c = campaign(tiers=(Tier(2, 9000), Tier(3, 8000), Tier(5, 7000)), leader_discount=500)
    g = join_pay(c, opened(c), "A").group
    g = join_pay(c, g, "B").group
    g = join(c, g, "C", now=T0 + 23 * H + 50 * M).group  # unpaid at expiry
    assert gb.next_due_at(g, c) == T0 + 24 * H + 5 * M  # nothing happens at 24:00 itself
    waiting = gb.advance(c, g, now=T0 + 24 * H + 4 * M)
    assert waiting.instructions == () and gb.in_grace(c, waiting.group, now=T0 + 24 * H + 4 * M) is True
    d = gb.advance(c, g, now=T0 + 30 * H)
    g2 = d.group
    assert g2.state is GroupState.FORMED and g2.formed_at == T0 + 24 * H + 5 * M and g2.tier_members == 3
    assert g2.seat_for_order("o-C").state is SeatState.RELEASED
    assert d.instructions[:2] == (CancelOrder("o-C", "GB-12"), ReturnStock("o-C", 1, "GB-12"))
    assert of(d.instructions, FinalPrice) == [
        FinalPrice("o-L", 7500, "GB-5"),
        FinalPrice("o-A", 8000, "GB-5"),
        FinalPrice("o-B", 8000, "GB-5"),
    ]
    # leader paid 9000-500=8500, final 8000-500=7500; members paid 9000, final 8000
    assert of(d.instructions, RefundOwed) == [
        RefundOwed("o-L", 1000, "GB-5", False),
        RefundOwed("o-A", 1000, "GB-5", False),
        RefundOwed("o-B", 1000, "GB-5", False),
    ]
    assert gb.advance(c, g2, now=T0 + 30 * H).instructions == ()  # GB-11 idempotent


def test_GB3_GB5_leader_price_never_below_zero_and_quantity_multiplies():
    """GB-3: the leader pays the tier price minus leader_discount, never below 0 — 3000 − 2000 = 1000 at join,
    max(0, 1000 − 2000) = 0 at forming; GB-5 refunds are (paid − final) per unit × quantity."""
    c = campaign(tiers=(Tier(2, 3000), Tier(3, 1000)), leader_discount=2000, max_quantity_per_order=3)
    g = opened(c, qty=2)
    assert g.seats[0].unit_price == 1000
    g = join_pay(c, g, "A", qty=3).group
    d = join_pay(c, g, "B")
    assert of(d.instructions, GroupFormed)[0].leader_unit_price == 0
    assert of(d.instructions, RefundOwed) == [
        RefundOwed("o-L", 2000, "GB-5", False),
        RefundOwed("o-A", 6000, "GB-5", False),
        RefundOwed("o-B", 2000, "GB-5", False),
    ]


def test_GB5_no_refund_when_first_tier_is_final():
    c = campaign(tiers=(Tier(2, 8000), Tier(4, 6000)))
    g = join_pay(c, opened(c), "A").group
    d = gb.advance(c, g, now=T0 + 24 * H)
    assert d.group.tier_members == 2 and of(d.instructions, RefundOwed) == []


def test_GB4_fill_at_expiry_forms_at_first_tier():
    c = campaign(tiers=(Tier(5, 8000), Tier(8, 7000)), fill_at_expiry=2)
    g = join_pay(c, opened(c), "A").group
    d = gb.advance(c, g, now=T0 + 24 * H)
    assert d.group.state is GroupState.FORMED and d.group.tier_members == 5
    assert of(d.instructions, RefundOwed) == []
    # one short of M: fails
    d1 = gb.advance(c, opened(c), now=T0 + 24 * H)
    assert d1.group.state is GroupState.FAILED


# ------------------------------------------------------------------ GB-6
def test_GB6_fails_at_expiry_refunds_paid_cancels_unpaid_returns_stock():
    c = campaign(tiers=(Tier(4, 8000),))
    g = join_pay(c, opened(c), "A").group
    g = join(c, g, "B", now=T0 + 23 * H + 59 * M).group
    d = gb.advance(c, g, now=T0 + 24 * H)
    assert d.group.state is GroupState.FAILED and d.group.closed_at == T0 + 24 * H
    assert set(d.instructions) == {
        RefundOwed("o-L", 8000, "GB-6", True),
        ReturnStock("o-L", 1, "GB-6"),
        RefundOwed("o-A", 8000, "GB-6", True),
        ReturnStock("o-A", 1, "GB-6"),
        CancelOrder("o-B", "GB-6"),
        ReturnStock("o-B", 1, "GB-6"),
        GroupFailed("g1", "GB-6"),
    }
    assert gb.advance(c, d.group, now=T0 + 25 * H).instructions == ()


# ------------------------------------------------------------------ GB-7
def test_GB7_lottery_winner_gets_full_refund_instead_of_partial():
    c = campaign(tiers=(Tier(3, 9000), Tier(4, 8000)), lottery_winners=2, lottery_seed="s3cret")
    g = opened(c)
    for u in "ABC":
        g = join_pay(c, g, u).group
    assert g.state is GroupState.FORMED
    from engine.lottery import draw_winners

    expected = draw_winners("s3cret", "g1", ["o-L", "o-A", "o-B", "o-C"], 2)
    assert g.winners == expected and len(set(expected)) == 2
    refunds = {}
    g0 = opened(c)
    for u in "AB":
        g0 = join_pay(c, g0, u).group
    last = join_pay(c, g0, "C")
    assert last.group == g
    for r in of(last.instructions, RefundOwed):
        assert r.order_id not in refunds  # never both a GB-5 partial and a GB-7 full
        refunds[r.order_id] = r
    for o in ["o-L", "o-A", "o-B", "o-C"]:
        if o in expected:
            assert refunds[o] == RefundOwed(o, 9000, "GB-7", True)
        else:
            assert refunds[o] == RefundOwed(o, 1000, "GB-5", False)


def test_GB7_lottery_draws_at_most_the_paid_seats_of_a_fill_group():
    c = campaign(tiers=(Tier(5, 8000),), fill_at_expiry=1, lottery_winners=3, lottery_seed="x")
    d = gb.advance(c, opened(c), now=T0 + 24 * H)
    assert d.group.state is GroupState.FORMED and d.group.winners == ("o-L",)
    assert of(d.instructions, RefundOwed) == [RefundOwed("o-L", 8000, "GB-7", True)]


# ------------------------------------------------------------------ GB-8
def test_GB8_paid_member_leaves_full_refund_seat_freed():
    c = campaign(tiers=(Tier(3, 8000),))
    g = join_pay(c, opened(c), "A").group
    d = gb.leave_group(c, g, user_id="A", now=T0 + H)
    assert d.instructions == (RefundOwed("o-A", 8000, "GB-8", True), ReturnStock("o-A", 1, "GB-8"))
    assert d.group.seat_for_order("o-A").state is SeatState.LEFT and d.group.seats_left == 2


def test_GB8_unpaid_member_leaves_reservation_released():
    c = campaign(tiers=(Tier(3, 8000),))
    d = gb.leave_group(c, join(c, opened(c), "A").group, user_id="A", now=T0 + 2 * M)
    assert d.instructions == (CancelOrder("o-A", "GB-8"), ReturnStock("o-A", 1, "GB-8"))


def test_GB8_leader_leaves_earliest_paid_member_takes_over_prices_unchanged():
    c = campaign(tiers=(Tier(4, 8000),), leader_discount=500)
    g = opened(c)
    g = join(c, g, "A", now=T0 + M).group  # reserved first, pays last
    g = join_pay(c, g, "B", now=T0 + 2 * M).group
    g = gb.pay_seat(c, g, order_id="o-A", amount=8000, now=T0 + 3 * M).group
    d = gb.leave_group(c, g, user_id="L", now=T0 + H)
    assert d.group.leader_user_id == "B"
    assert LeaderChanged("g1", "L", "B", "GB-8") in d.instructions
    assert RefundOwed("o-L", 7500, "GB-8", True) in d.instructions
    assert d.group.seat_of("B").role is PriceRole.MEMBER and d.group.seat_of("B").unit_price == 8000
    # B is leader but still pays the MEMBER final price: GB-5 uses the role fixed at payment
    g = join_pay(c, d.group, "C", now=T0 + 2 * H).group
    d2 = join_pay(c, g, "D", now=T0 + 2 * H)
    assert d2.group.state is GroupState.FORMED
    assert FinalPrice("o-B", 8000, "GB-5") in d2.instructions


def test_GB8_leader_leaves_with_nobody_paid_cancels_group():
    c = campaign(tiers=(Tier(3, 8000),))
    g = join(c, opened(c), "A").group
    d = gb.leave_group(c, g, user_id="L", now=T0 + 2 * M)
    assert d.group.state is GroupState.CANCELLED
    assert d.instructions == (
        RefundOwed("o-L", 8000, "GB-8", True),
        ReturnStock("o-L", 1, "GB-8"),
        CancelOrder("o-A", "GB-8"),
        ReturnStock("o-A", 1, "GB-8"),
        GroupCancelled("g1", "GB-8"),
    )


def test_GB8_pending_leader_cancels_reservation():
    c = campaign()
    g = gb.open_group(
        c, group_id="g", order_id="o", user_id="L", quantity=1, now=T0, stock_left=None, user_units_held=0
    ).group
    d = gb.leave_group(c, g, user_id="L", now=T0 + M)
    assert d.group.state is GroupState.CANCELLED
    assert d.instructions == (CancelOrder("o", "GB-8"), ReturnStock("o", 1, "GB-8"), GroupCancelled("g", "GB-1"))


def test_GB8_refusals():
    c = campaign()
    g = opened(c)
    assert codes(lambda: gb.leave_group(c, g, user_id="X", now=T0)) == ErrorCode.NOT_A_MEMBER
    formed = join_pay(c, g, "A").group
    assert codes(lambda: gb.leave_group(c, formed, user_id="A", now=T0 + H)) == ErrorCode.GROUP_NOT_OPEN
    # past expiry (worker not run): the group has failed, leaving is too late
    assert codes(lambda: gb.leave_group(c, g, user_id="L", now=T0 + 24 * H)) == ErrorCode.GROUP_NOT_OPEN


# ------------------------------------------------------------------ GB-9
def test_GB9_late_payment_after_release_refunded_takes_no_seat():
    c = campaign(tiers=(Tier(3, 8000),))
    g = gb.advance(c, join(c, opened(c), "A").group, now=T0 + 20 * M).group
    d = gb.pay_seat(c, g, order_id="o-A", amount=8000, now=T0 + 21 * M)
    assert d.instructions == (RefundOwed("o-A", 8000, "GB-9", True),)
    assert d.group == g


def test_GB9_payment_after_pay_by_before_worker_releases_then_refunds():
    c = campaign(tiers=(Tier(3, 8000),))
    g = join(c, opened(c), "A").group
    d = gb.pay_seat(c, g, order_id="o-A", amount=8000, now=T0 + 16 * M)
    assert d.instructions == (
        CancelOrder("o-A", "GB-2"),
        ReturnStock("o-A", 1, "GB-2"),
        RefundOwed("o-A", 8000, "GB-9", True),
    )
    assert d.group.seat_for_order("o-A").state is SeatState.RELEASED and d.group.paid_seats == 1


def test_GB9_late_leader_payment_group_cancelled():
    c = campaign()
    g = gb.open_group(
        c, group_id="g", order_id="o", user_id="L", quantity=1, now=T0, stock_left=None, user_units_held=0
    ).group
    d = gb.pay_seat(c, g, order_id="o", amount=8000, now=T0 + 15 * M)
    assert d.group.state is GroupState.CANCELLED
    assert d.instructions[-1] == RefundOwed("o", 8000, "GB-9", True)
    assert not of(d.instructions, OrderPaid)


def test_GB9_payment_into_failed_or_formed_group_refunded():
    c = campaign(tiers=(Tier(3, 8000),))
    g = join(c, opened(c), "A", now=T0 + 23 * H + 50 * M).group
    d = gb.pay_seat(c, g, order_id="o-A", amount=8000, now=T0 + 24 * H)  # at expiry: too late
    assert d.group.state is GroupState.FAILED
    assert d.instructions[-1] == RefundOwed("o-A", 8000, "GB-9", True)
    assert RefundOwed("o-L", 8000, "GB-6", True) in d.instructions
    assert not of(d.instructions, OrderPaid)


def test_GB9_amount_mismatch_and_unknown_order_refused():
    c = campaign()
    g = join(c, opened(c), "A").group
    assert (
        codes(lambda: gb.pay_seat(c, g, order_id="o-A", amount=7999, now=T0 + 2 * M))
        == ErrorCode.PAYMENT_AMOUNT_MISMATCH
    )
    assert codes(lambda: gb.pay_seat(c, g, order_id="nope", amount=8000, now=T0 + 2 * M)) == ErrorCode.NOT_FOUND


def test_GB10_a_further_payment_of_a_paid_seat_changes_no_seat_and_is_owed_back_in_full():
    """The shell deduplicates a repeated confirmation by provider reference; any payment that reaches the
    engine for a seat already PAID is a second charge: the group is unchanged, the money is owed back
    (issue 11 point 8) — whatever its amount."""
    c = campaign(tiers=(Tier(3, 8000),))
    g = opened(c)
    d = gb.pay_seat(c, g, order_id="o-L", amount=8000, now=T0 + H)
    assert d == gb.Decision(g, (gb.RefundOwed("o-L", 8000, "GB-10", True),))
    d = gb.pay_seat(c, g, order_id="o-L", amount=1, now=T0 + H)
    assert d == gb.Decision(g, (gb.RefundOwed("o-L", 1, "GB-10", True),))


# ------------------------------------------------------------------ GB-11
def test_GB11_next_due_at_is_earliest_of_pay_by_and_expiry_and_advance_is_idempotent():
    c = campaign(tiers=(Tier(4, 8000),))
    g = opened(c)
    assert gb.next_due_at(g) == T0 + 24 * H
    g = join(c, g, "A", now=T0 + H).group
    assert gb.next_due_at(g) == T0 + H + 15 * M
    before = gb.advance(c, g, now=T0 + H + 15 * M - timedelta(microseconds=1))
    assert before.instructions == () and before.group == g
    d1 = gb.advance(c, g, now=T0 + 2 * H)
    d2 = gb.advance(c, d1.group, now=T0 + 2 * H)
    assert d1.instructions and d2.instructions == () and d2.group == d1.group
    assert gb.next_due_at(d1.group) == T0 + 24 * H


def test_GB11_late_worker_decides_as_punctual_one():
    c = campaign(tiers=(Tier(2, 8000), Tier(3, 7000)))
    g = join_pay(c, opened(c), "A").group
    assert gb.advance(c, g, now=T0 + 24 * H) == gb.advance(c, g, now=T0 + 100 * H)


def test_final_tier_helper_GB5():
    tiers = (Tier(2, 900), Tier(4, 800), Tier(6, 700))
    assert [gb.final_tier(tiers, n).members for n in range(1, 8)] == [2, 2, 2, 4, 4, 6, 6]


def test_GB11_GB12_a_paid_seat_reserved_late_does_not_hold_the_group_past_expiry():
    """GB-11/GB-12: only *reservations* inside their window at expiry make a group wait. A member who reserved at
    23:50 and paid at 23:55 (its `pay_by`, 24:05, is after expiry) is a paid seat: with 2 paid of 3 and nothing
    to wait for, the group is due at `expires_at` and fails then (engine/groupbuy.py `next_due_at`)."""
    c = campaign(tiers=(Tier(3, 8000),))
    g = opened(c)
    g = join_pay(c, g, "A", now=T0 + 23 * H + 55 * M).group
    assert g.seat_for_order("o-A").pay_by > g.expires_at and g.paid_seats == 2
    assert gb.next_due_at(g, c) == g.expires_at
    assert gb.advance(c, g, now=g.expires_at).group.state is GroupState.FAILED
