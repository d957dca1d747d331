"""The expiry worker (GB-11) keeps going when one item fails."""

from __future__ import annotations

import logging
from datetime import timedelta

from engine import groupbuy as gb
from service.usecases import groups
from service.jobs import worker
from store.models import GroupRow, Order
from tests.integration.helpers import make_campaign, raw_row


async def test_a_group_that_fails_to_advance_does_not_stall_the_others_GB11(svc, shop, monkeypatch, caplog):
    c = await make_campaign(svc, shop.shop_id)
    bad = await groups.open_group(svc, shop_id=shop.shop_id, campaign_id=c.campaign_id, user_id="bad")
    svc.clock.advance(timedelta(minutes=1))  # the others fall due after it: it is claimed first
    good = [
        await groups.open_group(svc, shop_id=shop.shop_id, campaign_id=c.campaign_id, user_id=f"g{i}") for i in range(3)
    ]
    svc.clock.advance(timedelta(minutes=30))  # every leader's payment window has passed
    real = gb.advance

    def broken_for_one(campaign, group, *, now):  # the batch fails, then this group alone
        if group.id == bad.group_id:
            raise RuntimeError("this group cannot be advanced")
        return real(campaign, group, now=now)

    monkeypatch.setattr(gb, "advance", broken_for_one)
    with caplog.at_level(logging.ERROR, logger="sharecart.worker"):
        assert await worker.run_due_groups(svc) >= len(good)
    for seat in good:  # GB-2 releases applied behind the failing group
        assert (await raw_row(svc, GroupRow, shop.shop_id, seat.group_id)).state == "CANCELLED"
        assert (await raw_row(svc, Order, shop.shop_id, seat.order_id)).state == "CANCELLED"
    stuck = await raw_row(svc, GroupRow, shop.shop_id, bad.group_id)
    assert stuck.state == "PENDING" and stuck.due_at == svc.now() + worker.FAILED_GROUP_RETRY
    assert any(bad.group_id in r.getMessage() for r in caplog.records)

    await worker.run_due_groups(svc)  # not retried before its backoff
    assert len([r for r in caplog.records if bad.group_id in r.getMessage()]) == 1
    monkeypatch.undo()  # the fault is gone: after the backoff the group is advanced
    svc.clock.advance(worker.FAILED_GROUP_RETRY)
    await worker.run_due_groups(svc)
    assert (await raw_row(svc, GroupRow, shop.shop_id, bad.group_id)).state == "CANCELLED"
    assert (await raw_row(svc, Order, shop.shop_id, bad.order_id)).state == "CANCELLED"
