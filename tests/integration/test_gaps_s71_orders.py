"""Survivors of the seed-71 mutation sample over service/ (issue 12), each killed by a test through the
service on a real PostgreSQL that asserts an outcome a caller can see: the answer, the stored rows, the events."""

from __future__ import annotations

import pytest
from sqlalchemy import func, select

from engine.errors import ErrorCode, RuleViolation
from service.usecases import groups, orders, webhooks
from store.models import Order, Refund
from tests.integration.helpers import make_campaign, pay_ref
from tests.integration.test_rules_wired import paid_order


async def _order(svc, sid: str, buyer: str, ext: str):
    return await orders.report_order(
        svc, shop_id=sid, external_id=ext, buyer_id=buyer, lines=[orders.LineInput("x", 1, 10_000)]
    )


async def test_OR2_a_zero_payment_is_invalid_input_and_changes_nothing(svc, shop):
    """OR-2 (service/usecases/orders.py `confirm_payment`): a payment of 0 is INVALID_INPUT on `amount`, and the
    order stays CREATED with nothing paid."""
    sid = shop.shop_id
    o = await _order(svc, sid, "buyer", "x-zero")
    with pytest.raises(RuleViolation) as e:
        await orders.confirm_payment(svc, shop_id=sid, order_id=o.order_id, amount=0, provider_ref=pay_ref())
    assert (e.value.code, e.value.field) == (ErrorCode.INVALID_INPUT, "amount")
    async with svc.sessionmaker() as s:
        row = await s.get(Order, (sid, o.order_id))
    assert (row.state, row.paid_amount, row.paid_at) == ("CREATED", 0, None)


async def test_OR2_the_order_paid_event_names_rule_OR2(svc, shop):
    """OR-2 (service/usecases/orders.py, the plain payment's event): paying a plain order emits order.paid for the
    order with rule OR-2 and the amount paid."""
    sid = shop.shop_id
    o = await paid_order(svc, sid, "buyer", orders.LineInput("x", 1, 10_000))
    evs = await webhooks.events_since_caught_up(svc, shop_id=sid)
    paid = [(e.rule, e.aggregate_type, e.aggregate_id, e.payload["amount"]) for e in evs if e.type == "order.paid"]
    assert paid == [("OR-2", "order", o.order_id, 10_000)]


async def test_OR2_an_unpaid_order_cannot_be_refunded(svc, shop):
    """OR-2 (service/usecases/orders.py `refund_order`): refunding an order never paid is ORDER_NOT_PAID on
    `orderId` (rule OR-2), and no refund row is written."""
    sid = shop.shop_id
    o = await _order(svc, sid, "buyer", "x-unpaid")
    with pytest.raises(RuleViolation) as e:
        await orders.refund_order(svc, shop_id=sid, order_id=o.order_id, amount=100, provider_ref=pay_ref())
    assert (e.value.code, e.value.field, e.value.rule) == (ErrorCode.ORDER_NOT_PAID, "orderId", "OR-2")
    async with svc.sessionmaker() as s:
        n = await s.scalar(select(func.count()).select_from(Refund).where(Refund.shop_id == sid))
    assert n == 0


async def test_OR2_a_first_refund_is_not_a_replay_and_its_retry_is(svc, shop):
    """OR-2/GB-10 (service/usecases/orders.py `refund_order`): the first refund answers `replayed` False with the
    refund it wrote; the same call again under its key answers `replayed` True, the same refund id, no refund."""
    sid = shop.shop_id
    o = await paid_order(svc, sid, "buyer", orders.LineInput("x", 1, 10_000))
    ref = pay_ref()
    first = await orders.refund_order(
        svc, shop_id=sid, order_id=o.order_id, amount=1_000, provider_ref=ref, idempotency_key="k1"
    )
    assert first["replayed"] is False
    assert first["refund"] is not None and first["refund"].refund_id == first["refund_id"]
    again = await orders.refund_order(
        svc, shop_id=sid, order_id=o.order_id, amount=1_000, provider_ref=ref, idempotency_key="k1"
    )
    assert (again["replayed"], again["refund_id"], again["refund"]) == (True, first["refund_id"], None)


async def test_OR2_a_payment_of_one_minor_unit_pays_an_order_of_one(svc, shop):
    """OR-2 (service/usecases/orders.py `confirm_payment`): the smallest positive payment, 1, is accepted: an
    order of 1 paid 1 is PAID with 1 paid."""
    sid = shop.shop_id
    o = await orders.report_order(
        svc, shop_id=sid, external_id="x-one", buyer_id="buyer", lines=[orders.LineInput("x", 1, 1)]
    )
    await orders.confirm_payment(svc, shop_id=sid, order_id=o.order_id, amount=1, provider_ref=pay_ref())
    async with svc.sessionmaker() as s:
        row = await s.get(Order, (sid, o.order_id))
    assert (row.state, row.paid_amount) == ("PAID", 1)


async def test_GB1_the_seat_answer_renders_the_group_order_as_stored(svc, shop):
    """GB-1 (service/tx/lean.py `OrderView`, what the API renders without reading back): opening a group answers
    its order with the amounts stored: goods at the tier price, shipping 0, tax 0, nothing paid."""
    sid = shop.shop_id
    c = await make_campaign(svc, sid, tiers=[(3, 8000)])
    lead = await groups.open_group(svc, shop_id=sid, campaign_id=c.campaign_id, user_id="L")
    async with svc.sessionmaker() as s:
        row = await s.get(Order, (sid, lead.order_id))
    cols = ("order_id", "kind", "state", "goods_amount", "shipping_amount", "tax_amount", "paid_amount")
    answered = tuple(getattr(lead.order, k) for k in cols)
    assert answered == tuple(getattr(row, k) for k in cols)
    assert answered[3:] == (lead.amount, 0, 0, 0)


async def test_OR1_the_reported_order_answers_as_stored(svc, shop):
    """OR-1 (service/usecases/orders.py `report_order`): the order answered carries what was stored: shipping
    500, tax 100, created at the service's now."""
    sid = shop.shop_id
    o = await orders.report_order(
        svc,
        shop_id=sid,
        external_id="x-ship",
        buyer_id="buyer",
        lines=[orders.LineInput("x", 1, 10_000)],
        shipping_amount=500,
        tax_amount=100,
    )
    async with svc.sessionmaker() as s:
        row = await s.get(Order, (sid, o.order_id))
    cols = ("goods_amount", "shipping_amount", "tax_amount", "created_at")
    assert tuple(getattr(o, k) for k in cols) == tuple(getattr(row, k) for k in cols) == (10_000, 500, 100, svc.now())
