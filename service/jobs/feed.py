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

from sqlalchemy import delete, exists, insert, select, text, update

from service.context import Services
from service.uow import unit_of_work
from store.models import EventFeed, EventFeedHead, EventFeedQueue

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
            await s.execute(
                insert(EventFeed),
                [
                    {"shop_id": shop_id, "position": head + n, "event_id": event_id}
                    for n, event_id in enumerate(queued, start=1)
                ],
            )
            await s.execute(
                delete(EventFeedQueue).where(EventFeedQueue.shop_id == shop_id, EventFeedQueue.event_id.in_(queued))
            )
            await s.execute(
                update(EventFeedHead).where(EventFeedHead.shop_id == shop_id).values(position=head + len(queued))
            )
        done += len(queued)
        if len(queued) < batch:
            return done


SHOPS_WITH_QUEUED_EVENTS = text("SELECT DISTINCT shop_id FROM event_feed_queue")  # a read that locks nothing


async def sequence_all(svc: Services) -> int:
    """The worker's pass: every shop with queued events, one shop per transaction."""
    async with svc.sessionmaker() as s:
        shops = sorted((await s.execute(SHOPS_WITH_QUEUED_EVENTS)).scalars())
    return sum([await sequence(svc, shop_id=shop_id) for shop_id in shops])
