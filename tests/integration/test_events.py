"""Issue 7's outbox, event by event: a distributor's history (level up, commission available and reversed,
payouts requested, approved and rejected, a settlement closed) writes each event the shop must act on, with
its rule, its aggregate and the payload a backend needs (ids, amounts in minor units, the currency); and an
approval whose transaction fails after the emit leaves neither the event nor its webhook delivery."""

from __future__ import annotations

import secrets
from contextlib import asynccontextmanager
from datetime import date, datetime, timedelta, timezone

import pytest
from sqlalchemy import func, select

from engine.distribution import DistributionSettings, DistributorStatus
from engine.levels import Level
from service.usecases import distribution, orders, payouts, settlements, shops, webhooks
from service.jobs import worker
from service.uow import unit_of_work
from store.models import Distributor, Event, Payout, WebhookDelivery
from tests.integration.helpers import assert_ledger_consistent, pay

TYPES = (
    "distributor.level_changed",
    "commission.available",
    "commission.reversed",
    "payout.requested",
    "payout.approved",
    "payout.rejected",
    "settlement.closed",
)


async def _events(svc, shop_id: str, types=TYPES) -> list[Event]:
    async with svc.sessionmaker() as s:
        return list(
            (
                await s.execute(
                    select(Event).where(Event.shop_id == shop_id, Event.type.in_(types)).order_by(Event.seq)
                )
            ).scalars()
        )


def _one(evs: list[Event], type_: str) -> Event:
    [e] = [e for e in evs if e.type == type_]
    return e


async def test_a_distributor_history_writes_each_event_with_rule_aggregate_and_payload(svc):
    shop_id = f"ev-{secrets.token_hex(4)}"
    await shops.create_shop(
        svc,
        shop_id=shop_id,
        name="Events",
        currency="CNY",
        settings=DistributionSettings(level1_bp=1000, level2_bp=500, freeze_days=7, min_payout=100, payout_fee_bp=100),
    )
    await shops.set_levels(
        svc,
        shop_id=shop_id,
        levels=[
            Level(grade=0, name="Member", level1_bp=1000, level2_bp=500),
            Level(grade=1, name="Silver", level1_bp=1000, level2_bp=500, upgrade_bonus=300, min_direct_referrals=1),
        ],
    )
    await distribution.set_status(
        svc, shop_id=shop_id, user_id="d1", status=DistributorStatus.ACTIVE, actor="t", reason="t"
    )
    await distribution.bind_referrer(svc, shop_id=shop_id, user_id="b1", referrer_id="d1")  # LV-2: d1 -> grade 1
    o = await orders.report_order(
        svc, shop_id=shop_id, external_id="o1", buyer_id="b1", lines=[orders.LineInput("p", 1, 10_000)]
    )
    await pay(svc, shop_id, o.order_id, amount=10_000)  # 10 %: a line of 1000
    await orders.complete_order(svc, shop_id=shop_id, order_id=o.order_id)
    svc.clock.advance(timedelta(days=8))
    await worker.run_due(svc)  # CM-6: the line becomes available
    await orders.refund_order(svc, shop_id=shop_id, order_id=o.order_id, amount=4_000, provider_ref="rf-o1")
    p = await payouts.request_payout(svc, shop_id=shop_id, user_id="d1", amount=500)
    await payouts.decide_payout(
        svc, shop_id=shop_id, payout_id=p.payout_id, approve=True, actor="fin", external_ref="bank-1"
    )
    q = await payouts.request_payout(svc, shop_id=shop_id, user_id="d1", amount=200)
    await payouts.decide_payout(
        svc, shop_id=shop_id, payout_id=q.payout_id, approve=False, actor="fin", reason="wrong account"
    )
    svc.clock.set(datetime(2026, 2, 1, 0, 5, tzinfo=timezone.utc))
    b = await settlements.close_period(
        svc, shop_id=shop_id, day_from=date(2026, 1, 1), day_to=date(2026, 2, 1), actor="fin"
    )
    await assert_ledger_consistent(svc, shop_id)

    evs = await _events(svc, shop_id, TYPES + ("commission.posted",))
    [line_id] = [e.payload["line_id"] for e in evs if e.type == "commission.posted"]
    assert [e.type for e in evs] == [
        "distributor.level_changed",
        "commission.posted",
        "commission.available",
        "commission.reversed",
        "payout.requested",
        "payout.approved",
        "payout.requested",
        "payout.rejected",
        "settlement.closed",
    ]
    got = {e.type: e for e in evs if e.type in TYPES}  # (the second payout.requested is checked below)

    def check(type_: str, rule: str, aggregate: tuple[str, str], payload: dict, event: Event | None = None):
        e = event or got[type_]
        assert (e.type, e.rule, e.aggregate_type, e.aggregate_id, e.shop_id) == (type_, rule, *aggregate, shop_id)
        assert e.event_id.startswith("evt_") and e.occurred_at is not None
        assert e.payload == {**payload, "rule": rule, "currency": "CNY"}, type_

    check(
        "distributor.level_changed",
        "LV-2",
        ("distributor", "d1"),
        {"user_id": "d1", "from": 0, "to": 1, "by": "system", "reason": "LV-2 evaluation"},
    )
    check(
        "commission.available",
        "CM-6",
        ("distributor", "d1"),
        {"line_id": line_id, "order_id": o.order_id, "amount": 1000},
    )
    # CM-5: 4000 of a 10000 base refunded after availability: 400 of the line's 1000 clawed back, 600 stands
    check(
        "commission.reversed",
        "CM-5",
        ("order", o.order_id),
        {
            "order_id": o.order_id,
            "line_id": line_id,
            "beneficiary_id": "d1",
            "amount": 400,
            "standing": 600,
            "cause": "OR-2",
        },
    )
    requested = [e for e in evs if e.type == "payout.requested"]
    check(
        "payout.requested",
        "LG-2",
        ("distributor", "d1"),
        {"payout_id": p.payout_id, "user_id": "d1", "amount": 500, "fee": 5},
        requested[0],
    )  # 1 % fee
    check(
        "payout.requested",
        "LG-2",
        ("distributor", "d1"),
        {"payout_id": q.payout_id, "user_id": "d1", "amount": 200, "fee": 2},
        requested[1],
    )
    check(
        "payout.approved",
        "LG-2",
        ("distributor", "d1"),
        {
            "payout_id": p.payout_id,
            "user_id": "d1",
            "amount": 500,
            "fee": 5,
            "net": 495,
            "external_ref": "bank-1",
            "reason": None,
        },
    )
    check(
        "payout.rejected",
        "LG-2",
        ("distributor", "d1"),  # LG-2: a rejection charges no fee
        {
            "payout_id": q.payout_id,
            "user_id": "d1",
            "amount": 200,
            "fee": 0,
            "net": 200,
            "external_ref": None,
            "reason": "wrong account",
        },
    )
    # January: 1000 released + 300 upgrade bonus − 400 clawed back − 500 paid out (495 net + 5 fee) = 400
    assert (b.released, b.bonuses, b.reversals, b.payouts, b.fees, b.closing) == (1000, 300, -400, 495, 5, 400)
    check(
        "settlement.closed",
        "LG-3",
        ("settlement", b.settlement_id),
        {"settlement_id": b.settlement_id, "from": "2026-01-01", "to": "2026-02-01", "closing": 400},
    )
    d = await distribution.get_distributor(svc, shop_id=shop_id, user_id="d1")
    assert d.available + d.in_payout == 400 and d.grade == 1


async def test_a_payout_approval_that_fails_after_emitting_leaves_no_event_and_no_delivery(svc, shop, monkeypatch):
    """The payout's decision, its ledger postings and its payout.approved event are one transaction: when the
    transaction fails after the emit (here: at its very end, just before COMMIT), the event and the delivery
    the fan-out owed the endpoint existed inside it and are gone after it, with the decision; approving again
    then writes each once."""
    ep = await webhooks.register_endpoint(
        svc, shop_id=shop.shop_id, url="http://127.0.0.1:9/hook", event_types=["payout.approved"]
    )
    await shops.set_levels(
        svc,
        shop_id=shop.shop_id,
        levels=[  # d1 gets 1000 available: an upgrade bonus (LV-4)
            Level(grade=0, name="Member", level1_bp=1000, level2_bp=500),
            Level(grade=1, name="Silver", level1_bp=1000, level2_bp=500, upgrade_bonus=1000, min_direct_referrals=99),
        ],
    )
    await distribution.set_status(
        svc, shop_id=shop.shop_id, user_id="d1", status=DistributorStatus.ACTIVE, actor="t", reason="t"
    )
    await distribution.set_level(svc, shop_id=shop.shop_id, user_id="d1", grade=1, actor="admin", reason="VIP")
    p = await payouts.request_payout(svc, shop_id=shop.shop_id, user_id="d1", amount=600)

    async def counts(s):
        approved = (
            (await s.execute(select(Event.type).where(Event.shop_id == shop.shop_id, Event.type == "payout.approved")))
            .scalars()
            .all()
        )
        n = (
            await s.execute(
                select(func.count())
                .select_from(WebhookDelivery)
                .where(WebhookDelivery.shop_id == shop.shop_id, WebhookDelivery.endpoint_id == ep.endpoint_id)
            )
        ).scalar()
        return list(approved), n

    seen_inside = []
    real_uow = payouts.unit_of_work

    @asynccontextmanager
    async def fails_before_commit(svc_):
        async with real_uow(svc_) as s:
            yield s
            await s.flush()  # everything the use case did, emit included, is in the transaction now
            seen_inside.append(await counts(s))
            raise RuntimeError("the transaction fails after the emit")

    monkeypatch.setattr(payouts, "unit_of_work", fails_before_commit)
    with pytest.raises(RuntimeError):
        await payouts.decide_payout(
            svc, shop_id=shop.shop_id, payout_id=p.payout_id, approve=True, actor="fin", external_ref="bank-7"
        )
    assert seen_inside == [(["payout.approved"], 1)]  # emitted and fanned out inside the transaction ...
    async with unit_of_work(svc) as s:
        assert await counts(s) == ([], 0)  # ... and gone with it, with the decision and its postings
        assert (await s.get(Payout, (shop.shop_id, p.payout_id))).state == "REQUESTED"
        d = await s.get(Distributor, (shop.shop_id, "d1"))
        assert (d.available, d.in_payout, d.paid) == (400, 600, 0)
    await assert_ledger_consistent(svc, shop.shop_id)

    monkeypatch.undo()
    done = await payouts.decide_payout(
        svc, shop_id=shop.shop_id, payout_id=p.payout_id, approve=True, actor="fin", external_ref="bank-7"
    )
    assert done.state == "APPROVED"
    async with unit_of_work(svc) as s:
        assert await counts(s) == (["payout.approved"], 1)


async def test_a_ledger_batch_of_events_only_writes_them(svc, shop):
    """The applier's one statement when a batch holds events and nothing else (a GB-5 refund owed on an order
    without commission lines, say): the shop id is typed once (an untyped `SELECT :shop_id` into the
    varchar column and `WHERE shop_id = :shop_id` in the currency sub-select made PostgreSQL refuse to
    prepare it: "inconsistent types deduced for parameter $1")."""
    from sqlalchemy import text

    from engine.events import EventType
    from service.tx.ledger import LedgerBatch
    from service.uow import unit_of_work

    async with unit_of_work(svc) as s:
        batch = LedgerBatch(shop.shop_id, svc.now())
        batch.event(
            type=EventType.ORDER_COMPLETED,
            aggregate_type="order",
            aggregate_id="o-only",
            rule="OR-4",
            payload={"order_id": "o-only"},
        )
        await batch.flush(s)
    async with svc.sessionmaker() as s:
        got = (
            await s.execute(
                text("SELECT payload FROM events WHERE shop_id = :s AND aggregate_id = 'o-only'"), {"s": shop.shop_id}
            )
        ).scalar_one()
    assert (got["order_id"], got["currency"]) == ("o-only", "CNY")
