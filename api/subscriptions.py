"""Subscription root: live group progress over graphql-transport-ws.

Fed by PostgreSQL NOTIFY on `sharecart_groups` (sent by the service at commit on every group change),
received by one LISTEN connection per process (api.live) and fanned out to this process's
subscribers — so a change made by any service process reaches every subscriber of every process.
"""

from __future__ import annotations

import asyncio
from typing import AsyncGenerator

import strawberry
from strawberry.types import Info

from api.permissions import HasShopKey
from api.types import Group, group_type, raw_id
from service import queries

TERMINAL = ("FORMED", "FAILED", "CANCELLED")
RECHECK_SECONDS = 30.0  # also re-read now and then: expiry shows even if no worker ran (GB-11)


def _snapshot(g) -> tuple:
    return (g.state.value, g.held_seats, g.paid_seats, g.tier_members, g.leader_user_id, g.expires_at)


@strawberry.type
class Subscription:
    @strawberry.subscription(permission_classes=[HasShopKey],
                             description="Seats held/paid, seats left, tier reached and state of a group, pushed "
                                         "whenever it changes (GB-1..GB-8); ends when the group is final.")
    async def group_progress(self, info: Info, group_id: strawberry.ID) -> AsyncGenerator[Group, None]:
        ctx = info.context
        gid = raw_id(group_id, "Group", "groupId")
        shop_id = ctx.shop_id
        listener = ctx.listener
        key = f"{shop_id}:{gid}"
        queue = await listener.subscribe(key)
        try:
            last = None
            while True:
                g = (await queries.groups_by_ids(ctx.svc, shop_id=shop_id, ids=[gid])).get(gid)
                if g is None:
                    return
                if _snapshot(g) != last:
                    last = _snapshot(g)
                    ctx._loaders = None  # a long-lived websocket context must not serve stale loader caches
                    yield group_type(g, ctx)
                if g.state.value in TERMINAL:
                    return
                try:
                    await asyncio.wait_for(queue.get(), timeout=RECHECK_SECONDS)
                except asyncio.TimeoutError:
                    pass
                while not queue.empty():  # coalesce a burst of notifications into one read
                    queue.get_nowait()
                await listener.ensure()  # reconnect LISTEN if it dropped (we re-read right after)
        finally:
            listener.unsubscribe(key, queue)
