"""Refunds: decided by the rules (owed: GB-5/6/7/8/9) or reported by the backend, and confirmed
by the payment provider's reference (GB-10). OR-2: never more than paid less already refunded."""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import datetime

from sqlalchemy import inspect, select, text
from sqlalchemy.exc import IntegrityError, NoInspectionAvailable
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm.attributes import set_committed_value

from engine.errors import ErrorCode, refuse
from engine.events import EventType
from engine.refunds import OrderMoney, decide_refund
from service.tx import commissions
from service.context import Services
from service.tx.idempotency import once_or_replay
from service.tx.ids import new_id
from service.tx.ledger import LedgerBatch
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
    session: AsyncSession,
    ledger: LedgerBatch,
    *,
    order,
    amount: int,
    rule: str,
    full: bool | None,
    now,
    provider_ref: str | None = None,
    lines=None,
) -> RefundView:
    """Carry out the engine's refund decision on `order` (`engine.refunds.decide_refund`: OR-2 bounds, GB-9,
    goods first, RP-3 counters) and its consequences (CM-5 on every line computed on the order). Everything
    is written by `ledger` in its one statement; `order` (an ORM object or a `service.usecases.orders.OrderView`)
    takes its new amounts in memory. `lines`: the order's REFUNDED_LINES already loaded under lock."""
    decision = decide_refund(
        OrderMoney(
            paid=order.paid_amount,
            refunded=order.refunded_amount,
            goods=order.goods_amount,
            counted=order.paid_at is not None,
        ),
        amount,
        rule=rule,
        full=full,
    )
    _set_amounts(order, paid=decision.paid_after, refunded=decision.refunded_after)
    refund = RefundView(
        refund_id=new_id("rf_"),
        order_id=order.order_id,
        amount=amount,
        rule=rule,
        full=decision.full,
        state="CONFIRMED" if provider_ref else "OWED",
        provider_ref=provider_ref,
        created_at=now,
        confirmed_at=now if provider_ref else None,
    )
    ledger.row(
        "UPDATE orders SET paid_amount = :paid, refunded_amount = :refunded "
        "WHERE shop_id = :shop_id AND order_id = :order_id",
        paid=decision.paid_after,
        refunded=decision.refunded_after,
        order_id=order.order_id,
    )
    ledger.row(
        'INSERT INTO refunds (shop_id, refund_id, order_id, amount, rule, "full", state, provider_ref, '
        "created_at, confirmed_at) VALUES (:shop_id, :refund_id, :order_id, :amount, :rule, :full, :state, "
        ":provider_ref, :created_at, :confirmed_at)",
        **refund.__dict__,
    )
    if decision.net_spend_delta or decision.paid_orders_delta:
        ledger.row(
            "UPDATE users SET net_spend = net_spend + :spend, paid_orders = paid_orders + :orders "
            "WHERE shop_id = :shop_id AND user_id = :user_id",
            spend=decision.net_spend_delta,
            orders=decision.paid_orders_delta,
            user_id=order.buyer_id,
        )
    if decision.goods_refund:
        await commissions.on_order_refunded(
            session, ledger, order=order, amount=decision.goods_refund, now=now, rule=rule, lines=lines
        )
    ledger.event(
        type=EventType.REFUND_OWED if not provider_ref else EventType.REFUND_RECORDED,
        aggregate_type="group" if order.group_id else "order",
        aggregate_id=order.group_id or order.order_id,
        rule=rule,
        payload={
            "refund_id": refund.refund_id,
            "order_id": order.order_id,
            "amount": amount,
            "full": decision.full,
            "reason": rule,
        },
    )
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


async def confirm_refund(
    svc: Services, *, shop_id: str, refund_id: str, provider_ref: str, idempotency_key: str | None = None
) -> RefundView:
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

        async def run() -> dict:
            got = (
                await s.execute(LOAD_FOR_CONFIRMATION, {"s": shop_id, "rid": refund_id, "ref": provider_ref})
            ).first()
            if got is None:
                raise refuse(ErrorCode.NOT_FOUND, "refund not found", field="refundId")
            refund = RefundView(**{c: getattr(got, c) for c in REFUND_FIELDS})
            if refund.state == "CONFIRMED":
                if refund.provider_ref == provider_ref:
                    made.append(refund)
                    return {"refund_id": refund_id}  # a retry: the first result
                raise refuse(
                    ErrorCode.IDEMPOTENCY_CONFLICT,
                    "refund already confirmed with another reference",
                    field="providerRef",
                    rule="GB-10",
                )
            if got.taken is not None:
                raise refuse(
                    ErrorCode.IDEMPOTENCY_CONFLICT,
                    "provider reference already confirms another refund",
                    field="providerRef",
                    rule="GB-10",
                )
            ledger = LedgerBatch(shop_id, now)
            ledger.row(
                "UPDATE refunds SET state = 'CONFIRMED', provider_ref = :ref, confirmed_at = :now "
                "WHERE shop_id = :shop_id AND refund_id = :rid",
                ref=provider_ref,
                now=now,
                rid=refund_id,
            )
            ledger.event(
                type=EventType.REFUND_CONFIRMED,
                aggregate_type="order",
                aggregate_id=refund.order_id,
                rule="GB-10",
                payload={
                    "refund_id": refund_id,
                    "order_id": refund.order_id,
                    "amount": refund.amount,
                    "provider_ref": provider_ref,
                },
            )
            try:
                await ledger.flush(s)
            except IntegrityError:  # another refund took this reference concurrently: unique (shop_id, provider_ref)
                raise refuse(
                    ErrorCode.IDEMPOTENCY_CONFLICT,
                    "provider reference already confirms another refund",
                    field="providerRef",
                    rule="GB-10",
                )
            made.append(replace(refund, state="CONFIRMED", provider_ref=provider_ref, confirmed_at=now))
            return {"refund_id": refund_id}

        made: list[RefundView] = []
        r, replayed = await once_or_replay(
            s,
            shop_id=shop_id,
            scope="confirm_refund",
            key=idempotency_key,
            now=now,
            run=run,
            request={"refund_id": refund_id, "provider_ref": provider_ref},
        )
        if replayed:
            return RefundView(
                **(
                    await s.execute(
                        text(f"SELECT {REFUND_COLUMNS} FROM refunds WHERE shop_id = :s AND refund_id = :rid"),
                        {"s": shop_id, "rid": r["refund_id"]},
                    )
                )
                .one()
                ._mapping
            )
        return made[0]


REFUND_COLUMNS = 'refund_id, order_id, amount, rule, "full", state, provider_ref, created_at, confirmed_at'
REFUND_FIELDS = tuple(c.strip('"') for c in REFUND_COLUMNS.split(", "))
# GB-10: the refund under FOR UPDATE (concurrent confirmations queue here) and the refund, if any, that
# already holds the provider reference — one round trip.
LOAD_FOR_CONFIRMATION = text(
    f"SELECT {REFUND_COLUMNS}, (SELECT t.refund_id FROM refunds t WHERE t.shop_id = :s AND t.provider_ref = :ref) "
    "AS taken FROM refunds WHERE shop_id = :s AND refund_id = :rid FOR UPDATE"
)


async def list_refunds(
    svc: Services,
    *,
    shop_id: str,
    state: str | None = "OWED",
    rule: str | None = None,
    after: tuple | None = None,
    limit: int = 50,
    order_id: str | None = None,
) -> list[Refund]:
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
