#!/usr/bin/env python3
"""Break the wiring of each rule, one line at a time, and check its test fails (issue 12, point 2).

    .venv/bin/python tools/wiring_breaks.py            # every break (about 1 min each on a loaded machine)
    .venv/bin/python tools/wiring_breaks.py 0 5 17     # some of them, by index (--list shows them)

Each entry is (file, text, replacement, test): the text must occur exactly once (every chosen entry is
checked before the first run: STALE, exit 2); it is replaced in a scratch copy of the repository, the
named test runs there (`test_id`: of tests/integration/test_rules_wired.py, of
tests/api/test_rules_wired_api.py for a name ending in `_api`, or `path::name`), and the break is KILLED
when the test fails (ERROR when pytest ends otherwise: no such test, a collection error). The work tree
is never touched. docs/testing.md lists the outcome of the last run; the one expected survivor is
`per_user_limit` (the database guard enforces it too: note 1 there).
Needs DATABASE_URL, like the suite.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

CASES = [
    (
        "engine/groupbuy.py",
        "g = replace(g, leader_user_id=remaining[0].user_id)",
        "g = replace(g, leader_user_id=remaining[0].user_id, expires_at=min(remaining[0].paid_at + campaign.duration, campaign.ends_at))",
        "test_gb8_leader_handover_keeps_deadline_through_service",
    ),
    (
        "store/mapping.py",
        "fill_at_expiry=r.fill_at_expiry,",
        "fill_at_expiry=None,",
        "test_gb4_fill_at_expiry_forms_a_short_group_at_the_first_tier_through_service",
    ),
    (
        "store/mapping.py",
        "self_purchase=r.self_purchase,",
        "self_purchase=False,",
        "test_cm2_self_purchase_pays_the_buying_distributor_through_service",
    ),
    (
        "store/mapping.py",
        "max_total_bp=r.max_total_bp,",
        "max_total_bp=5000,",
        "test_cm4_total_cap_cuts_level_two_first_through_service",
    ),
    (
        "service/tx/commissions.py",
        "level1_amount=a1,",
        "level1_amount=None,",
        "test_cm3_product_fixed_amounts_apply_whatever_the_levels_through_service",
    ),
    (
        "service/tx/commissions.py",
        "level2_amount=a2)",
        "level2_amount=None)",
        "test_cm3_product_fixed_amounts_apply_whatever_the_levels_through_service",
    ),
    (
        "service/tx/commissions.py",
        "cm.ProductTerms(earns_commission=earns,",
        "cm.ProductTerms(earns_commission=True,",
        "test_or3_product_that_earns_no_commission_through_service",
    ),
    (
        "service/tx/commissions.py",
        "settings, levels, pv.PaymentFacts(",
        "settings, (), pv.PaymentFacts(",
        "test_cm3_level_rates_replace_the_shop_defaults_through_service",
    ),
    (
        "service/tx/group_batch.py",
        "enabled=ld.campaign_row.commission_enabled,",
        "enabled=True,",
        "test_cm3_campaign_commission_switch_off_through_service",
    ),
    (
        "service/usecases/orders.py",
        "freeze_days=got.freeze_days,",
        "freeze_days=7,",
        "test_cm6_freeze_days_is_the_stored_setting_through_service",
    ),
    (
        "store/mapping.py",
        "new_members_only=r.new_members_only,",
        "new_members_only=False,",
        "test_gb2_new_members_only_refuses_a_buyer_with_a_paid_order_through_service",
    ),
    (
        "service/usecases/distribution.py",
        "user_has_paid=await _user_has_paid(s, shop_id, user_id)",
        "user_has_paid=False",
        "test_rf1_bind_new_users_only_refuses_a_buyer_with_a_paid_order_through_service",
    ),
    (
        "service/usecases/groups.py",
        "        variant=variant,\n",
        "        variant=None,\n",
        "test_variants_group_uses_its_variants_tiers_through_service",
    ),
    (
        "service/tx/group_batch.py",
        "c.leader_commission_bp,\n                enabled=c.commission_enabled,",
        "1000,\n                enabled=c.commission_enabled,",
        "test_gb4_leader_commission_rate_is_the_campaigns_through_service",
    ),
    (
        "store/mapping.py",
        "binding_days=r.binding_days,",
        "binding_days=30,",
        "test_rf1_expiring_binding_lapses_after_binding_days_through_service",
    ),
    (
        "store/mapping.py",
        "spend_threshold=r.spend_threshold,",
        "spend_threshold=0,",
        "test_ds1_spend_threshold_admits_when_net_spend_reaches_it_through_service",
    ),
    (
        "store/mapping.py",
        "payment_window=timedelta(seconds=r.payment_window_s),",
        "payment_window=timedelta(minutes=15),",
        "test_gb2_payment_window_releases_an_unpaid_seat_through_service",
    ),
    (
        "store/mapping.py",
        "lottery_winners=r.lottery_winners,",
        "lottery_winners=0,",
        "test_gb7_lottery_winners_get_their_orders_free_through_service",
    ),
    (
        "store/mapping.py",
        "leader_discount=r.leader_discount,",
        "leader_discount=0,",
        "test_gb3_leader_discount_lowers_the_leaders_price_through_service",
    ),
    (
        "store/mapping.py",
        "per_user_limit=r.per_user_limit,",
        "per_user_limit=None,",
        "test_gb2_per_user_limit_counts_across_groups_through_service",
    ),
    (
        "store/mapping.py",
        "max_quantity_per_order=r.max_quantity_per_order,",
        "max_quantity_per_order=10,",
        "test_gb2_max_quantity_per_order_through_service",
    ),
    (
        "store/mapping.py",
        "min_payout=r.min_payout,",
        "min_payout=100,",
        "test_lg2_min_payout_and_fee_are_the_stored_settings_through_service",
    ),
    (
        "store/mapping.py",
        "duration=timedelta(seconds=r.duration_s),",
        "duration=timedelta(hours=24),",
        "test_gb1_duration_sets_expiry_from_leader_payment_through_service",
    ),
    (
        "store/mapping.py",
        "ends_at=r.ends_at,",
        "ends_at=r.ends_at + timedelta(days=30),",
        "test_gb1_expiry_capped_at_campaign_ends_at_through_service",
    ),
    (
        "store/mapping.py",
        "starts_at=r.starts_at,",
        "starts_at=r.starts_at - timedelta(days=30),",
        "test_gb1_groups_open_only_inside_the_campaign_window_through_service",
    ),
    (
        "service/tx/group_batch.py",
        "SET stock_left = c.stock_left + v.d FROM",
        "SET stock_left = c.stock_left + 0 * v.d FROM",
        "test_gb1_stock_is_taken_at_reservation_and_refused_when_gone_through_service",
    ),
    (
        "service/tx/group_batch.py",
        "SET stock_left = c.stock_left + v.d FROM",
        "SET stock_left = c.stock_left + 0 * v.d FROM",
        "test_gb6_failed_group_refunds_in_full_and_returns_stock_through_service",
    ),
    (
        "store/mapping.py",
        "binding=BindingMode(r.binding),",
        "binding=BindingMode.LAST_TOUCH,",
        "test_rf1_permanent_binding_refuses_a_second_referrer_through_service",
    ),
    (
        "store/mapping.py",
        "binding=BindingMode(r.binding),",
        "binding=BindingMode.PERMANENT,",
        "test_rf1_last_touch_binding_replaces_the_referrer_through_service",
    ),
    (
        "store/mapping.py",
        "mode=DistributionMode(r.mode),",
        "mode=DistributionMode.EVERYONE,",
        "test_ds1_approval_mode_waits_for_an_admin_through_service",
    ),
    (
        "store/mapping.py",
        "mode=DistributionMode(r.mode),",
        "mode=DistributionMode.APPROVAL,",
        "test_ds1_everyone_mode_admits_at_first_order_through_service",
    ),
    (
        "store/mapping.py",
        "payout_fee_bp=r.payout_fee_bp,",
        "payout_fee_bp=0,",
        "test_lg2_min_payout_and_fee_are_the_stored_settings_through_service",
    ),
    (
        "store/mapping.py",
        "level1_bp=r.level1_bp,\n        level2_bp=r.level2_bp,\n        self_purchase",
        "level1_bp=1000,\n        level2_bp=r.level2_bp,\n        self_purchase",
        "test_cm3_shop_default_rates_are_the_stored_ones_through_service",
    ),
    (
        "store/mapping.py",
        "upgrade_bonus=r.upgrade_bonus,",
        "upgrade_bonus=0,",
        "test_lv2_lv4_binding_moves_the_referrer_up_and_credits_each_bonus_once_through_service",
    ),
    (
        "store/mapping.py",
        "min_own_spend=r.min_own_spend,",
        "",
        "test_lv1_each_stored_upgrade_condition_must_hold_through_service",
    ),
    (
        "store/mapping.py",
        "min_team_sales=r.min_team_sales,",
        "",
        "test_lv1_each_stored_upgrade_condition_must_hold_through_service",
    ),
    (
        "store/mapping.py",
        "tiers=tiers_from_json(r.tiers),\n        duration",
        "tiers=tiers_from_json(r.tiers)[:1],\n        duration",
        "test_gb2_capacity_is_the_last_tier_of_the_stored_ladder_through_service",
    ),
    (
        "service/usecases/payouts.py",
        "status=DistributorStatus(row.d_status),",
        "status=DistributorStatus.ACTIVE,",
        "test_ds1_suspended_distributor_may_not_request_a_payout_through_service",
    ),
    (
        "service/usecases/refunds.py",
        "    if decision.goods_refund:\n        await commissions.on_order_refunded(",
        "    if False:\n        await commissions.on_order_refunded(",
        "test_cm5_refund_reverses_the_stored_lines_in_proportion_through_service",
    ),
    (
        "service/tx/commissions.py",
        "pv.PaymentFacts(order.buyer_id, level1_ref, level2_ref, parties)",
        "pv.PaymentFacts(order.buyer_id, level1_ref, None, parties)",
        "test_rf2_snapshot_keeps_level_two_after_the_chain_changes_through_service",
    ),
    (
        "store/mapping.py",
        "order_code_overrides=r.order_code_overrides,",
        "order_code_overrides=False,",
        "test_rf3_order_code_overrides_is_the_stored_setting_through_service",
    ),
    (
        "service/tx/commissions.py",
        "        level1_ref = got.code_referrer",
        "        pass",
        "test_rf3_order_code_overrides_is_the_stored_setting_through_service",
    ),
    (
        "service/usecases/webhooks.py",
        "    if unknown:  #",
        "    if False:  #",
        "test_webhook_subscription_to_an_unknown_event_type_is_invalid_input_api",
    ),
    (
        "service/tx/lean.py",
        'paid_at=m["s_paid_at"][i],',
        'paid_at=m["s_reserved_at"][i],',
        "test_gb8_handover_goes_to_the_earliest_paid_member_through_service",
    ),
    (
        "store/mapping.py",
        "lottery_seed=r.lottery_seed,",
        "lottery_seed='x',",
        "test_gb7_a_group_opened_before_v2_draws_with_the_campaign_seed_through_service",
    ),
    (
        "service/tx/lean.py",
        "lottery_seed=unseal(g.lottery_seed),",
        "lottery_seed=None,",
        "test_gb7_winners_are_the_draw_of_the_stored_seed_through_service",
    ),
    (
        "store/mapping.py",
        "min_own_orders=r.min_own_orders,",
        "",
        "test_lv1_each_stored_upgrade_condition_must_hold_through_service",
    ),
    (
        "store/mapping.py",
        "min_direct_sales=r.min_direct_sales,",
        "",
        "test_lv1_each_stored_upgrade_condition_must_hold_through_service",
    ),
    (
        "store/mapping.py",
        "min_team_size=r.min_team_size,",
        "",
        "test_lv1_each_stored_upgrade_condition_must_hold_through_service",
    ),
    # ---- v2 rules (issues 15, 16): RF-3, GB-14, FR-1/FR-2, CM-7
    (
        "store/mapping.py",
        "order_code_overrides=r.order_code_overrides,",
        "order_code_overrides=True,",
        "test_rf3_order_code_overrides_is_the_stored_setting_through_service",
    ),
    (
        "service/usecases/groups.py",
        "SELECT overflow_reseat FROM shops",
        "SELECT false FROM shops",
        "tests/integration/test_groupbuy_v2.py::"
        "test_GB14_overflow_reseat_seats_the_late_payment_in_another_open_group_at_its_price",
    ),
    (
        "service/usecases/groups.py",
        "SELECT overflow_reseat FROM shops",
        "SELECT true FROM shops",
        "tests/integration/test_groupbuy_v2.py::"
        "test_GB14_overflow_reseat_is_off_by_default_and_the_late_payment_is_refunded",
    ),
    (
        "service/tx/commissions.py",
        "rules_json=_j(got.fraud)",
        "rules_json=None",
        "test_fr2b_velocity_thresholds_are_the_stored_rules_through_service",
    ),
    (
        "service/tx/fraud.py",
        '"since_v": now - timedelta(seconds=rules.velocity_window),',
        '"since_v": now - timedelta(seconds=86_400),',
        "test_fr2b_velocity_thresholds_are_the_stored_rules_through_service",
    ),
    (
        "service/tx/fraud.py",
        "for f in RULE_FIELDS if d.get(f) is not None})",
        'for f in RULE_FIELDS if d.get(f) is not None and f != "velocity_max_orders"})',
        "test_fr2b_velocity_thresholds_are_the_stored_rules_through_service",
    ),
    (
        "service/usecases/orders.py",
        "fraud.carry(s, order.order_id, fps)",
        "None",
        "test_fr2b_velocity_thresholds_are_the_stored_rules_through_service",
    ),
    (
        "service/tx/fraud.py",
        '"since_r": now - timedelta(seconds=rules.refund_rate_window),',
        '"since_r": now,',
        "tests/api/test_fraud_review_api.py::test_FR2d_a_downline_refunding_over_X_percent_holds_the_next_commission_api",
    ),
    (
        "service/reads/preview.py",
        "levels = tuple(mapping.level_from_row(_obj(d)) for d in (_j(got.levels) or []))",
        "levels = ()",
        "test_cm7_preview_is_what_the_payment_posts_with_stored_levels_and_products_through_service",
    ),
    (
        "service/reads/preview.py",
        "ref: cm.ProductTerms(earns_commission=e, level1_amount=a1, level2_amount=a2)",
        "ref: cm.ProductTerms()",
        "test_cm7_preview_is_what_the_payment_posts_with_stored_levels_and_products_through_service",
    ),
    (
        "engine/preview.py",
        "got = payment_commission(settings, levels, facts, lines, enabled=enabled)",
        "got = payment_commission(settings, (), facts, lines, enabled=enabled)",
        "test_cm7_preview_is_what_the_payment_posts_with_stored_levels_and_products_through_service",
    ),
]


def test_id(test: str) -> str:
    """A bare name is a test of test_rules_wired.py (of tests/api/test_rules_wired_api.py when it ends in
    `_api`); `path::name` names a test elsewhere (a v2 rule proven by its own module's test)."""
    if "::" in test:
        return test
    module = "tests/api/test_rules_wired_api.py" if test.endswith("_api") else "tests/integration/test_rules_wired.py"
    return f"{module}::{test}"


def main(argv: list[str]) -> int:
    if "--list" in argv:
        for i, (f, old, new, test) in enumerate(CASES):
            print(f"{i:>2} {f}: {old!r} -> {new!r}  [{test}]")
        return 0
    chosen = [int(a) for a in argv] or list(range(len(CASES)))
    stale = [i for i in chosen if (ROOT / CASES[i][0]).read_text().count(CASES[i][1]) != 1]
    for i in stale:  # checked before any run, so a stale entry does not end a long run half way
        f, old = CASES[i][:2]
        print(f"STALE    {i:>2} {f}: {old!r} occurs {(ROOT / f).read_text().count(old)} times (must be once)")
    if stale:
        return 2
    work = Path(tempfile.mkdtemp(prefix="sharecart-wiring-"))
    outcome = {"KILLED": 0, "SURVIVED": 0, "ERROR": 0}
    try:
        shutil.copytree(
            ROOT,
            work,
            dirs_exist_ok=True,
            ignore=shutil.ignore_patterns(
                ".git", ".venv", "__pycache__", ".hypothesis", ".mypy_cache", ".pytest_cache"
            ),
        )
        for i in chosen:
            f, old, new, test = CASES[i]
            path = work / f
            original = path.read_text()
            path.write_text(original.replace(old, new))
            r = subprocess.run(
                [sys.executable, "-m", "pytest", "-x", "-q", "-p", "no:cacheprovider", test_id(test)],
                cwd=work,
                capture_output=True,
                text=True,
                env={**os.environ, "PYTHONDONTWRITEBYTECODE": "1"},
            )
            path.write_text(original)
            # pytest's exit codes: 0 passed, 1 a test failed; anything else (no such test, a collection or
            # usage error) proves nothing about the break
            verdict = {0: "SURVIVED", 1: "KILLED"}.get(r.returncode, "ERROR")
            outcome[verdict] += 1
            print(f"{verdict:<8} {i:>2} {f}: {old[:50]!r} -> {new[:40]!r}  [{test}]", flush=True)
            if verdict == "ERROR":
                print((r.stdout + r.stderr)[-1500:], flush=True)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    print(
        f"{outcome['KILLED']} of {len(chosen)} breaks failed their test"
        f" ({outcome['SURVIVED']} survived, {outcome['ERROR']} errors)"
    )
    return 1 if outcome["ERROR"] else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
