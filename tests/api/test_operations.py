"""Issue 13 point 4 (docs/operations.md): /health, /ready, /metrics, request ids in JSON logs, a JSON error
with a code while the database is down, the worker backing off and coming back, graceful shutdown."""

from __future__ import annotations

import asyncio
import io
import json
import logging
import re
import secrets
import socket
import threading
import time
from datetime import datetime, timezone

import httpx
import pytest
import uvicorn
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import text
from sqlalchemy.engine import make_url

from tests.api.conftest import ServiceProcess, _free_port
from tests.api.test_e2e import SEAT, make_campaign
from tests.db_proxy import TcpProxy


# ---------------------------------------------------------------- a service whose database can be stopped
@pytest.fixture(scope="module")
def proxied(database_url):
    """The app and its worker loop (as `serve` runs them) over a TCP proxy to the test database."""
    from api.app import create_app
    from service.context import Services
    from service.jobs.worker import worker_loop
    from store.database import create_engine

    real = make_url(database_url)
    proxy = TcpProxy((real.host or "127.0.0.1", real.port or 5432))
    proxy.start()
    url = real.set(host="127.0.0.1", port=proxy.port).render_as_string(hide_password=False)
    port = _free_port()
    holder: dict = {}

    def serve():
        loop = asyncio.new_event_loop()
        asyncio.set_event_loop(loop)
        svc = Services(engine=create_engine(url, pool_size=5))
        srv = uvicorn.Server(
            uvicorn.Config(
                create_app(svc, test_clock=False), host="127.0.0.1", port=port, log_level="warning", log_config=None
            )
        )
        stop = asyncio.Event()
        holder.update(svc=svc, server=srv, stop=stop, loop=loop)

        async def both():
            worker = asyncio.create_task(worker_loop(svc, stop, interval=0.2, backoff_max=1.0))
            await srv.serve()
            stop.set()
            await worker
            await svc.engine.dispose()

        loop.run_until_complete(both())

    t = threading.Thread(target=serve, daemon=True)
    t.start()
    base = f"http://127.0.0.1:{port}"
    _wait(lambda: httpx.get(f"{base}/health").status_code == 200, 20)
    yield {"base": base, "proxy": proxy, **holder}
    holder["server"].should_exit = True
    t.join(timeout=15)
    proxy.stop()


def _wait(condition, seconds: float, step: float = 0.2):
    deadline = time.monotonic() + seconds
    while True:
        try:
            if condition():
                return True
        except httpx.HTTPError:
            pass
        if time.monotonic() > deadline:
            return False
        time.sleep(step)


async def _beat_at(svc, worker_prefix: str = "") -> datetime | None:
    async with svc.engine.connect() as c:
        return (await c.execute(text("SELECT max(beat_at) FROM worker_heartbeats"))).scalar()


def test_health_is_the_process_and_ready_is_database_migrations_and_worker(proxied):
    assert httpx.get(f"{proxied['base']}/health").json() == {"ok": True}
    assert _wait(lambda: httpx.get(f"{proxied['base']}/ready").status_code == 200, 20)
    assert httpx.get(f"{proxied['base']}/ready").json() == {
        "ready": True,
        "checks": {"database": "ok", "migrations": "ok", "worker": "ok"},
    }


async def test_ready_fails_while_the_database_is_stopped_and_recovers_after(proxied, svc, shop):
    """Done-when of issue 13: `curl /ready` fails with the database stopped and recovers after. Meanwhile
    /health still answers (the process is alive), GraphQL answers 503 JSON with code UNAVAILABLE (never a
    plain-text 500), and the worker comes back by itself (its heartbeat moves on after the restart)."""
    from api.auth import mint_token

    base, proxy = proxied["base"], proxied["proxy"]
    token = mint_token(shop, "ann", ["customer"], 600)
    query = {"query": "{ campaigns(first: 1) { totalCount } }"}
    assert await asyncio.to_thread(_wait, lambda: httpx.get(f"{base}/ready").status_code == 200, 20)
    proxy.stop()
    try:
        r = await asyncio.to_thread(httpx.get, f"{base}/ready", timeout=10)
        assert r.status_code == 503 and r.json()["ready"] is False
        assert r.json()["checks"]["database"].startswith("unavailable"), r.json()
        assert (await asyncio.to_thread(httpx.get, f"{base}/health")).status_code == 200
        for headers in ({"Authorization": f"Bearer {token}"}, {"X-Shop-Key": shop.public_key}):
            g = await asyncio.to_thread(httpx.post, f"{base}/graphql", json=query, headers=headers, timeout=10)
            assert g.status_code == 503, g.text
            assert g.headers["content-type"].startswith("application/json")
            assert [e["extensions"]["code"] for e in g.json()["errors"]] == ["UNAVAILABLE"]
            assert "Traceback" not in g.text and "asyncpg" not in g.text
        await asyncio.sleep(1.0)  # the worker is failing now
    finally:
        restarted = datetime.now(timezone.utc)
        proxy.start()
    assert await asyncio.to_thread(_wait, lambda: httpx.get(f"{base}/ready").status_code == 200, 30)
    g = await asyncio.to_thread(
        httpx.post, f"{base}/graphql", json=query, headers={"Authorization": f"Bearer {token}"}, timeout=10
    )
    assert g.status_code == 200 and "errors" not in g.json(), g.text
    deadline = time.monotonic() + 20
    while (beat := await _beat_at(svc)) is None or beat < restarted:
        assert time.monotonic() < deadline, f"the worker did not beat after the database came back ({beat})"
        await asyncio.sleep(0.3)


async def test_ready_names_a_missing_worker_and_a_schema_behind_head(proxied, svc, monkeypatch):
    """No heartbeat younger than SHARECART_READY_WORKER_MAX_AGE: not ready; 0 leaves the worker out. A database
    whose alembic_version is not the head: not ready either."""
    from api.ops import readiness

    monkeypatch.setenv("SHARECART_READY_WORKER_MAX_AGE", "0.000001")
    ok, checks = await readiness(svc)
    assert not ok and checks["worker"].startswith("last worker heartbeat"), checks
    monkeypatch.setenv("SHARECART_READY_WORKER_MAX_AGE", "0")
    ok, checks = await readiness(svc)
    assert ok and "worker" not in checks
    import api.ops

    monkeypatch.setattr(api.ops, "migration_heads", lambda: frozenset({"9999"}))
    ok, checks = await readiness(svc)
    assert not ok and checks["migrations"].startswith("at ['0"), checks


# ---------------------------------------------------------------- request ids and JSON logs
@pytest.fixture
def access_lines():
    from api.logs import formatter

    out = io.StringIO()
    handler = logging.StreamHandler(out)
    handler.setFormatter(formatter("json"))
    logger = logging.getLogger("sharecart.access")
    old = logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    yield lambda: [json.loads(line) for line in out.getvalue().splitlines()]
    logger.removeHandler(handler)
    logger.setLevel(old)


def test_request_id_is_taken_or_made_echoed_and_on_the_json_access_line(server, access_lines):
    base = server["base"]
    r = httpx.get(f"{base}/health", headers={"X-Request-Id": "req-abc.1"})
    assert r.headers["x-request-id"] == "req-abc.1"
    for bad in ("has spaces", "x" * 129, "semi;colon"):
        made = httpx.get(f"{base}/health", headers={"X-Request-Id": bad}).headers["x-request-id"]
        assert re.fullmatch(r"[0-9a-f]{32}", made), made
    a, b = (httpx.get(f"{base}/health").headers["x-request-id"] for _ in range(2))
    assert a != b and re.fullmatch(r"[0-9a-f]{32}", a)
    g = httpx.post(f"{base}/graphql", json={"query": "{ __typename }"}, headers={"X-Request-Id": "gql-7"})
    assert g.headers["x-request-id"] == "gql-7"
    time.sleep(0.2)
    lines = {line["request_id"]: line for line in access_lines()}
    assert lines["req-abc.1"]["path"] == "/health" and lines["req-abc.1"]["status"] == 200
    assert lines["gql-7"]["path"] == "/graphql" and lines["gql-7"]["level"] == "info"
    assert lines["gql-7"]["logger"] == "sharecart.access" and "timestamp" in lines["gql-7"]


def test_a_log_line_with_a_traceback_is_still_one_json_line():
    from api.logs import formatter

    out = io.StringIO()
    handler = logging.StreamHandler(out)
    handler.setFormatter(formatter("json"))
    logger = logging.getLogger("sharecart.test-one-line")
    logger.addHandler(handler)
    try:
        try:
            raise RuntimeError("boom")
        except RuntimeError:
            logger.error("it broke: %s", "really", exc_info=True)
    finally:
        logger.removeHandler(handler)
    (line,) = out.getvalue().splitlines()
    record = json.loads(line)
    assert record["event"] == "it broke: really" and "RuntimeError: boom" in record["exception"]


# ---------------------------------------------------------------- metrics
def _samples(base: str) -> dict:
    r = httpx.get(f"{base}/metrics")
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/plain")
    out = {}
    for family in text_string_to_metric_families(r.text):
        for s in family.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


def _value(samples: dict, name: str, **labels) -> float:
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


def test_metrics_show_a_join_a_refused_join_and_a_payment(world):
    """Done-when of issue 13: /metrics shows a join. Operations are labelled by type and root field, with
    their outcome; joins and payments have counters of their own."""
    base = world["base"]
    admin, backend = world["as"]("boss", "admin"), world["as"]("be", "backend")
    cid = make_campaign(admin, world["svc"])
    before = _samples(base)
    lead = world["as"]("ann", "customer").mutate("openGroup", {"campaignId": cid}, SEAT)
    backend.mutate(
        "confirmPayment",
        {"orderId": lead["order"]["id"], "amount": lead["amountToPay"], "providerRef": "p-ann"},
        "accepted",
    )  # GB-1: the group opens when paid
    bob = world["as"]("bob", "customer")
    joined = bob.mutate("joinGroup", {"groupId": lead["group"]["id"]}, SEAT)
    assert joined["errors"] == []
    again = bob.mutate("joinGroup", {"groupId": lead["group"]["id"]}, SEAT)
    assert again["errors"] != []
    backend.mutate(
        "confirmPayment",
        {"orderId": joined["order"]["id"], "amount": joined["amountToPay"], "providerRef": "p-bob"},
        "accepted",
    )
    after = _samples(base)

    def grew(name, **labels):
        return _value(after, name, **labels) - _value(before, name, **labels)

    assert grew("sharecart_joins_total", outcome="ok") == 2  # the opener takes a seat too
    assert grew("sharecart_joins_total", outcome="refused") == 1
    assert grew("sharecart_payments_total", outcome="ok") == 2
    assert grew("sharecart_graphql_operations_total", operation="mutation joinGroup", outcome="ok") == 1
    assert grew("sharecart_graphql_operations_total", operation="mutation joinGroup", outcome="refused") == 1
    assert grew("sharecart_graphql_operation_duration_seconds_count", operation="mutation joinGroup") == 2
    assert grew("sharecart_http_requests_total", route="/graphql", method="POST", status="2xx") >= 5
    for gauge in ("sharecart_outbox_pending_deliveries", "sharecart_outbox_lag_seconds"):
        assert (gauge, ()) in after, gauge
    assert ("sharecart_worker_lag_seconds", (("queue", "groups"),)) in after


def test_metric_labels_are_bounded_whatever_the_client_sends(world):
    """A client cannot mint label values: operation names are not labels, unknown root fields are "(invalid)",
    unknown paths are "other"."""
    base = world["base"]
    c = world["as"]("ann", "customer")
    name = f"Op{secrets.token_hex(6)}"
    httpx.post(
        f"{base}/graphql", json={"query": f"query {name} {{ myOrders(first: 1) {{ totalCount }} }}"}, headers=c.headers
    )
    httpx.post(f"{base}/graphql", json={"query": f"{{ nosuchfield{secrets.token_hex(4)} }}"}, headers=c.headers)
    httpx.get(f"{base}/no/such/{secrets.token_hex(4)}")
    text_ = httpx.get(f"{base}/metrics").text
    assert name not in text_ and "nosuchfield" not in text_ and "/no/such" not in text_
    s = _samples(base)
    assert _value(s, "sharecart_graphql_operations_total", operation="query myOrders", outcome="ok") >= 1
    assert _value(s, "sharecart_graphql_operations_total", operation="(invalid)", outcome="refused") >= 1
    assert _value(s, "sharecart_http_requests_total", route="other", method="GET", status="4xx") >= 1


MULTIPROC_CHILD = """
import sys
from service import metrics
metrics.webhook_attempt(True)
for _ in range(int(sys.argv[1])):
    metrics.webhook_attempt(False)
"""

MULTIPROC_READER = """
from prometheus_client import generate_latest
from api.metrics import _registry
print(generate_latest(_registry()).decode())
"""


def test_multiprocess_mode_adds_up_every_process(tmp_path):
    """serve --workers N / sharecart worker: with PROMETHEUS_MULTIPROC_DIR, /metrics of any process reports
    the sum over the processes of the host."""
    import os
    import subprocess
    import sys

    env = {**os.environ, "PROMETHEUS_MULTIPROC_DIR": str(tmp_path)}
    for n in (2, 3):
        subprocess.run([sys.executable, "-c", MULTIPROC_CHILD, str(n)], env=env, check=True, timeout=60)
    out = subprocess.run(
        [sys.executable, "-c", MULTIPROC_READER], env=env, check=True, timeout=60, capture_output=True, text=True
    ).stdout
    values = {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for f in text_string_to_metric_families(out)
        for s in f.samples
    }
    assert values[("sharecart_webhook_attempts_total", (("outcome", "failed"),))] == 5
    assert values[("sharecart_webhook_attempts_total", (("outcome", "delivered"),))] == 2
    assert values[("sharecart_webhook_failures_total", ())] == 5


# ---------------------------------------------------------------- graceful shutdown
def test_sigterm_drains_the_request_in_flight_then_exits_0(database_url):
    """SIGTERM: the server stops accepting, finishes the request it is reading (its body arrives after the
    signal), answers it, and exits with status 0 (docs/operations.md, "Shutdown")."""
    import signal

    # one API process: with several, each prints "Shutting down" on its own, and a connection made between
    # the first and the last may still be accepted by another (the supervisor's path is api/process.py)
    svc = ServiceProcess(database_url, "--no-demo", "--no-worker", "--workers", "1")
    try:
        body = json.dumps({"query": "{ __typename }"}).encode()
        s = socket.create_connection(("127.0.0.1", svc.port), timeout=10)
        s.sendall(
            b"POST /graphql HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            b"Content-Length: " + str(len(body)).encode() + b"\r\n\r\n" + body[:5]
        )
        time.sleep(0.3)
        svc.proc.send_signal(signal.SIGTERM)
        assert _wait(lambda: "Shutting down" in svc.output, 10)
        with pytest.raises(OSError):  # no new connections once shutdown began
            socket.create_connection(("127.0.0.1", svc.port), timeout=2).close()
        s.sendall(body[5:])
        reply = b""
        while b"\r\n\r\n" not in reply or not reply.rstrip().endswith(b"}"):
            chunk = s.recv(65536)
            if not chunk:
                break
            reply += chunk
        s.close()
        assert reply.startswith(b"HTTP/1.1 200"), reply
        assert b'"__typename":"Query"' in reply.replace(b" ", b"")
        assert svc.proc.wait(timeout=20) == 0, svc.output
    finally:
        svc.stop()


def test_prepare_multiprocess_sets_a_fresh_folder_for_several_processes(monkeypatch, tmp_path):
    import os

    from api.metrics import prepare_multiprocess

    monkeypatch.setenv("PROMETHEUS_MULTIPROC_DIR", "-")  # so that teardown restores the variable as it was
    monkeypatch.delenv("PROMETHEUS_MULTIPROC_DIR")
    prepare_multiprocess(1)
    assert "PROMETHEUS_MULTIPROC_DIR" not in os.environ  # one process: plain mode
    prepare_multiprocess(4)
    folder = os.environ["PROMETHEUS_MULTIPROC_DIR"]
    assert os.path.isdir(folder) and os.listdir(folder) == []
    os.rmdir(folder)
    monkeypatch.setenv("PROMETHEUS_MULTIPROC_DIR", str(tmp_path / "m"))
    (tmp_path / "m").mkdir()
    (tmp_path / "m" / "counter_123.db").write_bytes(b"old run")
    prepare_multiprocess(4)
    assert list((tmp_path / "m").iterdir()) == []


async def test_a_resolver_meeting_the_database_away_answers_unavailable_503():
    """The other road to the database: context built (a public caller here; a cached token after issue 11), then
    a resolver's query fails. The error is coded UNAVAILABLE (not a masked INTERNAL), the HTTP status 503,
    and the operation counted as `unavailable`."""
    from types import SimpleNamespace

    from api.context import Context
    from api.schema import make_schema
    from service.context import Services
    from store.database import create_engine

    svc = Services(engine=create_engine(f"postgresql://postgres@127.0.0.1:{_free_port()}/nothing", pool_size=1))
    response = SimpleNamespace(status_code=200, headers={})
    ctx = Context(svc=svc, public_shop_id="any-shop", currency="CNY", response=response)
    from prometheus_client import REGISTRY

    labels = {"operation": "query campaigns", "outcome": "unavailable"}

    def counted() -> float:
        return REGISTRY.get_sample_value("sharecart_graphql_operations_total", labels) or 0.0

    before = counted()
    try:
        result = await make_schema().execute("{ campaigns(first: 1) { totalCount } }", context_value=ctx)
    finally:
        await svc.engine.dispose()
    assert [e.extensions["code"] for e in result.errors] == ["UNAVAILABLE"], result.errors
    assert "asyncpg" not in str(result.errors) and "Connect call" not in str(result.errors)
    assert response.status_code == 503
    assert counted() == before + 1


# ---------------------------------------------------------------- access log
def test_a_request_writes_one_access_line_ER1(database_url):
    """One line per request (ER-1: "logs one line"): api.ops's, with the request id and duration; uvicorn's own
    access line, which it writes whenever its logger has a handler, stays off (it cost a second formatted
    line per request, ~4 % of a preview's CPU in a py-spy profile)."""
    svc = ServiceProcess(database_url, "--no-demo", "--no-worker", "--workers", "1")
    try:
        rid = "one-access-line-check"
        r = httpx.post(f"{svc.base}/graphql", json={"query": "{ __typename }"}, headers={"x-request-id": rid})
        assert r.status_code == 200
        assert _wait(lambda: rid in svc.output, 10), svc.output
        time.sleep(0.3)  # a second line, if any, is written in the same request
        lines = [ln for ln in svc.output.splitlines() if rid in ln]
        assert len(lines) == 1 and '"duration_ms"' in lines[0], lines
    finally:
        svc.stop()
