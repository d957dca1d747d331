"""Live group progress across processes: one PostgreSQL LISTEN connection per process fans
NOTIFY 'sharecart_groups' payloads ("shop:group", sent at commit by service.groups) out to the
subscriptions of this process.

If the LISTEN connection drops, notifications sent meanwhile are lost; so on loss every subscriber
is woken to re-read its group, and the next subscribe reconnects."""

from __future__ import annotations

import asyncio
from collections import defaultdict

import asyncpg

from store.database import to_libpq

CHANNEL = "sharecart_groups"
SHOPS_CHANNEL = "sharecart_shops"  # a shop's secrets or token revocation changed (api.auth.ShopCache)


class GroupListener:
    def __init__(self, url: str) -> None:
        self.url = to_libpq(url)
        self.conn: asyncpg.Connection | None = None
        self.queues: dict[str, set[asyncio.Queue]] = defaultdict(set)
        self._lock = asyncio.Lock()

    on_shop_change = None  # called with a shop id on NOTIFY sharecart_shops, with None when LISTEN was lost

    async def ensure(self) -> None:
        async with self._lock:
            if self.conn is None or self.conn.is_closed():
                self.conn = await asyncpg.connect(self.url)
                self.conn.add_termination_listener(self._on_lost)
                await self.conn.add_listener(CHANNEL, self._on_notify)
                await self.conn.add_listener(SHOPS_CHANNEL, self._on_shop)
                if self.on_shop_change is not None:
                    self.on_shop_change(None)  # changes made while no one listened are not known: forget all

    def _on_shop(self, _conn, _pid, _channel, payload: str) -> None:
        if self.on_shop_change is not None:
            self.on_shop_change(payload)

    def _on_notify(self, _conn, _pid, _channel, payload: str) -> None:
        for q in list(self.queues.get(payload, ())):
            q.put_nowait(payload)

    def _on_lost(self, _conn) -> None:
        self.conn = None
        if self.on_shop_change is not None:
            self.on_shop_change(None)
        for qs in list(self.queues.values()):
            for q in list(qs):
                q.put_nowait("resync")

    async def subscribe(self, key: str) -> asyncio.Queue:
        await self.ensure()
        q: asyncio.Queue = asyncio.Queue()
        self.queues[key].add(q)
        return q

    def unsubscribe(self, key: str, q: asyncio.Queue) -> None:
        self.queues[key].discard(q)
        if not self.queues[key]:
            self.queues.pop(key, None)

    async def close(self) -> None:
        conn, self.conn = self.conn, None
        if conn is not None and not conn.is_closed():
            await conn.close()
