"""RF-1 binding, RF-2 snapshot, and the DS-1 settings/status helpers of engine/distribution.py."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest
from hypothesis import event, given, settings as hsettings
from hypothesis import strategies as st

from engine.distribution import (
    BindingMode,
    DistributionMode,
    DistributionSettings,
    DistributorStatus,
    admits_automatically,
    decide_status_change,
    in_good_standing,
    may_request_payout,
    validate_settings,
)
from engine.errors import ErrorCode, RuleViolation
from engine.referral import (
    Binding,
    BindingSource,
    current_referrer,
    decide_binding,
    in_downline,
    snapshot_referrers,
    upline,
)

T0 = datetime(2025, 6, 1, tzinfo=timezone.utc)
D = timedelta(days=1)
ACTIVE = DistributorStatus.ACTIVE


class Graph:
    """A referral graph of stored bindings; `view(now)` applies EXPIRING lapses like the shell does."""

    def __init__(self) -> None:
        self.bindings: dict[str, Binding] = {}

    def view(self, now: datetime) -> "View":
        return View({u: current_referrer(b, now) for u, b in self.bindings.items()})

    def bind(
        self,
        s: DistributionSettings,
        user: str,
        ref: str,
        now: datetime,
        *,
        source: BindingSource = BindingSource.INVITE_CODE,
        paid: bool = False,
        status: DistributorStatus = ACTIVE,
    ) -> Binding | None:
        b = decide_binding(
            s,
            user_id=user,
            referrer_id=ref,
            now=now,
            current=self.bindings.get(user),
            view=self.view(now),
            referrer_status=status,
            user_has_paid_order=paid,
            source=source,
        )
        if b is not None:
            self.bindings[user] = b
        return b


class View:
    def __init__(self, parents: dict[str, str | None]) -> None:
        self.parents = parents

    def referrer_of(self, user_id: str) -> str | None:
        return self.parents.get(user_id)


def code_of(fn) -> ErrorCode:
    with pytest.raises(RuleViolation) as e:
        fn()
    return e.value.code


PERM = DistributionSettings()
EXP = DistributionSettings(binding=BindingMode.EXPIRING, binding_days=30)
LAST = DistributionSettings(binding=BindingMode.LAST_TOUCH)


# ---------------------------------------------------------------- RF-1 unit rules
def test_RF1_binding_records_when_and_how():
    g = Graph()
    b = g.bind(PERM, "u", "a", T0, source=BindingSource.LINK)
    assert b == Binding(user_id="u", referrer_id="a", bound_at=T0, source=BindingSource.LINK, expires_at=None)


def test_RF1_self_referral_refused_with_rule():
    with pytest.raises(RuleViolation) as e:
        Graph().bind(PERM, "u", "u", T0)
    assert (e.value.code, e.value.rule) == (ErrorCode.SELF_REFERRAL, "RF-1")


@pytest.mark.parametrize("status", [DistributorStatus.NONE, DistributorStatus.APPLIED, DistributorStatus.SUSPENDED])
def test_RF1_referrer_must_be_active_distributor_suspended_takes_no_new_bindings(status):
    assert code_of(lambda: Graph().bind(PERM, "u", "a", T0, status=status)) == ErrorCode.NOT_A_DISTRIBUTOR


def test_RF1_cycle_refused_at_any_depth():
    g = Graph()
    for user, ref in [("b", "a"), ("c", "b"), ("d", "c"), ("e", "d")]:
        g.bind(PERM, user, ref, T0)
    # a's downline: b (1), c (2), d (3), e (4)
    for depth_user in "bcde":
        assert code_of(lambda: g.bind(PERM, "a", depth_user, T0)) == ErrorCode.REFERRAL_CYCLE
    assert g.bind(PERM, "a", "z", T0).referrer_id == "z"  # outside the downline is fine


def test_RF1_permanent_first_referrer_wins_same_referrer_keeps_current():
    g = Graph()
    first = g.bind(PERM, "u", "a", T0)
    assert g.bind(PERM, "u", "a", T0 + 400 * D) is None  # same referrer: keep, nothing refreshed
    assert g.bindings["u"] == first
    assert code_of(lambda: g.bind(PERM, "u", "b", T0 + 400 * D)) == ErrorCode.ALREADY_BOUND


def test_RF1_expiring_sets_expiry_refuses_until_lapse_then_replaces():
    g = Graph()
    b = g.bind(EXP, "u", "a", T0)
    assert b.expires_at == T0 + 30 * D
    assert code_of(lambda: g.bind(EXP, "u", "b", T0 + 30 * D - timedelta(seconds=1))) == ErrorCode.ALREADY_BOUND
    assert current_referrer(b, T0 + 30 * D - timedelta(seconds=1)) == "a"
    assert current_referrer(b, T0 + 30 * D) is None  # lapsed at expires_at exactly
    nb = g.bind(EXP, "u", "b", T0 + 30 * D)
    assert (nb.referrer_id, nb.expires_at) == ("b", T0 + 60 * D)


def test_RF1_expiring_same_referrer_rebinding_does_not_extend():
    g = Graph()
    g.bind(EXP, "u", "a", T0)
    assert g.bind(EXP, "u", "a", T0 + 10 * D) is None
    assert g.bindings["u"].expires_at == T0 + 30 * D


def test_RF1_expiring_lapsed_referrer_rebinds_fresh():
    g = Graph()
    g.bind(EXP, "u", "a", T0)
    again = g.bind(EXP, "u", "a", T0 + 31 * D)
    assert again is not None and again.bound_at == T0 + 31 * D and again.expires_at == T0 + 61 * D


def test_RF1_last_touch_replaces_but_never_closes_a_cycle():
    g = Graph()
    g.bind(LAST, "u", "a", T0)
    assert g.bind(LAST, "u", "b", T0 + D).referrer_id == "b"
    assert g.bindings["u"].referrer_id == "b"
    # b -> u would close u -> b -> u
    assert code_of(lambda: g.bind(LAST, "b", "u", T0 + 2 * D)) == ErrorCode.REFERRAL_CYCLE


def test_RF1_bind_new_users_only_refuses_users_with_a_paid_order():
    s = DistributionSettings(bind_new_users_only=True)
    assert code_of(lambda: Graph().bind(s, "u", "a", T0, paid=True)) == ErrorCode.NOT_A_NEW_USER
    assert Graph().bind(s, "u", "a", T0, paid=False) is not None
    assert Graph().bind(DistributionSettings(), "u", "a", T0, paid=True) is not None


def test_RF1_admin_may_rebind_but_never_self_cycle_or_non_distributor():
    s = DistributionSettings(bind_new_users_only=True)
    g = Graph()
    g.bind(s, "u", "a", T0)
    g.bind(s, "a", "r", T0)
    admin = BindingSource.ADMIN
    assert g.bind(s, "u", "b", T0 + D, source=admin, paid=True).referrer_id == "b"
    assert code_of(lambda: g.bind(s, "u", "u", T0, source=admin)) == ErrorCode.SELF_REFERRAL
    assert code_of(lambda: g.bind(s, "r", "a", T0, source=admin)) == ErrorCode.REFERRAL_CYCLE
    assert (
        code_of(lambda: g.bind(s, "u", "c", T0, source=admin, status=DistributorStatus.SUSPENDED))
        == ErrorCode.NOT_A_DISTRIBUTOR
    )


def test_RF1_refusal_order_ER1():
    """Self first, then the referrer's status, then the user's binding, then new-user-only, then cycles."""
    s = DistributionSettings(bind_new_users_only=True)
    g = Graph()
    g.bind(s, "u", "a", T0)
    g.bind(s, "c", "u", T0)
    assert code_of(lambda: g.bind(s, "u", "u", T0, status=DistributorStatus.NONE)) == ErrorCode.SELF_REFERRAL
    assert (
        code_of(lambda: g.bind(s, "u", "c", T0, status=DistributorStatus.NONE, paid=True))
        == ErrorCode.NOT_A_DISTRIBUTOR
    )
    assert code_of(lambda: g.bind(s, "u", "c", T0, paid=True)) == ErrorCode.ALREADY_BOUND
    assert code_of(lambda: g.bind(s, "x", "x2", T0, paid=True)) == ErrorCode.NOT_A_NEW_USER
    assert code_of(lambda: g.bind(s, "u", "c", T0, source=BindingSource.ADMIN)) == ErrorCode.REFERRAL_CYCLE


def test_RF1_refusal_changes_nothing():
    g = Graph()
    g.bind(PERM, "u", "a", T0)
    before = dict(g.bindings)
    with pytest.raises(RuleViolation):
        g.bind(PERM, "u", "b", T0)
    assert g.bindings == before


def test_RF1_upline_is_loop_guarded_on_a_corrupt_graph():
    v = View({"a": "b", "b": "c", "c": "a"})
    assert upline(v, "a") == ("b", "c")
    assert in_downline(v, ancestor="c", user_id="a") and not in_downline(v, ancestor="z", user_id="a")


# ---------------------------------------------------------------- RF-1 property: no cycles ever
def _has_cycle(parents: dict[str, str | None]) -> bool:
    for start in parents:
        cur, steps = parents.get(start), 0
        while cur is not None:
            if cur == start or steps > len(parents):
                return True
            cur, steps = parents.get(cur), steps + 1
    return False


def _expected_outcome(
    s: DistributionSettings,
    parents: dict[str, str | None],
    *,
    user: str,
    ref: str,
    status: DistributorStatus,
    paid: bool,
    source: BindingSource,
) -> ErrorCode | str:
    """RF-1 written out here, independently of engine/referral.py, in the documented order of checks
    (decide_binding's docstring, test_RF1_refusal_order_ER1). `parents` holds live referrers only."""
    admin = source == BindingSource.ADMIN
    live = parents.get(user)
    if user == ref:
        return ErrorCode.SELF_REFERRAL
    if status != DistributorStatus.ACTIVE:
        return ErrorCode.NOT_A_DISTRIBUTOR
    if live == ref:
        return "KEPT"
    if live is not None and s.binding in (BindingMode.PERMANENT, BindingMode.EXPIRING) and not admin:
        return ErrorCode.ALREADY_BOUND
    if s.bind_new_users_only and paid and not admin:
        return ErrorCode.NOT_A_NEW_USER
    cur, seen = ref, set()  # is the referrer in the user's downline? walk up from the referrer
    while cur is not None and cur not in seen:
        if cur == user:
            return ErrorCode.REFERRAL_CYCLE
        seen.add(cur)
        cur = parents.get(cur)
    return "BOUND"


USERS = [f"u{i}" for i in range(5)]
ops = st.lists(
    st.tuples(
        st.sampled_from(USERS),
        st.sampled_from(USERS),
        st.sampled_from([0, 0, 0, 1, 3, 6]),
        st.sampled_from(list(BindingSource)),
        st.sampled_from([ACTIVE] * 6 + [DistributorStatus.NONE, DistributorStatus.SUSPENDED]),
        st.sampled_from([False, False, False, True]),
    ),
    max_size=40,
)


@hsettings(max_examples=300, deadline=None)
@given(mode=st.sampled_from(list(BindingMode)), new_only=st.booleans(), ops=ops)
def test_RF1_property_no_binding_ever_creates_a_cycle(mode, new_only, ops):
    """RF-1: applying decide_binding repeatedly (any mode, lapses, admin rebinds) keeps the graph acyclic,
    every refusal is warranted and every other binding succeeds: the outcome of each attempt equals the one
    computed in the test from the rule (self, status, live binding and mode, new-users-only, downline)."""
    s = DistributionSettings(
        binding=mode, binding_days=5 if mode == BindingMode.EXPIRING else None, bind_new_users_only=new_only
    )
    g = Graph()
    now = T0
    for user, ref, days, source, status, paid in ops:
        now += days * D
        parents = {u: p for u, p in g.view(now).parents.items() if p is not None}
        expected = _expected_outcome(s, parents, user=user, ref=ref, status=status, paid=paid, source=source)
        before = dict(g.bindings)
        try:
            b = g.bind(s, user, ref, now, source=source, paid=paid, status=status)
            got = "KEPT" if b is None else "BOUND"
        except RuleViolation as e:
            got = e.code
            assert e.rule == "RF-1" and g.bindings == before  # ER-1: a refusal changes nothing
        event(f"{mode.value}: {getattr(got, 'value', got)}")
        assert got == expected, (user, ref, source, status, paid, parents)
        if got == "BOUND":
            assert b == Binding(
                user_id=user,
                referrer_id=ref,
                bound_at=now,
                source=source,
                expires_at=now + 5 * D if mode == BindingMode.EXPIRING else None,
            )
        elif got == "KEPT":
            assert g.bindings == before
        assert not _has_cycle(g.view(now).parents)


# ---------------------------------------------------------------- RF-2 snapshot
def test_RF2_snapshot_takes_level1_and_level2_at_payment_and_later_rebinding_does_not_change_it():
    g = Graph()
    g.bind(LAST, "a", "top", T0)
    g.bind(LAST, "u", "a", T0)
    snap = snapshot_referrers(g.view(T0), "u")
    assert snap == ("a", "top")
    g.bind(LAST, "u", "b", T0 + D)
    assert snap == ("a", "top")  # the stored snapshot is a value; the new one differs
    assert snapshot_referrers(g.view(T0 + D), "u") == ("b", None)
    assert snapshot_referrers(g.view(T0), "nobody") == (None, None)


def test_RF2_snapshot_respects_expiring_lapse():
    g = Graph()
    g.bind(EXP, "a", "top", T0)
    g.bind(EXP, "u", "a", T0 + 10 * D)
    assert snapshot_referrers(g.view(T0 + 29 * D), "u") == ("a", "top")
    assert snapshot_referrers(g.view(T0 + 30 * D), "u") == ("a", None)  # a's own binding lapsed
    assert snapshot_referrers(g.view(T0 + 40 * D), "u") == (None, None)


# ---------------------------------------------------------------- DS-1 and settings
def test_DS1_admission_by_mode():
    assert admits_automatically(DistributionSettings(mode=DistributionMode.EVERYONE), net_paid_spend=0)
    assert not admits_automatically(DistributionSettings(mode=DistributionMode.APPROVAL), net_paid_spend=10**9)
    st_ = DistributionSettings(mode=DistributionMode.SPEND_THRESHOLD, spend_threshold=10_000)
    assert not admits_automatically(st_, net_paid_spend=9_999)
    assert admits_automatically(st_, net_paid_spend=10_000)


def test_DS1_CM2_good_standing_is_active_only_and_suspended_cannot_request_payouts():
    assert [s for s in DistributorStatus if in_good_standing(s)] == [DistributorStatus.ACTIVE]
    assert [s for s in DistributorStatus if not may_request_payout(s)] == [DistributorStatus.SUSPENDED]


def test_DS1_status_changes():
    S = DistributorStatus
    assert decide_status_change(S.APPLIED, S.ACTIVE) == S.ACTIVE
    assert decide_status_change(S.ACTIVE, S.SUSPENDED) == S.SUSPENDED
    assert decide_status_change(S.SUSPENDED, S.ACTIVE) == S.ACTIVE
    assert decide_status_change(S.ACTIVE, S.ACTIVE) == S.ACTIVE
    for bad in [(S.NONE, S.SUSPENDED), (S.APPLIED, S.SUSPENDED), (S.ACTIVE, S.NONE), (S.SUSPENDED, S.NONE)]:
        assert code_of(lambda: decide_status_change(*bad)) == ErrorCode.INVALID_STATE


@pytest.mark.parametrize(
    "kwargs,field",
    [
        ({"level1_bp": 10_001}, "level1_bp"),
        ({"level2_bp": -1}, "level2_bp"),
        ({"max_total_bp": 1.5}, "max_total_bp"),
        ({"payout_fee_bp": True}, "payout_fee_bp"),
        ({"freeze_days": -1}, "freeze_days"),
        ({"min_payout": -5}, "min_payout"),
        ({"spend_threshold": -1}, "spend_threshold"),
        ({"binding": BindingMode.EXPIRING}, "binding_days"),
        ({"binding": BindingMode.EXPIRING, "binding_days": 0}, "binding_days"),
        ({"binding_days": 0}, "binding_days"),
        ({"mode": "EVERYBODY"}, "mode"),
    ],
)
def test_settings_validation_names_the_field(kwargs, field):
    with pytest.raises(RuleViolation) as e:
        validate_settings(DistributionSettings(**kwargs))
    assert (e.value.code, e.value.field) == (ErrorCode.INVALID_INPUT, field)


def test_settings_defaults_are_valid():
    validate_settings(DistributionSettings())
    validate_settings(EXP)


def test_RF1_upline_stops_at_a_loop_that_does_not_pass_through_the_start():
    """RF-1's loop guard: u → a → b → a lists a and b once each, however the loop is entered."""
    assert upline(View({"u": "a", "a": "b", "b": "a"}), "u") == ("a", "b")
    assert upline(View({"u": "a", "a": "b"}), "u") == ("a", "b")  # a plain chain ends at its top
