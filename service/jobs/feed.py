"""The shop's event feed: every committed event gets the shop's next position, in commit order.

An event's `seq` is taken at INSERT, so a transaction that commits late leaves a lower seq behind a higher
one already visible; a cursor on seq (or on any id taken before commit) would skip it. The sequencer gives
positions only to events that have committed, so a position is final when it is first seen:

- each event, by the INSERT that writes it, leaves a row in `event_feed_queue` (trigger, same
  transaction: queued iff the event commits);
- `sequence` locks the shop's `event_feed_heads` row, reads the queued events (committed ones only: its
  statements see what had committed when it got the lock), appends them to `event_feed` with the next
  positions in seq order, removes them from the queue and moves the head, in one transaction. The next
  sequencer of the shop waits for that lock and then sees all of it, so positions are gap-free and every
  reader sees a prefix of the shop's feed.

Nothing outside the shop takes part: a long transaction of another shop or another database delays
nothing, and every statement names one shop, so on Citus it all runs on the node holding that shop
(docs/sharding.md). The pull runs the sequencer before it reads (so a client sees its own events at once)
and the worker runs it for every shop with queued events (so the feed is current for whoever reads it).
"""

from __future__ import annotations

from sqlalchemy import exists, select, text

from service.context import Services
from service.uow import unit_of_work
from store.models import EventFeedQueue

BATCH = 1000

TAKE_HEAD = text(
    """
    INSERT INTO event_feed_heads (shop_id, position) VALUES (:shop_id, 0)
    ON CONFLICT (shop_id) DO UPDATE SET position = event_feed_heads.position
    RETURNING position
    """
)  # creates the shop's head on first use and locks it: one sequencer per shop at a time


async def sequence(svc: Services, *, shop_id: str, batch: int = BATCH) -> int:
    """Give the shop's committed, not yet positioned events their positions; returns how many got one."""
    async with svc.sessionmaker() as s:  # the usual case: nothing queued, and then no lock is taken
        if not (await s.execute(select(exists().where(EventFeedQueue.shop_id == shop_id)))).scalar():
            return 0
    done = 0
    while True:
        async with unit_of_work(svc) as s:
            head = (await s.execute(TAKE_HEAD, {"shop_id": shop_id})).scalar_one()
            queued = list(
                (
                    await s.execute(
                        select(EventFeedQueue.event_id)
                        .where(EventFeedQueue.shop_id == shop_id)
                        .order_by(EventFeedQueue.seq, EventFeedQueue.event_id)
                        .limit(batch)
                    )
                ).scalars()
            )
            if not queued:
                return done
            # arrays, not the ORM's executemany: one statement of one row set each (the rows are selected beside
            # the shop's own row, so on Citus the INSERT runs on the shop's shard, as LedgerBatch's do)
            await s.execute(
                APPEND,
                {"shop_id": shop_id, "head": head, "ids": queued, "n": len(queued)},
            )
        done += len(queued)
        if len(queued) < batch:
            return done


# the queued events get positions head+1 … head+n (in the order read), leave the queue, and the head moves
APPEND = text(
    """
    WITH f AS (INSERT INTO event_feed (shop_id, position, event_id)
               SELECT sh.shop_id, CAST(:head AS bigint) + v.n, v.event_id
               FROM shops sh CROSS JOIN unnest(CAST(:ids AS text[])) WITH ORDINALITY AS v(event_id, n)
               WHERE sh.shop_id = :shop_id),
    q AS (DELETE FROM event_feed_queue WHERE shop_id = :shop_id AND event_id = ANY(CAST(:ids AS text[]))),
    h AS (UPDATE event_feed_heads SET position = CAST(:head AS bigint) + CAST(:n AS bigint) WHERE shop_id = :shop_id)
    SELECT 1
    """
)
SHOPS_WITH_QUEUED_EVENTS = text("SELECT DISTINCT shop_id FROM event_feed_queue")  # a read that locks nothing


async def sequence_all(svc: Services) -> int:
    """The worker's pass: every shop with queued events, one shop per transaction."""
    async with svc.sessionmaker() as s:
        shops = sorted((await s.execute(SHOPS_WITH_QUEUED_EVENTS)).scalars())
    return sum([await sequence(svc, shop_id=shop_id) for shop_id in shops])
