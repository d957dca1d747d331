"""GB-11 in batches (issue 10): the worker claims many due groups of a shop in one statement, the engine
decides each, and the batch is written in one statement (service/group_batch.py). A batch with every
outcome at once — formation with GB-5 refunds owed and the leader's reward, a GB-7 lottery, GB-6 failures
with commission lines voided, a GB-1 cancellation with stock given back, a completed order's lines frozen at
forming — leaves exactly the rows the one-group-at-a-time ORM path (`tests/integration/orm_reference.py`) leaves.
"""

from __future__ import annotations

import json
from datetime import timedelta

from sqlalchemy import text

from engine import groupbuy as gb
from engine.distribution import DistributorStatus
from service.jobs import worker
from service.tx import lean
from service.usecases import distribution, groups, orders
from service.uow import unit_of_work
from tests.integration import orm_reference
from tests.integration.helpers import assert_ledger_consistent, make_campaign, pay, recorded_statements


async def _scenario(svc, sid: str) -> None:
    """The same groups in any shop: user ids are the shop's own, so two shops can be compared row by row."""
    await distribution.set_status(
        svc, shop_id=sid, user_id="ref", status=DistributorStatus.ACTIVE, actor="t", reason="t"
    )
    for user in ("m1a", "L2", "m3"):
        await distribution.bind_referrer(svc, shop_id=sid, user_id=user, referrer_id="ref")
    ladder = await make_campaign(
        svc, sid, title="ladder", tiers=[(2, 9000), (3, 8000), (4, 7000)], leader_commission_bp=1000
    )
    lottery = await make_campaign(
        svc,
        sid,
        title="lottery",
        tiers=[(3, 8000), (4, 7000)],
        lottery_winners=2,
        fill_at_expiry=2,
        leader_commission_bp=500,
    )
    stocked = await make_campaign(
        svc, sid, title="stocked", tiers=[(2, 8000)], stock=10, per_user_limit=2, max_quantity_per_order=2
    )

    # forms at expiry at the 3-member tier: GB-5 refunds of 1000 each, a reward for L1 (no distributor yet),
    # m1a's referral line reduced (CM-5) and, its order completed, frozen (CM-6); r1's reservation released
    a1 = await groups.open_group(svc, shop_id=sid, campaign_id=ladder.campaign_id, user_id="L1")
    await pay(svc, sid, a1)
    for user in ("m1a", "m1b"):
        await pay(svc, sid, await groups.join_group(svc, shop_id=sid, group_id=a1.group_id, user_id=user))
    await orders.complete_order(svc, shop_id=sid, order_id=(await _order_of(svc, sid, "m1a")))
    # the leader's own order completed before forming: the reward posted at forming freezes at once (CM-6)
    await orders.complete_order(svc, shop_id=sid, order_id=(await _order_of(svc, sid, "L1")))
    await groups.join_group(svc, shop_id=sid, group_id=a1.group_id, user_id="r1")
    # fails at expiry (GB-6): L2's full refund, its referral line voided, m2's reservation released
    a2 = await groups.open_group(svc, shop_id=sid, campaign_id=ladder.campaign_id, user_id="L2")
    await pay(svc, sid, a2)
    await groups.join_group(svc, shop_id=sid, group_id=a2.group_id, user_id="m2")
    # forms at expiry, both paid seats drawn (GB-7: two winners of two, so the draw is the same in every shop;
    # one of one would depend on the shop's random ids): two full refunds, m3's line refunded to 0 (CM-5)
    b1 = await groups.open_group(svc, shop_id=sid, campaign_id=lottery.campaign_id, user_id="L3")
    await pay(svc, sid, b1)
    await pay(svc, sid, await groups.join_group(svc, shop_id=sid, group_id=b1.group_id, user_id="m3"))
    # GB-1: a leader who never pays; GB-6 on a campaign with stock and a per-user limit
    await groups.open_group(svc, shop_id=sid, campaign_id=stocked.campaign_id, user_id="L4", quantity=2)
    c2 = await groups.open_group(svc, shop_id=sid, campaign_id=stocked.campaign_id, user_id="L5")
    await pay(svc, sid, c2)
    # L5 leads a second group of the campaign: both give L5's units back in one batch (merged per user, GB-2)
    await groups.open_group(svc, shop_id=sid, campaign_id=stocked.campaign_id, user_id="L5")


async def _order_of(svc, sid: str, buyer: str) -> str:
    async with svc.sessionmaker() as s:
        return (
            await s.execute(
                text("SELECT order_id FROM orders WHERE shop_id = :s AND buyer_id = :b"), {"s": sid, "b": buyer}
            )
        ).scalar_one()


async def _one_at_a_time_orm(svc, sid: str) -> None:
    """The reference: each due group in a transaction of its own, carried out by the ORM applier."""
    now = svc.now()
    while True:
        async with unit_of_work(svc) as s:
            ld = await lean.load_group(s, sid, due_before=now)
            if ld is None:
                return
            decision = gb.advance(ld.campaign, ld.group, now=now)
            row, seat_rows, _ = await orm_reference.lock_group(s, sid, ld.group.id)
            c = await groups.load_campaign(s, sid, ld.campaign_row.campaign_id)
            await orm_reference.apply_decision(s, c=c, row=row, seat_rows=seat_rows, decision=decision, now=now)


async def _snapshot(svc, sid: str) -> dict:
    """Every row the advance can touch, with the shop's generated ids replaced by what they name."""

    async def rows(sql: str) -> list[dict]:
        async with svc.sessionmaker() as s:
            return [dict(r._mapping) for r in (await s.execute(text(sql), {"s": sid})).all()]

    names: dict[str, str] = {}
    for o in await rows("SELECT order_id, buyer_id FROM orders WHERE shop_id = :s"):
        names[o["order_id"]] = "order:" + o["buyer_id"]
    for g in await rows("SELECT group_id, leader_user_id FROM groups WHERE shop_id = :s"):
        names[g["group_id"]] = "group:" + g["leader_user_id"]
    for c in await rows("SELECT campaign_id, title FROM campaigns WHERE shop_id = :s"):
        names[c["campaign_id"]] = "campaign:" + c["title"]

    def norm(v):
        if isinstance(v, str):
            return names.get(v, "<id>" if v[:3] in ("rf_", "cl_", "le_", "evt", "aud") else v)
        if isinstance(v, list):  # lists of ids follow the seats' order: (reserved_at, order_id), random ids
            return sorted((norm(x) for x in v), key=str)
        if isinstance(v, dict):  # a GB-7 v2 score is an HMAC of a (random) order id: the same only in name
            return {k: "<score>" if k == "score" else norm(x) for k, x in v.items()}
        return v

    def table(sql: str) -> list:
        return sorted(json.dumps(norm({k: v for k, v in r.items()}), sort_keys=True, default=str) for r in got[sql])

    queries = [
        "SELECT group_id, state, leader_user_id, expires_at, formed_at, closed_at, tier_members, winners, held_seats, "
        "paid_seats, due_at FROM groups WHERE shop_id = :s",
        "SELECT order_id, group_id, user_id, quantity, unit_price, role, state, paid_at FROM seats WHERE shop_id = :s",
        "SELECT order_id, state, paid_amount, refunded_amount, cancelled_at, completed_at, level1_id, level2_id, source "
        "FROM orders WHERE shop_id = :s",
        'SELECT order_id, amount, rule, "full", state FROM refunds WHERE shop_id = :s',
        "SELECT order_id, beneficiary_id, level, group_id, base, base_refunded, original, standing, state, releasable, "
        "available_at FROM commission_lines WHERE shop_id = :s",
        "SELECT user_id, status, grade, pending, frozen, available, in_payout, paid, fees FROM distributors "
        "WHERE shop_id = :s",
        "SELECT user_id, action, from_value, to_value, actor FROM distributor_audit WHERE shop_id = :s",
        "SELECT distributor_id, bucket, amount, kind, ref_type FROM ledger_entries WHERE shop_id = :s",
        "SELECT type, aggregate_type, aggregate_id, rule, payload FROM events WHERE shop_id = :s",
        "SELECT user_id, net_spend, paid_orders FROM users WHERE shop_id = :s",
        "SELECT campaign_id, stock_left FROM campaigns WHERE shop_id = :s",
        "SELECT campaign_id, user_id, units FROM campaign_user_units WHERE shop_id = :s",
    ]
    got = {q: await rows(q) for q in queries}
    return {q.split(" FROM ")[1].split()[0]: table(q) for q in queries}


async def test_a_batch_with_every_outcome_equals_one_group_at_a_time_GB4_GB5_GB6_GB7_GB11(svc, monkeypatch):
    import hashlib

    from service.usecases import groups as groups_uc
    from service.usecases.shops import create_shop

    # GB-7 v2: each group draws with its own random seed; both worlds get the same seeds for the same leaders
    monkeypatch.setattr(groups_uc, "new_lottery_seed", lambda user_id: hashlib.sha256(user_id.encode()).hexdigest())

    one = await create_shop(svc, shop_id="t-batch-one", name="one", currency="CNY")
    many = await create_shop(svc, shop_id="t-batch-many", name="many", currency="CNY")
    for shop in (one, many):
        await _scenario(svc, shop.shop_id)
    svc.clock.advance(timedelta(hours=25))  # every window and every expiry has passed

    await _one_at_a_time_orm(svc, one.shop_id)
    with recorded_statements(svc) as seen:
        assert await worker.run_due_groups(svc, shop_id=many.shop_id) == 6
    # one batch: claim, orders and lines under lock, the fraud flag of the one group whose leader earns a reward
    # (FR-3), the write; then the claim that finds nothing left
    assert [q.split()[0] for q in seen] == ["SELECT", "WITH", "SELECT", "WITH", "SELECT"], [q[:80] for q in seen]
    assert "fraud_flags" in seen[2]
    assert "SKIP LOCKED" in seen[0] and "FOR UPDATE" in seen[1]

    expected, actual = await _snapshot(svc, one.shop_id), await _snapshot(svc, many.shop_id)
    assert actual.keys() == expected.keys()
    for table in expected:
        assert actual[table] == expected[table], (table, sorted(set(actual[table]) ^ set(expected[table])))
    # the scenario did reach every outcome
    states = [json.loads(g)["state"] for g in actual["groups"]]
    assert sorted(states) == ["CANCELLED", "CANCELLED", "FAILED", "FAILED", "FORMED", "FORMED"]
    assert {json.loads(r)["rule"] for r in actual["refunds"]} == {"GB-5", "GB-6", "GB-7"}
    assert any(json.loads(ln)["state"] == "VOID" for ln in actual["commission_lines"])
    assert any(json.loads(ln)["state"] == "FROZEN" for ln in actual["commission_lines"])
    assert any(
        json.loads(ln)["level"] == 0 and json.loads(ln)["state"] == "FROZEN" for ln in actual["commission_lines"]
    )  # L1's reward on a completed order
    for shop in (one, many):
        await assert_ledger_consistent(svc, shop.shop_id)


async def test_two_workers_never_advance_one_group_twice_GB11(svc, shop):
    """Several `sharecart worker` processes: each batch claims with SKIP LOCKED, so two passes running at once
    share the due groups and none is advanced twice (one GROUP_CANCELLED event each)."""
    import asyncio

    c = await make_campaign(svc, shop.shop_id)
    opened = [
        await groups.open_group(svc, shop_id=shop.shop_id, campaign_id=c.campaign_id, user_id=f"u{i}")
        for i in range(40)
    ]
    svc.clock.advance(timedelta(hours=1))
    done = await asyncio.gather(*(worker.run_due_groups(svc, shop_id=shop.shop_id, batch=7) for _ in range(3)))
    assert sum(done) == len(opened)
    async with svc.sessionmaker() as s:
        counts = (
            await s.execute(
                text(
                    "SELECT count(*) FILTER (WHERE type = 'group.cancelled'), count(DISTINCT aggregate_id) "
                    "FILTER (WHERE type = 'group.cancelled'), (SELECT count(*) FROM groups WHERE shop_id = :s AND "
                    "state = 'CANCELLED') FROM events WHERE shop_id = :s"
                ),
                {"s": shop.shop_id},
            )
        ).one()
    assert tuple(counts) == (40, 40, 40)
