"""Group-buy flows through the service layer on real PostgreSQL (GB-1..GB-11, CM-6, LG-1)."""

from __future__ import annotations

from datetime import timedelta

import pytest

from engine.distribution import DistributorStatus
from engine.errors import ErrorCode, RuleViolation
from service import distribution, groups, orders, refunds, worker
from tests.integration.helpers import assert_ledger_consistent, make_campaign, pay


async def test_ladder_group_forms_at_capacity_and_owes_partial_refunds_GB4_GB5(svc, shop):
    c = await make_campaign(svc, shop.shop_id, tiers=[(2, 8000), (3, 7000)], leader_discount=500)
    leader = await groups.open_group(svc, shop_id=shop.shop_id, campaign_id=c.campaign_id, user_id="lead")
    assert leader.amount == 7500  # GB-3: leader pays first tier minus discount
    await pay(svc, shop.shop_id, leader)
    m1 = await groups.join_group(svc, shop_id=shop.shop_id, group_id=leader.group_id, user_id="m1")
    m2 = await groups.join_group(svc, shop_id=shop.shop_id, group_id=leader.group_id, user_id="m2")
    assert m1.amount == m2.amount == 8000
    await pay(svc, shop.shop_id, m1)
    await pay(svc, shop.shop_id, m2)
    row, g = await groups.get_group(svc, shop_id=shop.shop_id, group_id=leader.group_id)
    assert g.state.value == "FORMED" and g.tier_members == 3
    owed = await refunds.list_refunds(svc, shop_id=shop.shop_id, state="OWED")
    by_order = {r.order_id: r.amount for r in owed}
    # GB-5: members 8000 -> 7000 owe 1000; leader 7500 -> 6500 owes 1000
    assert by_order == {leader.order_id: 1000, m1.order_id: 1000, m2.order_id: 1000}
    assert {r.rule for r in owed} == {"GB-5"}


async def test_group_fails_at_expiry_via_worker_and_refunds_in_full_GB6_GB11(svc, shop):
    c = await make_campaign(svc, shop.shop_id, tiers=[(3, 8000)], stock=10)
    leader = await groups.open_group(svc, shop_id=shop.shop_id, campaign_id=c.campaign_id, user_id="lead")
    await pay(svc, shop.shop_id, leader)
    m1 = await groups.join_group(svc, shop_id=shop.shop_id, group_id=leader.group_id, user_id="m1")
    svc.clock.advance(timedelta(hours=25))
    assert await worker.run_due(svc) >= 1
    row, g = await groups.get_group(svc, shop_id=shop.shop_id, group_id=leader.group_id)
    assert g.state.value == "FAILED"
    owed = await refunds.list_refunds(svc, shop_id=shop.shop_id, state="OWED")
    assert [(r.order_id, r.amount, r.rule) for r in owed] == [(leader.order_id, 8000, "GB-6")]
    m1_order = await orders.get_order(svc, shop_id=shop.shop_id, order_id=m1.order_id)
    assert m1_order.state == "CANCELLED"
    from service.campaigns import get_campaign

    assert (await get_campaign(svc, shop_id=shop.shop_id, campaign_id=c.campaign_id)).stock_left == 10


async def test_read_never_shows_state_past_due_GB11(svc, shop):
    c = await make_campaign(svc, shop.shop_id, tiers=[(2, 8000)])
    leader = await groups.open_group(svc, shop_id=shop.shop_id, campaign_id=c.campaign_id, user_id="lead")
    svc.clock.advance(timedelta(minutes=16))  # payment window passed; no worker ran
    row, g = await groups.get_group(svc, shop_id=shop.shop_id, group_id=leader.group_id)
    assert g.state.value == "CANCELLED"


async def test_late_payment_is_refunded_and_takes_no_seat_GB9(svc, shop):
    c = await make_campaign(svc, shop.shop_id, tiers=[(2, 8000)])
    leader = await groups.open_group(svc, shop_id=shop.shop_id, campaign_id=c.campaign_id, user_id="lead")
    svc.clock.advance(timedelta(minutes=20))
    await worker.run_due(svc)
    r = await pay(svc, shop.shop_id, leader)
    assert r["accepted"] is False
    owed = await refunds.list_refunds(svc, shop_id=shop.shop_id, state="OWED")
    assert [(x.order_id, x.amount, x.rule) for x in owed] == [(leader.order_id, leader.amount, "GB-9")]


async def test_join_errors_are_clear_codes_ER1(svc, shop):
    c = await make_campaign(svc, shop.shop_id, tiers=[(2, 8000)], new_members_only=True)
    leader = await groups.open_group(svc, shop_id=shop.shop_id, campaign_id=c.campaign_id, user_id="lead")
    with pytest.raises(RuleViolation) as e:
        await groups.join_group(svc, shop_id=shop.shop_id, group_id=leader.group_id, user_id="m1")
    assert e.value.code == ErrorCode.GROUP_NOT_OPEN  # leader has not paid yet
    await pay(svc, shop.shop_id, leader)
    with pytest.raises(RuleViolation) as e:
        await groups.join_group(svc, shop_id=shop.shop_id, group_id=leader.group_id, user_id="lead")
    assert e.value.code == ErrorCode.ALREADY_IN_GROUP


async def test_group_commission_pending_until_formed_then_frozen_available_CM6(svc, shop):
    """CM-6 through a group: PENDING at payment, releasable at forming, FROZEN at completion, AVAILABLE later."""
    await distribution.set_status(svc, shop_id=shop.shop_id, user_id="ref", status=DistributorStatus.ACTIVE,
                                  actor="t", reason="t")
    await distribution.bind_referrer(svc, shop_id=shop.shop_id, user_id="m1", referrer_id="ref")
    c = await make_campaign(svc, shop.shop_id, tiers=[(2, 8000)])
    leader = await groups.open_group(svc, shop_id=shop.shop_id, campaign_id=c.campaign_id, user_id="lead")
    await pay(svc, shop.shop_id, leader)
    m1 = await groups.join_group(svc, shop_id=shop.shop_id, group_id=leader.group_id, user_id="m1")
    await pay(svc, shop.shop_id, m1)
    d = await distribution.get_distributor(svc, shop_id=shop.shop_id, user_id="ref")
    assert d.pending == 800  # 10 % of 8000
    await orders.complete_order(svc, shop_id=shop.shop_id, order_id=m1.order_id)
    d = await distribution.get_distributor(svc, shop_id=shop.shop_id, user_id="ref")
    assert (d.pending, d.frozen) == (0, 800)
    svc.clock.advance(timedelta(days=7, seconds=1))
    await worker.run_due(svc)
    d = await distribution.get_distributor(svc, shop_id=shop.shop_id, user_id="ref")
    assert (d.frozen, d.available) == (0, 800)
    # CM-5 after availability: clawback may go negative
    await orders.refund_order(svc, shop_id=shop.shop_id, order_id=m1.order_id, amount=8000, provider_ref="r1")
    d = await distribution.get_distributor(svc, shop_id=shop.shop_id, user_id="ref")
    assert d.available == 0
    await assert_ledger_consistent(svc, shop.shop_id)


async def test_balance_read_releases_due_commission_without_worker_CM6_GB11(svc, shop):
    """CM-6/GB-11: a balance read never shows a line as frozen after its available_at."""
    await distribution.set_status(svc, shop_id=shop.shop_id, user_id="ref", status=DistributorStatus.ACTIVE,
                                  actor="t", reason="t")
    await distribution.bind_referrer(svc, shop_id=shop.shop_id, user_id="buyer", referrer_id="ref")
    o = await orders.report_order(svc, shop_id=shop.shop_id, external_id="e1", buyer_id="buyer",
                                  lines=[orders.LineInput("p", 2, 5000, discount=1000)], shipping_amount=700)
    await pay(svc, shop.shop_id, o.order_id, amount=9700)
    await orders.complete_order(svc, shop_id=shop.shop_id, order_id=o.order_id)
    svc.clock.advance(timedelta(days=7))
    d = await distribution.get_distributor(svc, shop_id=shop.shop_id, user_id="ref")
    assert (d.frozen, d.available) == (0, 900)  # CM-1: 10 % of goods 9000, not of shipping
    await assert_ledger_consistent(svc, shop.shop_id)
