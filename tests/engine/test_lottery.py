"""GB-7: the lottery is deterministic, recorded and re-runnable by finance."""

from __future__ import annotations

import hashlib
import hmac

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from engine.errors import ErrorCode, RuleViolation
from engine.lottery import draw_winners, ticket

order_ids = st.lists(st.text("abcdef0123456789-", min_size=1, max_size=12), min_size=1, max_size=12, unique=True)


@settings(max_examples=200, deadline=None)
@given(seed=st.text(max_size=20), gid=st.text(min_size=1, max_size=10), cands=order_ids, data=st.data())
def test_GB7_k_distinct_candidates_same_for_same_inputs_whatever_the_order(seed, gid, cands, data):
    k = data.draw(st.integers(0, len(cands)))
    w = draw_winners(seed, gid, cands, k)
    assert len(w) == k and len(set(w)) == k and set(w) <= set(cands)
    shuffled = data.draw(st.permutations(cands))
    assert draw_winners(seed, gid, shuffled, k) == w
    # a larger draw extends a smaller one (the ranking is one list)
    assert draw_winners(seed, gid, cands, len(cands))[:k] == w


def test_GB7_procedure_matches_the_documented_recipe():
    """Finance re-runs the draw with hmac/hashlib alone (docstring of engine.lottery)."""
    seed, gid, paid = "c0ffee", "grp_42", ["ord_a", "ord_b", "ord_c", "ord_d", "ord_e"]
    rank = lambda c: (hmac.new(seed.encode(), f"{gid}:{c}".encode(), hashlib.sha256).hexdigest(), c)  # noqa: E731
    assert draw_winners(seed, gid, paid, 2) == tuple(sorted(paid, key=rank)[:2])
    assert ticket(seed, gid, "ord_a") == rank("ord_a")[0]


def test_GB7_seed_and_group_change_the_draw():
    paid = [f"o{i}" for i in range(20)]
    draws = {draw_winners(s, g, paid, 3) for s in ("s1", "s2") for g in ("g1", "g2")}
    assert len(draws) == 4


@pytest.mark.parametrize("cands, k", [(["a", "b"], 3), (["a", "b"], -1), (["a", "a"], 1)])
def test_GB7_bad_draw_refused(cands, k):
    with pytest.raises(RuleViolation) as e:
        draw_winners("s", "g", cands, k)
    assert e.value.code == ErrorCode.INVALID_INPUT and e.value.rule == "GB-7"
