"""On Citus, every statement about one shop routes to the one shard holding that shop (docs/sharding.md).

Runs only on a cluster (`python3 tasks.py test --citus URL`). A broad scenario of one shop (group buy,
plain order, commissions, refund, payout, settlement close, webhook delivery, the event feed and the
reads of the API) is recorded statement by statement with its parameters, and each distinct statement is
EXPLAINed on the coordinator: its plan must be one Citus task ("Task Count: 1") with no subplan pulled
through the coordinator. The only statements allowed to span shards are the worker's discovery reads
(`SELECT DISTINCT shop_id FROM …`), which lock nothing.
"""

from __future__ import annotations

import re
from contextlib import contextmanager
from datetime import date, datetime, timedelta, timezone

import httpx
from sqlalchemy import event, text

from engine.distribution import DistributorStatus
from service.usecases import distribution, groups, orders, payouts, settlements, shops, webhooks
from service.jobs import feed, worker
from service.reads import queries
from tests.conftest import citus_only
from tests.integration.helpers import make_campaign, pay

pytestmark = citus_only

DISCOVERY = re.compile(r"\s*SELECT DISTINCT shop_id FROM \w+")
NOT_PLANNED = re.compile(r"\s*(BEGIN|COMMIT|ROLLBACK|SAVEPOINT|RELEASE|SET|SHOW|select pg_|SELECT pg_)", re.I)


@contextmanager
def recorded(svc):
    seen: dict[str, tuple] = {}

    def record(conn, cursor, statement, parameters, context, executemany):
        if executemany and parameters and isinstance(parameters[0], (tuple, list)):
            parameters = parameters[0]  # one row of a plain executemany (a multi-row VALUES is one flat tuple)
        seen.setdefault(statement, parameters)

    event.listen(svc.engine.sync_engine, "before_cursor_execute", record)
    try:
        yield seen
    finally:
        event.remove(svc.engine.sync_engine, "before_cursor_execute", record)


async def _scenario(svc, shop_id: str) -> None:
    await shops.update_settings(svc, shop_id=shop_id, payout_fee_bp=100)
    await distribution.set_status(
        svc, shop_id=shop_id, user_id="d1", status=DistributorStatus.ACTIVE, actor="t", reason="t"
    )
    await distribution.bind_referrer(svc, shop_id=shop_id, user_id="b1", referrer_id="d1")
    o = await orders.report_order(
        svc, shop_id=shop_id, external_id="o1", buyer_id="b1", lines=[orders.LineInput("p", 1, 10_000)]
    )
    await pay(svc, shop_id, o.order_id, amount=10_000)
    await orders.complete_order(svc, shop_id=shop_id, order_id=o.order_id)
    c = await make_campaign(svc, shop_id, tiers=[(2, 8_000)])
    g = await groups.open_group(svc, shop_id=shop_id, campaign_id=c.campaign_id, user_id="lead")
    await pay(svc, shop_id, g)
    m = await groups.join_group(svc, shop_id=shop_id, group_id=g.group_id, user_id="b1")
    await pay(svc, shop_id, m)
    g2 = await groups.open_group(svc, shop_id=shop_id, campaign_id=c.campaign_id, user_id="late")
    await pay(svc, shop_id, g2)
    svc.clock.advance(timedelta(days=8))
    await worker.run_due(svc, shop_id=shop_id)  # g2 fails: refund owed (GB-8), lines voided or released
    await orders.refund_order(svc, shop_id=shop_id, order_id=o.order_id, amount=4_000, provider_ref="rf1")
    p = await payouts.request_payout(svc, shop_id=shop_id, user_id="d1", amount=500)
    await payouts.decide_payout(
        svc, shop_id=shop_id, payout_id=p.payout_id, approve=True, actor="fin", external_ref="bank-1"
    )
    svc.clock.set(datetime(2026, 3, 1, tzinfo=timezone.utc))
    await settlements.close_period(
        svc, shop_id=shop_id, day_from=date(2026, 1, 1), day_to=date(2026, 2, 1), actor="fin"
    )
    ep = await webhooks.register_endpoint(svc, shop_id=shop_id, url="http://127.0.0.1:9/hook")
    o2 = await orders.report_order(
        svc, shop_id=shop_id, external_id="o2", buyer_id="b2", lines=[orders.LineInput("p", 1, 1_000)]
    )
    await pay(svc, shop_id, o2.order_id, amount=1_000)
    async with httpx.AsyncClient(transport=httpx.MockTransport(lambda r: httpx.Response(200))) as client:
        await webhooks.deliver_due(svc, client=client)
    await webhooks.enable_endpoint(svc, shop_id=shop_id, endpoint_id=ep.endpoint_id)
    await feed.sequence_all(svc)
    evs = await webhooks.events_since_caught_up(svc, shop_id=shop_id)
    await webhooks.events_since_caught_up(
        svc, shop_id=shop_id, after=webhooks.event_position(evs[0]), types=["order.paid"]
    )
    await queries.page_events_caught_up(svc, shop_id=shop_id, types=None, limit=5, after=(1,))
    await queries.page_refunds(svc, shop_id=shop_id, state="OWED", rule=None, limit=10, after=None)
    await queries.page_orders_caught_up(svc, shop_id=shop_id, buyer_id="b1", limit=10, offset=0)
    await queries.page_commission_lines(svc, shop_id=shop_id, beneficiary_id="d1", limit=10, offset=0)
    await queries.page_deliveries(svc, shop_id=shop_id, endpoint_id=ep.endpoint_id, state=None, limit=10, after=None)
    await queries.distributor_metrics(svc, shop_id=shop_id, user_id="d1")
    await queries.groups_by_ids_caught_up(svc, shop_id=shop_id, ids=[g.group_id, g2.group_id])


def _literal(v) -> str:
    if v is None:
        return "NULL"
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, (int, float)):
        return str(v)
    if isinstance(v, (list, tuple)):
        return "ARRAY[" + ", ".join(_literal(x) for x in v) + "]" if v else "'{}'"
    if isinstance(v, datetime):  # typed: an untyped literal in a CASE or a select list would be text
        return f"CAST('{v.isoformat()}' AS {'timestamptz' if v.tzinfo else 'timestamp'})"
    if isinstance(v, date):
        return f"CAST('{v.isoformat()}' AS date)"
    return "'" + str(v).replace("'", "''") + "'"


def _inline(statement: str, parameters) -> str:
    """The statement with its $n parameters written in as literals: Citus plans a bound EXPLAIN as a generic
    plan it cannot always build, the values are what decides the shard."""
    for n in range(len(parameters or ()), 0, -1):
        statement = statement.replace(f"${n}", _literal(parameters[n - 1]))
    return statement


async def _plan(svc, statement: str, parameters) -> str:
    async with svc.engine.connect() as c:
        rows = await c.exec_driver_sql("EXPLAIN (COSTS OFF) " + _inline(statement, parameters))
        return "\n".join(r[0] for r in rows)


TASK = re.compile(r"->  Task\n\s*Node: host=(\S+) port=(\d+)")
SHARD_SCAN = re.compile(r"(Scan|Insert|Update|Delete)( using \w+)? on \w+_\d{6,}\b")
CTE_WRITE = re.compile(r"\s*WITH\s+\w+\s+AS\s+(MATERIALIZED\s+)?\(\s*(INSERT|UPDATE|DELETE)\b", re.I)


def _tasks(plan: str) -> list[tuple[str, str]]:
    """(node, the task's plan) for each task of a Citus plan."""
    parts = TASK.split(plan)
    return [(f"{parts[i]}:{parts[i + 1]}", parts[i + 2]) for i in range(1, len(parts) - 2, 3)]


def _one_node(plan: str, coordinator_port: int) -> bool:
    """Every task of the plan has Task Count 1 and runs on one and the same worker; a task on the coordinator
    only reads the statement's own intermediate results (no shard of its)."""
    counts = [int(n) for n in re.findall(r"Task Count: (\d+)", plan)]
    tasks = _tasks(plan)
    workers = {n for n, _ in tasks if not n.endswith(f":{coordinator_port}")}
    local_ok = all(not SHARD_SCAN.search(p) for n, p in tasks if n.endswith(f":{coordinator_port}"))
    return (
        bool(counts)
        and all(n == 1 for n in counts)
        and len(workers) == 1
        and local_ok
        and "pull to coordinator" not in plan
    )  # pulled rows go back to the shard by COPY, with 2PC


def _router(plan: str) -> bool:
    """One Citus task, planned by the router: nothing planned apart and nothing pulled through the coordinator."""
    counts = [int(n) for n in re.findall(r"Task Count: (\d+)", plan)]
    return counts == [1] and "Distributed Subplan" not in plan and "pull to coordinator" not in plan


async def test_every_one_shop_statement_routes_to_one_shard(svc, shop, server_url):
    """Plain statements are router plans (one task). A single-statement write (`WITH w0 AS (INSERT …), w1 AS
    (UPDATE …) SELECT …`: service/lean.py, LedgerBatch, service/orders.py) cannot be: Citus 13 router-plans only
    SELECT, UPDATE and DELETE in a CTE, so it runs each INSERT part as a subplan of its own. Every part is then
    one task on the shop's node (an INSERT … SELECT of arrays selects them beside the shop's row, so it is
    colocated rather than pulled through the coordinator), and what the coordinator runs itself only reads the
    parts' results: one node, no shard of another shop, no two-phase commit (next test)."""
    from sqlalchemy.engine import make_url

    coordinator_port = make_url(server_url).port or 5432
    with recorded(svc) as seen:
        await _scenario(svc, shop.shop_id)
    spanning, planned, cte_writes = [], 0, 0
    for statement, parameters in seen.items():
        if NOT_PLANNED.match(statement) or DISCOVERY.match(statement):
            continue
        plan = await _plan(svc, statement, parameters)
        if CTE_WRITE.match(statement):
            cte_writes += 1
            ok = _one_node(plan, coordinator_port)
        else:
            ok = _router(plan)
        if not ok:
            spanning.append((statement, plan))
        planned += 1
    assert planned > 50, f"only {planned} statements recorded: the scenario did not run"
    assert cte_writes >= 8, f"only {cte_writes} single-statement writes recorded: the lean paths did not run"
    assert spanning == [], "\n\n".join(f"{s}\n--\n{p}" for s, p in spanning)


def test_the_plan_checks_tell_one_node_from_several():
    """The two checks above on plans as Citus prints them (so a change of format cannot pass them vacuously)."""
    one = (
        "Custom Scan (Citus Adaptive)\n  ->  Distributed Subplan 1_1\n    ->  Custom Scan (Citus Adaptive)\n"
        "          Task Count: 1\n          ->  Task\n                Node: host=127.0.0.1 port=9701 dbname=x\n"
        "                ->  Insert on users_102491 citus_table_alias\n  Task Count: 1\n  ->  Task\n"
        "        Node: host=localhost port=9700 dbname=x\n        ->  Function Scan on read_intermediate_result\n"
    )
    assert _one_node(one, 9700) and not _router(one)
    assert not _one_node(one.replace("port=9701", "port=9702", 1) + one, 9700)  # two workers
    assert not _one_node(
        one.replace("Function Scan on read_intermediate_result", "Seq Scan on orders_102331 o"), 9700
    )  # the coordinator reads a shard
    assert not _one_node(one.replace("Task Count: 1", "Task Count: 32", 1), 9700)
    assert not _one_node(
        one.replace(
            "Custom Scan (Citus Adaptive)\n          Task",
            "Custom Scan (Citus INSERT ... SELECT)\n INSERT/SELECT method: pull to coordinator\n          Task",
        ),
        9700,
    )
    router = "Custom Scan (Citus Adaptive)\n  Task Count: 1\n  ->  Task\n    Node: host=127.0.0.1 port=9702 dbname=x\n"
    assert _router(router) and not _router(router.replace("Task Count: 1", "Task Count: 32"))


async def test_a_one_shop_transaction_commits_on_one_node_without_two_phase_commit(svc, shop):
    """The statements of a use case route to the shop's node, so its COMMIT is a plain one there: no
    prepared transaction is left to recover (Citus records each 2PC in pg_dist_transaction)."""

    async def prepared() -> set[str]:  # the maintenance daemon removes recovered ones: compare the sets
        async with svc.engine.connect() as c:
            return set((await c.execute(text("SELECT gid FROM pg_dist_transaction"))).scalars())

    before = await prepared()
    await _scenario(svc, shop.shop_id)
    assert await prepared() - before == set()


async def test_every_table_is_distributed_by_shop_id_and_colocated(svc):
    """Every table of shop data; the tables that are not (store.models.NOT_SHOP_DATA) stay on the coordinator."""
    from store.models import NOT_SHOP_DATA

    async with svc.engine.connect() as c:
        local = (
            (
                await c.execute(
                    text(
                        "SELECT relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
                        "WHERE n.nspname = 'public' AND c.relkind = 'r' AND relname <> 'alembic_version' "
                        "AND c.oid NOT IN (SELECT logicalrelid FROM pg_dist_partition)"
                    )
                )
            )
            .scalars()
            .all()
        )
        groups_ = (
            await c.execute(
                text(
                    "SELECT count(DISTINCT colocationid), count(*), bool_and(column_to_column_name(logicalrelid, partkey) "
                    "= 'shop_id') FROM pg_dist_partition"
                )
            )
        ).one()
    assert set(local) == NOT_SHOP_DATA
    assert groups_[0] == 1 and groups_[1] >= 30 and groups_[2]
    # a shard is named `<table>_<shard id>`: trigger functions take the table's name by stripping that (0019)
    assert not [t for t in local if re.search(r"_[0-9]+$", t)]
    async with svc.engine.connect() as c:
        names = (await c.execute(text("SELECT logicalrelid::text FROM pg_dist_partition"))).scalars().all()
    assert not [t for t in names if re.search(r"_[0-9]+$", t)]


_ACLS = """
SELECT 'relation ' || c.relname, COALESCE(c.relacl::text, '') FROM pg_class c
  JOIN pg_namespace n ON n.oid = c.relnamespace AND n.nspname = 'public'
 WHERE c.relkind IN ('r', 'p', 'S', 'v') AND c.relname NOT LIKE 'citus\\_%'
   AND c.oid NOT IN (SELECT logicalrelid FROM pg_dist_partition WHERE false)
UNION ALL
SELECT 'column ' || c.relname || '.' || a.attname, a.attacl::text FROM pg_attribute a
  JOIN pg_class c ON c.oid = a.attrelid JOIN pg_namespace n ON n.oid = c.relnamespace AND n.nspname = 'public'
 WHERE a.attacl IS NOT NULL AND c.relkind IN ('r', 'p')
UNION ALL
SELECT 'function ' || p.oid::regprocedure::text, COALESCE(p.proacl::text, '') || ' ' || p.prosecdef
  FROM pg_proc p WHERE p.pronamespace = 'public'::regnamespace AND p.proname LIKE 'sharecart\\_%'
UNION ALL
SELECT 'schema public', COALESCE(nspacl::text, '') FROM pg_namespace WHERE nspname = 'public'
UNION ALL
SELECT 'member ' || r.rolname || ' of ' || g.rolname, '' FROM pg_auth_members m
  JOIN pg_roles r ON r.oid = m.member JOIN pg_roles g ON g.oid = m.roleid WHERE g.rolname LIKE 'sharecart\\_%'
"""


async def test_every_node_grants_the_runtime_role_what_the_coordinator_does(svc, database_url, server_url):
    """The service connects as a member of sharecart_app (0011, store/roles.py); a statement routed to a shard runs
    on a worker as that role, so each worker must hold the same roles, memberships and grants on the tables, their
    columns, the identity sequences (store.citus.sync_sequence_grants) and the functions as the coordinator."""
    from sqlalchemy.engine import make_url

    from store import citus
    from store.database import create_engine

    async def acls(url: str) -> dict[str, str]:
        eng = create_engine(url, pool_size=1, max_overflow=0)
        try:
            async with eng.connect() as c:
                return dict((await c.execute(text(_ACLS))).all())
        finally:
            await eng.dispose()

    here = await acls(database_url)
    nodes = await citus.workers(server_url)
    assert len(nodes) >= 1 and any("sharecart_app=" in v for k, v in here.items() if k.endswith("_seq_seq"))
    for host, port in nodes:
        there = await acls(make_url(database_url).set(host=host, port=port).render_as_string(hide_password=False))
        local = {k for k in here if k.startswith(("relation alembic_version", "relation worker_heartbeats"))}
        assert {k: v for k, v in there.items() if k not in local} == {k: v for k, v in here.items() if k not in local}
