"""Distribution rules as properties: CM-2..CM-5, RF-1, LV-2..LV-4, LG-2, RP-3."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest
from hypothesis import given, strategies as st

from engine.commission import (Beneficiary, LineBase, ProductTerms, beneficiaries, compute_commissions,
                               reversal_for_refund, standing_amount)
from engine.distribution import BindingMode, DistributionSettings, DistributorStatus
from engine.errors import ErrorCode, RuleViolation
from engine.ledger import Balances, Bucket, approve_payout, reject_payout, request_payout
from engine.levels import Level, Metrics, admin_set_level, evaluate_level
from engine.referral import Binding, BindingSource, current_referrer, decide_binding
from engine.segments import Segment, segment_of

NOW = datetime(2026, 1, 1, tzinfo=timezone.utc)
ACTIVE = DistributorStatus.ACTIVE


@given(base=st.integers(1, 10**9), original=st.integers(0, 10**8), cuts=st.lists(st.integers(1, 10**9), max_size=8))
def test_reversals_never_exceed_the_line_and_sum_to_it_after_full_refund_CM5(base, original, cuts):
    refunded, total = 0, 0
    for c in cuts:
        after = min(base, refunded + c)
        r = reversal_for_refund(original, refunded, after, base)
        assert r >= 0
        total += r
        refunded = after
        assert total <= original
        assert original - total == standing_amount(original, refunded, base)
    total += reversal_for_refund(original, refunded, base, base)
    assert total == original  # exactly 0 left after a full refund


@given(base=st.integers(0, 10**7), r1=st.integers(0, 10_000), r2=st.integers(0, 10_000), cap=st.integers(0, 10_000))
def test_cap_holds_and_cuts_level_2_first_CM4(base, r1, r2, cap):
    s = DistributionSettings(max_total_bp=cap)
    out = {a.level: a.amount for a in compute_commissions(
        s, lines=[LineBase("p", 1, base)], level1=Beneficiary("a", 1, ACTIVE, r1), level2=Beneficiary("b", 2, ACTIVE, r2))}
    limit = base * cap // 10_000
    a1, a2 = base * r1 // 10_000, base * r2 // 10_000
    assert out.get(1, 0) + out.get(2, 0) <= limit
    if a1 + a2 > limit:
        assert out.get(1, 0) == min(a1, limit)  # level 1 is cut only once level 2 is gone
        assert out.get(2, 0) == max(0, limit - a1)


def test_suspended_beneficiary_gets_nothing_and_nothing_moves_CM2():
    out = compute_commissions(DistributionSettings(), lines=[LineBase("p", 1, 10_000)],
                              level1=Beneficiary("a", 1, DistributorStatus.SUSPENDED, 1000),
                              level2=Beneficiary("b", 2, ACTIVE, 500))
    assert [(a.user_id, a.level, a.amount) for a in out] == [("b", 2, 500)]


def test_self_purchase_makes_the_buyer_level_1_CM2():
    s = DistributionSettings(self_purchase=True)
    assert beneficiaries(s, buyer_id="me", buyer_status=ACTIVE, level1_referrer="r", level2_referrer="rr") == ("me", "r")
    assert beneficiaries(s, buyer_id="me", buyer_status=DistributorStatus.NONE, level1_referrer="r",
                         level2_referrer="rr") == ("r", "rr")


def test_product_override_is_fixed_per_unit_and_non_commission_lines_earn_nothing_CM3():
    lines = [LineBase("fixed", 3, 9_000, ProductTerms(level1_amount=200, level2_amount=50)),
             LineBase("none", 1, 5_000, ProductTerms(earns_commission=False)), LineBase("rate", 1, 1_000)]
    out = {a.level: a.amount for a in compute_commissions(
        DistributionSettings(), lines=lines, level1=Beneficiary("a", 1, ACTIVE, 1000),
        level2=Beneficiary("b", 2, ACTIVE, 500))}
    assert out == {1: 3 * 200 + 100, 2: 3 * 50 + 50}


class View:
    def __init__(self):
        self.up: dict[str, str] = {}

    def referrer_of(self, u):
        return self.up.get(u)


@given(st.lists(st.tuples(st.integers(0, 7), st.integers(0, 7)), max_size=40),
       st.sampled_from(list(BindingMode)))
def test_no_binding_ever_creates_a_cycle_RF1(pairs, mode):
    s = DistributionSettings(binding=mode, binding_days=30 if mode == BindingMode.EXPIRING else None)
    view, bindings = View(), {}
    for a, b in pairs:
        u, r = f"u{a}", f"u{b}"
        try:
            new = decide_binding(s, user_id=u, referrer_id=r, now=NOW, current=bindings.get(u), view=view,
                                 referrer_status=ACTIVE, user_has_paid_order=False, source=BindingSource.LINK)
        except RuleViolation as e:
            assert e.code in {ErrorCode.SELF_REFERRAL, ErrorCode.REFERRAL_CYCLE, ErrorCode.ALREADY_BOUND}
            continue
        if new:
            bindings[u], view.up[u] = new, r
        for start in view.up:  # walking up always ends
            seen, cur = set(), start
            while cur is not None:
                assert cur not in seen, "cycle"
                seen.add(cur)
                cur = view.referrer_of(cur)


def test_binding_refusals_and_lapses_RF1():
    s, v = DistributionSettings(), View()
    kw = dict(now=NOW, view=v, user_has_paid_order=False, source=BindingSource.INVITE_CODE)
    with pytest.raises(RuleViolation) as e:
        decide_binding(s, user_id="a", referrer_id="a", current=None, referrer_status=ACTIVE, **kw)
    assert e.value.code == ErrorCode.SELF_REFERRAL
    with pytest.raises(RuleViolation) as e:
        decide_binding(s, user_id="a", referrer_id="b", current=None, referrer_status=DistributorStatus.NONE, **kw)
    assert e.value.code == ErrorCode.NOT_A_DISTRIBUTOR
    with pytest.raises(RuleViolation) as e:
        decide_binding(DistributionSettings(bind_new_users_only=True), user_id="a", referrer_id="b", current=None,
                       referrer_status=ACTIVE, now=NOW, view=v, user_has_paid_order=True, source=BindingSource.LINK)
    assert e.value.code == ErrorCode.NOT_A_NEW_USER
    exp = DistributionSettings(binding=BindingMode.EXPIRING, binding_days=30)
    b = decide_binding(exp, user_id="a", referrer_id="b", current=None, referrer_status=ACTIVE, **kw)
    assert current_referrer(b, NOW + timedelta(days=29)) == "b" and current_referrer(b, NOW + timedelta(days=30)) is None


LEVELS = (Level(0, "L0", 1000, 500), Level(1, "L1", 1200, 600, upgrade_bonus=100, min_direct_referrals=2),
          Level(2, "L2", 1500, 800, upgrade_bonus=300, min_direct_referrals=5, min_team_sales=1000))


@given(st.lists(st.tuples(st.integers(0, 8), st.integers(0, 3000)), max_size=15))
def test_levels_never_go_down_and_bonuses_are_credited_once_LV3_LV4(steps):
    grade, credited = 0, set()
    for refs, sales in steps:
        d = evaluate_level(LEVELS, current_grade=grade, metrics=Metrics(direct_referrals=refs, team_sales=sales),
                           bonuses_credited=frozenset(credited))
        assert d.grade >= grade
        for g, _ in d.bonuses:
            assert g not in credited
            credited.add(g)
        grade = d.grade
    assert credited == {g for g in (1, 2) if g <= grade}


def test_skipping_levels_credits_every_passed_bonus_and_admin_changes_LV2_LV3():
    d = evaluate_level(LEVELS, current_grade=0, metrics=Metrics(direct_referrals=9, team_sales=5000),
                       bonuses_credited=frozenset())
    assert d.grade == 2 and d.bonuses == ((1, 100), (2, 300))
    down = admin_set_level(LEVELS, current_grade=2, new_grade=0, bonuses_credited=frozenset({1, 2}))
    assert down.grade == 0 and down.bonuses == ()
    up = admin_set_level(LEVELS, current_grade=0, new_grade=2, bonuses_credited=frozenset({1, 2}))
    assert up.bonuses == ()


@given(st.integers(-5000, 5000), st.lists(st.integers(-100, 3000), max_size=12), st.integers(0, 500))
def test_payouts_never_exceed_available_and_balances_are_sums_LG2(start, asks, fee_bp):
    s = DistributionSettings(min_payout=100, payout_fee_bp=fee_bp)
    from engine.ledger import EntryKind, Posting

    postings = [Posting(Bucket.AVAILABLE, start, EntryKind.UPGRADE_BONUS)]
    for i, a in enumerate(asks):
        bal = Balances.from_postings(postings)
        try:
            got = request_payout(s, balances=bal, amount=a, status=ACTIVE)
        except RuleViolation as e:
            assert e.code in {ErrorCode.INVALID_INPUT, ErrorCode.PAYOUT_BELOW_MINIMUM, ErrorCode.INSUFFICIENT_BALANCE}
            continue
        assert bal.available >= a >= 100
        postings += list(got) + list(approve_payout(s, a) if i % 2 else reject_payout(a))
        after = Balances.from_postings(postings)
        assert after.in_payout == 0 and after.fees == sum(
            p.amount for p in postings if p.bucket == Bucket.FEES)
    final = Balances.from_postings(postings)
    assert final.available + final.paid + final.fees == start


def test_suspended_distributor_may_not_request_payouts_DS1():
    with pytest.raises(RuleViolation) as e:
        request_payout(DistributionSettings(), balances=Balances(available=10**6), amount=1000,
                       status=DistributorStatus.SUSPENDED)
    assert e.value.code == ErrorCode.DISTRIBUTOR_SUSPENDED


def test_segments_with_the_90_day_boundary_RP3():
    assert segment_of([], NOW) == Segment.NEW
    assert segment_of([NOW], NOW) == Segment.FIRST_ORDER
    assert segment_of([NOW] * 3, NOW) == Segment.REPEAT
    assert segment_of([NOW] * 4, NOW) == Segment.LOYAL
    assert segment_of([NOW - timedelta(days=90)] * 5, NOW) == Segment.DORMANT
    assert segment_of([NOW - timedelta(days=89)], NOW) == Segment.FIRST_ORDER
