"""Seed-71 service survivors of the batch path (service/tx/group_batch.py), GB-10 confirmations and the end of a
campaign, each killed by a test through the service on a real PostgreSQL that asserts what a caller can see."""

from __future__ import annotations

import asyncio
from datetime import timedelta

import pytest
from sqlalchemy import event, select

from engine.distribution import DistributorStatus
from engine.errors import ErrorCode, RuleViolation
from engine.levels import Level
from service.context import Services
from service.jobs import worker
from service.usecases import campaigns, distribution, groups, refunds, shops
from store.models import CampaignRow, Distributor, Event, GroupRow
from tests.integration.helpers import make_campaign, pay, raw_row, sql_rows

LEVELS = [
    Level(grade=0, name="entry", level1_bp=1000, level2_bp=500),
    Level(grade=1, name="one", level1_bp=1000, level2_bp=500, upgrade_bonus=300, min_direct_referrals=1),
]


async def _events(svc, sid: str, type_: str) -> list[Event]:
    async with svc.sessionmaker() as s:
        q = select(Event).where(Event.shop_id == sid, Event.type == type_).order_by(Event.seq)
        return list((await s.execute(q)).scalars())


async def _active(svc, sid: str, user: str) -> None:
    await distribution.set_status(
        svc, shop_id=sid, user_id=user, status=DistributorStatus.ACTIVE, actor="t", reason="t"
    )


async def test_GB1_a_leaders_payment_writes_group_opened_with_its_payload(svc, shop):
    """GB-1 (the payment of a leader's seat goes through the batch path, service/tx/group_batch.py): the group
    opens and `group.opened` is written with the group, campaign, leader, expiry and lottery commitment.
    Kills service/tx/group_batch.py:297 (the GROUP_OPENED event -> pass)."""
    sid = shop.shop_id
    c = await make_campaign(svc, sid)
    lead = await groups.open_group(svc, shop_id=sid, campaign_id=c.campaign_id, user_id="L")
    assert await _events(svc, sid, "group.opened") == []
    await pay(svc, sid, lead)
    g = await raw_row(svc, GroupRow, sid, lead.group_id)
    assert g.state == "OPEN" and g.expires_at == svc.now() + timedelta(hours=24)
    [ev] = await _events(svc, sid, "group.opened")
    assert (ev.aggregate_type, ev.aggregate_id, ev.rule) == ("group", lead.group_id, "GB-1")
    p = ev.payload
    assert (p["group_id"], p["campaign_id"], p["leader_user_id"]) == (lead.group_id, c.campaign_id, "L")
    assert p["expires_at"] == g.expires_at.isoformat()
    assert p["lottery_commitment"] == g.lottery_commitment


async def test_LV2_a_group_payment_that_climbs_a_level_stores_it(svc, shop):
    """LV-2/LV-4 on the batch path: a leader's payment in a group re-evaluates the buyer's level-1 referrer
    (one binding: grade 1 reached, bonus 300); the new grade, the bonus and the level event are stored.
    Kills service/tx/group_batch.py:676 (the flush after `commissions.evaluate_levels` -> pass)."""
    sid = shop.shop_id
    await _active(svc, sid, "ref")
    await distribution.bind_referrer(svc, shop_id=sid, user_id="L", referrer_id="ref")
    # the levels come after the binding, which re-evaluated nothing then: the payment is the first evaluation
    await shops.set_levels(svc, shop_id=sid, levels=LEVELS)
    assert (await raw_row(svc, Distributor, sid, "ref")).grade == 0
    c = await make_campaign(svc, sid)
    lead = await groups.open_group(svc, shop_id=sid, campaign_id=c.campaign_id, user_id="L")
    await pay(svc, sid, lead)
    d = await raw_row(svc, Distributor, sid, "ref")
    assert (d.grade, d.bonuses_credited, d.available) == (1, [1], 300)
    moved = [
        (e.aggregate_id, e.payload["from"], e.payload["to"], e.rule)
        for e in await _events(svc, sid, "distributor.level_changed")
    ]
    assert moved == [("ref", 0, 1, "LV-2")]


async def test_LV2_a_batch_refund_re_evaluates_the_refunded_orders_upline(svc, shop):
    """LV-2 after a refund of the worker's batch (GB-6: the group fails at expiry, its paid seat is refunded):
    the refunded order's level-1 and level-2 distributors are re-evaluated. An admin had lowered both (LV-3)
    though they still qualify; "the next event moves a lowered distributor back up" — the batch's refund is that
    event, and no bonus is paid twice. Kills service/tx/group_batch.py:388 (`o.level1_id or ""` ->
    `o.level1_id and ""`, and the same of level2_id) and service/tx/group_batch.py:676 (the flush after
    `evaluate_levels` -> pass)."""
    sid = shop.shop_id
    await shops.set_levels(svc, shop_id=sid, levels=LEVELS)
    for user in ("top", "ref"):
        await _active(svc, sid, user)
    await distribution.bind_referrer(svc, shop_id=sid, user_id="ref", referrer_id="top")
    await distribution.bind_referrer(svc, shop_id=sid, user_id="L", referrer_id="ref")
    c = await make_campaign(svc, sid)
    lead = await groups.open_group(svc, shop_id=sid, campaign_id=c.campaign_id, user_id="L")
    await pay(svc, sid, lead)
    for user in ("top", "ref"):
        assert (await raw_row(svc, Distributor, sid, user)).grade == 1  # one direct referral each
        await distribution.set_level(svc, shop_id=sid, user_id=user, grade=0, actor="boss", reason="review")
    svc.clock.advance(timedelta(hours=25))
    assert await worker.run_due_groups(svc, shop_id=sid) == 1
    assert (await raw_row(svc, GroupRow, sid, lead.group_id)).state == "FAILED"
    owed = await refunds.list_refunds(svc, shop_id=sid)
    assert [(r.order_id, r.rule) for r in owed] == [(lead.order_id, "GB-6")]
    moved = [
        (e.aggregate_id, e.payload["from"], e.payload["to"], e.rule)
        for e in await _events(svc, sid, "distributor.level_changed")
    ]
    for user in ("top", "ref"):
        d = await raw_row(svc, Distributor, sid, user)
        assert (d.grade, d.bonuses_credited, d.available) == (1, [1], 300), user
        assert [m[1:] for m in moved if m[0] == user] == [(0, 1, "LV-2"), (1, 0, "LV-3"), (0, 1, "LV-2")], user


class _GatedLedger(refunds.LedgerBatch):
    """confirm_refund's ledger, made to interleave two confirmations deterministically: the first one's write
    is held (its transaction open) until the second has passed the reference check and reached its write."""

    first_wrote: asyncio.Event
    second_writes: asyncio.Event
    calls = 0

    async def flush(self, session):
        _GatedLedger.calls += 1
        if _GatedLedger.calls == 1:
            await super().flush(session)
            _GatedLedger.first_wrote.set()
            await _GatedLedger.second_writes.wait()
            return
        _GatedLedger.second_writes.set()
        await super().flush(session)


async def test_GB10_two_refunds_confirmed_at_once_with_one_reference_refuse_the_second(svc, shop, monkeypatch):
    """GB-10: a provider reference confirms one refund. Two owed refunds confirmed at the same moment with the
    same reference both pass the reference check (neither has committed); the unique (shop, provider_ref)
    refuses the second's write, which answers IDEMPOTENCY_CONFLICT on providerRef and changes nothing.
    Kills service/usecases/refunds.py:195 (the refusal after the IntegrityError -> pass)."""
    sid = shop.shop_id
    c = await make_campaign(svc, sid)
    lead = await groups.open_group(svc, shop_id=sid, campaign_id=c.campaign_id, user_id="L")
    await pay(svc, sid, lead)
    await pay(svc, sid, await groups.join_group(svc, shop_id=sid, group_id=lead.group_id, user_id="m"))
    svc.clock.advance(timedelta(hours=25))
    assert await worker.run_due_groups(svc, shop_id=sid) == 1  # GB-6: two full refunds owed
    a, b = await refunds.list_refunds(svc, shop_id=sid)

    _GatedLedger.calls = 0
    _GatedLedger.first_wrote, _GatedLedger.second_writes = asyncio.Event(), asyncio.Event()
    monkeypatch.setattr(refunds, "LedgerBatch", _GatedLedger)
    first = asyncio.create_task(
        refunds.confirm_refund(svc, shop_id=sid, refund_id=a.refund_id, provider_ref="bank-same")
    )
    await asyncio.wait_for(_GatedLedger.first_wrote.wait(), 30)
    second = asyncio.create_task(
        refunds.confirm_refund(svc, shop_id=sid, refund_id=b.refund_id, provider_ref="bank-same")
    )
    done = await asyncio.wait_for(first, 30)
    with pytest.raises(RuleViolation) as e:
        await asyncio.wait_for(second, 30)
    assert (e.value.code, e.value.field, e.value.rule) == (ErrorCode.IDEMPOTENCY_CONFLICT, "providerRef", "GB-10")
    assert (done.refund_id, done.state, done.provider_ref) == (a.refund_id, "CONFIRMED", "bank-same")
    rows = await sql_rows(svc, "SELECT refund_id, state, provider_ref FROM refunds WHERE shop_id = :s", s=sid)
    assert sorted(rows) == sorted([(a.refund_id, "CONFIRMED", "bank-same"), (b.refund_id, "OWED", None)])
    assert [e.payload["refund_id"] for e in await _events(svc, sid, "refund.confirmed")] == [a.refund_id]


async def test_GB10_two_admins_ending_a_campaign_at_once_end_it_once(svc, shop, monkeypatch):
    """Section 2 / GB-10 (`end_campaign`): the campaign row is locked, so a second admin ending it while the
    first one's end is not committed yet waits, then finds it ended and changes nothing: the campaign ends at
    the first admin's moment, not a few minutes later. Kills service/usecases/campaigns.py:176
    (`with_for_update=True` -> False / dropped)."""
    sid = shop.shop_id
    c = await make_campaign(svc, sid)
    later = Services(engine=svc.engine)
    later.clock.set(svc.now() + timedelta(minutes=5))

    first_ran, second_read = asyncio.Event(), asyncio.Event()
    real_once_row = campaigns.once_row
    armed = []

    async def gated_once_row(s, *args, **kw):
        row = await real_once_row(s, *args, **kw)
        if not armed:  # the first admin: its end is written, its transaction still open
            armed.append(True)
            first_ran.set()
            try:  # the second admin's read of the row: it returns at once only if it takes no lock
                await asyncio.wait_for(second_read.wait(), 3)
            except asyncio.TimeoutError:
                pass  # it waits on the lock (as it must): commit, which lets it go on
        return row

    def seen(conn, cursor, statement, parameters, context, executemany):
        if armed and "FROM campaigns" in statement:
            second_read.set()

    monkeypatch.setattr(campaigns, "once_row", gated_once_row)
    event.listen(svc.engine.sync_engine, "after_cursor_execute", seen)
    try:
        one = asyncio.create_task(campaigns.end_campaign(svc, shop_id=sid, campaign_id=c.campaign_id))
        await asyncio.wait_for(first_ran.wait(), 30)
        two = asyncio.create_task(campaigns.end_campaign(later, shop_id=sid, campaign_id=c.campaign_id))
        ended_one, ended_two = await asyncio.wait_for(asyncio.gather(one, two), 30)
    finally:
        event.remove(svc.engine.sync_engine, "after_cursor_execute", seen)
    assert ended_one.ends_at == svc.now()
    assert ended_two.ends_at == svc.now()
    assert (await raw_row(svc, CampaignRow, sid, c.campaign_id)).ends_at == svc.now()
