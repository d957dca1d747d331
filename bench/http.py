"""Issue 10's table over real HTTP + GraphQL, every figure a ratio or a latency measured in this run.

    DATABASE_URL=postgresql://postgres@127.0.0.1:5432/test .venv/bin/python bench/http.py \
        [--seconds 5] [--clients 8,32] [--server-workers N] [--due-groups 20000] [--only-due] [--due-workers 2] [--json FILE]
        [--only-joins | --only-page [--profile-server FILE] [--no-server-worker]]

What it does, in a database of its own on the DATABASE_URL server (created, migrated, dropped at the end):
- seeds a shop, campaigns and open groups (one group through the service, then cloned by SQL: thousands of
  groups in a second), mints every customer token in-process (one customer per join, never reused);
- starts `sharecart serve` (and, for the storefront figure, `bench/reference_storefront.py`) on free
  loopback ports and drives them with Debian's `wrk` and `bench/wrk/graphql.lua` (C, two threads: it does
  not eat the server's CPU the way a Python client would);
- runs `../shared/tools/pg-baseline` (join-hot, join-spread) on the same server at the same client counts;
- times strawberry against raw graphql-core on the same schema and document, in-process;
- stops the server, makes `--due-groups` groups due at once and times `--due-workers` `sharecart worker`
  processes clearing them, then checks that none was missed.

Needs `wrk` (Debian: `apt-get install wrk`) and
`pgbench` (postgresql-client) for the baseline. Speeds are reported, never asserted: not part of the suite.
"""

from __future__ import annotations

import sys
from pathlib import Path

# Run as a script, this file's folder comes first on sys.path, and this file's name would shadow the
# standard library's `http` package (httpx and pyjwt import http.client): drop that entry.
if sys.path and Path(sys.path[0]).resolve() == Path(__file__).resolve().parent:
    sys.path.pop(0)

import argparse
import asyncio
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from datetime import timedelta

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.joins import baseline, find_baseline  # noqa: E402
from bench.scratch import scratch_database  # noqa: E402
from store.database import to_libpq  # noqa: E402

LUA = ROOT / "bench" / "wrk" / "graphql.lua"
BIN = Path(sys.executable).parent

# The "today" column (2-core machine, quiet, 8 clients) and its goals.
TODAY = {
    "spread": 0.011,
    "hot": 0.023,
    "join_p50_ms": 32.0,
    "open_p50_ms": 29.0,
    "confirm_p50_ms": 40.0,
    "typename_auth_ms": 5.3,
    "typename_anon_ms": 1.5,
    "p99_ms": 365.0,
}

JOIN = (
    "mutation J($g: ID!) { joinGroup(input: {groupId: $g}) { errors { code } amountToPay currency "
    "order { id state } group { id seatsLeft seatsHeld } } }"
)
OPEN = (
    "mutation O($c: ID!) { openGroup(input: {campaignId: $c}) { errors { code } amountToPay "
    "order { id } group { id state } } }"
)
CONFIRM = (
    "mutation P($o: ID!, $a: MinorUnits!, $r: String!) { confirmPayment(input: {orderId: $o, amount: $a, "
    "providerRef: $r}) { errors { code } accepted replayed order { id state paidAmount } } }"
)
TYPENAME = "{ __typename }"
STOREFRONT = (
    "query Page($id: ID!) { campaign(id: $id) { id title listPrice currency stockLeft "
    "tiers { members unitPrice } openGroups(first: 10) { totalCount edges { node { id seatsLeft "
    "seatsHeld expiresAt secondsLeft } } } } }"
)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def body(query: str, variables: dict | None = None) -> str:
    return json.dumps({"query": query, "variables": variables or {}})


class Process:
    """A child process in its own process group, stopped (with all its children) by SIGTERM then SIGKILL."""

    def __init__(self, argv: list[str], env: dict, log: Path):
        self.log = open(log, "wb")
        self.p = subprocess.Popen(argv, env=env, stdout=self.log, stderr=subprocess.STDOUT, start_new_session=True)

    def stop(self) -> None:
        if self.p.poll() is None:
            os.killpg(self.p.pid, signal.SIGTERM)
            try:
                self.p.wait(15)
            except subprocess.TimeoutExpired:
                os.killpg(self.p.pid, signal.SIGKILL)
                self.p.wait()
        self.log.close()


def wait_http(port: int, path: str = "/health", timeout: float = 90) -> None:
    import httpx

    deadline = time.time() + timeout
    while time.time() < deadline:
        try:
            if httpx.get(f"http://127.0.0.1:{port}{path}", timeout=1).status_code < 500:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    raise SystemExit(f"bench/http.py: nothing answered on port {port} within {timeout}s")


def wrk(
    port: int, *, seconds: float, clients: int, tokens: Path | None, bodies: Path, token_mode="each", body_mode="random"
) -> dict:
    threads = min(2, clients)
    argv = [
        "wrk",
        "-t",
        str(threads),
        "-c",
        str(clients),
        "-d",
        f"{max(1, round(seconds))}s",
        "--timeout",
        "10s",
        "-s",
        str(LUA),
        f"http://127.0.0.1:{port}",
        "--",
        str(tokens or "-"),
        str(bodies),
        str(threads),
        token_mode,
        body_mode,
        str(secrets.randbelow(1 << 30)),
    ]
    done = subprocess.run(argv, capture_output=True, text=True)
    if done.returncode:
        raise SystemExit(f"bench/http.py: wrk failed: {done.stderr or done.stdout}")
    out = done.stdout
    r = json.loads(next(line for line in out.splitlines() if line.startswith("{")))
    r["rate"] = r["ok"] / (r["duration_us"] / 1e6)
    r["p50_ms"], r["p99_ms"] = r["p50_us"] / 1000, r["p99_us"] / 1000
    return r


class Bench:
    def __init__(self, url: str, a, work: Path):
        self.url, self.a, self.work = url, a, work
        self.libpq = to_libpq(url)
        # small pools: the server's max_connections is shared with everything else on the machine
        self.env = {
            **os.environ,
            "DATABASE_URL": self.libpq,
            "SHARECART_DB_POOL": str(a.pool),
            "SHARECART_DB_OVERFLOW": "2",
        }
        self.conn = None
        self.notes: list[str] = []
        self.n_tokens = 0

    # ------------------------------------------------------------ seeding
    async def seed(self) -> None:
        from api.auth import mint_token
        from service.usecases import campaigns, groups, orders, shops
        from service.context import Services
        from store.database import create_engine

        engine = create_engine(self.url, pool_size=2)
        svc = Services(engine=engine)
        self.shop = shop = await shops.create_shop(
            svc, shop_id=f"bench-{secrets.token_hex(3)}", name="bench", currency="CNY"
        )
        now = svc.now()
        window = dict(
            duration=timedelta(days=1),
            payment_window=timedelta(hours=1),
            starts_at=now - timedelta(minutes=1),
            ends_at=now + timedelta(days=3),
        )
        self.spread_c = await campaigns.create_campaign(
            svc, shop_id=shop.shop_id, product_ref="sku-5", title="five", list_price=1000, tiers=[(5, 900)], **window
        )
        self.hot_c = await campaigns.create_campaign(
            svc,
            shop_id=shop.shop_id,
            product_ref="sku-hot",
            title="hot",
            list_price=1000,
            tiers=[(self.a.hot_capacity, 800)],
            **window,
        )

        async def opened(c, user: str, paid: bool = True):
            seat = await groups.open_group(svc, shop_id=shop.shop_id, campaign_id=c.campaign_id, user_id=user)
            if paid:
                await orders.confirm_payment(
                    svc, shop_id=shop.shop_id, order_id=seat.order_id, amount=seat.amount, provider_ref=f"seed-{user}"
                )
            return seat

        self.spread_t = await opened(self.spread_c, "leader-spread")
        self.hot_t = await opened(self.hot_c, "leader-hot")
        self.due_pending_t = await opened(self.spread_c, "leader-due-pending", paid=False)
        self.due_open_t = await opened(self.spread_c, "leader-due-open")
        await engine.dispose()
        self.mint = lambda user, roles: mint_token(shop, user, roles, 6 * 3600)
        self.backend = self.mint("bench-backend", ["backend"])
        self.spread_ids = await self.clone_groups(self.spread_t, self.a.groups, "s")
        self.hot_ids = await self.clone_groups(self.hot_t, self.a.hot_groups, "h")

    async def sql(self, *statements: str, fetch: str | None = None):
        """On one connection kept for the whole run (connections are scarce on a shared server)."""
        import asyncpg

        if self.conn is None:
            self.conn = await asyncpg.connect(self.libpq)
        for st in statements:
            await self.conn.execute(st)
        return await self.conn.fetch(fetch) if fetch else None

    async def clone_groups(self, seat, n: int, tag: str, *, set_group: str = "") -> list[str]:
        """n copies of the template group (rows of groups, seats, orders, order_lines), ids suffixed _<tag><i>."""

        sid, gid = self.shop.shop_id, seat.group_id
        suffix = f"'_{tag}' || i"
        await self.sql()
        c = self.conn
        if True:

            async def copy(table: str, where: str, replace: dict[str, str]) -> None:
                cols = [
                    r[0]
                    for r in await c.fetch(
                        "SELECT column_name FROM information_schema.columns WHERE table_name = $1 "
                        "AND is_generated = 'NEVER' AND identity_generation IS NULL ORDER BY ordinal_position",
                        table,
                    )
                ]
                exprs = [replace.get(col, col) for col in cols]
                await c.execute(
                    f"INSERT INTO {table} ({', '.join(cols)}) SELECT {', '.join(exprs)} FROM {table}, "
                    f"generate_series(1, {n}) i WHERE shop_id = '{sid}' AND {where}"
                )

            async with c.transaction():
                g = {"group_id": f"group_id || {suffix}"}
                await copy("groups", f"group_id = '{gid}'", g)
                await copy("seats", f"group_id = '{gid}'", {**g, "order_id": f"order_id || {suffix}"})
                await copy(
                    "orders",
                    f"group_id = '{gid}'",
                    {**g, "order_id": f"order_id || {suffix}", "external_id": f"external_id || {suffix}"},
                )
                await copy(
                    "order_lines",
                    f"order_id IN (SELECT order_id FROM orders WHERE shop_id = '{sid}' AND group_id = '{gid}')",
                    {"order_id": f"order_id || {suffix}"},
                )
                if set_group:
                    await c.execute(
                        f"UPDATE groups SET {set_group} WHERE shop_id = '{sid}' AND group_id LIKE '{gid}\\_{tag}%'"
                    )
            await c.execute("ANALYZE groups; ANALYZE seats; ANALYZE orders")
        return [f"{gid}_{tag}{i}" for i in range(1, n + 1)]

    def tokens(self, n: int, roles=("customer",)) -> Path:
        self.n_tokens += 1
        path = self.work / f"tokens-{self.n_tokens}.txt"
        path.write_text("".join(self.mint(f"u{self.n_tokens}-{i}", list(roles)) + "\n" for i in range(n)))
        return path

    def bodies(self, name: str, lines: list[str], headers: dict | None = None) -> Path:
        path = self.work / f"{name}.txt"
        path.write_text(
            "".join(f"#H {k}: {v}\n" for k, v in (headers or {}).items()) + "".join(x + "\n" for x in lines)
        )
        return path

    # ------------------------------------------------------------ the runs
    def start_server(self) -> int:
        port = free_port()
        argv = [str(BIN / "sharecart"), "serve", "--host", "127.0.0.1", "--port", str(port), "--no-demo"]
        if self.a.server_workers:
            argv += ["--workers", str(self.a.server_workers)]
        if self.a.no_server_worker:
            argv += ["--no-worker"]
        self.server = Process(argv, self.env, self.work / "serve.log")
        wait_http(port)
        return port

    async def run_http(self) -> dict:
        from api.relay import global_id

        a, r = self.a, {}
        port = self.start_server()
        per_run = int(a.seconds * a.max_rate)
        spread = self.bodies("spread", [body(JOIN, {"g": global_id("Group", g)}) for g in self.spread_ids])
        hot = self.bodies("hot", [body(JOIN, {"g": global_id("Group", g)}) for g in self.hot_ids])
        warm = self.tokens(200)
        wrk(port, seconds=2, clients=4, tokens=warm, bodies=spread)  # warm-up: pools, caches, JIT-free Python paths
        for c in a.clients:
            r[f"spread_{c}"] = wrk(port, seconds=a.seconds, clients=c, tokens=self.tokens(per_run), bodies=spread)
            r[f"hot_{c}"] = wrk(
                port, seconds=a.seconds, clients=c, tokens=self.tokens(per_run), bodies=hot, body_mode="hot"
            )
        one = max(2.0, a.seconds / 2)
        r["join_1"] = wrk(port, seconds=one, clients=1, tokens=self.tokens(int(one * 1000)), bodies=spread)
        opener = self.bodies("open", [body(OPEN, {"c": global_id("Campaign", self.spread_c.campaign_id)})])
        r["open_1"] = wrk(port, seconds=one, clients=1, tokens=self.tokens(int(one * 1000)), bodies=opener)
        reserved = await self.sql(
            fetch=(
                f"SELECT o.order_id, o.goods_amount FROM orders o JOIN seats s USING (shop_id, order_id) "
                f"WHERE o.shop_id = '{self.shop.shop_id}' AND s.state = 'RESERVED' AND o.group_id LIKE "
                f"'{self.spread_t.group_id}%' ORDER BY o.order_id LIMIT 20000"
            )
        )
        confirm = self.bodies(
            "confirm", [body(CONFIRM, {"o": global_id("Order", o), "a": amt, "r": f"pay-{o}"}) for o, amt in reserved]
        )
        backend = self.bodies("backend", [self.backend])
        r["confirm_1"] = wrk(
            port, seconds=one, clients=1, tokens=backend, bodies=confirm, token_mode="reuse", body_mode="seq"
        )
        r["confirm_1"]["available"] = len(reserved)
        tn = self.bodies("typename", [body(TYPENAME)])
        r["typename_auth_1"] = wrk(port, seconds=one, clients=1, tokens=self.tokens(1), bodies=tn, token_mode="reuse")
        r["typename_anon_1"] = wrk(port, seconds=one, clients=1, tokens=None, bodies=tn)
        page_vars = {"id": global_id("Campaign", self.spread_c.campaign_id)}
        page = self.bodies("page", [body(STOREFRONT, page_vars)], {"X-Shop-Key": self.shop.public_key})
        r["page_1"] = wrk(port, seconds=one, clients=1, tokens=None, bodies=page)
        r["page_8"] = wrk(port, seconds=one, clients=8, tokens=None, bodies=page)
        ref, ref_port, ref_page = self.start_reference()
        try:
            r["ref_page_1"] = wrk(ref_port, seconds=one, clients=1, tokens=None, bodies=ref_page)
            r["ref_page_8"] = wrk(ref_port, seconds=one, clients=8, tokens=None, bodies=ref_page)
        finally:
            ref.stop()
            self.server.stop()
        return r

    def cpu(self, root=None) -> dict:
        """CPU seconds so far of the server's processes, of this database's PostgreSQL backends (the other
        databases' are not ours) and of the waited-for children (wrk), read from /proc."""
        import resource

        def ticks(pid: int) -> int:
            try:
                f = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
                return int(f[11]) + int(f[12])
            except OSError:
                return 0

        def tree(pid: int) -> list[int]:
            out = [pid]
            for t in Path(f"/proc/{pid}/task").glob("*/children"):
                for child in t.read_text().split():
                    out += tree(int(child))
            return out

        hz = os.sysconf("SC_CLK_TCK")
        backends = subprocess.run(
            ["psql", self.libpq, "-Atc", "SELECT pid FROM pg_stat_activity WHERE datname = current_database()"],
            capture_output=True,
            text=True,
        ).stdout.split()

        def is_worker(pid: int) -> bool:
            try:
                return b"worker" in Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
            except OSError:
                return False

        procs = tree((root or self.server).p.pid)
        return {
            "server": {p: ticks(p) / hz for p in procs if not is_worker(p)},
            "worker": {p: ticks(p) / hz for p in procs if is_worker(p)},
            "postgres": {int(p): ticks(int(p)) / hz for p in backends},
            "wrk": resource.getrusage(resource.RUSAGE_CHILDREN).ru_utime
            + resource.getrusage(resource.RUSAGE_CHILDREN).ru_stime,
        }

    def cpu_share(self, before: dict, seconds: float, root=None) -> dict:
        """Cores used during a run (CPU seconds ÷ wall seconds) by the server, PostgreSQL's backends and wrk."""
        after = self.cpu(root)
        used = {
            k: sum(v - before[k].get(p, 0.0) for p, v in after[k].items()) for k in ("server", "worker", "postgres")
        }
        used["wrk"] = after["wrk"] - before["wrk"]
        return {k: round(v / seconds, 2) for k, v in used.items()}

    def spy(self, path: str | None):
        """py-spy recording the server's processes (raw collapsed stacks to `path`) until `.send_signal(SIGINT)`."""
        if not path:
            return None
        p = subprocess.Popen(
            [str(BIN / "py-spy"), "record", "--subprocesses", "-r", "200", "-f", "raw", "-o", path]
            + ["-p", str(self.server.p.pid)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        time.sleep(1)
        return p

    @staticmethod
    def unspy(p) -> None:
        if p is not None:
            p.send_signal(signal.SIGINT)
            p.wait(30)

    def run_page(self) -> dict:
        """--only-page: the storefront page against the Starlette + asyncpg reference, 1 and 8 clients (the
        server's processes profiled during its 8-client run with --profile-server)."""
        from api.relay import global_id

        a, r = self.a, {}
        port = self.start_server()
        page_vars = {"id": global_id("Campaign", self.spread_c.campaign_id)}
        page = self.bodies("page", [body(STOREFRONT, page_vars)], {"X-Shop-Key": self.shop.public_key})
        wrk(port, seconds=2, clients=4, tokens=None, bodies=page)  # warm-up
        r["page_1"] = wrk(port, seconds=a.seconds, clients=1, tokens=None, bodies=page)
        spy = self.spy(a.profile_server)
        try:
            before = self.cpu()
            r["page_8"] = wrk(port, seconds=a.seconds, clients=8, tokens=None, bodies=page)
            r["page_8"]["cpu"] = self.cpu_share(before, r["page_8"]["duration_us"] / 1e6)
        finally:
            self.unspy(spy)
        ref, ref_port, ref_page = self.start_reference()
        try:
            wrk(ref_port, seconds=2, clients=4, tokens=None, bodies=ref_page)  # warm-up
            r["ref_page_1"] = wrk(ref_port, seconds=a.seconds, clients=1, tokens=None, bodies=ref_page)
            before = self.cpu(ref)
            r["ref_page_8"] = wrk(ref_port, seconds=a.seconds, clients=8, tokens=None, bodies=ref_page)
            r["ref_page_8"]["cpu"] = self.cpu_share(before, r["ref_page_8"]["duration_us"] / 1e6, ref)
        finally:
            ref.stop()
            self.server.stop()
        return r

    def run_joins(self) -> dict:
        """--only-joins: the join figures alone, for before/after comparisons of latency (p50/p99)."""
        from api.relay import global_id

        a, r = self.a, {}
        port = self.start_server()
        per_run = int(a.seconds * a.max_rate)
        spread = self.bodies("spread", [body(JOIN, {"g": global_id("Group", g)}) for g in self.spread_ids])
        hot = self.bodies("hot", [body(JOIN, {"g": global_id("Group", g)}) for g in self.hot_ids])
        wrk(port, seconds=2, clients=4, tokens=self.tokens(200), bodies=spread)  # warm-up
        spy = self.spy(a.profile_server)
        try:
            for c in a.clients:
                before = self.cpu()
                r[f"spread_{c}"] = wrk(port, seconds=a.seconds, clients=c, tokens=self.tokens(per_run), bodies=spread)
                r[f"spread_{c}"]["cpu"] = self.cpu_share(before, r[f"spread_{c}"]["duration_us"] / 1e6)
        finally:
            self.unspy(spy)
        c = a.clients[0]
        r[f"hot_{c}"] = wrk(
            port, seconds=a.seconds, clients=c, tokens=self.tokens(per_run), bodies=hot, body_mode="hot"
        )
        one = max(2.0, a.seconds / 2)
        r["join_1"] = wrk(port, seconds=one, clients=1, tokens=self.tokens(int(one * 1000)), bodies=spread)
        self.server.stop()
        return r

    def start_reference(self):
        """bench/reference_storefront.py on a free port, ready, and the page request it answers."""
        port = free_port()
        ref = Process(
            [sys.executable, str(ROOT / "bench" / "reference_storefront.py"), "--port", str(port)],
            self.env,
            self.work / "reference.log",
        )
        try:
            wait_http(port, "/graphql")
        except BaseException:
            ref.stop()
            raise
        page = self.bodies(
            "ref",
            [json.dumps({"campaign": self.spread_c.campaign_id, "first": 10})],
            {"X-Shop-Key": self.shop.public_key},
        )
        return ref, port, page

    async def run_execution(self) -> dict:
        """strawberry's execute against graphql-core's `graphql()` on strawberry's own GraphQLSchema, same
        document, same context (the campaign page; its SQL is the same in both, so the ratio is the
        framework's share on top of the same resolvers)."""
        import graphql

        from api.context import Context
        from api.schema import make_schema
        from api.relay import global_id
        from service.context import Services
        from store.database import create_engine

        engine = create_engine(self.url, pool_size=2)
        svc = Services(engine=engine)
        schema = make_schema()
        variables = {"id": global_id("Campaign", self.spread_c.campaign_id)}

        def ctx():
            return Context(svc=svc, public_shop_id=self.shop.shop_id, currency=self.shop.currency)

        async def strawberry_once():
            res = await schema.execute(STOREFRONT, variable_values=variables, context_value=ctx())
            assert not res.errors, res.errors

        async def core_once():
            res = await graphql.graphql(schema._schema, STOREFRONT, variable_values=variables, context_value=ctx())
            assert not res.errors, res.errors

        out = {}
        for name, fn in (("strawberry", strawberry_once), ("graphql_core", core_once)) * 2:  # interleaved, twice
            for _ in range(20):
                await fn()
            t = time.perf_counter()
            for _ in range(self.a.exec_iterations):
                await fn()
            out[name] = (time.perf_counter() - t) / self.a.exec_iterations * 1000
        await engine.dispose()
        return out

    async def run_due(self) -> dict:
        """--due-groups groups due at once: half PENDING with the leader's payment window passed (GB-1: the
        group is cancelled, stock given back), half OPEN past expiry with one paid seat (GB-6: it fails and
        the paid seat is owed a full refund). Timed from the start of the worker processes until none is due."""
        n = self.a.due_groups
        past = "now() - interval '1 minute'"
        ids = await self.clone_groups(self.due_pending_t, n // 2, "dp", set_group=f"due_at = {past}")
        await self.sql(
            f"UPDATE seats SET pay_by = {past} WHERE shop_id = '{self.shop.shop_id}' AND "
            f"group_id LIKE '{self.due_pending_t.group_id}\\_dp%'"
        )
        ids += await self.clone_groups(
            self.due_open_t, n - n // 2, "do", set_group=f"due_at = {past}, expires_at = {past}"
        )
        due_sql = f"SELECT count(*) FROM groups WHERE shop_id = '{self.shop.shop_id}' AND due_at <= now()"
        left = (await self.sql(fetch=due_sql))[0][0]
        argv = [str(BIN / "sharecart"), "worker"]
        t = time.perf_counter()
        workers = [Process(argv, self.env, self.work / f"worker-{i}.log") for i in range(self.a.due_workers)]
        try:
            while left and time.perf_counter() - t < self.a.due_timeout:
                await asyncio.sleep(0.25)
                left = (await self.sql(fetch=due_sql))[0][0]
            seconds = time.perf_counter() - t
        finally:
            for w in workers:
                w.stop()
        pending_states = await self.sql(
            fetch=(
                f"SELECT state, count(*) FROM groups WHERE shop_id = '{self.shop.shop_id}' AND (group_id LIKE "
                f"'{self.due_pending_t.group_id}\\_dp%' OR group_id LIKE '{self.due_open_t.group_id}\\_do%') "
                f"GROUP BY state ORDER BY state"
            )
        )
        refunds = (
            await self.sql(
                fetch=(f"SELECT count(*) FROM refunds WHERE shop_id = '{self.shop.shop_id}' AND rule = 'GB-6'")
            )
        )[0][0]
        return {
            "groups": len(ids),
            "workers": self.a.due_workers,
            "seconds": seconds,
            "left_due": left,
            "states": {s: c for s, c in pending_states},
            "gb6_refunds": refunds,
        }


def joins_table(r: dict, a) -> str:
    load = os.getloadavg()
    out = [
        f"bench/http.py {'--only-joins' if a.only_joins else '--only-page'}, {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}, load average "
        f"{load[0]:.1f}/{load[1]:.1f}/{load[2]:.1f}, {a.seconds:g} s a run",
        "| run | requests/s | p50 ms | p99 ms | cores used (API processes, the worker process, this database's PostgreSQL backends, wrk) |",
        "|---|---|---|---|---|",
    ]
    for k, x in r.items():
        cpu = ", ".join(f"{n} {v:.2f}" for n, v in x.get("cpu", {}).items())
        if x.get("cpu") and x["rate"]:
            cpu += f"; {x['cpu']['server'] / x['rate'] * 1000:.1f} ms of server CPU a request"
        out.append(f"| {k} | {x['rate']:.0f} | {x['p50_ms']:.1f} | {x['p99_ms']:.1f} | {cpu} |")
    return "\n".join(out)


def due_note(due: dict) -> str:
    rate = due["groups"] / due["seconds"] if due["seconds"] else 0.0
    extra = (
        f"; 100,000 at this rate ≈ {100_000 / rate:.0f} s (extrapolated)" if rate and due["groups"] < 100_000 else ""
    )
    return (
        f"{rate:,.0f} groups/s{extra}; left due: {due['left_due']}; states {due['states']}; "
        f"GB-6 refunds {due['gb6_refunds']}"
    )


def table(r: dict, base: dict, ex: dict, due: dict | None, a) -> str:
    c8 = a.clients[0]
    rows = []

    def add(figure, today, now, goal, note=""):
        rows.append((figure, today, now, goal, note))

    def exhausted(x):
        notes = []
        if x["exhausted"]:
            notes.append(f"{x['exhausted']} requests reused a token or body: pool too small")
        if x["full"] and x["full"] > 0.01 * x["requests"]:
            notes.append(f"{x['full']} GROUP_FULL answers: seats ran out, raise --groups")
        if x["refused"] or x["http_errors"] or x["socket_errors"]:
            notes.append(
                f"refused {x['refused']} ({x['codes'].strip()}), http {x['http_errors']}, socket {x['socket_errors']}"
            )
        return "; ".join(notes)

    for c in a.clients:
        s, h = r[f"spread_{c}"], r[f"hot_{c}"]
        bs, bh = base[c].get("join-spread"), base[c].get("join-hot")
        add(
            f"joins/s spread ÷ pg join-spread, {c} clients",
            TODAY["spread"] if c == 8 else "–",
            f"{s['rate']:.0f} ÷ {bs:.0f} = {s['rate'] / bs:.3f}",
            "≥ 0.3",
            f"p50 {s['p50_ms']:.1f} ms, p99 {s['p99_ms']:.1f} ms; {exhausted(s)}",
        )
        add(
            f"joins/s hot group ÷ pg join-hot, {c} clients",
            TODAY["hot"] if c == 8 else "–",
            f"{h['rate']:.0f} ÷ {bh:.0f} = {h['rate'] / bh:.3f}",
            "≥ 0.5",
            f"p50 {h['p50_ms']:.1f} ms, p99 {h['p99_ms']:.1f} ms; {h['full']} moves to the next hot group; "
            f"{exhausted({**h, 'full': 0})}",
        )
    for k, label, today in (
        ("join_1", "joinGroup", TODAY["join_p50_ms"]),
        ("open_1", "openGroup", TODAY["open_p50_ms"]),
        ("confirm_1", "confirmPayment", TODAY["confirm_p50_ms"]),
    ):
        x = r[k]
        add(
            f"one client, {label} p50 (ms)",
            today,
            f"{x['p50_ms']:.2f}",
            "≤ 4" if k == "join_1" else "",
            f"p99 {x['p99_ms']:.1f} ms, {x['rate']:.0f}/s; {exhausted(x)}",
        )
    add(
        "one client, authenticated { __typename } p50 (ms)",
        TODAY["typename_auth_ms"],
        f"{r['typename_auth_1']['p50_ms']:.2f}",
        "≤ 1.5",
        f"anonymous {r['typename_anon_1']['p50_ms']:.2f} ms (issue: {TODAY['typename_anon_ms']})",
    )
    p1, q1, p8, q8 = r["page_1"], r["ref_page_1"], r["page_8"], r["ref_page_8"]
    add(
        "storefront campaign page p50 ÷ Starlette+asyncpg reference",
        "not measured",
        f"{p1['p50_ms']:.2f} ÷ {q1['p50_ms']:.2f} = {p1['p50_ms'] / q1['p50_ms']:.2f}",
        "≤ 1.5",
        f"8 clients: {p8['rate']:.0f}/s vs {q8['rate']:.0f}/s (p50 {p8['p50_ms']:.1f} vs {q8['p50_ms']:.1f} ms)",
    )
    add(
        "strawberry ÷ raw graphql-core execution (campaign page)",
        "not measured",
        f"{ex['strawberry']:.2f} ÷ {ex['graphql_core']:.2f} ms = {ex['strawberry'] / ex['graphql_core']:.2f}",
        "≤ 1.3",
        "in-process, same schema, document, context and SQL",
    )
    if len(a.clients) > 1:
        hi = a.clients[-1]
        s8, s32 = r[f"spread_{c8}"]["rate"], r[f"spread_{hi}"]["rate"]
        h8, h32 = r[f"hot_{c8}"]["rate"], r[f"hot_{hi}"]["rate"]
        add(f"throughput {hi} clients ÷ {c8}", "not measured", f"spread {s32 / s8:.2f}, hot {h32 / h8:.2f}", "≥ 0.8")
    if due:
        add(
            f"{due['groups']:,} groups due at once, cleared by {due['workers']} worker processes (s)",
            "not measured",
            f"{due['seconds']:.1f}",
            "≤ 60 (100,000)",
            due_note(due),
        )
    add(
        f"p99 join latency at {c8} clients (ms)",
        TODAY["p99_ms"],
        f"{r[f'spread_{c8}']['p99_ms']:.1f}",
        "≤ 25",
        f"hot group: {r[f'hot_{c8}']['p99_ms']:.1f}",
    )
    lines = ["| figure | today (issue) | this run | goal | notes |", "|---|---|---|---|---|"]
    lines += [f"| {f} | {t} | {n} | {g} | {note} |" for f, t, n, g, note in rows]
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--seconds", type=float, default=5, help="seconds per wrk run (default 5)")
    ap.add_argument("--clients", default="8,32", help="client counts of the throughput runs (default 8,32)")
    ap.add_argument(
        "--groups", type=int, default=12000, help="groups of 5 for the spread case (default 12,000: 48,000 free seats)"
    )
    ap.add_argument("--hot-groups", type=int, default=400, help="hot groups, joined one after the other")
    ap.add_argument("--hot-capacity", type=int, default=50, help="seats of a hot group (default 50)")
    ap.add_argument("--max-rate", type=float, default=3000, help="tokens minted per second of a run (default 3000)")
    ap.add_argument("--server-workers", type=int, default=0, help="serve --workers N (default: serve's default)")
    ap.add_argument(
        "--due-groups",
        type=int,
        default=20000,
        help="groups due at once (default 20,000, the rate extrapolated to the issue's 100,000; 0 skips)",
    )
    ap.add_argument("--only-due", action="store_true", help="only the due-groups figure (no HTTP runs)")
    ap.add_argument(
        "--only-joins",
        action="store_true",
        help="only the joins over HTTP (spread at every --clients, hot at the first, one client): rates, p50, p99",
    )
    ap.add_argument(
        "--profile-server",
        metavar="FILE",
        help="with --only-joins (--only-page): py-spy records the server's processes during the spread runs "
        "(the 8-client page run), raw collapsed stacks to FILE",
    )
    ap.add_argument(
        "--only-page", action="store_true", help="only the storefront page and its reference, 1 and 8 clients"
    )
    ap.add_argument(
        "--no-server-worker", action="store_true", help="serve --no-worker (no expiry worker beside the API)"
    )
    ap.add_argument("--due-workers", type=int, default=2, help="`sharecart worker` processes clearing them")
    ap.add_argument("--due-timeout", type=float, default=300, help="give up (and report what is left) after this")
    ap.add_argument("--pool", type=int, default=6, help="database pool of each server process (default 6)")
    ap.add_argument("--exec-iterations", type=int, default=300)
    ap.add_argument("--baseline", help="path of pg-baseline (default ../shared/tools/pg-baseline)")
    ap.add_argument("--json", help="also write every raw number to this file")
    a = ap.parse_args()
    a.clients = [int(x) for x in a.clients.split(",")]
    if not shutil.which("wrk"):
        sys.exit("bench/http.py: wrk not found: install it with `apt-get install wrk` (Debian, as root)")
    tool = find_baseline(a.baseline)

    asyncio.run(amain(a, tool))


async def amain(a, tool: Path) -> None:
    work = Path(tempfile.mkdtemp(prefix="sharecart-http-"))
    try:
        async with scratch_database("sharecart_http") as url:
            b = Bench(url, a, work)
            await b.seed()
            if a.only_due:  # the worker's figure alone (issue 10: 100,000 groups due at once in <= 60 s)
                due = await b.run_due()
                if b.conn is not None:
                    await b.conn.close()
                load = os.getloadavg()
                print(
                    f"bench/http.py --only-due, {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}, load average "
                    f"{load[0]:.1f}/{load[1]:.1f}/{load[2]:.1f}: {due['groups']:,} groups due at once cleared by "
                    f"{due['workers']} worker processes in {due['seconds']:.1f} s; {due_note(due)}"
                )
                save(a, {"due": due, "load": load})
                return
            if a.only_joins or a.only_page:
                r = b.run_joins() if a.only_joins else b.run_page()
                if b.conn is not None:
                    await b.conn.close()
                print(joins_table(r, a))
                save(a, {"joins": r, "load": os.getloadavg()})
                return
            r = await b.run_http()
            save(a, {"http": r})
            ex = await b.run_execution()
            save(a, {"http": r, "execution": ex})
            base = {c: baseline(tool, url, c, int(max(2, a.seconds))) for c in a.clients}
            save(a, {"http": r, "execution": ex, "baseline": base})
            print(table(r, base, ex, None, a), flush=True)  # the HTTP figures, whatever the due run does
            try:
                due = await b.run_due() if a.due_groups else None
            except Exception as e:  # e.g. the shared server out of connections: say so, keep the rest
                print(f"\nthe due-groups run failed: {e!r}")
                due = None
            if b.conn is not None:
                await b.conn.close()
    finally:
        shutil.rmtree(work, ignore_errors=True)
    load = os.getloadavg()
    print(
        f"\nbench/http.py, {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}, {os.cpu_count()} cores, "
        f"load average {load[0]:.1f}/{load[1]:.1f}/{load[2]:.1f}, {a.seconds:g} s a run\n"
    )
    print(table(r, base, ex, due, a))
    save(a, {"http": r, "baseline": base, "execution": ex, "due": due, "load": load})


def save(a, data: dict) -> None:
    if a.json:
        Path(a.json).write_text(json.dumps(data, indent=2, default=str))


if __name__ == "__main__":
    main()
