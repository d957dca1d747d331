"""A database of the benchmark's own on the server DATABASE_URL names, migrated to head and dropped at
the end, so a benchmark never leaves rows behind (the ledger is append-only: they could not be deleted)."""

from __future__ import annotations

import os
import secrets
from contextlib import asynccontextmanager
from typing import AsyncIterator

from sqlalchemy import text
from sqlalchemy.engine import make_url

from store.database import create_engine, to_asyncpg
from store.migrate import upgrade

DEFAULT_SERVER = "postgresql://postgres@127.0.0.1:5432/test"


@asynccontextmanager
async def scratch_database(prefix: str) -> AsyncIterator[str]:
    """Yields the URL of a fresh, migrated database; drops it afterwards, whatever happened."""
    server = os.environ.get("DATABASE_URL", DEFAULT_SERVER)
    name = f"{prefix}_{os.getpid()}_{secrets.token_hex(3)}"
    admin = create_engine(server, isolation_level="AUTOCOMMIT", pool_size=1)
    async with admin.connect() as c:
        await c.execute(text(f'CREATE DATABASE "{name}"'))
    url = make_url(to_asyncpg(server)).set(database=name).render_as_string(hide_password=False)
    try:
        eng = create_engine(url, pool_size=1)
        await upgrade(eng)
        await eng.dispose()
        yield url
    finally:
        async with admin.connect() as c:
            await c.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        await admin.dispose()
