"""GB-10: idempotency keys, stored inside the transaction of the mutation they guard.

The key row is inserted first (unique on shop, scope, key). A concurrent duplicate blocks on
that unique index until the first transaction ends, then finds the committed row: same request
hash -> the stored first result, no second effect; different hash -> IDEMPOTENCY_CONFLICT.
A refused first attempt rolls back with its key, so a corrected retry may run.

`once` stores a JSON-able result; `once_row` is `once` for the many use cases whose answer is one row:
it stores the row's primary key and a replay re-reads the row (as it stands now).
"""

from __future__ import annotations

import hashlib
import json
from typing import Any, Awaitable, Callable, TypeVar

from sqlalchemy import inspect, select, text
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession

from engine.errors import ErrorCode, refuse
from store.models import IdempotencyKey


KEY_MAX = 128  # idempotency_keys.key
SCOPE_MAX = 64  # idempotency_keys.scope

Row = TypeVar("Row")


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
    result, _ = await once_or_replay(session, shop_id=shop_id, scope=scope, key=key, request=request, now=now, run=run)
    return result


async def once_or_replay(
    session: AsyncSession,
    *,
    shop_id: str,
    scope: str,
    key: str | None,
    request: dict[str, Any],
    now,
    run: Callable[[], Awaitable[dict[str, Any]]],
) -> tuple[dict[str, Any], bool]:
    """`once`, also telling whether this call replayed a stored result (True) or ran (False)."""
    if not key:
        return await run(), False
    if len(key) > KEY_MAX:
        raise refuse(
            ErrorCode.INVALID_INPUT,
            f"an idempotency key has at most {KEY_MAX} characters",
            rule="GB-10",
            field="idempotencyKey",
        )
    scope = stored_scope(scope)
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
        return dict(row.result or {}), True
    result = await run()
    await session.execute(
        text("UPDATE idempotency_keys SET result = CAST(:r AS jsonb) WHERE shop_id=:s AND scope=:sc AND key=:k"),
        {"r": json.dumps(result, default=str), "s": shop_id, "sc": scope, "k": key},
    )
    return result, False


def stored_scope(scope: str) -> str:
    """The scope as stored. A per-user scope (`join_group:<user id>`) can outgrow the column with a long
    user id (64 characters); such a scope keeps a readable prefix and ends in a hash of the whole, so
    scopes stay distinct instead of the insert failing."""
    if len(scope) <= SCOPE_MAX:
        return scope
    return f"{scope[: SCOPE_MAX - 17]}#{hashlib.sha256(scope.encode()).hexdigest()[:16]}"


async def once_row(
    session: AsyncSession,
    model: type[Row],
    *,
    shop_id: str,
    scope: str,
    key: str | None,
    request: dict[str, Any],
    now,
    run: Callable[[], Awaitable[Row]],
) -> Row:
    """`once` for a use case that answers with one row: the first call stores the row's primary key;
    a replay re-reads that row as it stands now."""
    if not key:
        return await run()
    made: list[Row] = []  # the row of a call that ran

    async def first() -> dict[str, Any]:
        row = await run()
        made.append(row)
        await session.flush()
        return {"pk": list(inspect(row).identity)}

    r, replayed = await once_or_replay(
        session, shop_id=shop_id, scope=scope, key=key, request=request, now=now, run=first
    )
    if not replayed:
        return made[0]
    row = await session.get(model, tuple(r["pk"]))
    assert row is not None, f"an idempotency key points at the {model.__name__} it answered with"
    return row
