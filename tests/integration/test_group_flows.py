"""Group-buy flows through the service layer on real PostgreSQL (GB-1..GB-11, CM-6, LG-1)."""

from __future__ import annotations

from datetime import timedelta

import pytest

from engine.distribution import DistributorStatus
from engine.errors import ErrorCode, RuleViolation
from service.usecases import distribution, groups, orders, refunds
from service.jobs import worker
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
    row, g = await groups.get_group_caught_up(svc, shop_id=shop.shop_id, group_id=leader.group_id)
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
    row, g = await groups.get_group_caught_up(svc, shop_id=shop.shop_id, group_id=leader.group_id)
    assert g.state.value == "FAILED"
    owed = await refunds.list_refunds(svc, shop_id=shop.shop_id, state="OWED")
    assert [(r.order_id, r.amount, r.rule) for r in owed] == [(leader.order_id, 8000, "GB-6")]
    m1_order = await orders.get_order_caught_up(svc, shop_id=shop.shop_id, order_id=m1.order_id)
    assert m1_order.state == "CANCELLED"
    from service.usecases.campaigns import get_campaign

    assert (await get_campaign(svc, shop_id=shop.shop_id, campaign_id=c.campaign_id)).stock_left == 10


async def test_read_never_shows_state_past_due_GB11(svc, shop):
    c = await make_campaign(svc, shop.shop_id, tiers=[(2, 8000)])
    leader = await groups.open_group(svc, shop_id=shop.shop_id, campaign_id=c.campaign_id, user_id="lead")
    svc.clock.advance(timedelta(minutes=16))  # payment window passed; no worker ran
    row, g = await groups.get_group_caught_up(svc, shop_id=shop.shop_id, group_id=leader.group_id)
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
    await distribution.set_status(
        svc, shop_id=shop.shop_id, user_id="ref", status=DistributorStatus.ACTIVE, actor="t", reason="t"
    )
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
    await distribution.set_status(
        svc, shop_id=shop.shop_id, user_id="ref", status=DistributorStatus.ACTIVE, actor="t", reason="t"
    )
    await distribution.bind_referrer(svc, shop_id=shop.shop_id, user_id="buyer", referrer_id="ref")
    o = await orders.report_order(
        svc,
        shop_id=shop.shop_id,
        external_id="e1",
        buyer_id="buyer",
        lines=[orders.LineInput("p", 2, 5000, discount=1000)],
        shipping_amount=700,
    )
    await pay(svc, shop.shop_id, o.order_id, amount=9700)
    await orders.complete_order(svc, shop_id=shop.shop_id, order_id=o.order_id)
    svc.clock.advance(timedelta(days=7))
    d = await distribution.get_distributor(svc, shop_id=shop.shop_id, user_id="ref")
    assert (d.frozen, d.available) == (0, 900)  # CM-1: 10 % of goods 9000, not of shipping
    await assert_ledger_consistent(svc, shop.shop_id)


# ---------------------------------------------------------------- readings R32..R35 (docs/rules-readings-groupbuy.md)
async def test_GB8_R32_leader_reward_goes_to_whoever_leads_at_forming(svc, shop):
    """R32: after a hand-over the reward (团长佣金) is posted to the leader at forming, on the net paid by
    the other members at forming; the leader who left gets nothing. The new leader keeps the member price."""
    sid = shop.shop_id
    c = await make_campaign(svc, sid, tiers=[(3, 8000)], leader_discount=500, leader_commission_bp=1000)
    lead = await groups.open_group(svc, shop_id=sid, campaign_id=c.campaign_id, user_id="lead")
    await pay(svc, sid, lead)
    m1 = await groups.join_group(svc, shop_id=sid, group_id=lead.group_id, user_id="m1")
    await pay(svc, sid, m1)
    await groups.leave_group(svc, shop_id=sid, group_id=lead.group_id, user_id="lead")
    row, g = await groups.get_group_caught_up(svc, shop_id=sid, group_id=lead.group_id)
    assert g.leader_user_id == "m1"
    for user in ("m2", "m3"):
        s = await groups.join_group(svc, shop_id=sid, group_id=lead.group_id, user_id=user)
        assert s.amount == 8000
        await pay(svc, sid, s)
    row, g = await groups.get_group_caught_up(svc, shop_id=sid, group_id=lead.group_id)
    assert g.state.value == "FORMED" and g.leader_user_id == "m1"
    # m1 paid the member price and owes nothing back (GB-8: no price changes); reward = 10 % of m2 + m3
    assert (await orders.get_order_caught_up(svc, shop_id=sid, order_id=m1.order_id)).refunded_amount == 0
    assert (await distribution.get_distributor(svc, shop_id=sid, user_id="m1")).pending == 1600
    old = await distribution.get_distributor(svc, shop_id=sid, user_id="lead")
    assert old is None or (old.pending, old.frozen, old.available) == (0, 0, 0)
    await assert_ledger_consistent(svc, sid)


async def test_GB7_R33_leader_who_wins_the_lottery_keeps_the_reward(svc, shop):
    """R33: the leader's free order (GB-7 full refund) does not reverse the leader reward: the reward's base
    is the other members' net, and it follows the leader's order to FROZEN and AVAILABLE."""
    from engine import lottery

    sid = shop.shop_id
    c = await make_campaign(svc, sid, tiers=[(2, 8000)], lottery_winners=1, leader_commission_bp=1000)
    # The draw is a pure function of recorded inputs (GB-7), so the test can see in advance whether a
    # group's leader will win; each fresh (leader, member) pair is a fair coin.
    for i in range(40):
        leader = f"lead{i}"
        lead = await groups.open_group(svc, shop_id=sid, campaign_id=c.campaign_id, user_id=leader)
        await pay(svc, sid, lead)
        m = await groups.join_group(svc, shop_id=sid, group_id=lead.group_id, user_id=f"m{i}")
        _, g0 = await groups.get_group_caught_up(svc, shop_id=sid, group_id=lead.group_id)  # GB-7 v2: its seed
        if lottery.draw(g0.lottery_seed, [lead.order_id, m.order_id], 1).winners == (lead.order_id,):
            break
    else:
        raise AssertionError("no leader won the draw in 40 groups")
    await pay(svc, sid, m)
    row, g = await groups.get_group_caught_up(svc, shop_id=sid, group_id=lead.group_id)
    assert g.state.value == "FORMED" and g.winners == (lead.order_id,)
    leader_order = await orders.get_order_caught_up(svc, shop_id=sid, order_id=lead.order_id)
    assert leader_order.refunded_amount == leader_order.paid_amount == 8000  # a free order
    assert (await distribution.get_distributor(svc, shop_id=sid, user_id=leader)).pending == 800  # 10 % of 8000
    await orders.complete_order(svc, shop_id=sid, order_id=lead.order_id)
    assert (await distribution.get_distributor(svc, shop_id=sid, user_id=leader)).frozen == 800
    svc.clock.advance(timedelta(days=7, seconds=1))
    assert (await distribution.get_distributor(svc, shop_id=sid, user_id=leader)).available == 800
    await assert_ledger_consistent(svc, sid)


async def test_GB2_R34_new_members_only_a_fully_refunded_order_is_not_a_paid_order(svc, shop):
    """R34: for `new_members_only` a user whose only paid orders were refunded in full is new again
    (as RP-3 counts); a partly refunded order still counts."""
    sid = shop.shop_id
    for buyer, refund in (("full", 5000), ("part", 4999)):
        o = await orders.report_order(
            svc, shop_id=sid, external_id=f"prior-{buyer}", buyer_id=buyer, lines=[orders.LineInput("p", 1, 5000)]
        )
        await pay(svc, sid, o.order_id, amount=5000)
        await orders.refund_order(svc, shop_id=sid, order_id=o.order_id, amount=refund, provider_ref=f"rf-{buyer}")
    c = await make_campaign(svc, sid, tiers=[(3, 8000)], new_members_only=True)
    lead = await groups.open_group(svc, shop_id=sid, campaign_id=c.campaign_id, user_id="part")  # leader: anyone
    await pay(svc, sid, lead)
    seat = await groups.join_group(svc, shop_id=sid, group_id=lead.group_id, user_id="full")
    assert seat.amount == 8000
    lead2 = await groups.open_group(svc, shop_id=sid, campaign_id=c.campaign_id, user_id="lead2")
    await pay(svc, sid, lead2)
    with pytest.raises(RuleViolation) as e:
        await groups.join_group(svc, shop_id=sid, group_id=lead2.group_id, user_id="part")
    assert (e.value.code, e.value.rule) == (ErrorCode.NEW_MEMBERS_ONLY, "GB-2")


async def test_GB2_R35_new_members_only_is_checked_at_join_not_at_payment(svc, shop):
    """R35: a new user who reserved seats in two groups may pay both, although the first payment makes
    them a paying customer; only later joins are refused."""
    sid = shop.shop_id
    c = await make_campaign(svc, sid, tiers=[(3, 8000)], new_members_only=True)
    groups_ = []
    for leader in ("la", "lb", "lc"):
        g = await groups.open_group(svc, shop_id=sid, campaign_id=c.campaign_id, user_id=leader)
        await pay(svc, sid, g)
        groups_.append(g)
    a = await groups.join_group(svc, shop_id=sid, group_id=groups_[0].group_id, user_id="newbie")
    b = await groups.join_group(svc, shop_id=sid, group_id=groups_[1].group_id, user_id="newbie")
    assert (await pay(svc, sid, a))["accepted"] is True
    assert (await pay(svc, sid, b))["accepted"] is True  # still takes its seat: no re-check at payment
    with pytest.raises(RuleViolation) as e:
        await groups.join_group(svc, shop_id=sid, group_id=groups_[2].group_id, user_id="newbie")
    assert e.value.code == ErrorCode.NEW_MEMBERS_ONLY
    owed = await refunds.list_refunds(svc, shop_id=sid, state="OWED")
    assert [r for r in owed if r.order_id in (a.order_id, b.order_id)] == []


async def test_CM5_R33_only_members_refunds_reduce_the_leader_reward(svc, shop):
    """R33/CM-5: the leader reward's base is the other members' net paid, so a later refund of the
    leader's own order leaves it standing, while a member's refund reduces it by C·R/B."""
    sid = shop.shop_id
    c = await make_campaign(svc, sid, tiers=[(3, 8000)], leader_commission_bp=1000)
    lead = await groups.open_group(svc, shop_id=sid, campaign_id=c.campaign_id, user_id="leader")
    await pay(svc, sid, lead)
    members = [await groups.join_group(svc, shop_id=sid, group_id=lead.group_id, user_id=u) for u in ("m1", "m2")]
    for m in members:
        await pay(svc, sid, m)
    reward = lambda: distribution.get_distributor(svc, shop_id=sid, user_id="leader")  # noqa: E731
    assert (await reward()).pending == 1600  # 10 % of the members' 2 × 8000
    await orders.refund_order(svc, shop_id=sid, order_id=lead.order_id, amount=4000, provider_ref="rf-lead")
    assert (await reward()).pending == 1600  # the leader's own refund is not part of the base
    await orders.refund_order(svc, shop_id=sid, order_id=members[0].order_id, amount=4000, provider_ref="rf-m1")
    assert (await reward()).pending == 1600 - 1600 * 4000 // 16000
    await assert_ledger_consistent(svc, sid)
