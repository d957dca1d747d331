"""Group-buy v2 (issue 15) through the service and the worker, on real PostgreSQL."""

from __future__ import annotations

from datetime import timedelta

from service import groups, worker
from store.models import GroupRow, Order
from tests.integration.helpers import assert_ledger_consistent, make_campaign, pay, raw_row


async def test_GB12_worker_waits_for_the_grace_and_decides_at_the_pay_by_without_reads(svc, shop):
    """GB-12 / GB-11: at expires_at the worker leaves a group that waits for a payment alone (due_at moves to
    the pay_by, not expires_at); at the pay_by it releases the reservation and decides, nobody reading."""
    sid = shop.shop_id
    c = await make_campaign(svc, sid, tiers=[(2, 8_000)], duration=timedelta(hours=1))
    lead = await groups.open_group(svc, shop_id=sid, campaign_id=c.campaign_id, user_id="ann")
    await pay(svc, sid, lead)
    svc.clock.advance(timedelta(minutes=50))
    bob = await groups.join_group(svc, shop_id=sid, group_id=lead.group_id, user_id="bob")
    row = await raw_row(svc, GroupRow, sid, lead.group_id)
    pay_by = svc.now() + timedelta(minutes=15)
    assert row.due_at == pay_by  # nothing is due at expires_at itself: the group would wait (GB-12)
    svc.clock.advance(timedelta(minutes=12))  # 2 minutes into the grace
    assert await worker.run_due_groups(svc, shop_id=sid) == 0
    assert (await raw_row(svc, GroupRow, sid, lead.group_id)).state == "OPEN"
    svc.clock.set(pay_by)
    assert await worker.run_due_groups(svc, shop_id=sid) == 1
    row = await raw_row(svc, GroupRow, sid, lead.group_id)
    assert row.state == "FAILED" and row.closed_at == pay_by and row.due_at is None
    assert row.closed_at <= row.expires_at + timedelta(minutes=15)
    assert (await raw_row(svc, Order, sid, bob.order_id)).state == "CANCELLED"
    await assert_ledger_consistent(svc, sid)


async def test_GB12_payment_in_grace_forms_the_group_at_once(svc, shop):
    """GB-12: the payment that makes the outcome certain decides at that instant (FORMED, not at pay_by)."""
    sid = shop.shop_id
    c = await make_campaign(svc, sid, tiers=[(2, 8_000)], duration=timedelta(hours=1))
    lead = await groups.open_group(svc, shop_id=sid, campaign_id=c.campaign_id, user_id="ann")
    await pay(svc, sid, lead)
    svc.clock.advance(timedelta(minutes=55))
    bob = await groups.join_group(svc, shop_id=sid, group_id=lead.group_id, user_id="bob")
    svc.clock.advance(timedelta(minutes=8))
    await worker.run_due_groups(svc, shop_id=sid)
    await pay(svc, sid, bob)
    row = await raw_row(svc, GroupRow, sid, lead.group_id)
    assert row.state == "FORMED" and row.formed_at == svc.now() and row.paid_seats == 2
    assert (await raw_row(svc, Order, sid, bob.order_id)).state == "PAID"
    await assert_ledger_consistent(svc, sid)


async def _events(svc, sid, *types):
    from sqlalchemy import text

    async with svc.sessionmaker() as s:
        rows = (await s.execute(text("SELECT type, occurred_at, payload FROM events WHERE shop_id = :s "
                                     "AND type = ANY(:t) ORDER BY occurred_at"), {"s": sid, "t": list(types)})).all()
    return rows


async def test_GB15_nudges_once_each_on_time_by_the_worker_without_reads(svc, shop):
    """GB-15: `almost_full` with the payment that leaves `almost_full_at` seats missing; `expiring_soon` by the
    worker exactly `expiring_soon_before` ahead of expires_at (due_at says when), nobody reading; each once."""
    sid = shop.shop_id
    c = await make_campaign(svc, sid, tiers=[(4, 8_000)], duration=timedelta(hours=1), almost_full_at=2,
                            expiring_soon_before=timedelta(minutes=10))
    lead = await groups.open_group(svc, shop_id=sid, campaign_id=c.campaign_id, user_id="ann")
    await pay(svc, sid, lead)
    opened = svc.now()
    assert await _events(svc, sid, "group.almost_full") == []  # 3 missing > 2
    bob = await groups.join_group(svc, shop_id=sid, group_id=lead.group_id, user_id="bob")
    assert await _events(svc, sid, "group.almost_full") == []  # a reservation is not a paid seat
    await pay(svc, sid, bob)
    (af,) = await _events(svc, sid, "group.almost_full")
    assert af.payload["seats_missing"] == 2 and af.occurred_at == svc.now()
    row = await raw_row(svc, GroupRow, sid, lead.group_id)
    assert row.due_at == opened + timedelta(minutes=50)  # the nudge is what falls due next
    svc.clock.set(opened + timedelta(minutes=50))
    assert await worker.run_due_groups(svc, shop_id=sid) == 1
    (es,) = await _events(svc, sid, "group.expiring_soon")
    assert es.occurred_at == opened + timedelta(minutes=50) and es.payload["seats_missing"] == 2
    row = await raw_row(svc, GroupRow, sid, lead.group_id)
    assert row.due_at == row.expires_at and row.nudged_expiring_soon_at == es.occurred_at
    cat = await groups.join_group(svc, shop_id=sid, group_id=lead.group_id, user_id="cat")
    await pay(svc, sid, cat)  # 1 missing now: still only one almost_full
    await worker.run_due_groups(svc, shop_id=sid)
    assert len(await _events(svc, sid, "group.almost_full")) == 1
    assert len(await _events(svc, sid, "group.expiring_soon")) == 1
