"""FR-1..FR-4 (fraud review) and LG-4 (payout failure) in the engine: properties first."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from engine import commission as cm
from engine import fraud as fr
from engine import groupbuy as gb
from engine import ledger as lg
from engine.errors import ErrorCode, RuleViolation
from engine.ledger import Balances, Bucket, EntryKind

T0 = datetime(2026, 3, 1, tzinfo=timezone.utc)
KEY = b"k" * 32
FPK = fr.FingerprintKind


def refusal(fn):
    with pytest.raises(RuleViolation) as e:
        fn()
    return e.value.code, e.value.rule


# ---------------------------------------------------------------- LG-4
@given(amount=st.integers(1, 10**9), fee_bp=st.integers(0, 10_000), before=st.integers(-(10**6), 10**9))
def test_LG4_a_failed_payout_gives_all_of_A_back_and_reverses_the_fee_by_new_entries(amount, fee_bp, before):
    """LG-4: request → approve → fail leaves available as before the request, PAID and FEES as before the
    approval, every step a list of new postings (LG-1: the approval's entries stay)."""
    fee = amount * fee_bp // 10_000
    start = Balances(available=amount + max(before, 0))
    req = lg.move(amount, Bucket.AVAILABLE, Bucket.IN_PAYOUT, EntryKind.PAYOUT_REQUESTED)
    appr = lg.approve_payout(amount, fee=fee)
    fail = lg.fail_payout(amount, fee=fee)
    end = start.apply(req).apply(appr).apply(fail)
    assert end == start
    assert start.apply(req).apply(appr).total == end.total == start.total
    assert sum(p.amount for p in fail if p.bucket == Bucket.AVAILABLE) == amount
    assert sum(p.amount for p in fail if p.bucket == Bucket.FEES) == -fee
    assert {p.kind for p in fail} <= {EntryKind.PAYOUT_FAILED, EntryKind.PAYOUT_FEE_REVERSED}
    assert all(p.amount for p in fail)  # no zero entries
    assert (EntryKind.PAYOUT_FEE_REVERSED in {p.kind for p in fail}) == (fee > 0)


def test_LG4_fail_payout_refuses_a_fee_outside_the_amount():
    assert refusal(lambda: lg.fail_payout(100, fee=101)) == (ErrorCode.INVALID_INPUT, "LG-4")
    assert refusal(lambda: lg.fail_payout(0, fee=0))[0] == ErrorCode.INVALID_INPUT


@given(ref=st.text(min_size=1, max_size=128).filter(lambda s: s.strip()))
def test_LG4_the_payee_reference_is_stored_masked_never_whole(ref):
    """LG-4: kind + masked reference. The masked value shows at most 4 characters of the account, and never
    more than half of it."""
    m = lg.payee_method("BANK_ACCOUNT", ref)
    assert m.kind == lg.PayeeKind.BANK_ACCOUNT and m.masked_reference.startswith("****")
    shown = m.masked_reference[4:]
    compact = "".join(ch for ch in ref.strip() if ch not in " -")
    assert len(shown) <= 4 and (not shown or compact.endswith(shown)) and len(shown) * 2 <= len(compact)


def test_LG4_payee_method_examples_and_refusals():
    assert lg.payee_method("ALIPAY", "6222 0212 3456 7890").masked_reference == "****7890"
    assert lg.payee_method("WECHAT", "wx-1234").masked_reference == "****34"
    assert lg.payee_method("OTHER", "abc").masked_reference == "****"
    assert refusal(lambda: lg.payee_method("CASH", "1"))[0] == ErrorCode.INVALID_INPUT
    assert refusal(lambda: lg.payee_method("PAYPAL", " "))[0] == ErrorCode.INVALID_INPUT


# ---------------------------------------------------------------- FR-1
@given(value=st.text(st.characters(codec="ascii"), min_size=1, max_size=80).filter(lambda s: s.strip()))
def test_FR1_fingerprints_are_keyed_hashes_per_shop_never_the_raw_value(value):
    h = fr.fingerprint_hash(fr.shop_key(KEY, "s1"), FPK.DEVICE, value)
    assert len(h) == 64 and set(h) <= set("0123456789abcdef")  # a digest only: nothing of the value is kept
    assert h == fr.fingerprint_hash(fr.shop_key(KEY, "s1"), FPK.DEVICE, f"  {value.upper()} ")
    assert h != fr.fingerprint_hash(fr.shop_key(KEY, "s2"), FPK.DEVICE, value)  # per shop
    assert h != fr.fingerprint_hash(fr.shop_key(KEY, "s1"), FPK.IP, value)  # per kind
    assert h != fr.fingerprint_hash(fr.shop_key(b"other" * 8, "s1"), FPK.DEVICE, value)  # keyed


# ---------------------------------------------------------------- FR-2
ON = fr.FraudRules(
    self_dealing=True,
    velocity=True,
    velocity_max_orders=2,
    scalper_group=True,
    scalper_min_seats=2,
    refund_rate=True,
    refund_rate_max_bp=3000,
    refund_rate_min_orders=3,
)
DEV = fr.Fingerprint(FPK.DEVICE, "d" * 64)
ADDR = fr.Fingerprint(FPK.ADDRESS, "a" * 64)


def test_FR2a_self_dealing_flags_a_beneficiary_sharing_a_fingerprint_with_the_buyer():
    sig = fr.OrderSignals(buyer_id="b", fingerprints=frozenset({DEV}), shared_with={"d1": frozenset({FPK.DEVICE})})
    flags = fr.screen_order(ON, sig, ["d1", "d2"])
    assert list(flags) == ["d1"] and flags["d1"][0].rule == fr.FraudRule.SELF_DEALING
    assert flags["d1"][0].evidence == {"shared": ["DEVICE"]}
    assert fr.screen_order(fr.FraudRules(), sig, ["d1"]) == {}  # off
    # self-purchase (CM-2) is allowed by the programme: a buyer earning on their own order is not self-dealing
    assert (
        fr.screen_order(ON, fr.OrderSignals(buyer_id="d1", shared_with={"d1": frozenset({FPK.DEVICE})}), ["d1"]) == {}
    )


def test_FR2b_velocity_flags_more_than_N_orders_sharing_a_device_ip_or_payer():
    def sig(n, fps=frozenset({DEV})):
        return fr.OrderSignals(buyer_id="b", fingerprints=fps, velocity={"d1": n})

    assert fr.screen_order(ON, sig(1), ["d1"]) == {}  # 2 orders: not more than 2
    assert fr.screen_order(ON, sig(2), ["d1"])["d1"][0].evidence["orders"] == 3
    assert fr.screen_order(ON, sig(9, frozenset({ADDR})), ["d1"]) == {}  # an address alone is no velocity signal


def test_FR2c_a_group_whose_paid_seats_share_a_fingerprint_is_flagged_from_k_seats():
    other = fr.Fingerprint(FPK.IP, "i" * 64)
    assert fr.screen_group(ON, {"o1": frozenset({DEV}), "o2": frozenset({other})}) is None
    f = fr.screen_group(ON, {"o1": frozenset({DEV}), "o2": frozenset({DEV, other}), "o3": frozenset()})
    assert f is not None and f.rule == fr.FraudRule.SCALPER_GROUP and f.evidence["orders"] == ["o1", "o2"]
    assert fr.screen_group(fr.FraudRules(), {"o1": frozenset({DEV}), "o2": frozenset({DEV})}) is None


def test_FR2d_refund_rate_flags_a_downline_refunding_more_than_X_percent():
    def d(orders, paid, refunded):
        return fr.OrderSignals(buyer_id="b", downline={"d1": fr.DownlineRefunds(orders, paid, refunded)})

    assert fr.screen_order(ON, d(3, 10_000, 3000), ["d1"]) == {}  # exactly 30 %: not more
    assert fr.screen_order(ON, d(3, 10_000, 3001), ["d1"])["d1"][0].evidence["rate_bp"] == 3001
    assert fr.screen_order(ON, d(2, 10_000, 9000), ["d1"]) == {}  # too few orders to say anything


def test_FR2_thresholds_are_validated():
    from dataclasses import replace

    assert refusal(lambda: fr.validate_rules(replace(ON, scalper_min_seats=1))) == (ErrorCode.INVALID_INPUT, "FR-2")
    assert refusal(lambda: fr.validate_rules(replace(ON, refund_rate_max_bp=10_001)))[0] == ErrorCode.INVALID_INPUT


# ---------------------------------------------------------------- FR-3: holds change no amount
AMOUNT = st.integers(1, 10**7)
STEP = st.one_of(
    st.tuples(st.just("refund"), st.integers(1, 5000)),
    st.tuples(st.just("complete")),
    st.tuples(st.just("advance"), st.integers(0, 20)),
    st.tuples(st.just("flag")),
    st.tuples(st.just("clear")),
)


def _play(amount: int, steps, *, flags_on: bool):
    """A line's life under `steps`; with `flags_on` False every flag/clear is skipped."""
    line, post = cm.post_line(id="l", order_id="o", beneficiary_id="d", level=1, amount=amount, paid_base=5000)
    postings = list(post)
    now = T0
    for step in steps:
        if step[0] == "refund":
            line, ps = cm.refund_line(line, step[1])
        elif step[0] == "complete":
            line, ps = cm.freeze_line(line, now, 3)
        elif step[0] == "advance":
            now += timedelta(days=step[1])
            line, ps = cm.make_available(line, now)
        elif step[0] == "flag" and flags_on and line.state != cm.CommissionState.AVAILABLE:
            line, ps = fr.hold_line(line), ()
        elif step[0] == "clear" and flags_on:
            line, ps = fr.clear_line(line, now)
        else:
            ps = ()
        postings += ps
    return line, postings, now


@given(amount=AMOUNT, steps=st.lists(STEP, max_size=20))
def test_FR3_a_flag_changes_no_amount(amount, steps):
    """FR-3: flags change no amount. With flags and clearances interleaved anywhere, the line's standing and
    the sum of its postings are what they are without any flag; and once everything is cleared and the line
    is due, its buckets equal the unflagged life's exactly."""
    flagged, p1, now = _play(amount, steps, flags_on=True)
    plain, p2, _ = _play(amount, steps, flags_on=False)
    assert flagged.standing == plain.standing and flagged.original == plain.original == amount
    assert Balances.from_postings(p1).total == Balances.from_postings(p2).total == plain.standing
    assert not any(p.kind == EntryKind.COMMISSION_VOIDED for p in p1)
    cleared, ps = fr.clear_line(flagged, now)
    cleared, ps2 = cm.make_available(cleared, now)
    assert Balances.from_postings(p1 + list(ps) + list(ps2)) == Balances.from_postings(p2)
    assert cleared.state == plain.state


@given(amount=AMOUNT, steps=st.lists(STEP, max_size=20), void=st.booleans())
def test_FR3_clear_and_void_reconcile_with_the_ledger(amount, steps, void):
    """FR-3: a held line never reaches AVAILABLE; a clear resumes the life cycle (available at once if due),
    a void reverses exactly what still stands from the bucket it sits in: the line's balances are its
    standing in its state's bucket, and after a void all zero."""
    line, postings, now = _play(amount, steps, flags_on=True)
    if line.state == cm.CommissionState.AVAILABLE:
        return
    line = fr.hold_line(line)
    held, ps = cm.make_available(line, now + timedelta(days=99))
    assert held == line and ps == ()  # held: never released
    if void:
        new, ps = fr.void_held_line(line)
        assert new.state == cm.CommissionState.VOID and new.standing == 0
        assert Balances.from_postings(postings + list(ps)) == Balances()
        assert sum(p.amount for p in ps) == -line.standing
    else:
        new, ps = fr.clear_line(line, now)
        b = Balances.from_postings(postings + list(ps))
        assert not new.held and b.total == new.standing
        due = line.state == cm.CommissionState.FROZEN and line.available_at is not None and now >= line.available_at
        assert (new.state == cm.CommissionState.AVAILABLE) == due
        if new.state != cm.CommissionState.VOID:
            bucket = cm.STATE_BUCKET[new.state]
            assert getattr(b, bucket.value.lower()) == new.standing


def test_FR3_void_refuses_an_unheld_line_and_is_idempotent():
    line, _ = cm.post_line(id="l", order_id="o", beneficiary_id="d", level=1, amount=100, paid_base=1000)
    assert refusal(lambda: fr.void_held_line(line)) == (ErrorCode.INVALID_STATE, "FR-3")
    void, ps = fr.void_held_line(fr.hold_line(line))
    assert fr.void_held_line(void) == (void, ()) and ps[0].bucket == Bucket.PENDING


def test_FR3_a_flagged_group_is_dissolved_with_GB6_refunds_before_it_forms():
    seat = gb.Seat(
        order_id="o1",
        user_id="u1",
        quantity=1,
        unit_price=900,
        role=gb.PriceRole.LEADER,
        state=gb.SeatState.PAID,
        reserved_at=T0,
        pay_by=T0,
        paid_at=T0,
    )
    g = gb.Group(
        id="g",
        campaign_id="c",
        tiers=(gb.Tier(3, 900),),
        leader_user_id="u1",
        state=gb.GroupState.OPEN,
        seats=(seat,),
        opened_at=T0,
        expires_at=T0 + timedelta(days=1),
    )
    d = fr.dissolve_group(g, now=T0 + timedelta(hours=1))
    assert d.group.state == gb.GroupState.FAILED
    assert any(isinstance(i, gb.RefundOwed) and i.full and i.rule == "GB-6" for i in d.instructions)
    from dataclasses import replace

    assert (
        refusal(lambda: fr.dissolve_group(replace(g, state=gb.GroupState.FORMED), now=T0))[0] == ErrorCode.INVALID_STATE
    )


# ---------------------------------------------------------------- FR-4: every action says who, when and why
FP = st.builds(fr.Fingerprint, st.sampled_from(list(FPK)), st.text("0123456789abcdef", min_size=64, max_size=64))


@given(
    fps=st.frozensets(FP, max_size=4),
    seats=st.dictionaries(st.sampled_from(["o1", "o2", "o3", "o4"]), st.frozensets(FP, max_size=3), max_size=4),
    velocity=st.integers(0, 9),
    orders=st.integers(0, 9),
    paid=st.integers(1, 10**6),
    refunded=st.integers(0, 10**6),
)
def test_FR4_flags_say_why_with_counts_and_kinds_never_a_hash(fps, seats, velocity, orders, paid, refunded):
    """FR-4 (why) with FR-1 (only keyed hashes, and those stay in the database): the evidence a flag carries into
    the queue and its event names rules, counts, kinds and order ids — never a fingerprint hash."""
    rules = fr.FraudRules(
        self_dealing=True,
        velocity=True,
        velocity_max_orders=1,
        scalper_group=True,
        scalper_min_seats=2,
        refund_rate=True,
        refund_rate_min_orders=1,
        refund_rate_max_bp=0,
    )
    sig = fr.OrderSignals(
        buyer_id="b",
        fingerprints=fps,
        shared_with={"d1": frozenset(f.kind for f in fps)},
        velocity={"d1": velocity},
        downline={"d1": fr.DownlineRefunds(orders, paid, refunded)},
    )
    flags = [f for fs in fr.screen_order(rules, sig, ["d1"]).values() for f in fs]
    g = fr.screen_group(rules, seats)
    hashes = {f.hash for f in fps} | {f.hash for s in seats.values() for f in s}
    for f in flags + ([g] if g else []):
        assert f.rule in fr.RULE_ID and not any(h in repr(f.evidence) for h in hashes)


def test_FR4_every_review_action_is_a_catalog_event_naming_who_and_why():
    """FR-4: flag, clearance, void and dissolution each have an event type whose payload says who (`by`) and why
    (the rules and evidence of a flag; the admin's `reason` of a decision); when is the event's `occurred_at`."""
    from engine.events import EventType, payload_keys

    required, _ = payload_keys(EventType.FRAUD_FLAGGED)
    assert {"by", "rules", "evidence", "flag_id"} <= required
    for t in (EventType.FRAUD_CLEARED, EventType.FRAUD_VOIDED, EventType.FRAUD_GROUP_DISSOLVED):
        assert {"by", "reason", "flag_id", "line_ids"} <= payload_keys(t)[0]
    assert {"by", "reason", "transfer_ref", "fee_reversed"} <= payload_keys(EventType.PAYOUT_FAILED)[0]  # LG-4


# ---------------------------------------------------------------- FR-2: each rule flags iff its condition holds
BENS = st.lists(st.sampled_from(["b", "d1", "d2", "d3"]), min_size=1, max_size=4)
KINDS = st.frozensets(st.sampled_from(list(FPK)), max_size=4)
RULE_OFF = fr.FraudRules()


def _flagged(rules, sig, bens, rule):
    return {b for b, fs in fr.screen_order(rules, sig, bens).items() if any(f.rule == rule for f in fs)}


@given(
    bens=BENS,
    buyer=st.sampled_from(["b", "d1"]),
    shared=st.dictionaries(st.sampled_from(["b", "d1", "d2", "d3"]), KINDS, max_size=4),
    on=st.booleans(),
)
def test_FR2a_self_dealing_flags_iff_a_beneficiary_other_than_the_buyer_shares_a_fingerprint(bens, buyer, shared, on):
    """FR-2 (a): a beneficiary is flagged exactly when the rule is on, they are not the buyer (CM-2
    self-purchase) and at least one of the payment's fingerprint kinds was seen on their own paid orders."""
    sig = fr.OrderSignals(buyer_id=buyer, shared_with=shared)
    got = _flagged(fr.FraudRules(self_dealing=on), sig, bens, fr.FraudRule.SELF_DEALING)
    assert got == {b for b in bens if on and b != buyer and shared.get(b)}


@given(
    bens=BENS,
    kinds=KINDS,
    velocity=st.dictionaries(st.sampled_from(["b", "d1", "d2", "d3"]), st.integers(0, 40), max_size=4),
    n=st.integers(1, 30),
    window=st.integers(60, 366 * 86_400),
    on=st.booleans(),
)
def test_FR2b_velocity_flags_iff_more_than_N_matching_paid_orders_within_T(bens, kinds, velocity, n, window, on):
    """FR-2 (b): flagged iff the rule is on, the payment carries a device, IP or payer fingerprint and the
    paid orders within T earning that beneficiary and sharing one — the other `velocity[ben]` plus this one —
    are more than N. Exactly N is not flagged."""
    fps = frozenset(fr.Fingerprint(k, k.value.lower()) for k in kinds)
    rules = fr.validate_rules(fr.FraudRules(velocity=on, velocity_max_orders=n, velocity_window=window))
    sig = fr.OrderSignals(buyer_id="b", fingerprints=fps, velocity=velocity)
    got = _flagged(rules, sig, bens, fr.FraudRule.VELOCITY)
    signal = bool(kinds & fr.VELOCITY_KINDS)
    assert got == {b for b in bens if on and signal and velocity.get(b, 0) + 1 > n}
    for b, fs in fr.screen_order(rules, sig, bens).items():
        for f in fs:
            assert f.evidence == {"orders": velocity.get(b, 0) + 1, "max_orders": n, "window_seconds": window}


@given(
    seats=st.dictionaries(
        st.sampled_from([f"o{i}" for i in range(8)]),
        st.frozensets(
            st.builds(fr.Fingerprint, st.sampled_from(list(FPK)), st.sampled_from(["h1", "h2", "h3"])), max_size=3
        ),
        max_size=8,
    ),
    k=st.integers(2, 6),
    on=st.booleans(),
)
def test_FR2c_scalper_group_flags_iff_k_or_more_seats_share_one_fingerprint(seats, k, on):
    """FR-2 (c): flagged iff the rule is on and some one fingerprint (kind and hash) is on k or more paid
    seats; the evidence names that largest set of seats."""
    rules = fr.validate_rules(fr.FraudRules(scalper_group=on, scalper_min_seats=k))
    counts: dict[fr.Fingerprint, int] = {}
    for fps in seats.values():
        for fp in fps:
            counts[fp] = counts.get(fp, 0) + 1
    most = max(counts.values(), default=0)
    flag = fr.screen_group(rules, seats)
    assert (flag is not None) == (on and most >= k)
    if flag is not None:
        assert flag.rule == fr.FraudRule.SCALPER_GROUP and flag.evidence["seats"] == most >= k
        assert len(flag.evidence["orders"]) == most and set(flag.evidence["orders"]) <= set(seats)  # type: ignore[arg-type]


@given(
    orders=st.integers(0, 50),
    refunded=st.integers(0, 10**7),
    kept=st.integers(0, 10**7),
    x=st.one_of(st.integers(0, 10_000), st.sampled_from([0, 2500, 3000, 5000, 10_000])),
    min_orders=st.integers(1, 40),
    on=st.booleans(),
)
@example(orders=5, refunded=3000, kept=7000, x=3000, min_orders=5, on=True)  # exactly X %: not flagged
@example(orders=5, refunded=3001, kept=6999, x=3000, min_orders=5, on=True)
@example(orders=4, refunded=3001, kept=6999, x=3000, min_orders=5, on=True)
def test_FR2d_refund_rate_flags_iff_refunded_share_exceeds_X_over_at_least_min_orders(
    orders, refunded, kept, x, min_orders, on
):
    """FR-2 (d): flagged iff the rule is on, the downline paid at least `min_orders` orders within T and
    refunded × 10000 > paid × X (integer arithmetic: exactly X % is not flagged). Refunds never exceed
    what was paid."""
    paid = refunded + kept
    rules = fr.validate_rules(fr.FraudRules(refund_rate=on, refund_rate_max_bp=x, refund_rate_min_orders=min_orders))
    sig = fr.OrderSignals(buyer_id="b", downline={"d1": fr.DownlineRefunds(orders, paid, refunded)})
    got = _flagged(rules, sig, ["d1", "d2"], fr.FraudRule.REFUND_RATE)
    assert got == ({"d1"} if on and orders >= min_orders and refunded * 10_000 > paid * x else set())


@given(
    fps=st.frozensets(st.builds(fr.Fingerprint, st.sampled_from(list(FPK)), st.sampled_from(["h1", "h2"])), max_size=4),
    shared=st.dictionaries(st.sampled_from(["d1", "d2"]), KINDS, max_size=2),
    velocity=st.dictionaries(st.sampled_from(["d1", "d2"]), st.integers(0, 9), max_size=2),
    downline=st.dictionaries(
        st.sampled_from(["d1", "d2"]),
        st.builds(fr.DownlineRefunds, st.integers(0, 9), st.integers(0, 10**5), st.integers(0, 10**5)),
        max_size=2,
    ),
)
def test_FR2_a_rule_switched_off_never_flags(fps, shared, velocity, downline):
    """FR-2: with every rule off nothing is flagged, whatever the signals; and each rule switched on alone
    flags only under its own rule kind."""
    sig = fr.OrderSignals(buyer_id="b", fingerprints=fps, shared_with=shared, velocity=velocity, downline=downline)
    seats = {"o1": fps, "o2": fps, "o3": fps}
    assert fr.screen_order(RULE_OFF, sig, ["d1", "d2"]) == {} and fr.screen_group(RULE_OFF, seats) is None
    from dataclasses import replace

    low = replace(RULE_OFF, velocity_max_orders=1, refund_rate_max_bp=0, refund_rate_min_orders=1)
    for name, rule in (
        ("self_dealing", fr.FraudRule.SELF_DEALING),
        ("velocity", fr.FraudRule.VELOCITY),
        ("refund_rate", fr.FraudRule.REFUND_RATE),
    ):
        got = fr.screen_order(replace(low, **{name: True}), sig, ["d1", "d2"])
        assert all(f.rule == rule for fs in got.values() for f in fs)
    assert fr.screen_group(replace(low, self_dealing=True, velocity=True, refund_rate=True), seats) is None


@given(
    amount=AMOUNT,
    base=st.integers(1, 10**7),
    shared=KINDS,
    velocity=st.integers(0, 9),
    refunds=st.builds(fr.DownlineRefunds, st.integers(0, 9), st.integers(0, 10**5), st.integers(0, 10**5)),
    completed=st.booleans(),
)
def test_FR2_flags_never_change_an_amount(amount, base, shared, velocity, refunds, completed):
    """FR-2 with FR-3: screening reads no amount and a flag it raises only holds the line: original, standing,
    state and buckets stay what they were, and holding posts nothing."""
    rules = fr.FraudRules(
        self_dealing=True,
        velocity=True,
        velocity_max_orders=1,
        refund_rate=True,
        refund_rate_max_bp=0,
        refund_rate_min_orders=1,
    )
    line, post = cm.post_line(id="l", order_id="o", beneficiary_id="d1", level=1, amount=amount, paid_base=base)
    postings = list(post)
    if completed:
        line, ps = cm.freeze_line(line, T0, 3)
        postings += ps
    sig = fr.OrderSignals(
        buyer_id="b",
        fingerprints=frozenset({DEV}),
        shared_with={"d1": shared},
        velocity={"d1": velocity},
        downline={"d1": refunds},
    )
    before = line
    if fr.screen_order(rules, sig, ["d1"]).get("d1"):
        line = fr.hold_line(line)
    assert (line.original, line.standing, line.state, line.paid_base) == (
        before.original,
        before.standing,
        before.state,
        before.paid_base,
    )
    assert Balances.from_postings(postings).total == line.standing == amount


FR2_BOUNDS = {  # FR-2's thresholds and the range each takes, both ends included (engine/fraud.py validate_rules)
    "velocity_max_orders": (1, 10_000),
    "velocity_window": (60, 366 * 86_400),
    "scalper_min_seats": (2, 1000),
    "refund_rate_window": (3600, 366 * 86_400),
    "refund_rate_max_bp": (0, 10_000),
    "refund_rate_min_orders": (1, 100_000),
}


@pytest.mark.parametrize("name", sorted(FR2_BOUNDS))
def test_FR2_each_threshold_takes_both_ends_of_its_range_and_nothing_outside(name):
    from dataclasses import replace

    lo, hi = FR2_BOUNDS[name]
    for ok in (lo, hi):
        assert getattr(fr.validate_rules(replace(ON, **{name: ok})), name) == ok
    for bad in (lo - 1, hi + 1):
        with pytest.raises(RuleViolation) as e:
            fr.validate_rules(replace(ON, **{name: bad}))
        assert (e.value.code, e.value.field) == (ErrorCode.INVALID_INPUT, name)


def test_FR3_an_available_line_cannot_be_held():
    """FR-3 holds a line before its release; one already AVAILABLE was released and is refused, unchanged."""
    line, _ = cm.post_line(id="l", order_id="o", beneficiary_id="d", level=1, amount=100, paid_base=1000)
    available = cm.CommissionLine(**{**line.__dict__, "state": cm.CommissionState.AVAILABLE})
    with pytest.raises(RuleViolation) as e:
        fr.hold_line(available)
    assert e.value.code is ErrorCode.INVALID_STATE and e.value.rule == "FR-3"
    assert fr.hold_line(line).held
    void = cm.CommissionLine(**{**line.__dict__, "state": cm.CommissionState.VOID})
    assert fr.hold_line(void) == void  # nothing left to hold


def test_FR2_a_shop_that_never_set_its_rules_has_them_off_with_the_documented_thresholds():
    """FR-2 leaves the thresholds to the shop; the defaults a shop starts with are those of docs/api.md
    (fraud review): N = 5 orders in T = 1 day, k = 2 seats, X = 30 % over 30 days and at least 5 orders."""
    r = fr.FraudRules()
    assert not (r.self_dealing or r.velocity or r.scalper_group or r.refund_rate)
    assert (r.velocity_max_orders, r.velocity_window) == (5, 86_400)
    assert r.scalper_min_seats == 2
    assert (r.refund_rate_window, r.refund_rate_max_bp, r.refund_rate_min_orders) == (30 * 86_400, 3000, 5)
