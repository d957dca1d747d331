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
- `sync_sequence_grants`: Citus propagates GRANT and REVOKE on distributed tables (and roles, and role
  membership) from the coordinator to every node, but not on the sequences of identity columns: each worker
  has its own copy of such a sequence (a statement routed to a shard takes its numbers there), which keeps
  its owner's privileges only. The migration environment calls it at the end of every migration run, so
  every worker's sequences grant what the coordinator's do (the runtime role of 0011 needs USAGE on them).
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
    return list(
        sync_conn.execute(
            text(
                """
        SELECT c.relname FROM pg_class c
        JOIN pg_namespace n ON n.oid = c.relnamespace AND n.nspname = current_schema()
        JOIN pg_attribute a ON a.attrelid = c.oid AND a.attname = :col AND NOT a.attisdropped
        WHERE c.relkind IN ('r', 'p') AND NOT c.relispartition
          AND NOT EXISTS (SELECT 1 FROM pg_dist_partition p WHERE p.logicalrelid = c.oid)
        ORDER BY c.relname
        """
            ),
            {"col": DISTRIBUTION_COLUMN},
        ).scalars()
    )


def _parents(sync_conn, table: str) -> set[str]:
    return set(
        sync_conn.execute(
            text(
                """
        SELECT DISTINCT f.relname FROM pg_constraint k
        JOIN pg_class c ON c.oid = k.conrelid JOIN pg_class f ON f.oid = k.confrelid
        WHERE k.contype = 'f' AND c.relname = :t AND f.relname <> :t
        """
            ),
            {"t": table},
        ).scalars()
    )


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
            anchored = (
                table != ANCHOR
                and sync_conn.execute(
                    text("SELECT 1 FROM pg_dist_partition WHERE logicalrelid = CAST(:t AS regclass)"), {"t": ANCHOR}
                ).first()
            )
            sync_conn.execute(
                text("SELECT create_distributed_table(:t, :col, colocate_with => :with)"),
                {"t": table, "col": DISTRIBUTION_COLUMN, "with": ANCHOR if anchored else "default"},
            )
            pending.remove(table)
            done.append(table)
    return done


def distribute_now(sync_conn) -> None:
    """In a revision that fills a table it just created: distribute it first on Citus (nothing on PostgreSQL),
    so its rows go straight to the shards."""
    if is_citus(sync_conn):
        distribute_new_tables(sync_conn)


_SEQUENCE_ACLS = """
SELECT n.nspname, c.relname, a.grantee, a.is_grantable, string_agg(a.privilege_type, ', ' ORDER BY a.privilege_type)
FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace AND n.nspname = current_schema()
LEFT JOIN LATERAL aclexplode(c.relacl) a ON a.grantee <> c.relowner
WHERE c.relkind = 'S'
GROUP BY n.nspname, c.relname, a.grantee, a.is_grantable
ORDER BY c.relname, a.grantee
"""


def _grantee(sync_conn, oid: int) -> str:
    if oid == 0:
        return "PUBLIC"
    return sync_conn.execute(text("SELECT quote_ident(rolname) FROM pg_roles WHERE oid = :o"), {"o": oid}).scalar_one()


def sequence_grants_sql(sync_conn) -> list[str]:
    """One statement per sequence of the current schema, for a worker: revoke what anyone but the owner holds
    there, then grant what the coordinator grants (nothing when the worker has no such sequence)."""
    grants: dict[str, list[str]] = {}
    for nsp, rel, grantee, grantable, privileges in sync_conn.execute(text(_SEQUENCE_ACLS)):
        name = sync_conn.execute(
            text("SELECT format('%I.%I', CAST(:n AS text), CAST(:r AS text))"), {"n": nsp, "r": rel}
        ).scalar_one()
        grants.setdefault(name, [])
        if grantee is not None:
            grants[name].append(
                f"GRANT {privileges} ON SEQUENCE {name} TO {_grantee(sync_conn, grantee)}"
                + (" WITH GRANT OPTION" if grantable else "")
                + ";"
            )
    out = []
    for name, statements in grants.items():
        literal = "'" + name.replace("'", "''") + "'"
        out.append(f"""DO $sync$
DECLARE g text;
BEGIN
    IF to_regclass({literal}) IS NULL THEN RETURN; END IF;
    FOR g IN SELECT DISTINCT CASE WHEN a.grantee = 0 THEN 'PUBLIC' ELSE quote_ident(pg_get_userbyid(a.grantee)) END
             FROM pg_class c CROSS JOIN aclexplode(c.relacl) a
             WHERE c.oid = CAST({literal} AS regclass) AND a.grantee <> c.relowner LOOP
        EXECUTE format('REVOKE ALL ON SEQUENCE %s FROM %s', {literal}, g);
    END LOOP;
    {" ".join(statements)}
END $sync$""")
    return out


def sync_sequence_grants(sync_conn) -> int:
    """On Citus: make every worker's sequences of the current schema grant what the coordinator's do (see the
    module's docstring); returns the number of statements sent to each worker (0 on PostgreSQL). Runs through
    `run_command_on_workers`, which commits on each worker by itself: call it after the migrations committed."""
    if not is_citus(sync_conn):
        return 0
    statements = sequence_grants_sql(sync_conn)
    for sql in statements:
        for node, port, ok, result in sync_conn.execute(
            text("SELECT nodename, nodeport, success, result FROM run_command_on_workers(:sql)"), {"sql": sql}
        ):
            if not ok:
                raise RuntimeError(f"granting on the sequences of {node}:{port} failed: {result}")
    return len(statements)


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
    rows = (
        await _exec(
            admin_url,
            "SELECT nodename, nodeport FROM pg_catalog.pg_dist_node "
            "WHERE groupid <> 0 AND noderole = 'primary' AND isactive ORDER BY nodeid",
        )
    )[0]
    return [(r[0], int(r[1])) for r in rows]


def _on(url: str, host: str, port: int, database: str) -> str:
    return make_url(url).set(host=host, port=port, database=database, query={}).render_as_string(hide_password=False)


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
        await _exec(
            url,
            "CREATE EXTENSION IF NOT EXISTS citus",
            f"SELECT citus_set_coordinator_host('{u.host or '127.0.0.1'}', {u.port or 5432})",
            *[f"SELECT citus_add_node('{host}', {port})" for host, port in nodes],
        )
    return url


async def drop_database(admin_url: str, name: str, nodes: list[tuple[str, int]] | None = None) -> None:
    """Drop `name` on the coordinator first (it holds connections to the workers), then on each worker
    (`nodes`: the workers `create_database` used; looked up again when not given)."""
    u = make_url(admin_url)
    nodes = await workers(admin_url) if nodes is None else nodes
    await _exec(admin_url, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    for host, port in nodes:
        await _exec(
            _on(admin_url, host, port, u.database or "postgres"), f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'
        )
