"""A database of the benchmark's own on the server DATABASE_URL names, migrated to head and dropped at
the end, so a benchmark never leaves rows behind (the ledger is append-only: they could not be deleted).

When DATABASE_URL is a Citus coordinator's database (workers added), the database is made on every node
and its tables are distributed by the migrations (store.citus, docs/sharding.md)."""

from __future__ import annotations

import os
import secrets
from contextlib import asynccontextmanager
from typing import AsyncIterator

from store import citus
from store.database import create_engine, to_asyncpg
from store.migrate import upgrade

DEFAULT_SERVER = "postgresql://postgres@127.0.0.1:5432/test"


@asynccontextmanager
async def scratch_database(prefix: str) -> AsyncIterator[str]:
    """Yields the URL of a fresh, migrated database; drops it afterwards, whatever happened."""
    server = to_asyncpg(os.environ.get("DATABASE_URL", DEFAULT_SERVER))
    name = f"{prefix}_{os.getpid()}_{secrets.token_hex(3)}"
    nodes = await citus.workers(server)
    url = await citus.create_database(server, name)
    try:
        eng = create_engine(url, pool_size=1)
        await upgrade(eng)
        await eng.dispose()
        yield url
    finally:
        await citus.drop_database(server, name, nodes)
