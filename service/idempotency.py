"""GB-10: idempotency keys, stored inside the transaction of the mutation they guard.

The key row is inserted first (unique on shop, scope, key). A concurrent duplicate blocks on
that unique index until the first transaction ends, then finds the committed row: same request
hash -> the stored first result, no second effect; different hash -> IDEMPOTENCY_CONFLICT.
A refused first attempt rolls back with its key, so a corrected retry may run.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any, Awaitable, Callable

from sqlalchemy import select, text
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession

from engine.errors import ErrorCode, refuse
from store.models import IdempotencyKey


def request_hash(payload: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(payload, sort_keys=True, default=str).encode()).hexdigest()


async def once(
    session: AsyncSession,
    *,
    shop_id: str,
    scope: str,
    key: str | None,
    request: dict[str, Any],
    now,
    run: Callable[[], Awaitable[dict[str, Any]]],
) -> dict[str, Any]:
    """Run `run()` once per (shop, scope, key); later calls with the same request replay its result."""
    if not key:
        return await run()
    h = request_hash(request)
    inserted = await session.execute(
        insert(IdempotencyKey)
        .values(shop_id=shop_id, scope=scope, key=key, request_hash=h, created_at=now)
        .on_conflict_do_nothing()
        .returning(IdempotencyKey.key)
    )
    if inserted.first() is None:
        row = (
            await session.execute(
                select(IdempotencyKey).where(
                    IdempotencyKey.shop_id == shop_id, IdempotencyKey.scope == scope, IdempotencyKey.key == key
                )
            )
        ).scalar_one()
        if row.request_hash != h:
            raise refuse(
                ErrorCode.IDEMPOTENCY_CONFLICT,
                "this idempotency key was used with a different request",
                rule="GB-10",
                field="idempotencyKey",
            )
        return dict(row.result or {})
    result = await run()
    await session.execute(
        text("UPDATE idempotency_keys SET result = CAST(:r AS jsonb) WHERE shop_id=:s AND scope=:sc AND key=:k"),
        {"r": json.dumps(result, default=str), "s": shop_id, "sc": scope, "k": key},
    )
    return result
