"""Live group progress across processes: one PostgreSQL LISTEN connection per process fans
NOTIFY 'sharecart_groups' payloads ("shop:group", sent at commit by service.groups) out to the
subscriptions of this process."""

from __future__ import annotations

import asyncio
from collections import defaultdict

import asyncpg

from store.database import to_libpq


class GroupListener:
    def __init__(self, url: str) -> None:
        self.url = to_libpq(url)
        self.conn: asyncpg.Connection | None = None
        self.queues: dict[str, set[asyncio.Queue]] = defaultdict(set)
        self._lock = asyncio.Lock()

    async def _ensure(self) -> None:
        async with self._lock:
            if self.conn is None or self.conn.is_closed():
                self.conn = await asyncpg.connect(self.url)
                await self.conn.add_listener("sharecart_groups", self._on_notify)

    def _on_notify(self, _conn, _pid, _channel, payload: str) -> None:
        for q in list(self.queues.get(payload, ())):
            q.put_nowait(payload)

    async def subscribe(self, key: str) -> asyncio.Queue:
        await self._ensure()
        q: asyncio.Queue = asyncio.Queue()
        self.queues[key].add(q)
        return q

    def unsubscribe(self, key: str, q: asyncio.Queue) -> None:
        self.queues[key].discard(q)
        if not self.queues[key]:
            self.queues.pop(key, None)
