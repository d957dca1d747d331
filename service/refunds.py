"""Refunds: decided by the rules (owed: GB-5/6/7/8/9) or reported by the backend, and confirmed
by the payment provider's reference (GB-10). OR-2: never more than paid less already refunded."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from engine.errors import ErrorCode, refuse
from engine.events import EventType
from service import commissions, events
from service.context import Services
from service.idempotency import once_row
from service.ids import new_id
from service.ledger import LedgerBatch
from service.uow import unit_of_work
from store.models import Order, Refund


async def apply_refund(
    session: AsyncSession, ledger: LedgerBatch, *, order: Order, amount: int, rule: str, full: bool, now,
    provider_ref: str | None = None,
) -> Refund:
    """Record a refund decision on `order` and carry its consequences (CM-5, RP-3 counts)."""
    if amount <= 0:
        raise refuse(ErrorCode.INVALID_INPUT, "refund amount must be positive", field="amount", rule="OR-2")
    refundable = order.paid_amount - order.refunded_amount
    if amount > refundable:
        raise refuse(ErrorCode.REFUND_EXCEEDS_PAID,
                     f"refund of {amount} exceeds what remains refundable ({refundable})", field="amount", rule="OR-2")
    before = order.refunded_amount
    order.refunded_amount = before + amount
    refund = Refund(
        shop_id=order.shop_id, refund_id=new_id("rf_"), order_id=order.order_id, amount=amount, rule=rule, full=full,
        state="CONFIRMED" if provider_ref else "OWED", provider_ref=provider_ref, created_at=now,
        confirmed_at=now if provider_ref else None,
    )
    session.add(refund)
    if order.paid_at is not None:  # a late payment (GB-9) never counted as a purchase
        goods_part = min(order.refunded_amount, order.goods_amount) - min(before, order.goods_amount)
        await commissions.record_refund(session, order, amount, before)
        if goods_part:
            await commissions.on_order_refunded(session, ledger, order=order, amount=goods_part, now=now, rule=rule)
    events.emit(session, shop_id=order.shop_id, type=EventType.REFUND_OWED if not provider_ref else EventType.REFUND_RECORDED,
                aggregate_type="group" if order.group_id else "order",
                aggregate_id=order.group_id or order.order_id, now=now, rule=rule,
                payload={"refund_id": refund.refund_id, "order_id": order.order_id, "amount": amount, "full": full,
                         "reason": rule})
    return refund


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
            events.emit(s, shop_id=shop_id, type=EventType.REFUND_CONFIRMED, aggregate_type="order",
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
