"""LG-1 balances as sums of postings, LG-2 payouts (with DS-1 suspension and CM-6 clawback)."""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime, timedelta, timezone

import pytest
from hypothesis import given, settings as hsettings
from hypothesis import strategies as st

from engine import commission as cm
from engine import ledger as lg
from engine.distribution import DistributionSettings, DistributorStatus
from engine.errors import ErrorCode, RuleViolation
from engine.ledger import Balances, Bucket, EntryKind, Posting

T0 = datetime(2025, 6, 1, tzinfo=timezone.utc)
D = timedelta(days=1)
S = DistributionSettings(min_payout=100, payout_fee_bp=60)
ACTIVE = DistributorStatus.ACTIVE


def refusal(fn):
    with pytest.raises(RuleViolation) as e:
        fn()
    return e.value.code, e.value.rule


def test_LG1_balances_are_sums_of_postings_and_moves_net_to_zero():
    ps = (
        Posting(Bucket.PENDING, 500, EntryKind.COMMISSION_POSTED),
        *lg.move(500, Bucket.PENDING, Bucket.FROZEN, EntryKind.COMMISSION_FROZEN),
        Posting(Bucket.FROZEN, -100, EntryKind.COMMISSION_REVERSED),
    )
    assert Balances.from_postings(ps) == Balances(frozen=400)
    assert Balances(available=7).apply(ps) == Balances(frozen=400, available=7)
    assert sum(p.amount for p in lg.move(9, Bucket.AVAILABLE, Bucket.IN_PAYOUT, EntryKind.PAYOUT_REQUESTED)) == 0


def test_LV4_bonus_postings_credit_available():
    assert lg.bonus_postings([(1, 500), (2, 0), (3, 2000)]) == (
        Posting(Bucket.AVAILABLE, 500, EntryKind.UPGRADE_BONUS),
        Posting(Bucket.AVAILABLE, 2000, EntryKind.UPGRADE_BONUS),
    )


def test_LG2_request_moves_available_to_in_payout():
    ps = lg.request_payout(S, balances=Balances(available=1000), amount=1000, status=ACTIVE)
    assert Balances(available=1000).apply(ps) == Balances(in_payout=1000)


def test_LG2_refusals_ER1():
    b = Balances(available=1000)
    assert refusal(lambda: lg.request_payout(S, balances=b, amount=99, status=ACTIVE)) == (
        ErrorCode.PAYOUT_BELOW_MINIMUM,
        "LG-2",
    )
    assert lg.request_payout(S, balances=b, amount=100, status=ACTIVE)  # exactly the minimum is fine
    assert refusal(lambda: lg.request_payout(S, balances=b, amount=1001, status=ACTIVE)) == (
        ErrorCode.INSUFFICIENT_BALANCE,
        "LG-2",
    )
    assert refusal(lambda: lg.request_payout(S, balances=b, amount=500, status=DistributorStatus.SUSPENDED)) == (
        ErrorCode.DISTRIBUTOR_SUSPENDED,
        "DS-1",
    )
    for bad in (0, -5, True):
        assert (
            refusal(lambda: lg.request_payout(S, balances=b, amount=bad, status=ACTIVE))[0] == ErrorCode.INVALID_INPUT
        )


def test_DS1_non_distributor_may_withdraw_a_leader_reward():
    assert lg.request_payout(S, balances=Balances(available=500), amount=500, status=DistributorStatus.NONE)


def test_CM6_LG2_negative_available_blocks_every_payout():
    b = Balances(available=-650, in_payout=900)
    for amount in (100, 900, 10**9):
        assert (
            refusal(lambda: lg.request_payout(S, balances=b, amount=amount, status=ACTIVE))[0]
            == ErrorCode.INSUFFICIENT_BALANCE
        )


def test_LG2_approve_pays_amount_less_fee_with_fee_entry_of_its_own():
    assert lg.payout_fee(S, 20_000) == 120
    ps = lg.approve_payout(20_000, fee=lg.payout_fee(S, 20_000))
    assert ps == (
        Posting(Bucket.IN_PAYOUT, -20_000, EntryKind.PAYOUT_APPROVED),
        Posting(Bucket.PAID, 19_880, EntryKind.PAYOUT_APPROVED),
        Posting(Bucket.FEES, 120, EntryKind.PAYOUT_FEE),
    )
    assert Balances(in_payout=20_000).apply(ps) == Balances(paid=19_880, fees=120)
    assert lg.payout_fee(S, 166) == 0  # floor(166 × 60 / 10000) = 0
    assert lg.approve_payout(500, fee=lg.payout_fee(DistributionSettings(), 500)) == (
        Posting(Bucket.IN_PAYOUT, -500, EntryKind.PAYOUT_APPROVED),
        Posting(Bucket.PAID, 500, EntryKind.PAYOUT_APPROVED),
    )
    assert lg.approve_payout(500, fee=7)[-1] == Posting(Bucket.FEES, 7, EntryKind.PAYOUT_FEE)
    assert refusal(lambda: lg.approve_payout(500, fee=501))[0] == ErrorCode.INVALID_INPUT


def test_LG2_reject_returns_all_to_available_without_fee():
    assert Balances(in_payout=20_000).apply(lg.reject_payout(20_000)) == Balances(available=20_000)


# ---------------------------------------------------------------- property: a distributor's whole ledger
op = st.one_of(
    st.tuples(st.just("post"), st.integers(1, 5_000)),
    st.tuples(st.just("complete"), st.integers(0, 9)),
    st.tuples(st.just("tick"), st.integers(0, 5)),
    st.tuples(st.just("refund"), st.integers(0, 9), st.integers(1, 10_000)),
    st.tuples(st.just("void"), st.integers(0, 9)),
    st.tuples(st.just("bonus"), st.integers(1, 3_000)),
    st.tuples(st.just("request"), st.integers(1, 8_000)),
    st.tuples(st.just("decide"), st.booleans()),
    st.tuples(st.just("rate"), st.integers(0, 10_000)),
)


@hsettings(max_examples=250, deadline=None)
@given(ops=st.lists(op, max_size=40), fee_bp=st.integers(0, 10_000), suspended=st.booleans())
def test_LG1_LG2_property_balances_equal_sum_of_postings_and_payouts_never_exceed_available(ops, fee_bp, suspended):
    """LG-1: stored balances (updated per step) equal the sum of every posting; money is conserved
    (all buckets together = standing commission + bonuses). LG-2: an accepted request never exceeds the
    available balance at that moment, so available only goes negative through clawback (CM-6); an approval
    charges the fee quoted at request, whatever the rate became in between ("rate" steps)."""
    s = DistributionSettings(min_payout=100, payout_fee_bp=fee_bp, freeze_days=2)
    status = DistributorStatus.SUSPENDED if suspended else ACTIVE
    journal: list[Posting] = []
    balances = Balances()
    lines: list[cm.CommissionLine] = []
    payouts: list[tuple[int, int]] = []  # (amount, fee quoted at request)
    fees_charged = 0
    bonuses = 0
    now = T0

    def book(ps):
        nonlocal balances
        journal.extend(ps)
        balances = balances.apply(ps)

    for o in ops:
        kind = o[0]
        if kind == "post":
            l, ps = cm.post_line(
                id=f"l{len(lines)}",
                order_id=f"o{len(lines)}",
                beneficiary_id="a",
                level=1,
                amount=o[1],
                paid_base=10_000,
            )
            lines.append(l)
            book(ps)
        elif kind in ("complete", "refund", "void") and lines:
            i = o[1] % len(lines)
            l = lines[i]
            if kind == "complete":
                l, ps = cm.freeze_line(l, now, s.freeze_days)
            elif kind == "refund":
                l, ps = cm.reverse_line(l, min(10_000, l.refunded + o[2]), 10_000)
            elif l.state in (cm.CommissionState.PENDING, cm.CommissionState.VOID):
                l, ps = cm.void_line(l)
            else:
                ps = ()
            lines[i] = l
            book(ps)
        elif kind == "tick":
            now += o[1] * D
            for i, l in enumerate(lines):
                lines[i], ps = cm.make_available(l, now)
                book(ps)
        elif kind == "bonus":
            bonuses += o[1]
            book(lg.bonus_postings([(1, o[1])]))
        elif kind == "request":
            before = balances.available
            try:
                quote = lg.quote_payout(s, balances=balances, amount=o[1], status=status)
            except RuleViolation as e:
                assert e.code in (
                    ErrorCode.PAYOUT_BELOW_MINIMUM,
                    ErrorCode.INSUFFICIENT_BALANCE,
                    ErrorCode.DISTRIBUTOR_SUSPENDED,
                )
                assert (e.code == ErrorCode.DISTRIBUTOR_SUSPENDED) == suspended
                assert suspended or o[1] < s.min_payout or o[1] > before
                continue
            assert not suspended and s.min_payout <= o[1] <= before
            assert quote.fee == o[1] * s.payout_fee_bp // 10_000
            book(quote.postings)
            assert balances.available >= 0
            payouts.append((o[1], quote.fee))
        elif kind == "rate":
            s = replace(s, payout_fee_bp=o[1])  # an admin changes the rate between request and decision
        elif kind == "decide" and payouts:
            amount, fee = payouts.pop(0)
            book(lg.approve_payout(amount, fee=fee) if o[1] else lg.reject_payout(amount))
            fees_charged += fee if o[1] else 0
        assert balances.fees == fees_charged
        assert balances == Balances.from_postings(journal)
        assert balances.in_payout == sum(a for a, _ in payouts) >= 0
        assert balances.pending == sum(l.standing for l in lines if l.state == cm.CommissionState.PENDING)
        assert balances.frozen == sum(l.standing for l in lines if l.state == cm.CommissionState.FROZEN)
        assert balances.total == sum(l.standing for l in lines) + bonuses
