"""Concurrency designed, not hoped for: truly concurrent transactions on separate connections.

Each test here fails when the lock it relies on is removed (checked once by hand: see
docs/concurrency.md)."""

from __future__ import annotations

import asyncio
from datetime import timedelta

from engine.distribution import DistributorStatus
from engine.errors import ErrorCode, RuleViolation
from service import distribution, groups, orders, payouts
from service.uow import unit_of_work
from store.models import Distributor
from tests.integration.helpers import assert_ledger_consistent, make_campaign, pay


async def _attempt(coro):
    try:
        return await coro
    except RuleViolation as e:
        return e


async def test_concurrent_joins_never_exceed_capacity_GB2(svc, shop):
    """GB-2: 12 users race for 3 seats, 10 rounds: held seats never exceed capacity; every refusal is GROUP_FULL."""
    c = await make_campaign(svc, shop.shop_id, tiers=[(2, 8000), (4, 7000)])
    for round_no in range(10):
        leader = await groups.open_group(svc, shop_id=shop.shop_id, campaign_id=c.campaign_id, user_id=f"L{round_no}")
        await pay(svc, shop.shop_id, leader)
        results = await asyncio.gather(*[
            _attempt(groups.join_group(svc, shop_id=shop.shop_id, group_id=leader.group_id, user_id=f"u{round_no}-{i}"))
            for i in range(12)
        ])
        ok = [r for r in results if not isinstance(r, RuleViolation)]
        refused = [r for r in results if isinstance(r, RuleViolation)]
        assert len(ok) == 3, results
        assert {e.code for e in refused} == {ErrorCode.GROUP_FULL}
        row, g = await groups.get_group(svc, shop_id=shop.shop_id, group_id=leader.group_id)
        assert g.held_seats == 4 == row.held_seats


async def test_concurrent_duplicate_payment_confirmations_have_one_effect_GB10(svc, shop):
    """GB-10: the same provider reference confirmed 8 times at once pays once."""
    o = await orders.report_order(svc, shop_id=shop.shop_id, external_id="x1", buyer_id="b1",
                                  lines=[orders.LineInput("p", 1, 5000)])
    results = await asyncio.gather(*[
        _attempt(orders.confirm_payment(svc, shop_id=shop.shop_id, order_id=o.order_id, amount=5000,
                                        provider_ref="same-ref"))
        for _ in range(8)
    ])
    assert all(not isinstance(r, RuleViolation) for r in results), results
    assert sum(1 for r in results if not r["replayed"]) == 1
    got = await orders.get_order(svc, shop_id=shop.shop_id, order_id=o.order_id)
    assert got.state == "PAID" and got.paid_amount == 5000


async def test_concurrent_payouts_never_take_more_than_available_LG2(svc, shop):
    """LG-2: 10 concurrent requests of 300 against 1,000 available: at most 3 succeed."""
    await distribution.set_status(svc, shop_id=shop.shop_id, user_id="d1", status=DistributorStatus.ACTIVE,
                                  actor="t", reason="t")
    from engine.ledger import Bucket, EntryKind, Posting
    from service.ledger import LedgerBatch

    async with unit_of_work(svc) as s:
        lb = LedgerBatch(shop.shop_id, svc.now())
        lb.add("d1", [Posting(Bucket.AVAILABLE, 1000, EntryKind.UPGRADE_BONUS)], ref_type="test", ref_id="seed")
        await lb.flush(s)
    results = await asyncio.gather(*[
        _attempt(payouts.request_payout(svc, shop_id=shop.shop_id, user_id="d1", amount=300)) for _ in range(10)
    ])
    ok = [r for r in results if not isinstance(r, RuleViolation)]
    assert len(ok) == 3
    assert {e.code for e in results if isinstance(e, RuleViolation)} == {ErrorCode.INSUFFICIENT_BALANCE}
    d = await distribution.get_distributor(svc, shop_id=shop.shop_id, user_id="d1")
    assert d.available == 100 and d.in_payout == 900
    await assert_ledger_consistent(svc, shop.shop_id)


async def test_concurrent_stock_is_never_oversold_GB1(svc, shop):
    """GB-1/GB-2: stock taken at reservation never goes below zero across many groups at once."""
    c = await make_campaign(svc, shop.shop_id, stock=5, tiers=[(2, 8000)])
    results = await asyncio.gather(*[
        _attempt(groups.open_group(svc, shop_id=shop.shop_id, campaign_id=c.campaign_id, user_id=f"s{i}"))
        for i in range(12)
    ])
    ok = [r for r in results if not isinstance(r, RuleViolation)]
    assert len(ok) == 5
    assert {e.code for e in results if isinstance(e, RuleViolation)} == {ErrorCode.OUT_OF_STOCK}


async def test_concurrent_idempotent_join_has_one_effect_GB10(svc, shop):
    """GB-10: the same join retried concurrently with one key takes one seat."""
    c = await make_campaign(svc, shop.shop_id)
    leader = await groups.open_group(svc, shop_id=shop.shop_id, campaign_id=c.campaign_id, user_id="L")
    await pay(svc, shop.shop_id, leader)
    results = await asyncio.gather(*[
        _attempt(groups.join_group(svc, shop_id=shop.shop_id, group_id=leader.group_id, user_id="m",
                                   idempotency_key="k1"))
        for _ in range(5)
    ])
    assert all(not isinstance(r, RuleViolation) for r in results), results
    assert len({r.order_id for r in results}) == 1
    with_other = await _attempt(groups.join_group(svc, shop_id=shop.shop_id, group_id=leader.group_id, user_id="m",
                                                  quantity=2, idempotency_key="k1"))
    assert isinstance(with_other, RuleViolation) and with_other.code == ErrorCode.IDEMPOTENCY_CONFLICT


async def test_concurrent_refund_confirmations_with_one_reference_all_get_the_first_result_GB10(svc, shop):
    """GB-10: four concurrent confirmRefund calls with the same provider reference are one confirmation; every
    caller gets it back (none is refused). The calls are held at the refund's row lock so that all of them
    are past any pre-lock lookup before the first one commits."""
    from sqlalchemy import text

    from service import refunds, worker

    c = await make_campaign(svc, shop.shop_id, tiers=[(2, 8000)])
    seat = await groups.open_group(svc, shop_id=shop.shop_id, campaign_id=c.campaign_id, user_id="late")
    svc.clock.advance(timedelta(minutes=20))
    await worker.run_due(svc)
    await pay(svc, shop.shop_id, seat)  # GB-9: a late payment is owed back
    [owed] = await refunds.list_refunds(svc, shop_id=shop.shop_id, state="OWED")
    async with svc.engine.connect() as blocker:
        await blocker.execute(text("SELECT 1 FROM refunds WHERE shop_id = :s AND refund_id = :r FOR UPDATE"),
                              {"s": shop.shop_id, "r": owed.refund_id})
        calls = [asyncio.create_task(_attempt(refunds.confirm_refund(
            svc, shop_id=shop.shop_id, refund_id=owed.refund_id, provider_ref="bank-1"))) for _ in range(4)]
        await asyncio.sleep(0.5)
        await blocker.rollback()
    results = await asyncio.gather(*calls)
    assert all(not isinstance(r, RuleViolation) for r in results), results
    assert {(r.refund_id, r.state, r.provider_ref) for r in results} == {(owed.refund_id, "CONFIRMED", "bank-1")}
    async with unit_of_work(svc) as s:
        n = (await s.execute(text("SELECT count(*) FROM events WHERE shop_id = :s AND type = 'refund.confirmed'"),
                             {"s": shop.shop_id})).scalar()
    assert n == 1  # one effect
