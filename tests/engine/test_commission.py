"""CM-1..CM-6 and the group leader's reward (团长佣金)."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest
from hypothesis import given, settings as hsettings
from hypothesis import strategies as st

from engine import commission as cm
from engine.commission import Beneficiary, CommissionAmount, CommissionState, LineBase, ProductTerms
from engine.distribution import DistributionSettings, DistributorStatus
from engine.errors import ErrorCode, RuleViolation
from engine.ledger import Balances, Bucket, EntryKind, Posting

T0 = datetime(2025, 6, 1, tzinfo=timezone.utc)
D = timedelta(days=1)
ACTIVE, SUSPENDED = DistributorStatus.ACTIVE, DistributorStatus.SUSPENDED


def ben(user: str, level: int, rate: int, status: DistributorStatus = ACTIVE) -> Beneficiary:
    return Beneficiary(user_id=user, level=level, status=status, rate_bp=rate)


def line(base: int, qty: int = 1, ref: str = "p", **terms) -> LineBase:
    return LineBase(product_ref=ref, quantity=qty, base=base, terms=ProductTerms(**terms))


def amounts(result) -> dict[str, int]:
    return {a.user_id: a.amount for a in result}


# ---------------------------------------------------------------- CM-2 beneficiaries
def test_CM2_beneficiaries_plain_chain():
    s = DistributionSettings()
    assert cm.beneficiaries(s, buyer_id="u", buyer_status=ACTIVE, level1_referrer="a", level2_referrer="b") == (
        "a",
        "b",
    )


def test_CM2_self_purchase_buyer_is_level1_and_their_referrer_level2():
    s = DistributionSettings(self_purchase=True)
    assert cm.beneficiaries(s, buyer_id="u", buyer_status=ACTIVE, level1_referrer="a", level2_referrer="b") == (
        "u",
        "a",
    )
    assert cm.beneficiaries(s, buyer_id="u", buyer_status=ACTIVE, level1_referrer=None, level2_referrer=None) == (
        "u",
        None,
    )


@pytest.mark.parametrize("status", [DistributorStatus.NONE, DistributorStatus.APPLIED, SUSPENDED])
def test_CM2_self_purchase_needs_buyer_in_good_standing(status):
    s = DistributionSettings(self_purchase=True)
    assert cm.beneficiaries(s, buyer_id="u", buyer_status=status, level1_referrer="a", level2_referrer="b") == (
        "a",
        "b",
    )


def test_CM2_suspended_beneficiary_gets_nothing_and_nothing_moves():
    s = DistributionSettings(max_total_bp=5000)
    lines = [line(10_000)]
    both = amounts(cm.compute_commissions(s, lines=lines, level1=ben("a", 1, 3000), level2=ben("b", 2, 2500)))
    assert both == {"a": 3000, "b": 2000}  # cap 5000 cuts b by 500
    l1_susp = amounts(
        cm.compute_commissions(s, lines=lines, level1=ben("a", 1, 3000, SUSPENDED), level2=ben("b", 2, 2500))
    )
    assert l1_susp == {"b": 2000}  # b is not promoted and gains no cap room
    l2_susp = amounts(
        cm.compute_commissions(s, lines=lines, level1=ben("a", 1, 3000), level2=ben("b", 2, 2500, SUSPENDED))
    )
    assert l2_susp == {"a": 3000}
    for st_ in (DistributorStatus.NONE, DistributorStatus.APPLIED):
        assert cm.compute_commissions(s, lines=lines, level1=ben("a", 1, 3000, st_), level2=None) == ()


# ---------------------------------------------------------------- CM-3 / CM-4 amounts
def test_CM4_amount_is_floor_of_base_times_rate():
    s = DistributionSettings()
    r = cm.compute_commissions(s, lines=[line(9_999)], level1=ben("a", 1, 1000), level2=ben("b", 2, 500))
    assert r == (CommissionAmount("a", 1, 999), CommissionAmount("b", 2, 499))


def test_CM4_one_floor_per_beneficiary_over_rate_lines():
    s = DistributionSettings()
    r = cm.compute_commissions(s, lines=[line(999, ref="x"), line(999, ref="y")], level1=ben("a", 1, 1000), level2=None)
    assert amounts(r) == {"a": 199}  # floor(1998 × 0.1), not 99 + 99


def test_CM4_cap_cuts_level2_first_then_level1():
    s = DistributionSettings(max_total_bp=4000)
    r = cm.compute_commissions(s, lines=[line(10_000)], level1=ben("a", 1, 3000), level2=ben("b", 2, 2000))
    assert amounts(r) == {"a": 3000, "b": 1000}
    r = cm.compute_commissions(s, lines=[line(10_000)], level1=ben("a", 1, 4500), level2=ben("b", 2, 2000))
    assert amounts(r) == {"a": 4000}  # b cut to 0 (omitted), then a cut by the remaining 500


def test_CM3_product_overrides_apply_per_level_whatever_the_rates():
    s = DistributionSettings()
    lines = [
        line(9_000, 2, "tea"),
        line(4_500, 3, "cup", level1_amount=300),
        line(1_000, 1, "gift", earns_commission=False),
    ]
    r = cm.compute_commissions(s, lines=lines, level1=ben("a", 1, 1000), level2=ben("b", 2, 500))
    # a: floor(9000 × 10%) + 300 × 3 = 900 + 900; b: cup has no level-2 override → floor(13500 × 5%) = 675
    assert amounts(r) == {"a": 1800, "b": 675}
    same = cm.compute_commissions(s, lines=lines, level1=ben("a", 1, 3000), level2=None)
    assert amounts(same)["a"] == 2700 + 900  # the fixed part is independent of the rate


def test_CM3_fixed_zero_means_no_commission_for_that_level():
    s = DistributionSettings()
    r = cm.compute_commissions(
        s, lines=[line(5_000, 1, level1_amount=0, level2_amount=0)], level1=ben("a", 1, 1000), level2=ben("b", 2, 500)
    )
    assert r == ()


def test_CM3_fixed_amounts_are_capped_too():
    s = DistributionSettings(max_total_bp=5000)
    r = cm.compute_commissions(
        s, lines=[line(1_000, 2, level1_amount=400, level2_amount=300)], level1=ben("a", 1, 0), level2=ben("b", 2, 0)
    )
    assert amounts(r) == {"a": 500}  # 800 + 600 > floor(1000 × 50%) = 500: b 0, a 500


def test_CM3_campaign_switch_off_and_non_commission_lines():
    s = DistributionSettings()
    assert cm.compute_commissions(s, lines=[line(10_000)], level1=ben("a", 1, 1000), level2=None, enabled=False) == ()
    assert (
        cm.compute_commissions(s, lines=[line(10_000, earns_commission=False)], level1=ben("a", 1, 1000), level2=None)
        == ()
    )
    assert cm.order_commission_base([line(100), line(50, earns_commission=False), line(7, level1_amount=1)]) == 107


@st.composite
def orders(draw):
    lines = []
    for i in range(draw(st.integers(0, 4))):
        fixed1 = draw(st.one_of(st.none(), st.integers(0, 3_000)))
        fixed2 = draw(st.one_of(st.none(), st.integers(0, 3_000)))
        lines.append(
            LineBase(
                f"p{i}",
                draw(st.integers(1, 5)),
                draw(st.integers(0, 50_000)),
                ProductTerms(draw(st.booleans()), fixed1, fixed2),
            )
        )
    return lines


def expected_amounts(lines, r1: int, r2: int, cap: int) -> tuple[int, int]:
    """CM-3/CM-4 written out here, independently of engine/commission.py: per beneficiary one floor over
    the bases of the lines paid at the rate plus fixed × quantity where the product fixes that level;
    lines that earn no commission count for nothing; over floor(commissionable base × cap / 10000) the
    excess is cut from level 2 first, then level 1."""

    def raw(level: int, rate: int) -> int:
        at_rate = fixed = 0
        for ln in lines:
            if not ln.terms.earns_commission:
                continue
            amount = ln.terms.level1_amount if level == 1 else ln.terms.level2_amount
            if amount is None:
                at_rate += ln.base
            else:
                fixed += amount * ln.quantity
        return at_rate * rate // 10_000 + fixed

    a1, a2 = raw(1, r1), raw(2, r2)
    limit = sum(ln.base for ln in lines if ln.terms.earns_commission) * cap // 10_000
    excess = max(0, a1 + a2 - limit)
    cut2 = min(a2, excess)
    return a1 - (excess - cut2), a2 - cut2


@hsettings(max_examples=300, deadline=None)
@given(
    lines=orders(),
    r1=st.integers(0, 10_000),
    r2=st.integers(0, 10_000),
    cap=st.integers(0, 10_000),
    s1=st.sampled_from(list(DistributorStatus)),
    s2=st.sampled_from(list(DistributorStatus)),
)
def test_CM4_property_cap_holds_and_cuts_level2_first(lines, r1, r2, cap, s1, s2):
    """CM-4: under the cap every beneficiary gets exactly floor(base × rate / 10000) (+ fixed × qty); over it
    the total is exactly the cap, level 2 cut first and level 1 only once level 2 is at 0 — all compared with
    amounts computed in the test. CM-2: an ineligible beneficiary changes nobody else's amount."""
    s = DistributionSettings(max_total_bp=cap)
    got = amounts(cm.compute_commissions(s, lines=lines, level1=ben("a", 1, r1, s1), level2=ben("b", 2, r2, s2)))
    full = amounts(cm.compute_commissions(s, lines=lines, level1=ben("a", 1, r1), level2=ben("b", 2, r2)))
    e1, e2 = expected_amounts(lines, r1, r2, cap)
    assert full == {u: v for u, v in (("a", e1), ("b", e2)) if v > 0}
    assert sum(full.values()) <= sum(ln.base for ln in lines if ln.terms.earns_commission) * cap // 10_000
    assert got == {u: v for u, v in full.items() if (s1 if u == "a" else s2) == ACTIVE}


@given(base=st.integers(0, 10**7), r1=st.integers(0, 10_000), r2=st.integers(0, 10_000), cap=st.integers(0, 10_000))
def test_CM4_property_one_line_exact_amounts_under_and_over_the_cap(base, r1, r2, cap):
    """CM-4 on one plain line, with large bases: under the cap each amount is exactly floor(base × rate /
    10000); over it level 1 keeps min(a1, cap) and level 2 gets what is left."""
    out = amounts(
        cm.compute_commissions(
            DistributionSettings(max_total_bp=cap), lines=[line(base)], level1=ben("a", 1, r1), level2=ben("b", 2, r2)
        )
    )
    limit = base * cap // 10_000
    a1, a2 = base * r1 // 10_000, base * r2 // 10_000
    if a1 + a2 <= limit:
        want = (a1, a2)
    else:
        want = (min(a1, limit), max(0, limit - a1))
    assert (out.get("a", 0), out.get("b", 0)) == want
    assert sum(out.values()) == min(a1 + a2, limit)


# ---------------------------------------------------------------- CM-5 reversals
def test_CM5_standing_examples():
    assert cm.standing_amount(1000, 0, 10_000) == 1000
    assert cm.standing_amount(1000, 3333, 10_000) == 1000 - 333
    assert cm.standing_amount(1000, 10_000, 10_000) == 0
    assert cm.standing_amount(1000, 12_000, 10_000) == 0
    assert cm.standing_amount(1000, 5000, 0) == 0
    assert cm.standing_amount(1000, -1, 0) == 0  # no base: 0, even for a (meaningless) negative refund
    assert cm.reversal_for_refund(1000, 5000, 5000, 10_000) == 0
    assert cm.reversal_for_refund(1000, 7000, 5000, 10_000) == 0  # out of order / replay reverses nothing


@hsettings(max_examples=400, deadline=None)
@given(c=st.integers(0, 1_000_000), b=st.integers(1, 1_000_000), data=st.data())
def test_CM5_property_reversals_sum_to_at_most_the_line_and_exactly_after_full_refund(c, b, data):
    """CM-5: for any order and any sequence of partial refunds, each reversal ≥ 0, the running sum never
    exceeds C, equals C − standing, and reaches exactly C once refunds total B."""
    parts = data.draw(st.lists(st.integers(1, b), max_size=8))
    refunded, total = 0, 0
    c1 = max(c, 1)  # a posted line needs a positive amount
    line_, _ = cm.post_line(id="l", order_id="o", beneficiary_id="a", level=1, amount=c1, paid_base=b)

    def standing(amount: int, r: int) -> int:  # CM-5 written out here: C − floor(C × R / B)
        return amount - amount * r // b

    for p in parts + [b]:  # finish with a full refund of what is left
        after = min(b, refunded + p)
        r = cm.reversal_for_refund(c, refunded, after, b)
        assert r == standing(c, refunded) - standing(c, after) >= 0
        total += r
        assert total <= c and total == c - standing(c, after) == c * after // b
        assert cm.standing_amount(c, after, b) == standing(c, after)
        line_, postings = cm.reverse_line(line_, after, b)
        assert line_.standing == standing(c1, after)
        assert sum(p.amount for p in postings) == -(standing(c1, refunded) - standing(c1, after))
        refunded = after
    assert total == c and line_.standing == 0


# ---------------------------------------------------------------- CM-6 life cycle
def post(amount=1000, releasable=True):
    return cm.post_line(
        id="l1", order_id="o1", beneficiary_id="a", level=1, amount=amount, releasable=releasable, paid_base=10_000
    )


def test_CM6_post_freeze_release_with_postings():
    l, p = post()
    assert (l.state, l.standing, p) == (
        CommissionState.PENDING,
        1000,
        (Posting(Bucket.PENDING, 1000, EntryKind.COMMISSION_POSTED),),
    )
    l, p2 = cm.freeze_line(l, T0, 7)
    assert (l.state, l.available_at) == (CommissionState.FROZEN, T0 + 7 * D)
    assert p2 == (
        Posting(Bucket.PENDING, -1000, EntryKind.COMMISSION_FROZEN),
        Posting(Bucket.FROZEN, 1000, EntryKind.COMMISSION_FROZEN),
    )
    same, none = cm.make_available(l, T0 + 7 * D - timedelta(microseconds=1))
    assert same == l and none == ()
    l, p3 = cm.make_available(l, T0 + 7 * D)
    assert l.state == CommissionState.AVAILABLE
    assert Balances.from_postings(p + p2 + p3) == Balances(available=1000)
    assert cm.freeze_line(l, T0, 7) == (l, ())  # a retried completion changes nothing


def test_CM6_group_line_not_releasable_until_formed():
    l, _ = post(releasable=False)
    assert cm.freeze_line(l, T0, 7) == (l, ())
    l = cm.mark_releasable(l)
    l, p = cm.freeze_line(l, T0, 7)
    assert l.state == CommissionState.FROZEN and len(p) == 2


def test_CM6_void_when_group_fails():
    l, p = post(releasable=False)
    l, p2 = cm.void_line(l)
    assert (l.state, l.standing) == (CommissionState.VOID, 0)
    assert Balances.from_postings(p + p2) == Balances()
    assert cm.void_line(l) == (l, ())
    assert cm.reverse_line(l, 10_000, 10_000) == (l, ())  # the full refund after failing reverses nothing more
    frozen, _ = cm.freeze_line(post()[0], T0, 7)
    with pytest.raises(RuleViolation) as e:
        cm.void_line(frozen)
    assert e.value.code == ErrorCode.INVALID_STATE


@pytest.mark.parametrize("stage,bucket", [(0, Bucket.PENDING), (1, Bucket.FROZEN), (2, Bucket.AVAILABLE)])
def test_CM5_CM6_reversal_posts_against_the_bucket_the_line_sits_in(stage, bucket):
    l, _ = post()
    if stage >= 1:
        l, _ = cm.freeze_line(l, T0, 7)
    if stage >= 2:
        l, _ = cm.make_available(l, T0 + 7 * D)
    l2, p = cm.reverse_line(l, 2500, 10_000)
    assert p == (Posting(bucket, -250, EntryKind.COMMISSION_REVERSED),)
    assert (l2.standing, l2.state, l2.refunded) == (750, l.state, 2500)
    assert cm.reverse_line(l2, 2500, 10_000) == (l2, ())  # replay


def test_CM6_clawback_after_payout_makes_available_negative_never_capped():
    l, p = post()
    l, p2 = cm.freeze_line(l, T0, 0)
    l, p3 = cm.make_available(l, T0)
    payout = (
        Posting(Bucket.AVAILABLE, -1000, EntryKind.PAYOUT_REQUESTED),
        Posting(Bucket.IN_PAYOUT, 1000, EntryKind.PAYOUT_REQUESTED),
    )
    l, p4 = cm.reverse_line(l, 10_000, 10_000)
    b = Balances.from_postings(p + p2 + p3 + payout + p4)
    assert b.available == -1000 and b.in_payout == 1000 and l.standing == 0


def test_CM6_zero_standing_moves_state_without_postings():
    l, _ = post()
    l, _ = cm.reverse_line(l, 10_000, 10_000)
    l, p = cm.freeze_line(l, T0, 7)
    assert l.state == CommissionState.FROZEN and p == ()


def test_CM6_post_line_refuses_non_positive_amount_and_bad_level():
    with pytest.raises(RuleViolation):
        post(amount=0)
    with pytest.raises(RuleViolation):
        cm.post_line(id="l", order_id="o", beneficiary_id="a", level=3, amount=5, paid_base=5)


# ---------------------------------------------------------------- 团长佣金
def test_leader_commission_rate_on_other_members_net_and_reduced_by_their_refunds():
    assert cm.leader_commission(300, 15_800) == 474
    assert cm.leader_commission(None, 15_800) == 0 and cm.leader_commission(300, 0) == 0
    l, _ = cm.post_line(id="lr", order_id="leader-order", beneficiary_id="L", level=0, amount=474, paid_base=15_800)
    l, p = cm.reverse_line(l, 7_900, 15_800)
    assert l.standing == 237 and p[0].amount == -237


def test_CM5_a_line_on_a_base_of_one_minor_unit_is_reversed_by_its_refund():
    """CM-5 at the smallest base (seed 72, engine/commission.py:288 `paid_base <= 0` → `<= 1`): a fixed per-unit
    amount (CM-3) on a 1-unit item gives a line of 50 on a base of 1; refunding that 1 reverses all of it."""
    ln, _ = cm.post_line(id="l", order_id="o", beneficiary_id="a", level=1, amount=50, paid_base=1)
    new, postings = cm.refund_line(ln, 1)
    assert (new.standing, new.refunded) == (0, 1)
    assert postings == (Posting(Bucket.PENDING, -50, EntryKind.COMMISSION_REVERSED),)
    assert cm.refund_line(ln, 0) == (ln, ())  # a refund of nothing changes nothing
    half, _ = cm.refund_line(
        cm.post_line(id="m", order_id="o", beneficiary_id="a", level=1, amount=50, paid_base=2)[0], 1
    )
    assert cm.refund_line(half, -1) == (half, ())  # nor does a negative one: it never raises a line back
