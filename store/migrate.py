"""Apply Alembic migrations from code (the CLI, the service start, and the tests use this)."""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config
from sqlalchemy.ext.asyncio import AsyncEngine

import migrations

SCRIPT_LOCATION = str(Path(migrations.__file__).parent)


def alembic_config(url: str) -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", SCRIPT_LOCATION)
    cfg.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    return cfg


async def upgrade(engine: AsyncEngine, revision: str = "head") -> None:
    cfg = alembic_config(engine.url.render_as_string(hide_password=False))

    def run(sync_conn):
        cfg.attributes["connection"] = sync_conn
        command.upgrade(cfg, revision)

    async with engine.begin() as conn:
        # one migrator at a time when several service processes start together
        from sqlalchemy import text

        await conn.execute(text("SELECT pg_advisory_xact_lock(7312001)"))
        await conn.run_sync(run)


async def downgrade(engine: AsyncEngine, revision: str) -> None:
    cfg = alembic_config(engine.url.render_as_string(hide_password=False))

    def run(sync_conn):
        cfg.attributes["connection"] = sync_conn
        command.downgrade(cfg, revision)

    async with engine.begin() as conn:
        await conn.run_sync(run)
