"""RF-3 attribution in the engine: every source (group link, order code, admin) keeps RF-1 — the referral
graph stays a forest (no user above themselves), each binding names an active distributor — under any
sequence of attempts, in every binding mode; an order-code override never changes a binding."""

from __future__ import annotations

from datetime import timedelta

from hypothesis import given, settings as hsettings
from hypothesis import strategies as st

from engine.distribution import BindingMode, DistributionSettings, DistributorStatus
from engine.errors import ErrorCode, RuleViolation
from engine.referral import (
    BindingSource,
    current_referrer,
    decide_admin_binding,
    decide_binding,
    decide_order_code,
    upline,
)
from tests.engine.test_referral import T0, Graph

USERS = ["u0", "u1", "u2", "u3", "u4", "u5"]
op = st.tuples(
    st.sampled_from(["link", "code", "order", "admin"]),
    st.sampled_from(USERS),
    st.sampled_from(USERS),
    st.integers(0, 40),
    st.booleans(),
)


@given(
    mode=st.sampled_from(list(BindingMode)),
    new_only=st.booleans(),
    overrides=st.booleans(),
    ops=st.lists(op, max_size=40),
    inactive=st.sets(st.sampled_from(USERS), max_size=2),
)
@hsettings(max_examples=300)
def test_RF3_every_source_keeps_rf1_and_overrides_change_no_binding(mode, new_only, overrides, ops, inactive):
    """RF-3: group links (GROUP_INVITE), order codes (ORDER_CODE, binding or overriding), admin rebinding
    (ADMIN) in any order: after each step the graph has no cycle and no self-binding, every new binding names
    an ACTIVE referrer, an override leaves every binding as it was and never names the buyer, someone in the
    buyer's downline or an inactive distributor; refusals change nothing."""
    s = DistributionSettings(
        binding=mode,
        binding_days=10 if mode == BindingMode.EXPIRING else None,
        bind_new_users_only=new_only,
        order_code_overrides=overrides,
    )
    g = Graph()
    now = T0
    for kind, user, ref, days, paid in ops:
        now = now + timedelta(days=days)
        status = DistributorStatus.SUSPENDED if ref in inactive else DistributorStatus.ACTIVE
        before = dict(g.bindings)
        view = g.view(now)
        try:
            if kind == "order":
                d = decide_order_code(
                    s,
                    buyer_id=user,
                    referrer_id=ref,
                    now=now,
                    current=g.bindings.get(user),
                    view=view,
                    referrer_status=status,
                    user_has_paid_order=paid,
                )
                assert not (d.binding and d.override)
                if d.override is not None:
                    assert overrides and d.override == ref != user and status == DistributorStatus.ACTIVE
                    assert current_referrer(g.bindings.get(user), now) not in (None, ref)
                    assert user not in upline(view, ref)
                new = d.binding
                if new is not None:
                    assert new.source == BindingSource.ORDER_CODE
                    assert current_referrer(before.get(user), now) is None  # binds only without a live referrer
            elif kind == "admin":
                new = decide_admin_binding(
                    s,
                    user_id=user,
                    referrer_id=ref,
                    reason="fix",
                    now=now,
                    current=g.bindings.get(user),
                    view=view,
                    referrer_status=status,
                )
            else:
                source = BindingSource.GROUP_INVITE if kind == "link" else BindingSource.INVITE_CODE
                new = decide_binding(
                    s,
                    user_id=user,
                    referrer_id=ref,
                    now=now,
                    current=g.bindings.get(user),
                    view=view,
                    referrer_status=status,
                    user_has_paid_order=paid,
                    source=source,
                )
        except RuleViolation as e:
            assert e.code in {
                ErrorCode.SELF_REFERRAL,
                ErrorCode.NOT_A_DISTRIBUTOR,
                ErrorCode.ALREADY_BOUND,
                ErrorCode.NOT_A_NEW_USER,
                ErrorCode.REFERRAL_CYCLE,
            }
            assert g.bindings == before
            continue
        if new is not None:
            assert new.referrer_id == ref != user and status == DistributorStatus.ACTIVE
            g.bindings[user] = new
        after = g.view(now)
        for u in USERS:
            assert u not in upline(after, u)  # no cycle, at any depth


def test_RF3b_order_code_outcomes_by_hand():
    """RF-3 (b): no live referrer → binds (ORDER_CODE); live referrer = the code's → nothing; another, setting
    off → nothing; on → override; a code of the buyer's downline → REFERRAL_CYCLE; the buyer's own → SELF."""
    g = Graph()
    g.bind(DistributionSettings(), "kid", "buyer", T0)
    g.bind(DistributionSettings(), "buyer", "ref", T0)
    off, on = DistributionSettings(), DistributionSettings(order_code_overrides=True)
    A = DistributorStatus.ACTIVE

    def decide(s, user, ref):
        return decide_order_code(
            s,
            buyer_id=user,
            referrer_id=ref,
            now=T0,
            current=g.bindings.get(user),
            view=g.view(T0),
            referrer_status=A,
            user_has_paid_order=True,
        )

    assert decide(off, "new", "dee").binding.source == BindingSource.ORDER_CODE
    assert decide(on, "buyer", "ref") == decide(off, "buyer", "dee") == type(decide(off, "buyer", "dee"))()
    assert decide(on, "buyer", "dee").override == "dee"
    for ref, code in (("kid", ErrorCode.REFERRAL_CYCLE), ("buyer", ErrorCode.SELF_REFERRAL)):
        try:
            decide(on, "buyer", ref)
            raise AssertionError("not refused")
        except RuleViolation as e:
            assert (e.code, e.rule) == (code, "RF-3")


def test_RF3c_admin_binding_needs_a_reason_and_replaces_in_every_mode():
    """RF-3 (c): without a reason INVALID_INPUT; with one it replaces a live PERMANENT binding of a paid user
    under bind_new_users_only (source ADMIN); a cycle is still REFERRAL_CYCLE."""
    g = Graph()
    s = DistributionSettings(bind_new_users_only=True)
    g.bind(s, "u", "a", T0)
    A = DistributorStatus.ACTIVE
    try:
        decide_admin_binding(
            s,
            user_id="u",
            referrer_id="b",
            reason=" ",
            now=T0,
            current=g.bindings["u"],
            view=g.view(T0),
            referrer_status=A,
        )
        raise AssertionError("not refused")
    except RuleViolation as e:
        assert e.code == ErrorCode.INVALID_INPUT
    b = decide_admin_binding(
        s,
        user_id="u",
        referrer_id="b",
        reason="moved",
        now=T0,
        current=g.bindings["u"],
        view=g.view(T0),
        referrer_status=A,
    )
    assert (b.referrer_id, b.source) == ("b", BindingSource.ADMIN)
    try:
        decide_admin_binding(
            s, user_id="a", referrer_id="u", reason="x", now=T0, current=None, view=g.view(T0), referrer_status=A
        )
        raise AssertionError("not refused")
    except RuleViolation as e:
        assert e.code == ErrorCode.REFERRAL_CYCLE
