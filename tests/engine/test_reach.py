"""RP-5 (leaderboard ranking, downline member figures) and RP-6 (the funnel's first and repeat buyers, the
visit rate bound) in the engine."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

from hypothesis import given, settings as hsettings
from hypothesis import strategies as st

from engine.funnel import Bucket, PaidOrder, first_buyers, take
from engine.leaderboard import MemberOrder, RankBy, Standing, member_figures, rank

T0 = datetime(2025, 6, 1, tzinfo=timezone.utc)
standing = st.builds(
    Standing,
    user_id=st.sampled_from([f"d{i}" for i in range(8)]),
    commission_earned=st.integers(-500, 5000),
    team_sales=st.integers(0, 9),
    new_direct_referrals=st.integers(0, 3),
)


@given(st.lists(standing, max_size=12, unique_by=lambda s: s.user_id), st.sampled_from(list(RankBy)))
def test_RP5_leaderboard_rank_is_competition_ranking_on_the_chosen_figure(rows, by):
    """RP-5: best first by the chosen figure; each rank is 1 + the rows with a strictly greater value (ties
    share it); every row appears once; ties are broken by the other figures, then user id (total order)."""
    out = rank(rows, by)
    assert sorted(r.user_id for _, r in out) == sorted(r.user_id for r in rows)
    values = [r.value(by) for _, r in out]
    assert values == sorted(values, reverse=True)
    for k, r in out:
        assert k == 1 + sum(1 for x in rows if x.value(by) > r.value(by))
    assert rank(list(reversed(rows)), by) == out


order = st.builds(
    MemberOrder,
    paid_at=st.integers(0, 30).map(lambda d: T0 + timedelta(days=d)),
    net_base=st.integers(0, 10_000),
    earns_viewer=st.booleans(),
    refunded_in_full=st.booleans(),
)


@given(st.lists(order, max_size=10), st.integers(0, 30), st.integers(0, 30))
def test_RP5_member_figures_count_the_period_and_what_the_viewer_earns_on(orders, a, b):
    """RP-5: paid orders in [from, to) (fully refunded ones do not count, RP-3), and the base of those whose
    snapshot names the viewer; splitting the period in two adds up."""
    lo, hi = T0 + timedelta(days=min(a, b)), T0 + timedelta(days=max(a, b))
    mid = lo + (hi - lo) / 2
    n, base = member_figures(orders, lo, hi)
    n1, b1 = member_figures(orders, lo, mid)
    n2, b2 = member_figures(orders, mid, hi)
    assert (n, base) == (n1 + n2, b1 + b2)
    assert n == sum(1 for o in orders if lo <= o.paid_at < hi and not o.refunded_in_full)
    assert base <= sum(o.net_base for o in orders if lo <= o.paid_at < hi)


paid = st.builds(
    PaidOrder,
    paid_at=st.integers(0, 30).map(lambda d: T0 + timedelta(days=d)),
    attributed=st.booleans(),
    refunded_in_full=st.booleans(),
)


@given(
    st.dictionaries(st.sampled_from("abcdefgh"), st.lists(paid, max_size=5), max_size=8),
    st.integers(0, 30),
    st.integers(0, 30),
)
@hsettings(max_examples=300)
def test_RP6_first_buyers_each_once_repeat_a_subset_and_periods_partition(buyers, a, b):
    """RP-6: a buyer is a first paid order at most once over any partition of time (their first paid order
    falls in exactly one period); repeat buyers are a subset of them; refunded-in-full orders never count."""
    lo, hi = T0 + timedelta(days=min(a, b)), T0 + timedelta(days=max(a, b))
    mid = lo + (hi - lo) / 2
    first, repeat = first_buyers(buyers, lo, hi)
    assert 0 <= repeat <= first <= len(buyers)
    f1, _ = first_buyers(buyers, lo, mid)
    f2, _ = first_buyers(buyers, mid, hi)
    assert f1 + f2 == first
    stripped = {u: [o for o in os if not o.refunded_in_full] for u, os in buyers.items()}
    assert first_buyers(stripped, lo, hi) == (first, repeat)


@given(
    st.lists(st.integers(0, 5000), min_size=1, max_size=200),
    st.integers(1, 120),
    st.integers(1, 20),
    st.integers(1, 600),
)
@hsettings(max_examples=200)
def test_RP6_visit_rate_bound_holds_over_every_window(gaps_ms, per_minute, burst, window_s):
    """RP-6 hardening: whatever the arrival times, the visits allowed in any window of W seconds are at most
    burst + per_minute × W / 60, and a visit after a long quiet spell is allowed."""
    now, bucket, allowed = T0, None, []
    for g in gaps_ms:
        now = now + timedelta(milliseconds=g)
        ok, bucket = take(bucket, now, per_minute=per_minute, burst=burst)
        if ok:
            allowed.append(now)
    w = timedelta(seconds=window_s)
    for i, start in enumerate(allowed):
        inside = sum(1 for t in allowed[i:] if t < start + w)
        assert inside <= burst + per_minute * window_s // 60 + 1
    ok, _ = take(bucket, now + timedelta(hours=1), per_minute=per_minute, burst=burst)
    assert ok
    assert take(Bucket(0, now), now, per_minute=per_minute, burst=burst)[0] is False
