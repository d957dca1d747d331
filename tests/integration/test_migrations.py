"""The models and the migrations never drift apart; the schema is shard-ready (SH-1)."""

from __future__ import annotations

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import text

from store.database import create_engine
from store.models import NOT_SHOP_DATA, Base


async def test_models_match_migrations(database_url):
    eng = create_engine(database_url, pool_size=1)
    async with eng.connect() as conn:
        diff = await conn.run_sync(
            lambda c: compare_metadata(MigrationContext.configure(c, opts={"compare_type": True}), Base.metadata)
        )
    await eng.dispose()
    assert diff == [], f"models and migrations differ: {diff}"


def test_every_key_starts_with_shop_id():
    """SH-1 / Citus: every primary, unique and foreign key leads with shop_id — except the one table that is
    no shop's data (worker heartbeats: docs/operations.md), named exactly so no other slips through."""
    assert NOT_SHOP_DATA == {"worker_heartbeats"}
    for table in Base.metadata.sorted_tables:
        if table.name in NOT_SHOP_DATA:
            continue
        assert "shop_id" in table.c, table.name
        assert table.primary_key.columns.keys()[0] == "shop_id", table.name
        for c in table.constraints:
            cols = [col.name for col in c.columns] if hasattr(c, "columns") else []
            if cols:
                assert cols[0] == "shop_id", (table.name, c.name, cols)
        for ix in table.indexes:
            if ix.unique:
                assert ix.columns.keys()[0] == "shop_id", (table.name, ix.name)


async def test_downgrade_then_upgrade_round_trips(server_url):
    """Down to base and up again, each revision in its transaction (on Citus too: the tables are distributed
    again as the revisions create them)."""
    import secrets

    from store import citus
    from store.migrate import downgrade, upgrade

    name = f"sharecart_roundtrip_{secrets.token_hex(3)}"
    nodes = await citus.workers(server_url)
    eng = create_engine(await citus.create_database(server_url, name), pool_size=1)
    try:
        await upgrade(eng)
        await downgrade(eng, "base")
        await upgrade(eng)
        async with eng.connect() as c:
            assert (await c.execute(text("select count(*) from shops"))).scalar() == 0
    finally:
        await eng.dispose()
        await citus.drop_database(server_url, name, nodes)


async def test_ledger_refuses_update_and_delete(database_url):
    """LG-1: the database itself refuses edits to ledger entries."""
    eng = create_engine(database_url, pool_size=1)
    try:
        async with eng.begin() as c:
            await c.execute(
                text(
                    "insert into ledger_entries(shop_id, entry_id, distributor_id, bucket, amount, kind, ref_type,"
                    # amount 0: an entry that moves no balance, so LG-1's commit check (0010) has nothing to match
                    " ref_id, created_at) values ('s','e','d','AVAILABLE',0,'UPGRADE_BONUS','x','y', now())"
                )
            )
        for stmt in ("update ledger_entries set amount = 2", "delete from ledger_entries"):
            with pytest.raises(Exception, match="append-only"):
                async with eng.begin() as c:
                    await c.execute(text(stmt))
    finally:
        await eng.dispose()


async def test_check_constraints_match_models(database_url):
    """compare_metadata does not compare CHECK constraints: compare their names here (LG-3 identity, 0006)."""
    from sqlalchemy import CheckConstraint

    eng = create_engine(database_url, pool_size=1)
    try:
        async with eng.connect() as c:
            in_db = set(
                (
                    await c.execute(
                        text(
                            "SELECT rel.relname, con.conname FROM pg_constraint con JOIN pg_class rel ON rel.oid = con.conrelid "
                            "JOIN pg_namespace n ON n.oid = rel.relnamespace WHERE con.contype = 'c' AND n.nspname = 'public'"
                        )
                    )
                ).all()
            )
    finally:
        await eng.dispose()
    in_models = {
        (t.name, c.name) for t in Base.metadata.sorted_tables for c in t.constraints if isinstance(c, CheckConstraint)
    }
    assert in_db == in_models
    assert ("settlements", "ck_settlements_identity") in in_db
    assert ("settlement_lines", "ck_settlement_lines_identity") in in_db
