"""Subscription root: live group progress over graphql-transport-ws.

Fed by PostgreSQL NOTIFY on `sharecart_groups` (sent by the service at commit on every group change),
received by one LISTEN connection per process (api.live), read once per change and fanned out to this
process's subscribers — so a change made by any service process reaches every subscriber of every process.

Bounded (issue 11 point 4): at most MAX_PER_CONNECTION subscriptions per websocket, and api.live's caps per
shop and per process; over a cap the subscription is refused with QUERY_TOO_COMPLEX (`extensions.limit`).
A subscription made with a bearer token ends with UNAUTHENTICATED when the token expires.
"""

from __future__ import annotations

import asyncio
import time
from typing import AsyncGenerator

import strawberry
from graphql import GraphQLError
from strawberry.types import Info

from api.live import TooMany
from api.permissions import HasShopKey
from api.groupbuy import Group, group_type
from api.relay import raw_id
from engine.errors import ErrorCode, refuse

TERMINAL = ("FORMED", "FAILED", "CANCELLED")
MAX_PER_CONNECTION = 20


def _snapshot(g) -> tuple:
    return (
        g.state.value,
        g.held_seats,
        g.paid_seats,
        g.tier_members,
        g.leader_user_id,
        g.expires_at,
        g.nudged_almost_full_at,
        g.nudged_expiring_soon_at,
    )  # GB-15: a nudge is pushed too


def _too_many(limit: str, cap: int) -> GraphQLError:
    return GraphQLError(
        f"too many live subscriptions: at most {cap} {limit}",
        extensions={"code": "QUERY_TOO_COMPLEX", "limit": "subscriptions", "scope": limit, "max": cap},
    )


@strawberry.type
class Subscription:
    @strawberry.subscription(
        permission_classes=[HasShopKey],
        description="Seats held/paid, seats left, tier reached and state of a group, pushed "
        "whenever it changes (GB-1..GB-8) and when it nudges (GB-15 `nudges`); ends when the group is final, or "
        "with UNAUTHENTICATED when the caller's token expires.",
    )
    async def group_progress(self, info: Info, group_id: strawberry.ID) -> AsyncGenerator[Group, None]:
        ctx = info.context
        gid = raw_id(group_id, "Group", "groupId")
        shop_id = ctx.shop_id
        listener = ctx.listener
        key = f"{shop_id}:{gid}"
        if ctx.live_subscriptions >= MAX_PER_CONNECTION:
            raise _too_many("per connection", MAX_PER_CONNECTION)
        try:
            queue = await listener.subscribe(key)
        except TooMany as e:
            raise _too_many(e.limit, e.cap)
        ctx.live_subscriptions += 1
        expires_at = ctx.principal.expires_at if ctx.principal is not None else None
        try:
            last = None
            while True:
                wait = None if expires_at is None else expires_at - time.time()
                if wait is not None and wait <= 0:
                    raise refuse(
                        ErrorCode.UNAUTHENTICATED, "token expired: subscribe again with a new one", rule="SH-0"
                    )
                try:
                    _, g = await asyncio.wait_for(queue.get(), timeout=wait)
                except asyncio.TimeoutError:
                    continue  # the token's time is up: refused at the top of the loop
                if g is None:
                    return
                if _snapshot(g) != last:
                    last = _snapshot(g)
                    ctx._loaders = None  # a long-lived websocket context must not serve stale loader caches
                    yield group_type(g, ctx)
                if g.state.value in TERMINAL:
                    return
        finally:
            ctx.live_subscriptions -= 1
            listener.unsubscribe(key, queue)
