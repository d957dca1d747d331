"""RP-2 variant statistics checked against a known calculation (Newcombe 1998)."""

from fractions import Fraction

from hypothesis import given, strategies as st

from engine.stats import MIN_DECIDED, formation_rate_difference, newcombe_interval, rate_bp, wilson_interval


def test_newcombe_worked_example_RP2():
    # Newcombe (1998), Statistics in Medicine 17:873-890, table II, example (a): 56/70 vs 48/80.
    # p1 = 0.8, p2 = 0.6, d = 0.2; method 10 (hybrid score): 95 % CI 0.0524 to 0.3339.
    low, high = newcombe_interval(56, 70, 48, 80)
    assert round(float(low), 4) == 0.0524 and round(float(high), 4) == 0.3339
    r = formation_rate_difference(56, 70, 48, 80)
    assert (r.difference_bp, r.low_bp, r.high_bp) == (2000, 524, 3339)  # limits rounded outwards
    assert r.enough_data and r.has_winner


def test_newcombe_second_worked_example_with_a_zero_RP2():
    # Newcombe (1998) example (d): 5/56 vs 0/29 -> -0.0381 to 0.1926: a zero cell does not collapse the interval
    low, high = newcombe_interval(5, 56, 0, 29)
    assert round(float(low), 4) == -0.0381 and round(float(high), 4) == 0.1926


def test_wilson_interval_known_values():
    # Wilson score interval for 81/263 at z = 1.96: 0.2553 to 0.3662 (Newcombe 1998, Stat Med 17:857-872, table I)
    low, high = wilson_interval(81, 263)
    assert round(float(low), 4) == 0.2553 and round(float(high), 4) == 0.3662
    assert wilson_interval(0, 10)[0] == 0 and wilson_interval(10, 10)[1] == 1


def test_all_or_nothing_is_not_a_winner_RP2():
    # the Wald interval gave 1/1 vs 0/1 a zero-width interval at +100 % and called a winner
    r = formation_rate_difference(1, 1, 0, 1)
    assert r.difference_bp == 10_000 and r.low_bp < 0 and r.high_bp == 10_000 and not r.has_winner
    # even a clear-looking 20/20 vs 0/20 is no winner below the minimum sample
    small = formation_rate_difference(20, 20, 0, 20)
    assert small.low_bp > 0 and not small.enough_data and not small.has_winner
    big = formation_rate_difference(MIN_DECIDED, MIN_DECIDED, 0, MIN_DECIDED)
    assert big.enough_data and big.has_winner


def test_no_winner_when_interval_straddles_zero_RP2():
    r = formation_rate_difference(50, 100, 45, 100)
    assert r.low_bp < 0 < r.high_bp and not r.has_winner
    assert formation_rate_difference(0, 0, 3, 4) is None
    assert rate_bp(1, 3) == 3333 and rate_bp(0, 0) is None


@given(st.integers(1, 400), st.integers(1, 400), st.data())
def test_interval_contains_the_observed_difference_and_stays_in_range_RP2(na, nb, data):
    fa, fb = data.draw(st.integers(0, na)), data.draw(st.integers(0, nb))
    r = formation_rate_difference(fa, na, fb, nb)
    assert -10_000 <= r.low_bp <= r.difference_bp <= r.high_bp <= 10_000
    low, high = newcombe_interval(fa, na, fb, nb)
    assert low <= Fraction(fa, na) - Fraction(fb, nb) <= high
    # swapping the variants mirrors the interval
    s = newcombe_interval(fb, nb, fa, na)
    assert s == (-high, -low)


def test_a_winner_needs_MIN_DECIDED_decided_groups_in_each_variant_RP2():
    """RP-2: 30 decided groups per variant may call a winner; 29 in either may not."""
    assert MIN_DECIDED == 30
    clear = formation_rate_difference(30, 30, 0, 30)
    assert clear is not None and clear.enough_data and clear.has_winner
    for a, b in ((29, 30), (30, 29)):
        d = formation_rate_difference(a, a, 0, b)
        assert d is not None and not d.enough_data and not d.has_winner
