"""The shop's group-buy options (v2): GB-14 overflow re-seat, off by default."""

from __future__ import annotations

from sqlalchemy import text

from engine.errors import ErrorCode, refuse
from service.context import Services
from service.tx.idempotency import once
from service.uow import unit_of_work


async def get_overflow_reseat(svc: Services, *, shop_id: str) -> bool:
    async with svc.sessionmaker() as s:
        v = (await s.execute(text("SELECT overflow_reseat FROM shops WHERE shop_id = :s"), {"s": shop_id})).scalar()
    if v is None:
        raise refuse(ErrorCode.NOT_FOUND, "no such shop")
    return bool(v)


async def set_overflow_reseat(
    svc: Services, *, shop_id: str, enabled: bool, idempotency_key: str | None = None
) -> bool:
    """GB-14: turn overflow re-seat on or off for the shop (GB-10: a retry with the key changes nothing more)."""
    now = svc.now()
    async with unit_of_work(svc) as s:

        async def run():
            await s.execute(
                text("UPDATE shops SET overflow_reseat = :e WHERE shop_id = :s"), {"e": enabled, "s": shop_id}
            )
            return {"overflow_reseat": enabled}

        r = await once(
            s,
            shop_id=shop_id,
            scope="set_overflow_reseat",
            key=idempotency_key,
            request={"enabled": enabled},
            now=now,
            run=run,
        )
    return bool(r["overflow_reseat"])
