"""Properties of the group-buy v2 rules that are not about one group's life (the state machine covers
GB-7 v2, GB-12 and GB-15): GB-13's order of choice."""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime, timedelta, timezone

import pytest
from hypothesis import given
from hypothesis import strategies as st

from engine import groupbuy as gb
from engine.groupbuy import GroupState, QuickJoinCandidate, Tier

T0 = datetime(2025, 3, 1, tzinfo=timezone.utc)
M = timedelta(minutes=1)


@st.composite
def candidates(draw):
    out = []
    for i in range(draw(st.integers(0, 12))):
        members = sorted(draw(st.sets(st.integers(2, 8), min_size=1, max_size=3)))
        tiers = tuple(Tier(m, 1000 - 10 * j) for j, m in enumerate(members))
        out.append(
            QuickJoinCandidate(
                group_id=f"g{i}",
                tiers=tiers,
                state=draw(st.sampled_from(list(GroupState))),
                held_seats=draw(st.integers(0, members[-1])),
                expires_at=T0 + draw(st.integers(-5, 60)) * M,
                opened_at=T0 - draw(st.integers(0, 60)) * M,
                user_holds_seat=draw(st.booleans()),
            )
        )
    return out


@given(candidates())
def test_GB13_quick_join_order_lists_exactly_the_joinable_groups_closest_to_forming_first(cands):
    """GB-13: only OPEN groups before expiry with a free seat and no seat of the customer are tried; they are
    tried by fewest seats missing to the next threshold, then earliest expires_at, then earliest opened."""
    order = gb.quick_join_order(cands, now=T0)
    by_id = {c.group_id: c for c in cands}
    joinable = {
        c.group_id
        for c in cands
        if c.state is GroupState.OPEN
        and c.expires_at > T0
        and c.held_seats < c.tiers[-1].members
        and not c.user_holds_seat
    }
    assert set(order) == joinable and len(order) == len(joinable)

    def key(gid):
        c = by_id[gid]
        nxt = min(t.members for t in c.tiers if t.members > c.held_seats)  # the next threshold, independently
        return (nxt - c.held_seats, c.expires_at, c.opened_at)

    keys = [key(g) for g in order]
    assert keys == sorted(keys)
    assert all(1 <= k[0] for k in keys)


def test_GB13_a_ladder_group_counts_to_its_next_tier_not_to_capacity():
    """GB-13: 4 of a (3, 5, 8) ladder held → 1 seat to tier 5, ahead of a (2, 3) group with 1 held (1 to 2)
    only by expiry; ahead of a plain 5-group with 2 held (3 missing)."""
    ladder = QuickJoinCandidate(
        "ladder", (Tier(3, 900), Tier(5, 800), Tier(8, 700)), GroupState.OPEN, 4, T0 + 30 * M, T0
    )
    pair = QuickJoinCandidate("pair", (Tier(2, 900), Tier(3, 800)), GroupState.OPEN, 1, T0 + 20 * M, T0)
    plain = QuickJoinCandidate("plain", (Tier(5, 900),), GroupState.OPEN, 2, T0 + 10 * M, T0)
    assert gb.quick_join_order([ladder, pair, plain], now=T0) == ("pair", "ladder", "plain")


# ---------------------------------------------------------------- GB-14
def _campaign(**kw) -> gb.Campaign:
    base = dict(
        id="c",
        list_price=10_000,
        tiers=(Tier(3, 8_000),),
        duration=60 * M,
        payment_window=15 * M,
        starts_at=T0,
        ends_at=T0 + 24 * 60 * M,
    )
    base.update(kw)
    return gb.Campaign(**base)


def _group(c, gid: str, leader: str, members: list[tuple[str, bool]], now=T0) -> gb.Group:
    d = gb.open_group(
        c,
        group_id=gid,
        order_id=f"{gid}-{leader}",
        user_id=leader,
        quantity=1,
        now=now,
        stock_left=None,
        user_units_held=0,
    )
    g = gb.pay_seat(c, d.group, order_id=f"{gid}-{leader}", amount=d.group.seats[0].amount, now=now).group
    for u, pays in members:
        g = gb.join_group(
            c,
            g,
            order_id=f"{gid}-{u}",
            user_id=u,
            quantity=1,
            now=now,
            stock_left=None,
            user_units_held=0,
            user_has_paid_order=False,
        ).group
        if pays:
            g = gb.pay_seat(c, g, order_id=f"{gid}-{u}", amount=g.seat_for_order(f"{gid}-{u}").amount, now=now).group
    return g


@given(st.integers(0, 2), st.booleans(), st.sampled_from([8_000, 7_000]))
def test_GB14_a_late_payment_is_either_reseated_at_its_price_or_refunded_never_both(filled, paid, price):
    """GB-14: the payment GB-9 would refund takes a seat in another open group at the same role and unit price
    when that group can take the buyer (GB-2), and is then owed nothing back; otherwise nothing is decided
    and the shell refunds it (GB-9). Either way the money is accounted for exactly once."""
    c = _campaign()
    old = _group(c, "old", "L", [("b", False)])
    late = gb.pay_seat(c, old, order_id="old-b", amount=8_000, now=T0 + 16 * M)  # pay_by passed
    refund = gb.late_payment(late, "old-b")
    assert refund is not None and refund.amount == 8_000
    stripped = gb.without_late_refund(late, "old-b")
    assert gb.late_payment(stripped, "old-b") is None
    assert not any(isinstance(i, gb.CancelOrder) and i.order_id == "old-b" for i in stripped.instructions)
    target_c = _campaign(tiers=(Tier(3, price),))
    target = _group(target_c, "t", "T", [(f"m{i}", paid) for i in range(filled)])
    seat = old.seat_for_order("old-b")
    try:
        d = gb.reseat(
            target_c,
            target,
            seat=seat,
            amount=8_000,
            now=T0 + 16 * M,
            stock_left=None,
            user_units_held=0,
            user_has_paid_order=False,
        )
    except gb.RuleViolation as e:
        assert e.code in {gb.ErrorCode.GROUP_FULL, gb.ErrorCode.GROUP_NOT_OPEN}
        assert price != 8_000 or target.held_seats == target.capacity
        return
    assert price == 8_000
    new = d.group.seat_for_order("old-b")
    assert new.state is gb.SeatState.PAID and new.unit_price == seat.unit_price and new.role is gb.PriceRole.MEMBER
    assert d.group.held_seats <= d.group.capacity
    assert [i for i in d.instructions if isinstance(i, gb.OrderPaid)] == [
        gb.OrderPaid("old-b", gb.PriceRole.MEMBER, "GB-14")
    ]
    assert not any(isinstance(i, gb.RefundOwed) and i.order_id == "old-b" and i.full for i in d.instructions)


def test_GB14_a_leaders_late_payment_is_not_reseated():
    c = _campaign()
    d = gb.open_group(
        c, group_id="p", order_id="p-L", user_id="L", quantity=1, now=T0, stock_left=None, user_units_held=0
    )
    target = _group(c, "t", "T", [])
    import pytest

    with pytest.raises(gb.RuleViolation) as e:
        gb.reseat(
            c,
            target,
            seat=d.group.seats[0],
            amount=d.group.seats[0].amount,
            now=T0 + 16 * M,
            stock_left=None,
            user_units_held=0,
            user_has_paid_order=False,
        )
    assert e.value.code is gb.ErrorCode.GROUP_NOT_OPEN and e.value.rule == "GB-14"


# ---------------------------------------------------------------- GB-12 grace, edges
def _late_join(c, g, user: str, *, pays: bool, at=T0 + 50 * M) -> gb.Group:
    """`user` joins `g` (opened at T0, expiring at T0 + 60 min) at `at`, and pays at once if `pays`."""
    oid = f"{g.id}-{user}"
    g = gb.join_group(
        c,
        g,
        order_id=oid,
        user_id=user,
        quantity=1,
        now=at,
        stock_left=None,
        user_units_held=0,
        user_has_paid_order=False,
    ).group
    return gb.pay_seat(c, g, order_id=oid, amount=g.seat_for_order(oid).amount, now=at).group if pays else g


def test_GB12_the_grace_lasts_until_the_last_waiting_reservation_and_only_while_the_group_is_open():
    """GB-12: 1 paid of a 2-group, a reservation made 10 min before expiry: the group waits until its pay_by.
    A group that is no longer OPEN waits for nothing, whatever its seats say."""
    c = _campaign(tiers=(Tier(2, 8_000),))
    g = _late_join(c, _group(c, "g", "L", []), "b", pays=False)
    assert gb.grace_until(c, g) == T0 + 65 * M
    assert gb.grace_until(c, replace(g, state=GroupState.FORMED)) is None
    assert gb.grace_until(c, _late_join(c, _group(c, "g", "L", []), "b", pays=False, at=T0 + 45 * M)) is None, (
        "a reservation due exactly at expiry is decided at expiry"
    )
    three = _campaign()
    assert gb.grace_until(three, _late_join(three, _group(three, "g", "L", []), "b", pays=False)) is None, (
        "1 paid + 1 waiting cannot reach 3: nothing to wait for"
    )


def test_GB12_a_paid_seat_is_not_waited_for_even_when_its_payment_window_ends_after_expiry():
    """GB-12 waits for reservations only: 2 paid of a 3-group (the second paid 10 min before expiry, so its
    pay_by is past expiry) and nothing reserved decides at expiry."""
    c = _campaign()
    g = _late_join(c, _group(c, "g", "L", []), "b", pays=True)
    assert g.paid_seats == 2 and g.seat_for_order("g-b").pay_by > g.expires_at
    assert gb.grace_until(c, g) is None


def test_GB12_a_group_whose_grace_ends_short_fails_under_GB12_not_GB6():
    """GB-12: the grace's end is its own decision point; a group still short there fails citing GB-12."""
    c = _campaign()
    g = _late_join(c, _late_join(c, _group(c, "g", "L", []), "b", pays=True), "c", pays=False)
    assert gb.grace_until(c, g) == T0 + 65 * M
    d = gb.advance(c, g, now=T0 + 65 * M)
    assert d.group.state is GroupState.FAILED
    assert [i for i in d.instructions if isinstance(i, gb.GroupFailed)] == [gb.GroupFailed("g", "GB-12")]


def test_GB7_a_groups_lottery_seed_never_shows_in_its_repr():
    """GB-7 v2: the seed is secret until the draw; a log line or an assertion message holding the group must not
    reveal it."""
    seed = "ab" * 32
    d = gb.open_group(
        _campaign(lottery_winners=1, lottery_seed="cd" * 32),
        group_id="g",
        order_id="o",
        user_id="L",
        quantity=1,
        now=T0,
        stock_left=None,
        user_units_held=0,
        lottery_seed=seed,
    )
    assert d.group.lottery_seed == seed and seed not in repr(d.group)


def test_GB15_CM3_a_campaign_without_nudge_fields_takes_the_rules_defaults():
    """GB-15: `almost_full_at` defaults to 1 seat missing, `expiring_soon_before` to 1 hour. CM-3: a campaign
    pays commission unless it switches it off (`commission_enabled`)."""
    c = _campaign()
    assert c.almost_full_at == 1 and c.expiring_soon_before == timedelta(hours=1)
    assert c.commission_enabled is True


def test_GB13_GB14_a_naive_now_is_refused_before_anything_else():
    """ER-1: an instant without a time zone is invalid input, even where another refusal would also apply."""
    naive = datetime(2025, 3, 1, 0, 30)
    cand = QuickJoinCandidate("g", (Tier(2, 900),), GroupState.OPEN, 1, T0 + 30 * M, T0)
    with pytest.raises(gb.RuleViolation) as e:
        gb.quick_join_order([cand], now=naive)
    assert e.value.code is gb.ErrorCode.INVALID_INPUT
    c = _campaign()
    pending = gb.open_group(
        c, group_id="p", order_id="p-L", user_id="L", quantity=1, now=T0, stock_left=None, user_units_held=0
    )
    with pytest.raises(gb.RuleViolation) as e:
        gb.reseat(
            c,
            _group(c, "t", "T", []),
            seat=pending.group.seats[0],  # a leader's: GROUP_NOT_OPEN, were `now` valid
            amount=pending.group.seats[0].amount,
            now=naive,
            stock_left=None,
            user_units_held=0,
            user_has_paid_order=False,
        )
    assert e.value.code is gb.ErrorCode.INVALID_INPUT
