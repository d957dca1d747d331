"""Properties of the group-buy v2 rules that are not about one group's life (the state machine covers
GB-7 v2, GB-12 and GB-15): GB-13's order of choice."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

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
        out.append(QuickJoinCandidate(
            group_id=f"g{i}", tiers=tiers, state=draw(st.sampled_from(list(GroupState))),
            held_seats=draw(st.integers(0, members[-1])), expires_at=T0 + draw(st.integers(-5, 60)) * M,
            opened_at=T0 - draw(st.integers(0, 60)) * M, user_holds_seat=draw(st.booleans())))
    return out


@given(candidates())
def test_GB13_quick_join_order_lists_exactly_the_joinable_groups_closest_to_forming_first(cands):
    """GB-13: only OPEN groups before expiry with a free seat and no seat of the customer are tried; they are
    tried by fewest seats missing to the next threshold, then earliest expires_at, then earliest opened."""
    order = gb.quick_join_order(cands, now=T0)
    by_id = {c.group_id: c for c in cands}
    joinable = {c.group_id for c in cands if c.state is GroupState.OPEN and c.expires_at > T0
                and c.held_seats < c.tiers[-1].members and not c.user_holds_seat}
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
    ladder = QuickJoinCandidate("ladder", (Tier(3, 900), Tier(5, 800), Tier(8, 700)), GroupState.OPEN, 4,
                                T0 + 30 * M, T0)
    pair = QuickJoinCandidate("pair", (Tier(2, 900), Tier(3, 800)), GroupState.OPEN, 1, T0 + 20 * M, T0)
    plain = QuickJoinCandidate("plain", (Tier(5, 900),), GroupState.OPEN, 2, T0 + 10 * M, T0)
    assert gb.quick_join_order([ladder, pair, plain], now=T0) == ("pair", "ladder", "plain")
