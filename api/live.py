"""Live group progress across processes: one PostgreSQL LISTEN connection per process receives NOTIFY
'sharecart_groups' payloads ("shop:group", sent at commit by service.usecases.groups); for each, this process
reads the group once and hands that one result to every subscriber of it (issue 11 point 4: 1,000
subscribers of one group cost one read per change, not 1,000).

- A topic per watched group: its subscribers' queues (each holds only the newest value: a slow subscriber
  skips intermediate states, it never queues them), the last value read, and one refresh at a time —
  notifications that arrive during a read make one more read after it, not one each.
- Every RECHECK_SECONDS each topic is re-read once (expiry shows even if no worker ran, GB-11).
- Caps: MAX_PER_SHOP subscriptions per shop and MAX_TOTAL per process (subscribe refuses beyond them);
  the per-connection cap is counted on the connection's context (api.subscriptions).
- If the LISTEN connection drops, notifications sent meanwhile are lost; so on loss every topic is
  re-read, and the next subscribe reconnects.
- The same connection listens on 'sharecart_shops' for the shop cache (api.auth.ShopCache).
"""

from __future__ import annotations

import asyncio
from collections import Counter
from typing import Awaitable, Callable

import asyncpg

from store.database import to_libpq

CHANNEL = "sharecart_groups"
SHOPS_CHANNEL = "sharecart_shops"  # a shop's secrets or token revocation changed (api.auth.ShopCache)
RECHECK_SECONDS = 30.0
MAX_PER_SHOP = 1000
MAX_TOTAL = 5000


class TooMany(Exception):
    """A subscription over a cap; `limit` names which."""

    def __init__(self, limit: str, cap: int) -> None:
        super().__init__(f"too many live subscriptions: at most {cap} {limit}")
        self.limit, self.cap = limit, cap


def _offer(q: asyncio.Queue, value) -> None:
    """Keep only the newest value in a subscriber's queue (maxsize 1)."""
    if q.full():
        q.get_nowait()
    q.put_nowait(value)


class Topic:
    def __init__(self, listener: "GroupListener", key: str) -> None:
        self.listener, self.key = listener, key
        self.queues: set[asyncio.Queue] = set()
        self.latest = None
        self.read_once = False
        self._task: asyncio.Task | None = None
        self._again = False
        self._timer: asyncio.TimerHandle | None = None

    def poke(self) -> None:
        if self._task is not None and not self._task.done():
            self._again = True
            return
        self._task = asyncio.get_running_loop().create_task(self._refresh())

    async def _refresh(self) -> None:
        while True:
            self._again = False
            shop_id, _, group_id = self.key.partition(":")
            try:
                self.latest = await self.listener.fetch(shop_id, group_id)
            except Exception:  # the database is away: the next notification or the recheck tries again
                break
            self.read_once = True
            self.listener.reads += 1
            for q in list(self.queues):
                _offer(q, ("group", self.latest))
            if not self._again:
                break
        self._arm()

    def _arm(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
        if self.queues:
            self._timer = asyncio.get_running_loop().call_later(self.listener.recheck_seconds, self.poke)

    def close(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
        if self._task is not None and not self._task.done():
            self._task.cancel()


class GroupListener:
    on_shop_change = None  # called with a shop id on NOTIFY sharecart_shops, with None when LISTEN was lost

    def __init__(self, url: str, fetch: Callable[[str, str], Awaitable[object]] | None = None) -> None:
        self.url = to_libpq(url)
        self.fetch = fetch
        self.conn: asyncpg.Connection | None = None
        self.topics: dict[str, Topic] = {}
        self.per_shop: Counter = Counter()
        self.total = 0
        self.reads = 0  # group reads made for subscribers (tests: one per change, whatever the subscribers)
        self.max_per_shop, self.max_total, self.recheck_seconds = MAX_PER_SHOP, MAX_TOTAL, RECHECK_SECONDS
        self._lock = asyncio.Lock()

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
        topic = self.topics.get(payload)
        if topic is not None:
            topic.poke()

    def _on_lost(self, _conn) -> None:
        self.conn = None
        if self.on_shop_change is not None:
            self.on_shop_change(None)
        for topic in list(self.topics.values()):
            topic.poke()

    async def subscribe(self, key: str) -> asyncio.Queue:
        """A queue that receives ("group", <group or None>) for the group `key` ("shop:group"): the current
        value at once (read now if no one watched it yet), then every change. Raises TooMany over a cap."""
        shop_id = key.partition(":")[0]
        if self.total >= self.max_total:
            raise TooMany("per process", self.max_total)
        if self.per_shop[shop_id] >= self.max_per_shop:
            raise TooMany("per shop", self.max_per_shop)
        await self.ensure()
        q: asyncio.Queue = asyncio.Queue(maxsize=1)
        topic = self.topics.get(key)
        if topic is None:
            topic = self.topics[key] = Topic(self, key)
            topic.queues.add(q)
            topic.poke()
        else:
            topic.queues.add(q)
            if topic.read_once:
                _offer(q, ("group", topic.latest))
            else:
                topic.poke()
        self.per_shop[shop_id] += 1
        self.total += 1
        return q

    def unsubscribe(self, key: str, q: asyncio.Queue) -> None:
        topic = self.topics.get(key)
        if topic is None or q not in topic.queues:
            return
        topic.queues.discard(q)
        shop_id = key.partition(":")[0]
        self.per_shop[shop_id] -= 1
        if self.per_shop[shop_id] <= 0:
            del self.per_shop[shop_id]
        self.total -= 1
        if not topic.queues:
            topic.close()
            self.topics.pop(key, None)

    async def close(self) -> None:
        for topic in list(self.topics.values()):
            topic.close()
        conn, self.conn = self.conn, None
        if conn is not None and not conn.is_closed():
            await conn.close()
