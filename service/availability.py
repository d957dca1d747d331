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
