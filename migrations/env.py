"""Alembic environment: async engine over asyncpg; compare_type so drift in types is caught.

Each revision runs in a transaction of its own (`transaction_per_migration`): on Citus, table DDL,
distribution and function DDL of one revision go together, and a later revision failing leaves the
earlier ones applied. On Citus (the extension installed) every table a revision creates is distributed
by shop_id at the end of that revision, inside its transaction, and at the end of the run every worker's
sequences get the coordinator's grants (Citus does not propagate those; store.citus, docs/sharding.md).
"""

from __future__ import annotations

import asyncio

from alembic import context
from sqlalchemy.ext.asyncio import create_async_engine

from store import citus
from store.models import Base

config = context.config
target_metadata = Base.metadata


def _distribute(ctx, step, heads, run_args) -> None:
    citus.distribute_new_tables(ctx.connection)


def _run(connection) -> None:
    on_citus = citus.is_citus(connection)
    if on_citus:
        citus.prepare_session(connection)  # session settings: they outlast the per-revision transactions
    if connection.in_transaction():
        connection.commit()  # the checks above began one; the revisions begin their own
    context.configure(
        connection=connection,
        target_metadata=target_metadata,
        compare_type=True,
        transaction_per_migration=True,
        on_version_apply=[_distribute] if on_citus else [],
    )
    with context.begin_transaction():
        context.run_migrations()
    if on_citus:  # after the revisions committed: the workers must see the sequences they grant on
        citus.sync_sequence_grants(connection)
        if connection.in_transaction():
            connection.commit()


async def _run_async() -> None:
    engine = create_async_engine(config.get_main_option("sqlalchemy.url"))
    async with engine.connect() as conn:
        await conn.run_sync(_run)
        await conn.commit()
    await engine.dispose()


def run_migrations_online() -> None:
    connection = config.attributes.get("connection")
    if connection is not None:  # called from store.migrate with a live sync connection
        _run(connection)
    else:
        asyncio.run(_run_async())


run_migrations_online()
