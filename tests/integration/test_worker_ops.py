"""Issue 13 point 4: the worker backs off while the database is away (it used to log 1,110 lines in 5 s),
and writes the heartbeat /ready reads (removed again when it stops cleanly)."""

from __future__ import annotations

import asyncio
from collections import Counter
import logging

from sqlalchemy import text

from service.context import Services
from service.jobs.worker import worker_loop
from store.database import create_engine
from tests.api.conftest import _free_port as _closed_port  # nothing listens there: every connect is refused


class Records(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


async def test_worker_backs_off_while_the_database_is_away_with_one_line_per_try():
    """3 s with the database away and a 0.1 s interval: the old loop tried (and logged a traceback) 30 times
    per loop; now the pause doubles — 0.1, 0.2, 0.4, 0.8, 1.6 s — so at most 6 tries per loop, each one
    line without a traceback, naming the cause and the next pause."""
    svc = Services(engine=create_engine(f"postgresql://postgres@127.0.0.1:{_closed_port()}/nothing", pool_size=1))
    handler = Records()
    loggers = [logging.getLogger(n) for n in ("sharecart.worker", "sharecart.webhooks")]
    for logger in loggers:
        logger.addHandler(handler)
    stop = asyncio.Event()
    try:
        loop = asyncio.create_task(worker_loop(svc, stop, interval=0.1, backoff_max=30))
        await asyncio.sleep(3.0)
        stop.set()
        await asyncio.wait_for(loop, 5)
    finally:
        for logger in loggers:
            logger.removeHandler(handler)
        await svc.engine.dispose()
    tries = [r for r in handler.records if "database unavailable" in r.getMessage()]
    per_loop = Counter(r.getMessage().split(":")[0] for r in tries)  # due work, webhook delivery, feed sequencing
    assert per_loop and all(4 <= n <= 6 for n in per_loop.values()), [r.getMessage() for r in handler.records]
    assert all(r.exc_info is None for r in handler.records), "a database outage is not a bug: no traceback"
    due = [r.getMessage() for r in tries if r.getMessage().startswith("due work")]
    assert "retry 1 in 0 s" in due[0] and "retry 5 in 2 s" in due[4], due  # 0.1 0.2 0.4 0.8 1.6


async def test_worker_beats_and_removes_its_heartbeat_when_it_stops(db_engine):
    svc = Services(engine=db_engine)
    stop = asyncio.Event()
    loop = asyncio.create_task(worker_loop(svc, stop, interval=0.05))

    async def mine() -> list:
        async with db_engine.connect() as c:
            return list(
                (
                    await c.execute(
                        text("SELECT worker_id, beat_at FROM worker_heartbeats WHERE pid = :pid"),
                        {"pid": __import__("os").getpid()},
                    )
                ).all()
            )

    for _ in range(100):
        if rows := await mine():
            break
        await asyncio.sleep(0.05)
    assert len(rows) == 1, rows
    stop.set()
    await asyncio.wait_for(loop, 10)
    assert await mine() == []
