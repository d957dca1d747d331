"""Shared builders for service-level tests."""

from __future__ import annotations

import itertools
from contextlib import contextmanager
from datetime import timedelta

from sqlalchemy import event, select, text
from sqlalchemy.ext.asyncio import AsyncSession

from engine.errors import ErrorCode, refuse

from service.usecases import campaigns, orders
from service.tx import ledger
from service.uow import unit_of_work
from store.models import Order

_refs = itertools.count(1)


def pay_ref() -> str:
    return f"pay-{next(_refs)}-{id(_refs)}"


async def make_campaign(svc, shop_id: str, **kw):
    now = svc.now()
    args = dict(
        product_ref="sku-1",
        title="Tea",
        list_price=10_000,
        tiers=[(3, 8_000)],
        duration=timedelta(hours=24),
        payment_window=timedelta(minutes=15),
        starts_at=now - timedelta(hours=1),
        ends_at=now + timedelta(days=10),
    )
    args.update(kw)
    return await campaigns.create_campaign(svc, shop_id=shop_id, **args)


async def pay(svc, shop_id: str, seat_or_order, amount: int | None = None, ref: str | None = None) -> dict:
    order_id = getattr(seat_or_order, "order_id", seat_or_order)
    if amount is None:
        amount = seat_or_order.amount
    return await orders.confirm_payment(
        svc, shop_id=shop_id, order_id=order_id, amount=amount, provider_ref=ref or pay_ref()
    )


async def assert_ledger_consistent(svc, shop_id: str) -> None:
    """LG-1: stored balances equal the sums of their entries."""
    async with unit_of_work(svc) as s:
        bad = await ledger.balance_mismatches(s, shop_id)
    assert bad == [], f"balances differ from ledger sums: {bad}"


@contextmanager
def recorded_statements(svc):
    """Every SQL statement the service sends while the block runs (query counts, routing checks)."""
    seen: list[str] = []

    def record(conn, cursor, statement, parameters, context, executemany):
        seen.append(statement)

    event.listen(svc.engine.sync_engine, "before_cursor_execute", record)
    try:
        yield seen
    finally:
        event.remove(svc.engine.sync_engine, "before_cursor_execute", record)


async def sql_rows(svc, sql: str, **params) -> list[tuple]:
    """The rows of one SQL statement as stored (no catch-up), as plain tuples: what a test compares."""
    async with svc.sessionmaker() as s:
        return [tuple(r) for r in (await s.execute(text(sql), params)).all()]


async def raw_row(svc, model, *key):
    """A row as stored, read without any catch-up (the service's reads apply due work first)."""
    async with svc.sessionmaker() as s:
        return await s.get(model, key)


async def find_order(
    session: AsyncSession,
    shop_id: str,
    *,
    order_id: str | None = None,
    external_id: str | None = None,
    lock: bool = False,
) -> Order:
    """The order's ORM row, for a test that reads or locks it (no use case needs one: they load views)."""
    q = select(Order).where(Order.shop_id == shop_id)
    if order_id:
        q = q.where(Order.order_id == order_id)
    elif external_id:
        q = q.where(Order.external_id == external_id)
    else:
        raise refuse(ErrorCode.INVALID_INPUT, "give an order id or an external id", field="orderId")
    if lock:
        q = q.with_for_update()
    o = (await session.execute(q.execution_options(populate_existing=True))).scalar_one_or_none()
    if o is None:
        raise refuse(ErrorCode.NOT_FOUND, "order not found", field="orderId")
    return o
