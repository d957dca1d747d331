"""A database of the benchmark's own on the server DATABASE_URL names, migrated to head and dropped at
the end, so a benchmark never leaves rows behind (the ledger is append-only: they could not be deleted).

When DATABASE_URL is a Citus coordinator's database (workers added), the database is made on every node
and its tables are distributed by the migrations (store.citus, docs/sharding.md)."""

from __future__ import annotations

import os
import secrets
from contextlib import asynccontextmanager
from typing import AsyncIterator

from store.database import to_asyncpg
from store.migrate import migrated_database

DEFAULT_SERVER = "postgresql://postgres@127.0.0.1:5432/test"


@asynccontextmanager
async def scratch_database(prefix: str) -> AsyncIterator[str]:
    """Yields the URL of a fresh, migrated database; drops it afterwards, whatever happened."""
    server = to_asyncpg(os.environ.get("DATABASE_URL", DEFAULT_SERVER))
    async with migrated_database(server, f"{prefix}_{os.getpid()}_{secrets.token_hex(3)}") as url:
        yield url
