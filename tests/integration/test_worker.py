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


async def test_a_failed_batch_of_two_groups_is_logged_and_each_advanced_alone_GB11(svc, shop, monkeypatch, caplog):
    """GB-11 (service/jobs/worker.py `_advance_due_batch`): a batch of 2 due groups whose transaction fails is
    logged once as such, with the traceback (a bug, unlike a database outage), and both groups are then advanced
    one a transaction in the same pass."""
    from service.tx import group_batch

    c = await make_campaign(svc, shop.shop_id)
    seats = [
        await groups.open_group(svc, shop_id=shop.shop_id, campaign_id=c.campaign_id, user_id=f"g{i}") for i in range(2)
    ]
    svc.clock.advance(timedelta(minutes=30))  # both leaders' payment windows have passed

    async def broken(*a, **kw):
        raise RuntimeError("the batch cannot be written")

    monkeypatch.setattr(group_batch, "advance_all", broken)
    with caplog.at_level(logging.WARNING, logger="sharecart.worker"):
        assert await worker.run_due_groups(svc, shop_id=shop.shop_id) == 2
    (rec,) = [r for r in caplog.records if "one at a time" in r.getMessage()]
    assert rec.getMessage().startswith("a batch of 2 due groups")
    assert rec.exc_info is not None and "the batch cannot be written" in str(rec.exc_info[1])
    for seat in seats:
        assert (await raw_row(svc, GroupRow, shop.shop_id, seat.group_id)).state == "CANCELLED"


async def test_a_failed_batch_of_one_group_is_advanced_alone_and_counted_once_GB11(svc, shop, monkeypatch, caplog):
    """GB-11 (service/jobs/worker.py `_advance_due_batch`): a batch of one group whose transaction fails is that
    group retried alone, without the batch warning: a pass counts it 0 when it fails there too (postponed), and 1
    when it goes through."""
    from service.tx import group_batch

    c = await make_campaign(svc, shop.shop_id)
    seat = await groups.open_group(svc, shop_id=shop.shop_id, campaign_id=c.campaign_id, user_id="g")
    svc.clock.advance(timedelta(minutes=30))  # the leader's payment window has passed

    async def broken(*a, **kw):
        raise RuntimeError("the batch cannot be written")

    def broken_alone(campaign, group, *, now):
        raise RuntimeError("this group cannot be advanced")

    monkeypatch.setattr(group_batch, "advance_all", broken)
    with monkeypatch.context() as m:
        m.setattr(gb, "advance", broken_alone)
        assert await worker.run_due_groups(svc, shop_id=shop.shop_id) == 0
    row = await raw_row(svc, GroupRow, shop.shop_id, seat.group_id)
    assert row.state == "PENDING" and row.due_at == svc.now() + worker.FAILED_GROUP_RETRY
    svc.clock.advance(worker.FAILED_GROUP_RETRY)
    with caplog.at_level(logging.WARNING, logger="sharecart.worker"):
        assert await worker.run_due_groups(svc, shop_id=shop.shop_id) == 1
    assert (await raw_row(svc, GroupRow, shop.shop_id, seat.group_id)).state == "CANCELLED"
    assert not [r for r in caplog.records if "one at a time" in r.getMessage()]
