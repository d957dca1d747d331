"""Apply Alembic migrations from code (the CLI, the service start, and the tests use this).

Each revision commits on its own (migrations/env.py); one migrator at a time holds a session-level
advisory lock for the whole run, so several service processes starting together migrate once.
"""

from __future__ import annotations

from contextlib import asynccontextmanager
from pathlib import Path
from typing import AsyncIterator

from alembic import command
from alembic.config import Config
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

import migrations

SCRIPT_LOCATION = str(Path(migrations.__file__).parent)
MIGRATOR_LOCK = 7312001


def alembic_config(url: str) -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", SCRIPT_LOCATION)
    cfg.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    return cfg


async def _run(engine: AsyncEngine, apply) -> None:
    cfg = alembic_config(engine.url.render_as_string(hide_password=False))

    def run(sync_conn):
        cfg.attributes["connection"] = sync_conn
        apply(cfg)

    async with engine.connect() as conn:
        await conn.execute(text("SELECT pg_advisory_lock(:k)"), {"k": MIGRATOR_LOCK})
        await conn.commit()
        try:
            await conn.run_sync(run)
        finally:
            await conn.rollback()  # a revision that failed left its transaction aborted
            await conn.execute(text("SELECT pg_advisory_unlock(:k)"), {"k": MIGRATOR_LOCK})
            await conn.commit()


async def upgrade(engine: AsyncEngine, revision: str = "head") -> None:
    await _run(engine, lambda cfg: command.upgrade(cfg, revision))


async def downgrade(engine: AsyncEngine, revision: str) -> None:
    await _run(engine, lambda cfg: command.downgrade(cfg, revision))


@asynccontextmanager
async def migrated_database(server_url: str, name: str) -> AsyncIterator[str]:
    """A fresh database `name` beside `server_url`'s, migrated to head (on every node of a Citus cluster:
    store.citus.create_database); yields its URL and drops it afterwards, whatever happened."""
    from store import citus
    from store.database import create_engine

    nodes = await citus.workers(server_url)
    url = await citus.create_database(server_url, name)
    try:
        eng = create_engine(url, pool_size=1)
        try:
            await upgrade(eng)
        finally:
            await eng.dispose()
        yield url
    finally:
        await citus.drop_database(server_url, name, nodes)
