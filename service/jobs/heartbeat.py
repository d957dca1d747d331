"""Worker heartbeats (table worker_heartbeats): a worker beats after a pass of due work that went through,
at most every SHARECART_HEARTBEAT_INTERVAL seconds, so a fresh beat means "a worker is running and its
database work succeeds" — not merely "a process exists". Times are the database's clock (`now()`), the one
/ready compares with, so neither the service test clock nor host clock skew can make a beat look old."""

from __future__ import annotations

import logging
import os
import secrets
import socket
import time

from sqlalchemy import text

log = logging.getLogger("sharecart.worker")

BEAT = text("""
INSERT INTO worker_heartbeats (worker_id, host, pid, started_at, beat_at)
VALUES (:worker_id, :host, :pid, now(), now())
ON CONFLICT (worker_id) DO UPDATE SET beat_at = now()
""")
PRUNE = text("DELETE FROM worker_heartbeats WHERE beat_at < now() - interval '1 day'")
FORGET = text("DELETE FROM worker_heartbeats WHERE worker_id = :worker_id")
FRESHEST_AGE = text("SELECT extract(epoch FROM now() - max(beat_at)) FROM worker_heartbeats")


class Heartbeat:
    def __init__(self, svc, *, interval: float) -> None:
        self.svc, self.interval = svc, interval
        self.host, self.pid = socket.gethostname()[:255], os.getpid()
        self.worker_id = f"{self.host[:100]}:{self.pid}:{secrets.token_hex(4)}"
        self._last: float | None = None

    async def beat(self) -> None:
        """Write a beat unless one was written less than `interval` ago."""
        now = time.monotonic()
        if self._last is not None and now - self._last < self.interval:
            return
        async with self.svc.engine.begin() as c:
            if self._last is None:
                await c.execute(PRUNE)
            await c.execute(BEAT, {"worker_id": self.worker_id, "host": self.host, "pid": self.pid})
        self._last = now

    async def forget(self) -> None:
        """A clean stop removes the row (a crash leaves it to age out of /ready)."""
        try:
            async with self.svc.engine.begin() as c:
                await c.execute(FORGET, {"worker_id": self.worker_id})
        except Exception:  # noqa: BLE001 - stopping anyway; the row ages out
            log.warning("could not remove heartbeat %s", self.worker_id)


async def freshest_age(connection) -> float | None:
    """Seconds since the freshest beat of any worker; None when there is none."""
    age = (await connection.execute(FRESHEST_AGE)).scalar()
    return None if age is None else float(age)
