"""Seed-72 engine survivors (docs/testing.md, "Session 2026-12-02 e"): bounds no test had pinned."""

from __future__ import annotations

from fractions import Fraction

import pytest

from engine import ledger as lg
from engine import stats
from engine.errors import ErrorCode, RuleViolation
from engine.ledger import Bucket, EntryKind


def test_LG4_a_long_reference_keeps_exactly_its_last_four_characters():
    """LG-4: a reference of more than 8 characters is shown as `****` and its last 4 (dashes and spaces
    dropped first); 8 or fewer keep 2. Kills engine/ledger.py:206 (`VISIBLE_TAIL = 4` → 5)."""
    assert lg.mask_reference("6222 0212 3456 7890") == "****7890"
    assert lg.mask_reference("123456789") == "****6789"
    assert lg.mask_reference("12345678") == "****78"
    assert lg.mask_reference("1234") == "****"


def test_LG4_a_failed_payout_whose_fee_was_all_of_it_returns_the_whole_amount():
    """LG-4: the fee may be the whole amount (0..amount inclusive): a failed payout of 100 with a fee of 100
    puts 100 back in available from fees and nothing from paid. Kills engine/ledger.py:178
    (`0 <= fee <= amount` → `fee < amount`)."""
    postings = lg.fail_payout(100, fee=100)
    back = sum(p.amount for p in postings if p.bucket is Bucket.AVAILABLE)
    assert back == 100
    assert {p.kind for p in postings} >= {EntryKind.PAYOUT_FEE_REVERSED}
    assert sum(p.amount for p in postings if p.bucket is Bucket.FEES) == -100
    assert sum(p.amount for p in lg.fail_payout(100, fee=0) if p.bucket is Bucket.AVAILABLE) == 100  # no fee
    for bad in (-1, 101, True, 1.0):
        with pytest.raises(RuleViolation) as e:
            lg.fail_payout(100, fee=bad)
        assert (e.value.code, e.value.field) == (ErrorCode.INVALID_INPUT, "fee")


def test_wilson_upper_bound_never_passes_one_even_when_the_square_root_is_widened():
    """The report's Wilson interval (engine/stats.py) rounds its square root outward; at successes = trials the
    upper bound is then a hair above 1 and is kept at 1 (a rate is never over 100 %). Kills engine/stats.py:70
    (`min(Fraction(1), …)` → `Fraction(2)`): z = 1/3 makes the root inexact."""
    low, high = stats.wilson_interval(5, 5, z=Fraction(1, 3))
    assert high == 1 and 0 < low < 1
    low0, high0 = stats.wilson_interval(0, 5, z=Fraction(1, 3))
    assert low0 == 0 and 0 < high0 < 1
