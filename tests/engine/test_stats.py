"""RP-2 variant statistics checked against a known calculation."""

from hypothesis import given, strategies as st

from engine.stats import formation_rate_difference, rate_bp


def test_wald_interval_matches_hand_calculation_RP2():
    # a: 60/100 formed, b: 45/100. d = 0.15; se = sqrt(.6*.4/100 + .45*.55/100) = sqrt(.0024+.002475)
    # = 0.069821...; margin = 1.96 * se = 0.136849 -> [0.0132, 0.2868]  => in bp: [132, 2868] (±1 from flooring)
    r = formation_rate_difference(60, 100, 45, 100)
    assert r.difference_bp == 1500
    assert abs(r.low_bp - 132) <= 1 and abs(r.high_bp - 2868) <= 1
    assert r.has_winner


def test_no_winner_when_interval_straddles_zero_RP2():
    r = formation_rate_difference(5, 10, 4, 10)
    assert r.low_bp < 0 < r.high_bp and not r.has_winner
    assert formation_rate_difference(0, 0, 3, 4) is None
    assert rate_bp(1, 3) == 3333 and rate_bp(0, 0) is None


@given(st.integers(1, 500), st.integers(1, 500), st.data())
def test_interval_contains_the_observed_difference_RP2(na, nb, data):
    fa, fb = data.draw(st.integers(0, na)), data.draw(st.integers(0, nb))
    r = formation_rate_difference(fa, na, fb, nb)
    assert r.low_bp <= r.difference_bp <= r.high_bp
