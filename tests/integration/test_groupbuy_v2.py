"""Group-buy v2 (issue 15) through the service and the worker, on real PostgreSQL."""

from __future__ import annotations

from datetime import timedelta

import pytest

from service.jobs import worker
from service.usecases import groups
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
        rows = (
            await s.execute(
                text(
                    "SELECT type, occurred_at, payload FROM events WHERE shop_id = :s "
                    "AND type = ANY(:t) ORDER BY occurred_at"
                ),
                {"s": sid, "t": list(types)},
            )
        ).all()
    return rows


async def test_GB15_nudges_once_each_on_time_by_the_worker_without_reads(svc, shop):
    """GB-15: `almost_full` with the payment that leaves `almost_full_at` seats missing; `expiring_soon` by the
    worker exactly `expiring_soon_before` ahead of expires_at (due_at says when), nobody reading; each once."""
    sid = shop.shop_id
    c = await make_campaign(
        svc,
        sid,
        tiers=[(4, 8_000)],
        duration=timedelta(hours=1),
        almost_full_at=2,
        expiring_soon_before=timedelta(minutes=10),
    )
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


async def _open_with(svc, sid, cid, leader: str, members: int, paid_members: int = 0):
    lead = await groups.open_group(svc, shop_id=sid, campaign_id=cid, user_id=leader)
    await pay(svc, sid, lead)
    for i in range(members):
        m = await groups.join_group(svc, shop_id=sid, group_id=lead.group_id, user_id=f"{leader}-m{i}")
        if i < paid_members:
            await pay(svc, sid, m)
    return lead.group_id


async def test_GB13_quick_join_order_retry_and_open_if_none(svc, shop):
    """GB-13: the group with the fewest seats missing to its next threshold first, then the earliest to
    expire; a refusal by one group (the customer already sits there) moves on; none left: NO_GROUP_AVAILABLE,
    or with open_if_none a new group with the customer as its leader."""
    from engine.errors import ErrorCode, RuleViolation

    sid = shop.shop_id
    c = await make_campaign(svc, sid, tiers=[(3, 8_000), (5, 7_000)])
    far = await _open_with(svc, sid, c.campaign_id, "far", 0)  # 1 held: 2 to tier 3
    svc.clock.advance(timedelta(minutes=1))
    near = await _open_with(svc, sid, c.campaign_id, "near", 1)  # 2 held: 1 to tier 3
    svc.clock.advance(timedelta(minutes=1))
    near_later = await _open_with(svc, sid, c.campaign_id, "late", 1)  # 2 held, expires later
    r = await groups.quick_join(svc, shop_id=sid, campaign_id=c.campaign_id, user_id="q1")
    assert (r.group_id, r.opened) == (near, False)  # 3 held: now 2 to tier 5
    r = await groups.quick_join(svc, shop_id=sid, campaign_id=c.campaign_id, user_id="q2")
    assert r.group_id == near_later  # 1 missing, expires after `near`
    r = await groups.quick_join(svc, shop_id=sid, campaign_id=c.campaign_id, user_id="q3")
    assert r.group_id == far  # all 2 missing: earliest expiry
    r = await groups.quick_join(svc, shop_id=sid, campaign_id=c.campaign_id, user_id="q4")
    assert r.group_id == far  # 1 missing to tier 3
    r = await groups.quick_join(svc, shop_id=sid, campaign_id=c.campaign_id, user_id="q4")
    assert r.group_id == near  # all 2 missing; q4 already sits in `far` (earliest): the next one
    # fill everything, then none is left
    for i in range(20):
        try:
            await groups.quick_join(svc, shop_id=sid, campaign_id=c.campaign_id, user_id=f"fill{i}")
        except RuleViolation as e:
            assert e.code is ErrorCode.NO_GROUP_AVAILABLE and e.rule == "GB-13"
            break
    else:
        raise AssertionError("the groups never filled")
    o = await groups.quick_join(svc, shop_id=sid, campaign_id=c.campaign_id, user_id="opener", open_if_none=True)
    assert o.opened and o.group_id not in (far, near, near_later)
    row = await raw_row(svc, GroupRow, sid, o.group_id)
    assert row.state == "PENDING" and row.leader_user_id == "opener"
    again = await groups.quick_join(
        svc, shop_id=sid, campaign_id=c.campaign_id, user_id="opener2", open_if_none=True, idempotency_key="k1"
    )
    replay = await groups.quick_join(
        svc, shop_id=sid, campaign_id=c.campaign_id, user_id="opener2", open_if_none=True, idempotency_key="k1"
    )
    assert (replay.group_id, replay.order_id) == (again.group_id, again.order_id)  # GB-10: one seat


async def test_GB13_concurrent_quick_joins_of_60_users_never_oversell_and_fill_before_opening(svc, shop):
    """GB-13 / GB-2 under concurrency: 60 customers quick-join at once with open_if_none. No group ever holds
    more than its capacity, every customer gets exactly one seat, every free seat of the open groups is taken
    before anyone opens a new group (each quick join that opened had tried every group and found it full)."""
    import asyncio

    from sqlalchemy import text

    sid = shop.shop_id
    c = await make_campaign(svc, sid, tiers=[(5, 8_000)])
    existing = [await _open_with(svc, sid, c.campaign_id, f"g{i}", n, n // 2) for i, n in enumerate((3, 0, 2, 1))]
    free = 4 * 5 - (4 + 1 + 3 + 2)  # 10 seats
    users = [f"u{i:02d}" for i in range(60)]
    results = await asyncio.gather(
        *(groups.quick_join(svc, shop_id=sid, campaign_id=c.campaign_id, user_id=u, open_if_none=True) for u in users)
    )
    assert len({r.order_id for r in results}) == 60
    async with svc.sessionmaker() as s:
        held = dict(
            (
                await s.execute(
                    text(
                        "SELECT group_id, count(*) FROM seats WHERE shop_id = :s AND state IN ('RESERVED', 'PAID') "
                        "GROUP BY group_id"
                    ),
                    {"s": sid},
                )
            ).all()
        )
        per_user = (
            await s.execute(
                text(
                    "SELECT user_id, count(*) FROM seats WHERE shop_id = :s AND state IN ('RESERVED', 'PAID') "
                    "AND user_id LIKE 'u%' GROUP BY user_id"
                ),
                {"s": sid},
            )
        ).all()
    assert all(n <= 5 for n in held.values()), held  # never oversold (GB-2)
    assert all(held[g] == 5 for g in existing), held  # the open groups filled first (GB-13)
    assert sorted(u for u, n in per_user if n == 1) == users  # one seat each
    joined = [r for r in results if not r.opened]
    assert len(joined) == free and len(results) - len(joined) == 60 - free
    for g in existing:
        row = await raw_row(svc, GroupRow, sid, g)
        assert row.held_seats == 5


async def _late_member(svc, sid, cid):
    """A group whose member `bob` reserved and let his payment window pass, and another open group."""
    a = await _open_with(svc, sid, cid, "ann", 0)
    bob = await groups.join_group(svc, shop_id=sid, group_id=a, user_id="bob")
    b = await _open_with(svc, sid, cid, "cid", 0)
    svc.clock.advance(timedelta(minutes=16))  # bob's pay_by has passed
    return a, b, bob


async def test_GB14_overflow_reseat_is_off_by_default_and_the_late_payment_is_refunded(svc, shop):
    from service.usecases import refunds

    sid = shop.shop_id
    c = await make_campaign(svc, sid, tiers=[(3, 8_000)])
    a, b, bob = await _late_member(svc, sid, c.campaign_id)
    r = await pay(svc, sid, bob)
    assert r["accepted"] is False
    o = await raw_row(svc, Order, sid, bob.order_id)
    assert o.group_id == a and o.refunded_amount == 8_000
    assert [e.payload["reason"] for e in await _events(svc, sid, "refund.owed")] == ["GB-9"]
    assert await _events(svc, sid, "order.reseated") == []
    del refunds


async def test_GB14_overflow_reseat_seats_the_late_payment_in_another_open_group_at_its_price(svc, shop):
    from service.usecases import groupbuy_settings

    sid = shop.shop_id
    assert await groupbuy_settings.get_overflow_reseat(svc, shop_id=sid) is False
    await groupbuy_settings.set_overflow_reseat(svc, shop_id=sid, enabled=True)
    c = await make_campaign(svc, sid, tiers=[(3, 8_000)], stock=10)
    a, b, bob = await _late_member(svc, sid, c.campaign_id)
    r = await pay(svc, sid, bob)
    assert r["accepted"] is True
    o = await raw_row(svc, Order, sid, bob.order_id)
    assert (o.group_id, o.state, o.paid_amount, o.refunded_amount) == (b, "PAID", 8_000, 0)
    (ev,) = await _events(svc, sid, "order.reseated")
    assert (ev.payload["from_group_id"], ev.payload["to_group_id"]) == (a, b)
    assert await _events(svc, sid, "refund.owed") == []
    rb = await raw_row(svc, GroupRow, sid, b)
    ra = await raw_row(svc, GroupRow, sid, a)
    assert (rb.held_seats, rb.paid_seats, ra.held_seats) == (2, 2, 1)
    from store.models import CampaignRow

    assert (await raw_row(svc, CampaignRow, sid, c.campaign_id)).stock_left == 10 - 3  # ann, cid, bob
    await assert_ledger_consistent(svc, sid)


async def test_GB14_a_group_that_refuses_the_payer_is_skipped_for_the_next_one(svc, shop, monkeypatch):
    """GB-14 (service/usecases/groups.py `_reseat`): the re-seat tries the open groups in GB-13's order, and a
    refusal that concerns that group only (here GROUP_FULL: it filled between the read of the candidates and
    its lock) moves on to the next; the late payment takes a seat there, nothing is refunded."""
    from service.tx import lean
    from service.usecases import groupbuy_settings

    sid = shop.shop_id
    await groupbuy_settings.set_overflow_reseat(svc, shop_id=sid, enabled=True)
    c = await make_campaign(svc, sid, tiers=[(3, 8_000)])
    a = await _open_with(svc, sid, c.campaign_id, "ann", 0)
    bob = await groups.join_group(svc, shop_id=sid, group_id=a, user_id="bob")
    first = await _open_with(svc, sid, c.campaign_id, "cid", 1, 1)  # 1 seat missing: GB-13 tries it first
    second = await _open_with(svc, sid, c.campaign_id, "dan", 0)
    svc.clock.advance(timedelta(minutes=16))  # bob's pay_by has passed
    original, filled = lean.load_group, []

    async def others_fill_the_first(session, shop_id, group_id=None, **kw):
        if group_id == first and kw.get("skip_locked") and not filled:
            filled.append(True)  # another customer, in a transaction of their own, takes its last seat first
            await groups.join_group(svc, shop_id=sid, group_id=first, user_id="eve")
        return await original(session, shop_id, group_id, **kw)

    monkeypatch.setattr(lean, "load_group", others_fill_the_first)
    r = await pay(svc, sid, bob)
    assert filled and r["accepted"] is True
    o = await raw_row(svc, Order, sid, bob.order_id)
    assert (o.group_id, o.state, o.paid_amount, o.refunded_amount) == (second, "PAID", 8_000, 0)
    (ev,) = await _events(svc, sid, "order.reseated")
    assert (ev.payload["from_group_id"], ev.payload["to_group_id"]) == (a, second)
    assert await _events(svc, sid, "refund.owed") == []
    assert (await raw_row(svc, GroupRow, sid, first)).held_seats == 3  # full, never oversold


async def test_GB14_no_group_can_take_the_buyer_so_the_payment_is_refunded(svc, shop):
    from service.usecases import groupbuy_settings

    sid = shop.shop_id
    await groupbuy_settings.set_overflow_reseat(svc, shop_id=sid, enabled=True)
    c = await make_campaign(svc, sid, tiers=[(2, 8_000)])
    a = await _open_with(svc, sid, c.campaign_id, "ann", 0)
    bob = await groups.join_group(svc, shop_id=sid, group_id=a, user_id="bob")
    svc.clock.advance(timedelta(minutes=16))
    r = await pay(svc, sid, bob)  # no other open group
    assert r["accepted"] is False
    assert [e.payload["reason"] for e in await _events(svc, sid, "refund.owed")] == ["GB-9"]
    assert await _events(svc, sid, "order.reseated") == []


async def test_GB13_quick_join_picks_exactly_the_group_the_rule_names_and_retries_a_full_one(svc, shop, monkeypatch):
    """GB-13's order of choice among six open groups of one campaign, step by step: fewest seats missing to the
    next threshold (tiers 3 and 5), then earliest `expires_at` (groups opened late are capped at the campaign's
    `ends_at`, so expiry and opening order differ), then earliest opened. A full group is never chosen; a group
    chosen but filled by others before the seat is taken (between the read and the locked join) is skipped
    for the next one in the order (the retry), and no group is ever oversold."""
    from engine.errors import ErrorCode, RuleViolation

    sid = shop.shop_id
    t0 = svc.now()
    c = await make_campaign(
        svc, sid, tiers=[(3, 8_000), (5, 7_000)], duration=timedelta(hours=10), ends_at=t0 + timedelta(hours=12)
    )
    cid = c.campaign_id
    four_lead = await groups.open_group(svc, shop_id=sid, campaign_id=cid, user_id="four")  # opened first...
    far = await _open_with(svc, sid, cid, "far", 0)  # 1 held: 2 to tier 3; expires t0+10h
    svc.clock.advance(timedelta(minutes=1))
    mid = await _open_with(svc, sid, cid, "mid", 1, 1)  # 2 held: 1 missing; t0+10h01
    svc.clock.advance(timedelta(minutes=4))
    await pay(svc, sid, four_lead)  # ...but paid (opened, GB-1) later: t0+10h05
    four = four_lead.group_id
    for i in range(3):  # 4 held: 1 missing to tier 5
        await pay(svc, sid, await groups.join_group(svc, shop_id=sid, group_id=four, user_id=f"four-m{i}"))
    svc.clock.advance(timedelta(minutes=15))
    full = await _open_with(svc, sid, cid, "full", 4, 4)  # 5 held: full (capacity 5)
    svc.clock.set(t0 + timedelta(hours=3))
    cap_a = await _open_with(svc, sid, cid, "capa", 1, 1)  # 2 held: 1 missing; capped at t0+12h
    svc.clock.advance(timedelta(minutes=5))
    cap_b = await _open_with(svc, sid, cid, "capb", 1, 1)  # the same, opened 5 minutes later
    svc.clock.advance(timedelta(minutes=5))
    expiry = {g: (await raw_row(svc, GroupRow, sid, g)).expires_at for g in (far, mid, four, cap_a, cap_b)}
    assert expiry[cap_a] == expiry[cap_b] == t0 + timedelta(hours=12) > expiry[four] > expiry[mid] > expiry[far]
    opened = {g: (await raw_row(svc, GroupRow, sid, g)).opened_at for g in (mid, four)}
    assert opened[four] < opened[mid]  # expiry, not opening, decides between them

    # the rule names `mid` first (1 missing, earliest expiry); it fills before q0's seat is taken: `four` next
    original, filled = groups._join_in, []

    async def others_fill_mid_first(s, **kw):
        if kw["group_id"] == mid and not filled and kw["user_id"] == "q0":
            filled.append(True)
            for i in range(3):  # other customers, each their own transaction, commit first
                await groups.join_group(svc, shop_id=sid, group_id=mid, user_id=f"other{i}")
        return await original(s, **kw)

    monkeypatch.setattr(groups, "_join_in", others_fill_mid_first)
    r = await groups.quick_join(svc, shop_id=sid, campaign_id=cid, user_id="q0")
    assert filled and (r.group_id, r.opened) == (four, False)  # the retry: `mid` refused GROUP_FULL
    monkeypatch.setattr(groups, "_join_in", original)

    # now mid and four are full; every later choice is the rule's, one at a time
    expected = [
        cap_a,
        cap_b,  # 1 missing each; same expiry: the earlier opened first
        far,  # all 2 missing: far expires first
        far,  # 1 missing to tier 3
        far,
        far,  # 2 then 1 missing to tier 5 (still the earliest expiry)
        cap_a,
        cap_a,  # far full; cap_a opened before cap_b
        cap_b,
        cap_b,
    ]
    got = [
        (await groups.quick_join(svc, shop_id=sid, campaign_id=cid, user_id=f"q{i + 1}")).group_id
        for i in range(len(expected))
    ]
    assert got == expected
    assert full not in got and mid not in got
    try:
        await groups.quick_join(svc, shop_id=sid, campaign_id=cid, user_id="late")
        raise AssertionError("a full campaign took another seat")
    except RuleViolation as e:
        assert e.code is ErrorCode.NO_GROUP_AVAILABLE and e.rule == "GB-13"
    for g in (far, mid, full, four, cap_a, cap_b):
        assert (await raw_row(svc, GroupRow, sid, g)).held_seats == 5  # filled, never oversold


@pytest.mark.parametrize("fate", ["filled", "formed", "failed"])
async def test_GB14_a_late_payment_whose_group_filled_formed_or_failed_is_reseated(svc, shop, fate):
    """GB-14 for each of GB-9's other causes, through the database and the worker: bob's reservation in ann's
    group was released (his pay_by passed), then that group filled (others reserved every seat), formed (they
    paid) or failed (it expired short). His late payment takes a seat in cid's open group at the same role and
    price; no refund is owed for it, the events say so, and the ledger balances."""
    from service.usecases import groupbuy_settings

    sid = shop.shop_id
    await groupbuy_settings.set_overflow_reseat(svc, shop_id=sid, enabled=True)
    c = await make_campaign(svc, sid, tiers=[(3, 8_000)], stock=20)
    a = await _open_with(svc, sid, c.campaign_id, "ann", 0)
    bob = await groups.join_group(svc, shop_id=sid, group_id=a, user_id="bob")
    svc.clock.advance(timedelta(hours=1))
    b = await _open_with(svc, sid, c.campaign_id, "cid", 0)  # expires an hour after ann's
    await worker.run_due(svc)  # bob's reservation is released
    assert (await raw_row(svc, GroupRow, sid, a)).held_seats == 1
    if fate in ("filled", "formed"):
        for u in ("xia", "yan"):
            s = await groups.join_group(svc, shop_id=sid, group_id=a, user_id=u)
            if fate == "formed":
                await pay(svc, sid, s)
    else:
        svc.clock.advance(timedelta(hours=23, minutes=1))  # ann's group expired: b still open
        await worker.run_due(svc)
    ra = await raw_row(svc, GroupRow, sid, a)
    assert ra.state == {"filled": "OPEN", "formed": "FORMED", "failed": "FAILED"}[fate]
    assert fate == "failed" or ra.held_seats == 3  # no seat for bob there: GB-9 would refund him
    r = await pay(svc, sid, bob)
    assert r["accepted"] is True
    o = await raw_row(svc, Order, sid, bob.order_id)
    assert (o.group_id, o.state, o.paid_amount, o.refunded_amount) == (b, "PAID", 8_000, 0)
    (ev,) = await _events(svc, sid, "order.reseated")
    assert (ev.payload["from_group_id"], ev.payload["to_group_id"], ev.payload["amount"]) == (a, b, 8_000)
    assert [e for e in await _events(svc, sid, "refund.owed") if e.payload.get("order_id") == bob.order_id] == []
    rb = await raw_row(svc, GroupRow, sid, b)
    assert (rb.state, rb.held_seats, rb.paid_seats) == ("OPEN", 2, 2)
    await assert_ledger_consistent(svc, sid)
