"""Mutation gaps of seed 71 in the webhook and plumbing modules (issue 12): what the stored idempotency
scope looks like when a scope outgrows its column."""

from __future__ import annotations

import hashlib

from sqlalchemy import select

from service.tx.idempotency import once
from service.uow import unit_of_work
from store.models import IdempotencyKey


async def test_GB10_scope_of_65_characters_is_stored_hashed_within_the_column(svc, shop):
    """A 65-character scope (one over idempotency_keys.scope's 64) is answered and stored as a 64-character
    prefix-and-hash scope; a replay answers the first result without running again."""
    runs = []

    async def run():
        runs.append(1)
        return {"n": len(runs)}

    scope = "s" * 64 + "x"
    answers = []
    for _ in range(2):
        async with unit_of_work(svc) as s:
            answers.append(
                await once(s, shop_id=shop.shop_id, scope=scope, key="k1", request={"a": 1}, now=svc.now(), run=run)
            )
    assert answers == [{"n": 1}, {"n": 1}]
    assert runs == [1]
    async with svc.sessionmaker() as s:
        rows = (await s.execute(select(IdempotencyKey).where(IdempotencyKey.shop_id == shop.shop_id))).scalars().all()
    assert [r.scope for r in rows] == ["s" * 47 + "#" + hashlib.sha256(scope.encode()).hexdigest()[:16]]
