"""The shop's event feed: commit-ordered positions per shop (service/jobs/feed.py, docs/webhooks.md).

A cursor is a position. What must hold, on one server and on Citus alike:
- no cursor ever skips an event, whatever commits late (an event gets its position after it committed);
- a transaction still open, in another shop or in another database, holds no shop's feed back;
- positions are 1, 2, 3 … per shop and never change (the feed is append-only).
"""

from __future__ import annotations

import asyncio
import secrets

import pytest
from sqlalchemy import func, select, text

from service.tx import events
from service.jobs import feed
from service.usecases import webhooks
from service.usecases.shops import create_shop
from store.database import create_engine
from store.models import EventFeed, EventFeedQueue


def _emit(svc, s, shop_id: str, type_: str) -> None:
    events.emit(s, shop_id=shop_id, type=type_, aggregate_type="t", aggregate_id=type_, now=svc.now(), payload={})


async def _pull(svc, shop_id: str, after=None):
    return await webhooks.events_since_caught_up(svc, shop_id=shop_id, after=after)


async def test_an_event_that_commits_late_comes_after_every_cursor_already_handed_out(svc, shop):
    """B takes seq n and stays open; A takes seq n+1 and commits. A is served at once (B holds nothing back),
    and B, committing later, comes after the cursor the reader holds: seq order is not commit order, the
    feed's is."""
    async with svc.sessionmaker() as a, svc.sessionmaker() as b:
        await b.begin()
        _emit(svc, b, shop.shop_id, "b.lower_seq")
        await b.flush()
        await a.begin()
        _emit(svc, a, shop.shop_id, "a.higher_seq")
        await a.flush()
        await a.commit()
        seen = await _pull(svc, shop.shop_id)
        assert [e.type for e in seen] == ["a.higher_seq"]
        cursor = webhooks.event_position(seen[-1])
        await b.commit()
    later = await _pull(svc, shop.shop_id, cursor)
    assert [e.type for e in later] == ["b.lower_seq"]
    assert later[0].seq < seen[0].seq  # the case a seq cursor would have skipped
    assert [(e.type, e.position) for e in await _pull(svc, shop.shop_id)] == [("a.higher_seq", 1), ("b.lower_seq", 2)]


async def test_open_transactions_of_another_shop_or_database_do_not_hold_the_feed_back(svc, shop, server_url):
    other = await create_shop(svc, shop_id=f"t-{secrets.token_hex(5)}", name="Other", currency="JPY")
    elsewhere = create_engine(server_url, pool_size=1)  # the server's own database: another database entirely
    try:
        async with svc.sessionmaker() as o, elsewhere.connect() as x:
            await o.begin()
            _emit(svc, o, other.shop_id, "other.open")
            await o.flush()
            await x.execute(text("SELECT pg_current_xact_id()"))  # an open transaction with an id
            async with svc.sessionmaker() as s, s.begin():
                _emit(svc, s, shop.shop_id, "mine")
            assert [e.type for e in await _pull(svc, shop.shop_id)] == ["mine"]
            await o.rollback()
    finally:
        await elsewhere.dispose()
    assert await _pull(svc, other.shop_id) == []  # rolled back: never in the feed


async def test_concurrent_writers_and_readers_see_one_gap_free_order_and_skip_nothing(svc, shop):
    """8 writers commit 10 events each (some transactions held open for a while) while 3 readers follow the
    feed by cursor: each reader sees every event exactly once, all in one order, positions 1..80."""
    writers, per_writer = 8, 10
    done = asyncio.Event()

    async def write(w: int) -> None:
        for i in range(per_writer):
            async with svc.sessionmaker() as s, s.begin():
                _emit(svc, s, shop.shop_id, f"w{w}.{i}")
                await s.flush()
                await asyncio.sleep(0.01 * ((w + i) % 3))  # commit late now and then

    async def read() -> list[tuple[int, str]]:
        got, cursor = [], None
        while True:
            finished = done.is_set()  # read once more after the last commit
            page = await _pull(svc, shop.shop_id, cursor)
            got += [(e.position, e.type) for e in page]
            cursor = got[-1][0] if got else None
            if finished and not page:
                return got
            await asyncio.sleep(0.005)

    readers = [asyncio.create_task(read()) for _ in range(3)]
    await asyncio.gather(*[write(w) for w in range(writers)])
    done.set()
    seen = await asyncio.gather(*readers)
    assert seen[0] == seen[1] == seen[2]
    assert [p for p, _ in seen[0]] == list(range(1, writers * per_writer + 1))
    assert sorted(t for _, t in seen[0]) == sorted(f"w{w}.{i}" for w in range(writers) for i in range(per_writer))


async def test_a_transactions_events_keep_their_order_in_the_feed(svc, shop):
    async with svc.sessionmaker() as s, s.begin():
        for n in range(5):
            _emit(svc, s, shop.shop_id, f"step.{n}")
    assert [e.type for e in await _pull(svc, shop.shop_id)] == [f"step.{n}" for n in range(5)]


async def test_the_worker_positions_queued_events_of_every_shop(svc, shop):
    other = await create_shop(svc, shop_id=f"t-{secrets.token_hex(5)}", name="Other", currency="JPY")
    for sid in (shop.shop_id, other.shop_id):
        async with svc.sessionmaker() as s, s.begin():
            _emit(svc, s, sid, "queued")
    assert await feed.sequence_all(svc) >= 2
    async with svc.sessionmaker() as s:
        left = (
            await s.execute(
                select(func.count())
                .select_from(EventFeedQueue)
                .where(EventFeedQueue.shop_id.in_([shop.shop_id, other.shop_id]))
            )
        ).scalar()
        placed = (
            await s.execute(
                select(func.count()).select_from(EventFeed).where(EventFeed.shop_id.in_([shop.shop_id, other.shop_id]))
            )
        ).scalar()
    assert (left, placed) == (0, 2)


async def test_sequencing_in_batches_keeps_positions_gap_free(svc, shop):
    async with svc.sessionmaker() as s, s.begin():
        for n in range(7):
            _emit(svc, s, shop.shop_id, f"e{n}")
    assert await feed.sequence(svc, shop_id=shop.shop_id, batch=3) == 7
    assert [e.position for e in await _pull(svc, shop.shop_id)] == list(range(1, 8))


async def test_the_database_refuses_to_change_a_position(svc, shop):
    async with svc.sessionmaker() as s, s.begin():
        _emit(svc, s, shop.shop_id, "placed")
    await feed.sequence(svc, shop_id=shop.shop_id)
    for stmt in (
        "UPDATE event_feed SET position = position + 1 WHERE shop_id = :s",
        "DELETE FROM event_feed WHERE shop_id = :s",
    ):
        with pytest.raises(Exception, match="append-only"):
            async with svc.sessionmaker() as s, s.begin():
                await s.execute(text(stmt), {"s": shop.shop_id})


def test_a_cursor_of_the_old_txid_order_is_refused_not_misread():
    import base64
    import json

    from api.relay import keyset_args
    from api.webhooks import EVENTS_KEYSET
    from engine.errors import RuleViolation

    old = base64.b64encode(json.dumps(["events", 812, 5]).encode()).decode()
    with pytest.raises(RuleViolation):
        keyset_args(10, old, EVENTS_KEYSET)
    new = base64.b64encode(json.dumps(["events", 5]).encode()).decode()
    assert keyset_args(10, new, EVENTS_KEYSET) == (10, (5,))
