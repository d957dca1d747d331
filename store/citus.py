"""Citus: what the migrations and the test and bench fixtures need to run on a cluster (docs/sharding.md).

The same migrations and the same service code run on PostgreSQL and on Citus; on PostgreSQL only the
checks here run (and `create_database` makes one plain database).

- `distribute_new_tables`: every table of the schema that has a `shop_id` and is not distributed yet is
  distributed by `shop_id`, colocated with `shops`, parents before the tables whose foreign keys point at
  them. The migration environment calls it after each revision, so a table any migration creates is
  distributed in the transaction that created it (a table left on the coordinator would make every
  statement joining it to a distributed one fail or go through the coordinator).
- `prepare_session`: the settings a migration transaction needs on Citus (`citus.enable_unsafe_triggers`
  for the append-only and outbox triggers, sequential shard DDL so function DDL can follow table DDL in
  the same transaction).
- `create_database` / `drop_database`: Citus propagates neither CREATE DATABASE nor node membership, so a
  fresh database (a test run's, a benchmark's) is created on every node, gets the extension on every node,
  and the coordinator's copy is told its workers.
"""

from __future__ import annotations

from sqlalchemy import text
from sqlalchemy.engine import make_url

DISTRIBUTION_COLUMN = "shop_id"
ANCHOR = "shops"  # every distributed table is colocated with it: one shop's rows of every table on one node


def is_citus(sync_conn) -> bool:
    return sync_conn.exec_driver_sql("SELECT 1 FROM pg_extension WHERE extname = 'citus'").first() is not None


def prepare_session(sync_conn) -> None:
    # Triggers on distributed tables run on the shards; ours only touch rows of the same shop, which live on
    # the same node (colocated), which is the case Citus calls "unsafe" only because it cannot check it.
    sync_conn.exec_driver_sql("SET citus.enable_unsafe_triggers TO on")
    # DDL over shards one connection per node, so CREATE FUNCTION / ALTER after a table's shards were created
    # in the same transaction is allowed ("cannot run … after a parallel operation" otherwise).
    sync_conn.exec_driver_sql("SET citus.multi_shard_modify_mode TO 'sequential'")


def _local_shop_tables(sync_conn) -> list[str]:
    return list(sync_conn.execute(text(
        """
        SELECT c.relname FROM pg_class c
        JOIN pg_namespace n ON n.oid = c.relnamespace AND n.nspname = current_schema()
        JOIN pg_attribute a ON a.attrelid = c.oid AND a.attname = :col AND NOT a.attisdropped
        WHERE c.relkind IN ('r', 'p') AND NOT c.relispartition
          AND NOT EXISTS (SELECT 1 FROM pg_dist_partition p WHERE p.logicalrelid = c.oid)
        ORDER BY c.relname
        """), {"col": DISTRIBUTION_COLUMN}).scalars())


def _parents(sync_conn, table: str) -> set[str]:
    return set(sync_conn.execute(text(
        """
        SELECT DISTINCT f.relname FROM pg_constraint k
        JOIN pg_class c ON c.oid = k.conrelid JOIN pg_class f ON f.oid = k.confrelid
        WHERE k.contype = 'f' AND c.relname = :t AND f.relname <> :t
        """), {"t": table}).scalars())


def distribute_new_tables(sync_conn) -> list[str]:
    """Distribute every local table with a shop_id (parents first); returns the tables distributed."""
    pending = _local_shop_tables(sync_conn)
    done: list[str] = []
    parents = {t: _parents(sync_conn, t) & set(pending) for t in pending}
    while pending:
        ready = [t for t in pending if not (parents[t] - set(done))]
        if ANCHOR in ready:
            ready = [ANCHOR]
        if not ready:
            raise RuntimeError(f"foreign keys between {pending} form a cycle: cannot distribute them in order")
        for table in ready:
            anchored = table != ANCHOR and sync_conn.execute(text(
                "SELECT 1 FROM pg_dist_partition WHERE logicalrelid = CAST(:t AS regclass)"), {"t": ANCHOR}).first()
            sync_conn.execute(text(
                "SELECT create_distributed_table(:t, :col, colocate_with => :with)"),
                {"t": table, "col": DISTRIBUTION_COLUMN, "with": ANCHOR if anchored else "default"})
            pending.remove(table)
            done.append(table)
    return done


def distribute_now(sync_conn) -> None:
    """In a revision that fills a table it just created: distribute it first on Citus (nothing on PostgreSQL),
    so its rows go straight to the shards."""
    if is_citus(sync_conn):
        distribute_new_tables(sync_conn)


# ---------------------------------------------------------------- a fresh database on every node
async def _exec(url: str, *statements: str) -> list:
    from store.database import create_engine

    eng = create_engine(url, isolation_level="AUTOCOMMIT", pool_size=1, max_overflow=0)
    try:
        async with eng.connect() as c:
            out = []
            for s in statements:
                r = await c.execute(text(s))
                out.append(r.fetchall() if r.returns_rows else None)
            return out
    finally:
        await eng.dispose()


async def workers(admin_url: str) -> list[tuple[str, int]]:
    """The primary worker nodes the database `admin_url` knows as a Citus coordinator (empty: plain PostgreSQL)."""
    has = (await _exec(admin_url, "SELECT 1 FROM pg_extension WHERE extname = 'citus'"))[0]
    if not has:
        return []
    rows = (await _exec(admin_url, "SELECT nodename, nodeport FROM pg_catalog.pg_dist_node "
                                   "WHERE groupid <> 0 AND noderole = 'primary' AND isactive ORDER BY nodeid"))[0]
    return [(r[0], int(r[1])) for r in rows]


def _on(url: str, host: str, port: int, database: str) -> str:
    return make_url(url).set(host=host, port=port, database=database, query={}).render_as_string(
        hide_password=False)


async def create_database(admin_url: str, name: str) -> str:
    """CREATE DATABASE `name` beside the database of `admin_url`; returns the new database's URL.

    When `admin_url` is a Citus coordinator's database (the extension installed and workers added), the
    database is created on each worker too, gets the extension on every node, and the coordinator's copy
    is told its workers: Citus propagates neither CREATE DATABASE nor node membership."""
    u = make_url(admin_url)
    nodes = await workers(admin_url)
    for host, port in nodes:
        await _exec(_on(admin_url, host, port, u.database or "postgres"), f'CREATE DATABASE "{name}"')
        await _exec(_on(admin_url, host, port, name), "CREATE EXTENSION IF NOT EXISTS citus")
    await _exec(admin_url, f'CREATE DATABASE "{name}"')
    url = u.set(database=name).render_as_string(hide_password=False)
    if nodes:
        await _exec(url, "CREATE EXTENSION IF NOT EXISTS citus",
                    f"SELECT citus_set_coordinator_host('{u.host or '127.0.0.1'}', {u.port or 5432})",
                    *[f"SELECT citus_add_node('{host}', {port})" for host, port in nodes])
    return url


async def drop_database(admin_url: str, name: str, nodes: list[tuple[str, int]] | None = None) -> None:
    """Drop `name` on the coordinator first (it holds connections to the workers), then on each worker
    (`nodes`: the workers `create_database` used; looked up again when not given)."""
    u = make_url(admin_url)
    nodes = await workers(admin_url) if nodes is None else nodes
    await _exec(admin_url, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    for host, port in nodes:
        await _exec(_on(admin_url, host, port, u.database or "postgres"),
                    f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
