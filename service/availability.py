"""Is this exception "the database is not there" (as opposed to a bug or a refusal)?

Used by the API (a JSON error with code UNAVAILABLE and HTTP 503 instead of a masked INTERNAL or a
plain-text 500), by the worker (back off instead of logging every second) and by the CLI (one
`error UNAVAILABLE:` line). What counts: the connection could not be made or was lost — refused,
reset, timed out, name not resolved, the server shutting down or still starting — whether it comes
raw from asyncpg / the socket or wrapped by SQLAlchemy.
"""

from __future__ import annotations

import asyncio

import asyncpg
from sqlalchemy import exc as sa_exc

UNAVAILABLE = "UNAVAILABLE"  # the error code clients see; not in ErrorCode: it is no refusal of a rule

_RAW = (
    OSError,  # ConnectionRefusedError, ConnectionResetError, socket.gaierror, …
    asyncio.TimeoutError,
    asyncpg.exceptions.ConnectionDoesNotExistError,
    asyncpg.exceptions.CannotConnectNowError,  # starting up / shutting down
    asyncpg.exceptions.AdminShutdownError,
    asyncpg.exceptions.CrashShutdownError,
    asyncpg.exceptions.ConnectionFailureError,
    asyncpg.exceptions.TooManyConnectionsError,
)


def is_database_unavailable(e: BaseException | None) -> bool:
    seen = 0
    while e is not None and seen < 8:  # follow the __cause__ chain SQLAlchemy and asyncpg build
        if isinstance(e, sa_exc.DBAPIError) and e.connection_invalidated:
            return True
        if isinstance(e, _RAW) and not isinstance(e, (FileNotFoundError, PermissionError, IsADirectoryError)):
            return True
        e = e.__cause__ or e.__context__
        seen += 1
    return False


class Backoff:
    """One background loop's pause and its log lines: after a failed pass the pause doubles from `interval` up
    to `max_delay`, with one line a try (no traceback when the database is away); the first pass that goes
    through again says so and resets the pause. Shared by the worker's loops and webhook delivery."""

    def __init__(self, what: str, log, *, interval: float, max_delay: float):
        self.what, self.log, self.interval, self.max_delay = what, log, interval, max_delay
        self.failures = 0

    def failed(self, e: BaseException) -> float:
        """Count the failure, log it, and return the pause before the next try (call it inside the except)."""
        from service.metrics import WORKER_PASSES

        self.failures += 1
        delay = min(self.interval * 2 ** (self.failures - 1), self.max_delay)
        if is_database_unavailable(e):
            WORKER_PASSES.labels(self.what, "unavailable").inc()
            self.log.warning(
                "%s: database unavailable (%s: %s); retry %d in %.0f s",
                self.what,
                type(e).__name__,
                e,
                self.failures,
                delay,
            )
        else:
            WORKER_PASSES.labels(self.what, "error").inc()
            self.log.exception("%s failed; retry %d in %.0f s", self.what, self.failures, delay)
        return delay

    def succeeded(self) -> float:
        """Count a pass that went through and return the ordinary pause."""
        from service.metrics import WORKER_PASSES

        WORKER_PASSES.labels(self.what, "ok").inc()
        if self.failures:
            self.log.warning("%s: working again after %d failed tries", self.what, self.failures)
        self.failures = 0
        return self.interval
