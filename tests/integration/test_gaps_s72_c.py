"""Survivors of the seed-72 mutation sample over service/ (issue 12), third batch: each killed by a test through
the service on a real PostgreSQL that asserts what a caller can see (the answer, the stored rows)."""

from __future__ import annotations

import secrets
from datetime import timedelta

import pytest
from sqlalchemy import select

from engine.distribution import DistributionMode, DistributorStatus
from engine.errors import ErrorCode, RuleViolation
from service.usecases import distribution, orders, shops, visits
from store.models import CommissionLineRow, Order
from tests.integration.test_rules_wired import chain, paid_order


async def _lines(svc, sid: str) -> list[tuple[str, str]]:
    async with svc.sessionmaker() as s:
        rows = (await s.execute(select(CommissionLineRow).where(CommissionLineRow.shop_id == sid))).scalars()
        return sorted((r.beneficiary_id, r.state) for r in rows)


async def test_CM6_reading_a_distributor_releases_only_that_shops_due_lines(svc, shop):
    """CM-6 (kills service/usecases/distribution.py `get_distributor` kwarg `shop_id=shop_id` dropped from
    `release_due_lines`): "ref" is a distributor in shops A and B, each with a line due; reading ref in A
    releases A's line, while B's stays FROZEN (and B's stored balances unchanged) until ref is read in B, and so
    does the due line of A's other distributor ref2 (also kills `user_ids=[user_id]` dropped)."""
    from store.models import Distributor

    a = shop.shop_id
    b = (await shops.create_shop(svc, shop_id=f"t-{secrets.token_hex(5)}", name="Shop B", currency="CNY")).shop_id
    for sid in (a, b):
        await shops.update_settings(svc, shop_id=sid, freeze_days=1, level2_bp=0)
        await chain(svc, sid, "ref", "buyer")
        o = await paid_order(svc, sid, "buyer", orders.LineInput("x", 1, 10_000))
        await orders.complete_order(svc, shop_id=sid, order_id=o.order_id)
    await chain(svc, a, "ref2", "buyer2")  # another of A's distributors, with a line due too
    o = await paid_order(svc, a, "buyer2", orders.LineInput("x", 1, 10_000))
    await orders.complete_order(svc, shop_id=a, order_id=o.order_id)
    assert await _lines(svc, b) == [("ref", "FROZEN")]
    async with svc.sessionmaker() as s:
        before = (await s.get(Distributor, (b, "ref"))).available, (await s.get(Distributor, (b, "ref"))).frozen
    svc.clock.advance(timedelta(days=1))  # both lines due
    got = await distribution.get_distributor(svc, shop_id=a, user_id="ref")
    assert (got.frozen, got.available) == (0, 1000)
    assert await _lines(svc, a) == [("ref", "AVAILABLE"), ("ref2", "FROZEN")]
    assert await _lines(svc, b) == [("ref", "FROZEN")]
    async with svc.sessionmaker() as s:
        row = await s.get(Distributor, (b, "ref"))
        assert (row.available, row.frozen) == before == (0, 1000)
    got_b = await distribution.get_distributor(svc, shop_id=b, user_id="ref")
    assert (got_b.frozen, got_b.available) == (0, 1000)


async def test_DS1_suspending_a_never_approved_applicant_does_not_approve_it(svc, shop):
    """DS-1 (kills service/usecases/distribution.py `set_status` cmp `status == ACTIVE` -> `!=` before setting
    approved_at): an applicant (APPROVAL mode) suspended by a2 has no approval (approved_at/approved_by None);
    made ACTIVE later by a3, the approval is a3's, at that instant."""
    sid = shop.shop_id
    await shops.update_settings(svc, shop_id=sid, mode=DistributionMode.APPROVAL)
    await distribution.apply(svc, shop_id=sid, user_id="ann")
    kw = dict(svc=svc, shop_id=sid, user_id="ann", reason="r")
    await distribution.set_status(status=DistributorStatus.SUSPENDED, actor="a2", **kw)
    got = await distribution.get_distributor(svc, shop_id=sid, user_id="ann")
    assert (got.status, got.approved_by, got.approved_at) == (DistributorStatus.SUSPENDED.value, None, None)
    svc.clock.advance(timedelta(minutes=5))
    await distribution.set_status(status=DistributorStatus.ACTIVE, actor="a3", **kw)
    got = await distribution.get_distributor(svc, shop_id=sid, user_id="ann")
    assert (got.status, got.approved_by, got.approved_at) == (DistributorStatus.ACTIVE.value, "a3", svc.now())


async def test_RP6_a_visitor_records_30_visits_a_minute_after_the_burst_of_10(svc, shop):
    """RP-6 (kills service/usecases/visits.py `PER_VISITOR = (30, 10)` const 30 -> 31): after the burst of 10, a
    visitor earns one visit every 2 s exactly: 1.95 s after the burst is spent the next is RATE_LIMITED
    (visitorId), at 2 s it is recorded; in the 60 s after the burst exactly 30 more are recorded, and the one
    right after is refused."""
    sid = shop.shop_id
    await distribution.set_status(
        svc, shop_id=sid, user_id="ref", status=DistributorStatus.ACTIVE, actor="a", reason="r"
    )
    code = (await distribution.get_distributor(svc, shop_id=sid, user_id="ref")).invite_code
    kw = dict(shop_id=sid, invite_code=code, visitor_id="visitor-rate", limiter=visits.VisitLimiter())

    async def refused() -> None:
        with pytest.raises(RuleViolation) as e:
            await visits.record_visit(svc, **kw)
        assert (e.value.code, e.value.field) == (ErrorCode.RATE_LIMITED, "visitorId")

    for _ in range(10):
        await visits.record_visit(svc, **kw)
    await refused()
    svc.clock.advance(timedelta(milliseconds=1950))
    await refused()  # 975 of the 1000 milli-tokens a visit takes (31 a minute: 1007)
    svc.clock.advance(timedelta(milliseconds=50))
    await visits.record_visit(svc, **kw)  # 2 s: one visit
    for _ in range(29):  # 2 s .. 60 s: one visit every 2 s
        svc.clock.advance(timedelta(seconds=2))
        await visits.record_visit(svc, **kw)
    await refused()
    svc.clock.advance(timedelta(milliseconds=1999))
    await refused()


async def test_OR4_completing_an_order_the_shop_does_not_have_is_not_found(svc, shop):
    """OR-4 (kills service/usecases/orders.py `complete_order` stmt `raise refuse(NOT_FOUND ...)` -> pass): an
    order id or external id the shop does not have (here: another shop's paid order) is NOT_FOUND on orderId,
    and the order is still PAID."""
    sid = shop.shop_id
    other = (await shops.create_shop(svc, shop_id=f"t-{secrets.token_hex(5)}", name="Other", currency="CNY")).shop_id
    o = await paid_order(svc, other, "buyer", orders.LineInput("x", 1, 10_000), ext="ext-1")
    for ref in (dict(order_id=o.order_id), dict(order_id="ord_missing"), dict(external_id="ext-1")):
        with pytest.raises(RuleViolation) as e:
            await orders.complete_order(svc, shop_id=sid, **ref)
        assert (e.value.code, e.value.field) == (ErrorCode.NOT_FOUND, "orderId")
    async with svc.sessionmaker() as s:
        assert (await s.get(Order, (other, o.order_id))).state == "PAID"
