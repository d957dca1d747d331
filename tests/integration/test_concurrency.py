"""Concurrency designed, not hoped for: truly concurrent transactions on separate connections.

Each test here fails when the lock it relies on is removed (checked once by hand: see
docs/concurrency.md)."""

from __future__ import annotations

import asyncio
from datetime import timedelta

from sqlalchemy import text

from engine.distribution import DistributorStatus
from engine.errors import ErrorCode, RuleViolation
from service.usecases import distribution, groups, orders, payouts
from service.uow import unit_of_work
from store.models import CampaignUserUnits
from tests.integration.helpers import assert_ledger_consistent, make_campaign, pay


async def _attempt(coro):
    try:
        return await coro
    except RuleViolation as e:
        return e


def _split(results: list) -> tuple[list, set]:
    """The calls of a race that went through, and the codes of the ones refused."""
    return (
        [r for r in results if not isinstance(r, RuleViolation)],
        {e.code for e in results if isinstance(e, RuleViolation)},
    )


async def test_concurrent_joins_never_exceed_capacity_GB2(svc, shop):
    """GB-2: 12 users race for 3 seats, 10 rounds: held seats never exceed capacity; every refusal is GROUP_FULL."""
    c = await make_campaign(svc, shop.shop_id, tiers=[(2, 8000), (4, 7000)])
    for round_no in range(10):
        leader = await groups.open_group(svc, shop_id=shop.shop_id, campaign_id=c.campaign_id, user_id=f"L{round_no}")
        await pay(svc, shop.shop_id, leader)
        results = await asyncio.gather(
            *[
                _attempt(
                    groups.join_group(svc, shop_id=shop.shop_id, group_id=leader.group_id, user_id=f"u{round_no}-{i}")
                )
                for i in range(12)
            ]
        )
        ok, refused = _split(results)
        assert len(ok) == 3, results
        assert refused == {ErrorCode.GROUP_FULL}
        row, g = await groups.get_group_caught_up(svc, shop_id=shop.shop_id, group_id=leader.group_id)
        assert g.held_seats == 4 == row.held_seats


async def test_concurrent_duplicate_payment_confirmations_have_one_effect_GB10(svc, shop):
    """GB-10: the same provider reference confirmed 8 times at once pays once."""
    o = await orders.report_order(
        svc, shop_id=shop.shop_id, external_id="x1", buyer_id="b1", lines=[orders.LineInput("p", 1, 5000)]
    )
    results = await asyncio.gather(
        *[
            _attempt(
                orders.confirm_payment(
                    svc, shop_id=shop.shop_id, order_id=o.order_id, amount=5000, provider_ref="same-ref"
                )
            )
            for _ in range(8)
        ]
    )
    assert all(not isinstance(r, RuleViolation) for r in results), results
    assert sum(1 for r in results if not r["replayed"]) == 1
    got = await orders.get_order_caught_up(svc, shop_id=shop.shop_id, order_id=o.order_id)
    assert got.state == "PAID" and got.paid_amount == 5000


async def test_concurrent_payouts_never_take_more_than_available_LG2(svc, shop):
    """LG-2: 10 concurrent requests of 300 against 1,000 available: at most 3 succeed."""
    await distribution.set_status(
        svc, shop_id=shop.shop_id, user_id="d1", status=DistributorStatus.ACTIVE, actor="t", reason="t"
    )
    from engine.ledger import Bucket, EntryKind, Posting
    from service.tx.ledger import LedgerBatch

    async with unit_of_work(svc) as s:
        lb = LedgerBatch(shop.shop_id, svc.now())
        lb.add("d1", [Posting(Bucket.AVAILABLE, 1000, EntryKind.UPGRADE_BONUS)], ref_type="test", ref_id="seed")
        await lb.flush(s)
    results = await asyncio.gather(
        *[_attempt(payouts.request_payout(svc, shop_id=shop.shop_id, user_id="d1", amount=300)) for _ in range(10)]
    )
    ok, refused = _split(results)
    assert len(ok) == 3
    assert refused == {ErrorCode.INSUFFICIENT_BALANCE}
    d = await distribution.get_distributor(svc, shop_id=shop.shop_id, user_id="d1")
    assert d.available == 100 and d.in_payout == 900
    await assert_ledger_consistent(svc, shop.shop_id)


async def test_concurrent_stock_is_never_oversold_GB1(svc, shop):
    """GB-1/GB-2: stock taken at reservation never goes below zero across many groups at once."""
    c = await make_campaign(svc, shop.shop_id, stock=5, tiers=[(2, 8000)])
    results = await asyncio.gather(
        *[
            _attempt(groups.open_group(svc, shop_id=shop.shop_id, campaign_id=c.campaign_id, user_id=f"s{i}"))
            for i in range(12)
        ]
    )
    ok, refused = _split(results)
    assert len(ok) == 5
    assert refused == {ErrorCode.OUT_OF_STOCK}


async def test_concurrent_idempotent_join_has_one_effect_GB10(svc, shop):
    """GB-10: the same join retried concurrently with one key takes one seat."""
    c = await make_campaign(svc, shop.shop_id)
    leader = await groups.open_group(svc, shop_id=shop.shop_id, campaign_id=c.campaign_id, user_id="L")
    await pay(svc, shop.shop_id, leader)
    results = await asyncio.gather(
        *[
            _attempt(
                groups.join_group(
                    svc, shop_id=shop.shop_id, group_id=leader.group_id, user_id="m", idempotency_key="k1"
                )
            )
            for _ in range(5)
        ]
    )
    assert all(not isinstance(r, RuleViolation) for r in results), results
    assert len({r.order_id for r in results}) == 1
    with_other = await _attempt(
        groups.join_group(
            svc, shop_id=shop.shop_id, group_id=leader.group_id, user_id="m", quantity=2, idempotency_key="k1"
        )
    )
    assert isinstance(with_other, RuleViolation) and with_other.code == ErrorCode.IDEMPOTENCY_CONFLICT


async def test_concurrent_refund_confirmations_with_one_reference_all_get_the_first_result_GB10(svc, shop):
    """GB-10: four concurrent confirmRefund calls with the same provider reference are one confirmation; every
    caller gets it back (none is refused). The calls are held at the refund's row lock so that all of them
    are past any pre-lock lookup before the first one commits."""
    from sqlalchemy import text

    from service.usecases import refunds
    from service.jobs import worker

    c = await make_campaign(svc, shop.shop_id, tiers=[(2, 8000)])
    seat = await groups.open_group(svc, shop_id=shop.shop_id, campaign_id=c.campaign_id, user_id="late")
    svc.clock.advance(timedelta(minutes=20))
    await worker.run_due(svc)
    await pay(svc, shop.shop_id, seat)  # GB-9: a late payment is owed back
    [owed] = await refunds.list_refunds(svc, shop_id=shop.shop_id, state="OWED")
    async with svc.engine.connect() as blocker:
        await blocker.execute(
            text("SELECT 1 FROM refunds WHERE shop_id = :s AND refund_id = :r FOR UPDATE"),
            {"s": shop.shop_id, "r": owed.refund_id},
        )
        calls = [
            asyncio.create_task(
                _attempt(
                    refunds.confirm_refund(svc, shop_id=shop.shop_id, refund_id=owed.refund_id, provider_ref="bank-1")
                )
            )
            for _ in range(4)
        ]
        await asyncio.sleep(0.5)
        await blocker.rollback()
    results = await asyncio.gather(*calls)
    assert all(not isinstance(r, RuleViolation) for r in results), results
    assert {(r.refund_id, r.state, r.provider_ref) for r in results} == {(owed.refund_id, "CONFIRMED", "bank-1")}
    async with unit_of_work(svc) as s:
        n = (
            await s.execute(
                text("SELECT count(*) FROM events WHERE shop_id = :s AND type = 'refund.confirmed'"),
                {"s": shop.shop_id},
            )
        ).scalar()
    assert n == 1  # one effect


async def _referred_buyers(svc, shop_id: str, *buyers: str) -> None:
    """d1 earns level-1 commission on these buyers' orders, so a second effect shows as a second line."""
    await distribution.set_status(
        svc, shop_id=shop_id, user_id="d1", status=DistributorStatus.ACTIVE, actor="t", reason="t"
    )
    for b in buyers:
        await distribution.bind_referrer(svc, shop_id=shop_id, user_id=b, referrer_id="d1")


async def _count(svc, sql: str, **params) -> int:
    async with svc.sessionmaker() as s:
        return (await s.execute(text(sql), params)).scalar_one()


async def test_concurrent_duplicate_confirmations_of_a_group_order_have_one_effect_GB10(svc, shop):
    """GB-10: one group seat's payment confirmed 8 times at once with one provider reference pays it
    once: one seat paid, one order.paid event, one commission line."""
    await _referred_buyers(svc, shop.shop_id, "m")
    c = await make_campaign(svc, shop.shop_id, tiers=[(3, 8000)])
    leader = await groups.open_group(svc, shop_id=shop.shop_id, campaign_id=c.campaign_id, user_id="L")
    await pay(svc, shop.shop_id, leader)
    m = await groups.join_group(svc, shop_id=shop.shop_id, group_id=leader.group_id, user_id="m")
    results = await asyncio.gather(
        *[
            _attempt(
                orders.confirm_payment(
                    svc, shop_id=shop.shop_id, order_id=m.order_id, amount=m.amount, provider_ref="same-group-ref"
                )
            )
            for _ in range(8)
        ]
    )
    assert all(not isinstance(r, RuleViolation) for r in results), results
    assert sum(1 for r in results if not r["replayed"]) == 1 and all(r["accepted"] for r in results)
    row, g = await groups.get_group_caught_up(svc, shop_id=shop.shop_id, group_id=leader.group_id)
    assert g.paid_seats == 2 == row.paid_seats
    s = shop.shop_id
    assert (
        await _count(
            svc,
            "SELECT count(*) FROM events WHERE shop_id=:s AND type='order.paid' AND payload->>'order_id'=:o",
            s=s,
            o=m.order_id,
        )
        == 1
    )
    assert (
        await _count(svc, "SELECT count(*) FROM commission_lines WHERE shop_id=:s AND order_id=:o", s=s, o=m.order_id)
        == 1
    )
    await assert_ledger_consistent(svc, s)


async def _six_payments_of_one_member_seat(svc, shop):
    """A paid leader, a member seat of a referred buyer, and 6 confirmations of that seat at once, each with
    its own provider reference (6 real charges)."""
    await _referred_buyers(svc, shop.shop_id, "m")
    c = await make_campaign(svc, shop.shop_id, tiers=[(3, 8000)])
    leader = await groups.open_group(svc, shop_id=shop.shop_id, campaign_id=c.campaign_id, user_id="L")
    await pay(svc, shop.shop_id, leader)
    m = await groups.join_group(svc, shop_id=shop.shop_id, group_id=leader.group_id, user_id="m")
    results = await asyncio.gather(
        *[
            _attempt(
                orders.confirm_payment(
                    svc, shop_id=shop.shop_id, order_id=m.order_id, amount=m.amount, provider_ref=f"group-ref-{i}"
                )
            )
            for i in range(6)
        ]
    )
    return leader, m, results


async def test_concurrent_payments_of_one_group_seat_with_different_references_pay_it_once_GB10(svc, shop):
    """The group row lock serializes payments of one seat: of 6 different payments at once, one takes the
    seat; the others find it paid and take no seat (no second seat, no second commission line; each is owed
    back: test_h8_…)."""
    leader, m, results = await _six_payments_of_one_member_seat(svc, shop)
    assert all(not isinstance(r, RuleViolation) for r in results), results
    assert sum(1 for r in results if r["accepted"]) == 1
    row, g = await groups.get_group_caught_up(svc, shop_id=shop.shop_id, group_id=leader.group_id)
    assert g.paid_seats == 2 == row.paid_seats
    assert (
        await _count(
            svc, "SELECT count(*) FROM commission_lines WHERE shop_id=:s AND order_id=:o", s=shop.shop_id, o=m.order_id
        )
        == 1
    )
    await assert_ledger_consistent(svc, shop.shop_id)


async def test_h8_every_concurrent_payment_that_takes_no_seat_is_owed_a_full_refund_GB9_GB10(svc, shop):
    """Issue 11 point 8: 6 concurrent confirmations of one group seat with different provider references
    are 6 real charges. One takes the seat; each of the other 5 answers accepted: false and is owed back in
    full — an OWED refund of its amount and a refund.owed event — with the first payment's commission
    untouched. The order shows all the money received and all that is owed back."""
    leader, m, results = await _six_payments_of_one_member_seat(svc, shop)
    assert all(not isinstance(r, RuleViolation) for r in results), results
    assert sorted(r["accepted"] for r in results) == [False] * 5 + [True]
    q = dict(s=shop.shop_id, o=m.order_id)
    assert (
        await _count(
            svc,
            "SELECT count(*) FROM refunds WHERE shop_id=:s AND order_id=:o AND state='OWED' "
            "AND \"full\" AND rule='GB-10' AND amount=:a",
            a=m.amount,
            **q,
        )
        == 5
    )
    assert (
        await _count(
            svc,
            "SELECT count(*) FROM events WHERE shop_id=:s AND type='refund.owed' "
            "AND payload->>'order_id'=:o AND (payload->>'amount')::bigint=:a "
            "AND payload->>'currency'='CNY'",
            a=m.amount,
            **q,
        )
        == 5
    )
    assert await _count(svc, "SELECT paid_amount FROM orders WHERE shop_id=:s AND order_id=:o", **q) == 6 * m.amount
    assert await _count(svc, "SELECT refunded_amount FROM orders WHERE shop_id=:s AND order_id=:o", **q) == 5 * m.amount
    assert (
        await _count(svc, "SELECT count(*) FROM payments WHERE shop_id=:s AND order_id=:o AND NOT accepted", **q) == 5
    )
    assert (
        await _count(
            svc,
            "SELECT count(*) FROM commission_lines WHERE shop_id=:s AND order_id=:o "
            "AND standing = original AND base_refunded = 0",
            **q,
        )
        == 1
    )
    row, g = await groups.get_group_caught_up(svc, shop_id=shop.shop_id, group_id=leader.group_id)
    assert g.paid_seats == 2 == row.paid_seats
    await assert_ledger_consistent(svc, shop.shop_id)


async def test_concurrent_payments_of_one_plain_order_with_different_references_pay_it_once_OR2(svc, shop):
    """The order row lock (pay_plain_order) serializes payments: one pays, the others are INVALID_STATE."""
    await _referred_buyers(svc, shop.shop_id, "b")
    o = await orders.report_order(
        svc, shop_id=shop.shop_id, external_id="x1", buyer_id="b", lines=[orders.LineInput("p", 1, 5000)]
    )
    results = await asyncio.gather(
        *[
            _attempt(
                orders.confirm_payment(
                    svc, shop_id=shop.shop_id, order_id=o.order_id, amount=5000, provider_ref=f"plain-ref-{i}"
                )
            )
            for i in range(6)
        ]
    )
    ok, refused = _split(results)
    assert len(ok) == 1, results
    assert refused == {ErrorCode.INVALID_STATE}
    assert (
        await _count(
            svc, "SELECT count(*) FROM commission_lines WHERE shop_id=:s AND order_id=:o", s=shop.shop_id, o=o.order_id
        )
        == 1
    )
    await assert_ledger_consistent(svc, shop.shop_id)


async def test_concurrent_joins_and_opens_across_groups_hold_the_per_user_limit_GB2(svc, shop):
    """GB-2 per-user limit across the groups of one campaign: a user racing 3 opens and 4 joins into
    different groups at once, limit 2, holds 2 seats; every refusal is PER_USER_LIMIT. 5 rounds."""
    c = await make_campaign(svc, shop.shop_id, tiers=[(3, 8000)], per_user_limit=2)
    others = []
    for i in range(4 * 5):
        seat = await groups.open_group(svc, shop_id=shop.shop_id, campaign_id=c.campaign_id, user_id=f"L{i}")
        await pay(svc, shop.shop_id, seat)
        others.append(seat.group_id)
    for round_no in range(5):
        u = f"racer{round_no}"
        attempts = [
            groups.open_group(svc, shop_id=shop.shop_id, campaign_id=c.campaign_id, user_id=u) for _ in range(3)
        ]
        attempts += [
            groups.join_group(svc, shop_id=shop.shop_id, group_id=gid, user_id=u)
            for gid in others[4 * round_no : 4 * round_no + 4]
        ]
        results = await asyncio.gather(*[_attempt(a) for a in attempts])
        ok, refused = _split(results)
        assert len(ok) == 2, results
        assert refused == {ErrorCode.PER_USER_LIMIT}
        async with svc.sessionmaker() as s:
            held = await s.get(CampaignUserUnits, (shop.shop_id, c.campaign_id, u))
        assert held.units == 2
        assert (
            await _count(
                svc,
                "SELECT count(*) FROM seats WHERE shop_id=:s AND user_id=:u AND state IN ('RESERVED','PAID')",
                s=shop.shop_id,
                u=u,
            )
            == 2
        )


async def test_concurrent_refunds_of_one_plain_order_never_exceed_what_was_paid_OR2(svc, shop):
    """OR-2: 8 refunds of 3,000 at once against 10,000 paid: 3 succeed, the rest are REFUND_EXCEEDS_PAID;
    the order's refunded total equals the refunds recorded; commission reverses once per refund (CM-5)."""
    await _referred_buyers(svc, shop.shop_id, "b")
    o = await orders.report_order(
        svc, shop_id=shop.shop_id, external_id="r1", buyer_id="b", lines=[orders.LineInput("p", 1, 10_000)]
    )
    await pay(svc, shop.shop_id, o.order_id, amount=10_000)
    results = await asyncio.gather(
        *[
            _attempt(
                orders.refund_order(
                    svc, shop_id=shop.shop_id, order_id=o.order_id, amount=3_000, provider_ref=f"refund-{i}"
                )
            )
            for i in range(8)
        ]
    )
    ok, refused = _split(results)
    assert len(ok) == 3, results
    assert refused == {ErrorCode.REFUND_EXCEEDS_PAID}
    got = await orders.get_order_caught_up(svc, shop_id=shop.shop_id, order_id=o.order_id)
    recorded = await _count(
        svc,
        "SELECT COALESCE(sum(amount), 0) FROM refunds WHERE shop_id=:s AND order_id=:o",
        s=shop.shop_id,
        o=o.order_id,
    )
    assert got.refunded_amount == recorded == 9_000 <= got.paid_amount
    assert (
        await _count(
            svc, "SELECT standing FROM commission_lines WHERE shop_id=:s AND order_id=:o", s=shop.shop_id, o=o.order_id
        )
        == 100
    )  # 1,000 − floor(1,000 × 9,000 / 10,000)
    await assert_ledger_consistent(svc, shop.shop_id)


async def test_completion_racing_the_payment_that_forms_the_group_always_freezes_the_line_CM6_OR4(svc, shop):
    """A paid member's order is completed while the payment that forms its group runs. Forming makes the
    member's commission line releasable and freezes it if the order is completed; completion freezes it if it
    is releasable. The forming payment reads the group's orders and lines under FOR UPDATE
    (service/group_batch.py), so whichever commits first, the other sees it and the line ends FROZEN. Read
    without those locks, forming can see the order not yet completed and completion the line not yet
    releasable: the line stays PENDING for good."""
    sid = shop.shop_id
    await distribution.set_status(
        svc, shop_id=sid, user_id="ref", status=DistributorStatus.ACTIVE, actor="t", reason="t"
    )
    c = await make_campaign(svc, sid, tiers=[(3, 8000)])
    states = []
    for i in range(12):
        await distribution.bind_referrer(svc, shop_id=sid, user_id=f"m{i}", referrer_id="ref")
        lead = await groups.open_group(svc, shop_id=sid, campaign_id=c.campaign_id, user_id=f"L{i}")
        await pay(svc, sid, lead)
        m = await groups.join_group(svc, shop_id=sid, group_id=lead.group_id, user_id=f"m{i}")
        await pay(svc, sid, m)  # m's line: PENDING, not releasable until the group forms (CM-6)
        last = await groups.join_group(svc, shop_id=sid, group_id=lead.group_id, user_id=f"x{i}")
        await asyncio.gather(pay(svc, sid, last), orders.complete_order(svc, shop_id=sid, order_id=m.order_id))
        async with unit_of_work(svc) as s:
            states.append(
                (
                    await s.execute(
                        text("SELECT state FROM commission_lines WHERE shop_id = :s AND order_id = :o"),
                        {"s": sid, "o": m.order_id},
                    )
                ).scalar_one()
            )
    assert states == ["FROZEN"] * 12
    await assert_ledger_consistent(svc, sid)
