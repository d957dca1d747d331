"""Settings and campaign fields are validated at their boundaries (survivors of the first engine mutation run)."""

from __future__ import annotations

import pytest

from engine.distribution import BindingMode, DistributionSettings, validate_settings
from engine.errors import RuleViolation


def test_rf1_expiring_binding_takes_one_day_and_no_less():
    validate_settings(DistributionSettings(binding=BindingMode.EXPIRING, binding_days=1))
    for bad in (0, -1, None):
        with pytest.raises(RuleViolation):
            validate_settings(DistributionSettings(binding=BindingMode.EXPIRING, binding_days=bad))


@pytest.mark.parametrize("name", ["level1_bp", "level2_bp", "max_total_bp", "payout_fee_bp"])
def test_rates_are_0_to_10000_bp_inclusive(name):
    validate_settings(DistributionSettings(**{name: 0}))
    validate_settings(DistributionSettings(**{name: 10_000}))
    for bad in (-1, 10_001):
        with pytest.raises(RuleViolation):
            validate_settings(DistributionSettings(**{name: bad}))


@pytest.mark.parametrize("name", ["freeze_days", "min_payout", "spend_threshold"])
def test_days_and_amounts_are_whole_and_not_negative(name):
    validate_settings(DistributionSettings(**{name: 0}))
    with pytest.raises(RuleViolation):
        validate_settings(DistributionSettings(**{name: -1}))


def test_leader_commission_bp_takes_0_to_10000_inclusive():
    """Section 2 `leader_commission_bp`: 0 (no reward) and 10000 are valid, outside is refused."""
    from dataclasses import replace
    from datetime import datetime, timedelta, timezone

    from engine.groupbuy import Campaign, Tier, validate_campaign

    t0 = datetime(2026, 1, 1, tzinfo=timezone.utc)
    c = Campaign(
        id="c",
        list_price=10_000,
        tiers=(Tier(2, 8_000),),
        duration=timedelta(hours=1),
        payment_window=timedelta(minutes=5),
        starts_at=t0,
        ends_at=t0 + timedelta(days=1),
    )
    for ok in (None, 0, 10_000):
        validate_campaign(replace(c, leader_commission_bp=ok))
    for bad in (-1, 10_001):
        with pytest.raises(RuleViolation):
            validate_campaign(replace(c, leader_commission_bp=bad))


def test_every_engine_dataclass_is_frozen():
    """docs/architecture.md: every value the rules decide over is a frozen dataclass."""
    import dataclasses
    import importlib
    import inspect
    import pkgutil

    import engine

    found = 0
    for info in pkgutil.iter_modules(engine.__path__):
        module = importlib.import_module(f"engine.{info.name}")
        for _, cls in inspect.getmembers(module, inspect.isclass):
            if dataclasses.is_dataclass(cls) and cls.__module__ == module.__name__:
                found += 1
                assert cls.__dataclass_params__.frozen, f"{module.__name__}.{cls.__name__} is not frozen"
    assert found > 30


def test_rp2_winner_needs_an_interval_that_excludes_zero():
    """RP-2 (engine/stats.py): a difference whose interval touches 0 names no winner."""
    from engine.stats import RateDifference

    assert not RateDifference(difference_bp=10, low_bp=0, high_bp=20).has_winner
    assert RateDifference(difference_bp=10, low_bp=1, high_bp=20).has_winner
    assert RateDifference(difference_bp=-10, low_bp=-20, high_bp=-1).has_winner
    assert not RateDifference(difference_bp=-10, low_bp=-20, high_bp=0).has_winner
    assert not RateDifference(difference_bp=10, low_bp=1, high_bp=20, enough_data=False).has_winner


def test_rp2_intervals_need_decided_groups():
    from engine.stats import formation_rate_difference, wilson_interval

    assert formation_rate_difference(1, 1, 0, 0) is None
    assert formation_rate_difference(0, 0, 1, 1) is None
    for successes, trials in ((0, 0), (1, 0), (3, 2), (-1, 2)):
        with pytest.raises(ValueError):
            wilson_interval(successes, trials)


def test_lg2_approving_nothing_is_refused():
    from engine.ledger import approve_payout

    with pytest.raises(RuleViolation):
        approve_payout(0, fee=0)


def test_lg2_rejecting_or_failing_nothing_is_refused():
    """LG-2/LG-4: a rejection or a failed transfer moves a positive amount back, never 0 or less (seed-22
    survivor: `reject_payout` without its `_positive` check)."""
    from engine.ledger import fail_payout, reject_payout

    for amount in (0, -5):
        with pytest.raises(RuleViolation):
            reject_payout(amount)
        with pytest.raises(RuleViolation):
            fail_payout(amount, fee=0)
    assert sum(p.amount for p in reject_payout(5)) == 0  # a move: what leaves one bucket enters the other


# ---------------------------------------------------------------- survivors of the engine sample of issue 12
def _campaign(**over):
    from datetime import datetime, timedelta, timezone

    from engine.groupbuy import Campaign, Tier

    t0 = datetime(2026, 1, 1, tzinfo=timezone.utc)
    return Campaign(
        **{
            "id": "c",
            "list_price": 10_000,
            "tiers": (Tier(2, 8_000),),
            "duration": timedelta(hours=1),
            "payment_window": timedelta(minutes=5),
            "starts_at": t0,
            "ends_at": t0 + timedelta(days=1),
            **over,
        }
    )


def test_section2_campaign_fields_default_to_the_rules_defaults():
    """Section 2: no leader discount or reward of its own, unlimited stock and units per user, one unit per
    order, open to everyone (not new members only), no fill at expiry, no lottery."""
    c = _campaign()
    assert (
        c.leader_discount,
        c.leader_commission_bp,
        c.stock,
        c.per_user_limit,
        c.max_quantity_per_order,
        c.new_members_only,
        c.fill_at_expiry,
        c.lottery_winners,
    ) == (0, None, None, None, 1, False, None, 0)


def test_gb2_a_campaign_not_new_members_only_admits_a_member_with_paid_orders():
    from dataclasses import replace
    from datetime import timedelta

    from engine import groupbuy as gb

    c = _campaign()
    now = c.starts_at + timedelta(minutes=1)
    g = gb.open_group(
        c, group_id="g", order_id="o1", user_id="lead", quantity=1, now=now, stock_left=None, user_units_held=0
    ).group
    g = gb.pay_seat(c, g, order_id="o1", amount=g.seats[0].unit_price, now=now).group
    joined = gb.join_group(
        c,
        g,
        order_id="o2",
        user_id="old-customer",
        quantity=1,
        now=now,
        stock_left=None,
        user_units_held=0,
        user_has_paid_order=True,
    )
    assert joined.group.seat_of("old-customer") is not None
    with pytest.raises(RuleViolation) as e:
        gb.join_group(
            replace(c, new_members_only=True),
            g,
            order_id="o3",
            user_id="old-customer",
            quantity=1,
            now=now,
            stock_left=None,
            user_units_held=0,
            user_has_paid_order=True,
        )
    assert e.value.code.value == "NEW_MEMBERS_ONLY"


def test_section2_campaign_times_must_carry_a_time_zone():
    from engine.groupbuy import validate_campaign

    c = _campaign()
    for name in ("starts_at", "ends_at"):
        with pytest.raises(RuleViolation) as e:
            validate_campaign(_campaign(**{name: getattr(c, name).replace(tzinfo=None)}))
        assert e.value.field == name


def test_section2_stock_zero_is_valid_and_below_zero_is_refused():
    from engine.groupbuy import validate_campaign

    validate_campaign(_campaign(stock=0))
    with pytest.raises(RuleViolation) as e:
        validate_campaign(_campaign(stock=-1))
    assert e.value.field == "stock"


def test_lv1_a_distributor_without_activity_meets_no_condition():
    """`Metrics()` is a distributor with nothing yet: every metric 0, so any level with a condition is out of
    reach and grade 0 is where they stand."""
    from dataclasses import fields

    from engine.levels import Level, Metrics, qualifying_grade

    assert all(getattr(Metrics(), f.name) == 0 for f in fields(Metrics))
    for f in fields(Metrics):
        levels = [Level(0, "base", 100, 50), Level(1, "one", 200, 100, **{f"min_{f.name}": 1})]
        assert qualifying_grade(levels, Metrics()) == 0, f.name
        assert qualifying_grade(levels, Metrics(**{f.name: 1})) == 1, f.name


def test_leader_reward_is_nothing_when_commission_is_off_or_the_leader_has_not_paid_CM3():
    """团长佣金 (section 2, CM-3): a campaign with commission switched off, or a leader whose own seat is not
    paid, earns exactly 0 — with the base still reported (what the others paid net)."""
    from engine.commission import leader_reward

    others = [(8_000, 0), (8_000, 2_000)]
    assert leader_reward(1_000, enabled=False, leader_paid=True, other_members=others) == (0, 14_000)
    assert leader_reward(1_000, enabled=True, leader_paid=False, other_members=others) == (0, 14_000)
    assert leader_reward(1_000, enabled=True, leader_paid=True, other_members=others) == (1_400, 14_000)


def test_cm4_a_missing_level_1_takes_no_room_under_the_cap():
    """CM-4: the cap is shared by the beneficiaries the order has; with no level 1 the level 2 amount may use
    all of it (an absent beneficiary is 0, not a phantom unit)."""
    from engine.commission import Beneficiary, LineBase, compute_commissions
    from engine.distribution import DistributionSettings, DistributorStatus

    lines = [LineBase("p", 1, 10_000)]
    two = Beneficiary("b2", 2, DistributorStatus.ACTIVE, 5_000)
    out = compute_commissions(DistributionSettings(max_total_bp=5_000), lines=lines, level1=None, level2=two)
    assert [(c.user_id, c.amount) for c in out] == [("b2", 5_000)]


def test_section3_a_new_shops_settings_are_the_documented_defaults():
    """Reading D-C1 (docs/rules-readings-distribution.md): a shop starts with `DistributionSettings()` —
    EVERYONE, PERMANENT binding, 10 % / 5 %, no self-purchase, 7 freeze days, the 50 % cap of section 3,
    a minimum payout of 100 minor units, no fee, no spend threshold."""
    from engine.distribution import BindingMode, DistributionMode, DistributionSettings

    s = DistributionSettings()
    assert (
        s.mode,
        s.binding,
        s.binding_days,
        s.bind_new_users_only,
        s.level1_bp,
        s.level2_bp,
        s.self_purchase,
        s.freeze_days,
        s.max_total_bp,
        s.min_payout,
        s.payout_fee_bp,
        s.spend_threshold,
    ) == (DistributionMode.EVERYONE, BindingMode.PERMANENT, None, False, 1_000, 500, False, 7, 5_000, 100, 0, 0)


def test_er1_a_refusal_reads_as_its_message():
    """ER-1: `str()` of a refusal is its message (what a traceback or a log line of it shows)."""
    from engine.errors import ErrorCode, refuse

    e = refuse(ErrorCode.INVALID_INPUT, "amount must be positive", field="amount")
    assert str(e) == "amount must be positive" and e.args == ("amount must be positive",)


def test_gb2_joining_needs_an_aware_now():
    from datetime import timedelta

    from engine import groupbuy as gb

    c = _campaign()
    now = c.starts_at + timedelta(minutes=1)
    g = gb.open_group(
        c, group_id="g", order_id="o1", user_id="lead", quantity=1, now=now, stock_left=None, user_units_held=0
    ).group
    g = gb.pay_seat(c, g, order_id="o1", amount=g.seats[0].unit_price, now=now).group
    with pytest.raises(RuleViolation) as e:
        gb.join_group(
            c,
            g,
            order_id="o2",
            user_id="m",
            quantity=1,
            now=now.replace(tzinfo=None),
            stock_left=None,
            user_units_held=0,
            user_has_paid_order=False,
        )
    assert e.value.field == "now"


def test_gb9_a_late_payment_releases_the_reservation_it_came_for():
    """GB-9 / GB-1: the leader pays after the payment window: the reservation is RELEASED (its stock back),
    the group is CANCELLED and the money is owed back in full."""
    from datetime import timedelta

    from engine import groupbuy as gb

    c = _campaign()
    now = c.starts_at + timedelta(minutes=1)
    g = gb.open_group(
        c, group_id="g", order_id="o1", user_id="lead", quantity=1, now=now, stock_left=None, user_units_held=0
    ).group
    late = gb.pay_seat(c, g, order_id="o1", amount=g.seats[0].unit_price, now=now + c.payment_window)
    assert late.group.seats[0].state is gb.SeatState.RELEASED and late.group.state is gb.GroupState.CANCELLED
    assert [type(i).__name__ for i in late.instructions].count("RefundOwed") == 1


def test_lv1_a_shop_without_levels_keeps_everyone_at_grade_0():
    """D-R29: an empty level table is valid (the shop defaults apply); nobody qualifies for a grade then, so
    LV-2 leaves every distributor at 0 and credits no bonus."""
    from engine.levels import Metrics, evaluate_level, qualifying_grade

    busy = Metrics(direct_referrals=50, team_size=500, own_spend=10**7, own_orders=40)
    assert qualifying_grade([], busy) == 0
    d = evaluate_level([], current_grade=0, metrics=busy, bonuses_credited=frozenset())
    assert (d.grade, d.bonuses) == (0, ())


@pytest.mark.parametrize("winners", [1.5, True, "2", None])
def test_gb7_lottery_winners_must_be_an_int(winners):
    """Section 2/GB-7: `lottery_winners` that is not an int (a float, a bool, a string, nothing) is INVALID_INPUT
    on that field — not a TypeError, and not the seed's refusal (engine/groupbuy.py `validate_campaign`)."""
    from engine.errors import ErrorCode
    from engine.groupbuy import validate_campaign

    with pytest.raises(RuleViolation) as e:
        validate_campaign(_campaign(lottery_winners=winners))
    assert (e.value.code, e.value.field) == (ErrorCode.INVALID_INPUT, "lottery_winners")
    validate_campaign(_campaign(lottery_winners=0))


@pytest.mark.parametrize(
    "over", [{"level1_bp": True}, {"level2_bp": 500.0}, {"upgrade_bonus": 1.5}, {"min_direct_referrals": True}]
)
def test_lv1_level_rates_bonus_and_conditions_must_be_ints_not_bools_or_floats(over):
    """LV-1 (engine/levels.py `validate_levels`): a rate, bonus or condition that is a bool or a float is
    INVALID_INPUT, even when its value would be in range (True is 1, 1.5 ≥ 0)."""
    from engine.errors import ErrorCode
    from engine.levels import Level, validate_levels

    base = {"grade": 1, "name": "Silver", "level1_bp": 1000, "level2_bp": 500}
    validate_levels([Level(grade=0, name="Member", level1_bp=1000, level2_bp=500), Level(**base)])
    with pytest.raises(RuleViolation) as e:
        validate_levels([Level(grade=0, name="Member", level1_bp=1000, level2_bp=500), Level(**{**base, **over})])
    assert (e.value.code, e.value.field) == (ErrorCode.INVALID_INPUT, "levels")


@pytest.mark.parametrize("bp", [0, 10_000])
def test_lv1_a_level_rate_takes_0_and_10000_bp(bp):
    """LV-1: a level's rates are in 0..10000 bp, both ends included (a timed-out mutant of the seed-22 sample:
    `<= 10000` as `< 10000`)."""
    from engine.levels import Level, validate_levels

    member = Level(grade=0, name="Member", level1_bp=1000, level2_bp=500)
    validate_levels([member, Level(grade=1, name="Top", level1_bp=bp, level2_bp=bp)])
    with pytest.raises(RuleViolation):
        validate_levels([member, Level(grade=1, name="Top", level1_bp=bp - 1 if bp == 0 else bp + 1, level2_bp=0)])


def test_FR1_a_fingerprint_of_512_characters_is_hashed_and_513_is_refused():
    """FR-1: a fingerprint value is 1..512 characters (`MAX_FINGERPRINT`); longer is invalid input, not a hash."""
    from engine import fraud as fr

    assert len(fr.fingerprint_hash(b"k", fr.FingerprintKind.DEVICE, "d" * 512)) == 64
    with pytest.raises(RuleViolation):
        fr.fingerprint_hash(b"k", fr.FingerprintKind.DEVICE, "d" * 513)


def test_LG4_a_payee_reference_of_128_characters_is_kept_masked_and_129_is_refused():
    """LG-4: the account reference is 1..128 characters (`MAX_REFERENCE`)."""
    from engine import ledger as lg

    method = lg.payee_method("BANK_ACCOUNT", "9" * 128)
    assert method.masked_reference.endswith("9999") and len(method.masked_reference) < 128
    with pytest.raises(RuleViolation):
        lg.payee_method("BANK_ACCOUNT", "9" * 129)


def test_RF1_an_unknown_binding_mode_is_refused_naming_its_field():
    with pytest.raises(RuleViolation) as e:
        validate_settings(DistributionSettings(binding="forever"))  # type: ignore[arg-type]
    assert e.value.field == "binding" and e.value.rule == "RF-1"
