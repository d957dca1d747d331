"""Distribution rules not covered elsewhere: LG-2 payouts as a property, DS-1 payouts while suspended, RP-3.

CM-2..CM-5 live in test_commission.py, RF-1 in test_referral.py and LV-1..LV-4 in test_levels.py, one
strong version of each property there (the weaker duplicates that were here have been folded in)."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest
from hypothesis import given, strategies as st

from engine.distribution import DistributionSettings, DistributorStatus
from engine.errors import ErrorCode, RuleViolation
from engine.ledger import Balances, Bucket, approve_payout, payout_fee, reject_payout, request_payout
from engine.segments import Segment, segment_of

NOW = datetime(2026, 1, 1, tzinfo=timezone.utc)
ACTIVE = DistributorStatus.ACTIVE


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
        postings += list(got) + list(approve_payout(a, fee=payout_fee(s, a)) if i % 2 else reject_payout(a))
        after = Balances.from_postings(postings)
        assert after.in_payout == 0 and after.fees == sum(p.amount for p in postings if p.bucket == Bucket.FEES)
    final = Balances.from_postings(postings)
    assert final.available + final.paid + final.fees == start


def test_suspended_distributor_may_not_request_payouts_DS1():
    with pytest.raises(RuleViolation) as e:
        request_payout(
            DistributionSettings(), balances=Balances(available=10**6), amount=1000, status=DistributorStatus.SUSPENDED
        )
    assert e.value.code == ErrorCode.DISTRIBUTOR_SUSPENDED


def test_segments_with_the_90_day_boundary_RP3():
    assert segment_of([], NOW) == Segment.NEW
    assert segment_of([NOW], NOW) == Segment.FIRST_ORDER
    assert segment_of([NOW] * 3, NOW) == Segment.REPEAT
    assert segment_of([NOW] * 4, NOW) == Segment.LOYAL
    assert segment_of([NOW - timedelta(days=90)] * 5, NOW) == Segment.DORMANT
    assert segment_of([NOW - timedelta(days=89)], NOW) == Segment.FIRST_ORDER
