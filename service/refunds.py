"""Refunds: decided by the rules (owed: GB-5/6/7/8/9) or reported by the backend, and confirmed
by the payment provider's reference (GB-10). OR-2: never more than paid less already refunded."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import inspect, select
from sqlalchemy.exc import IntegrityError, NoInspectionAvailable
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm.attributes import set_committed_value

from engine.errors import ErrorCode, refuse
from engine.refunds import OrderMoney, decide_refund
from service import commissions, events
from service.context import Services
from service.idempotency import once_row
from service.ids import new_id
from service.ledger import LedgerBatch
from service.uow import unit_of_work
from store.models import Refund


@dataclass(frozen=True)
class RefundView:
    """A refund as written (the API renders it without reading it again)."""

    refund_id: str
    order_id: str
    amount: int
    rule: str
    full: bool
    state: str
    provider_ref: str | None
    created_at: datetime
    confirmed_at: datetime | None


async def apply_refund(
    session: AsyncSession, ledger: LedgerBatch, *, order, amount: int, rule: str, full: bool | None, now,
    provider_ref: str | None = None, lines=None,
) -> RefundView:
    """Carry out the engine's refund decision on `order` (`engine.refunds.decide_refund`: OR-2 bounds, GB-9,
    goods first, RP-3 counters) and its consequences (CM-5 on every line computed on the order). Everything
    is written by `ledger` in its one statement; `order` (an ORM object or a `service.orders.OrderView`)
    takes its new amounts in memory. `lines`: the order's REFUNDED_LINES already loaded under lock."""
    decision = decide_refund(OrderMoney(paid=order.paid_amount, refunded=order.refunded_amount,
                                        goods=order.goods_amount, counted=order.paid_at is not None),
                             amount, rule=rule, full=full)
    _set_amounts(order, paid=decision.paid_after, refunded=decision.refunded_after)
    refund = RefundView(refund_id=new_id("rf_"), order_id=order.order_id, amount=amount, rule=rule,
                        full=decision.full, state="CONFIRMED" if provider_ref else "OWED", provider_ref=provider_ref,
                        created_at=now, confirmed_at=now if provider_ref else None)
    ledger.row("UPDATE orders SET paid_amount = :paid, refunded_amount = :refunded "
               "WHERE shop_id = :shop_id AND order_id = :order_id",
               paid=decision.paid_after, refunded=decision.refunded_after, order_id=order.order_id)
    ledger.row("INSERT INTO refunds (shop_id, refund_id, order_id, amount, rule, \"full\", state, provider_ref, "
               "created_at, confirmed_at) VALUES (:shop_id, :refund_id, :order_id, :amount, :rule, :full, :state, "
               ":provider_ref, :created_at, :confirmed_at)", **refund.__dict__)
    if decision.net_spend_delta or decision.paid_orders_delta:
        ledger.row("UPDATE users SET net_spend = net_spend + :spend, paid_orders = paid_orders + :orders "
                   "WHERE shop_id = :shop_id AND user_id = :user_id", spend=decision.net_spend_delta,
                   orders=decision.paid_orders_delta, user_id=order.buyer_id)
    if decision.goods_refund:
        await commissions.on_order_refunded(session, ledger, order=order, amount=decision.goods_refund, now=now,
                                            rule=rule, lines=lines)
    ledger.event(type="refund.owed" if not provider_ref else "refund.recorded",
                 aggregate_type="group" if order.group_id else "order",
                 aggregate_id=order.group_id or order.order_id, rule=rule,
                 payload={"refund_id": refund.refund_id, "order_id": order.order_id, "amount": amount,
                          "full": decision.full, "reason": rule})
    return refund


def _set_amounts(order, *, paid: int, refunded: int) -> None:
    """The order object takes the amounts the applier writes: an ORM object without becoming dirty (the
    applier's UPDATE is the one write), a plain value by assignment."""
    try:
        inspect(order)
    except NoInspectionAvailable:
        order.paid_amount, order.refunded_amount = paid, refunded
        return
    set_committed_value(order, "paid_amount", paid)
    set_committed_value(order, "refunded_amount", refunded)


async def confirm_refund(svc: Services, *, shop_id: str, refund_id: str, provider_ref: str,
                         idempotency_key: str | None = None) -> Refund:
    """GB-10: the backend paid an owed refund. Idempotent by the provider's reference (and, additionally,
    by `idempotency_key`).

    Everything is decided after locking the refund row: concurrent confirmations of one refund queue on
    that lock, and each later one sees the first one's result (same reference: the first result comes
    back; another reference: IDEMPOTENCY_CONFLICT). Checking the reference before the lock let every
    concurrent retry miss the first confirmation and then be refused."""
    if not provider_ref:
        raise refuse(ErrorCode.INVALID_INPUT, "provider reference is required", field="providerRef")
    now = svc.now()
    async with unit_of_work(svc) as s:
        async def run() -> Refund:
            refund = await s.get(Refund, (shop_id, refund_id), with_for_update=True)
            if refund is None:
                raise refuse(ErrorCode.NOT_FOUND, "refund not found", field="refundId")
            if refund.state == "CONFIRMED":
                if refund.provider_ref == provider_ref:
                    return refund  # a retry: the first result
                raise refuse(ErrorCode.IDEMPOTENCY_CONFLICT, "refund already confirmed with another reference",
                             field="providerRef", rule="GB-10")
            taken = (await s.execute(select(Refund.refund_id).where(Refund.shop_id == shop_id,
                                                                    Refund.provider_ref == provider_ref))).first()
            if taken is not None:
                raise refuse(ErrorCode.IDEMPOTENCY_CONFLICT, "provider reference already confirms another refund",
                             field="providerRef", rule="GB-10")
            refund.state, refund.provider_ref, refund.confirmed_at = "CONFIRMED", provider_ref, now
            events.emit(s, shop_id=shop_id, type="refund.confirmed", aggregate_type="order",
                        aggregate_id=refund.order_id, now=now, rule="GB-10",
                        payload={"refund_id": refund_id, "order_id": refund.order_id, "amount": refund.amount,
                                 "provider_ref": provider_ref})
            try:
                await s.flush()
            except IntegrityError:  # another refund took this reference concurrently: unique (shop_id, provider_ref)
                raise refuse(ErrorCode.IDEMPOTENCY_CONFLICT, "provider reference already confirms another refund",
                             field="providerRef", rule="GB-10")
            return refund

        return await once_row(s, Refund, shop_id=shop_id, scope="confirm_refund", key=idempotency_key, now=now,
                              run=run, request={"refund_id": refund_id, "provider_ref": provider_ref})


async def list_refunds(svc: Services, *, shop_id: str, state: str | None = "OWED", rule: str | None = None,
                       after: tuple | None = None, limit: int = 50, order_id: str | None = None) -> list[Refund]:
    async with svc.sessionmaker() as s:
        q = select(Refund).where(Refund.shop_id == shop_id)
        if state:
            q = q.where(Refund.state == state)
        if rule:
            q = q.where(Refund.rule == rule)
        if order_id:
            q = q.where(Refund.order_id == order_id)
        if after:
            q = q.where((Refund.created_at, Refund.refund_id) > after)
        q = q.order_by(Refund.created_at, Refund.refund_id).limit(limit)
        return list((await s.execute(q)).scalars())
