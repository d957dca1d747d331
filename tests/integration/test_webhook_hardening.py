"""Issue 11 points 2 and 3, issue 13 point 1: webhook delivery that no receiver can stall, that cannot be turned
against the deployment's own network, and that any Standard Webhooks library verifies."""

from __future__ import annotations

import asyncio
import base64
import json
import secrets
import socket
import threading
import time
import tracemalloc
from datetime import timedelta

import pytest
from sqlalchemy import select, text
from standardwebhooks import Webhook

from engine.errors import ErrorCode, RuleViolation
from service.tx import events
from service.usecases import shops, webhooks
from service import webhook_targets
from service.jobs import worker
from service.uow import unit_of_work
from store.models import WebhookAttempt, WebhookDelivery
from tests.http_receiver import LocalReceiver, RawReceiver, verify_standard


async def _emit(svc, shop_id: str, n: int = 1, prefix: str = "agg") -> None:
    async with unit_of_work(svc) as s:
        for i in range(n):
            events.emit(
                s,
                shop_id=shop_id,
                type="test.hardening",
                aggregate_type="t",
                aggregate_id=f"{prefix}{i}",
                now=svc.now(),
                payload={"i": i},
            )


async def _rows(svc, model, shop_id: str) -> list:
    async with unit_of_work(svc) as s:
        return list((await s.execute(select(model).where(model.shop_id == shop_id))).scalars())


class Collector(LocalReceiver):
    def __init__(self):
        self.got: list[tuple[dict, bytes]] = []
        self.arrived = threading.Event()
        super().__init__(self._answer, f"/hook/{secrets.token_hex(4)}")

    def _answer(self, path, headers, body):
        self.got.append(({k.lower(): v for k, v in headers.items()}, body))
        self.arrived.set()
        return 200


# ---------------------------------------------------------------- 11.2 delivery isolation


async def test_webhook_isolation_11_2_a_dripping_receiver_is_cut_at_one_overall_deadline(svc, shop):
    """A receiver that drips its answer a byte every 0.25 s never trips a per-read timeout; the attempt has one
    overall deadline (here 1 s), after which it is a failure, retried later."""

    def drip(conn, closed):
        for b in b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\nX-Padding: " + b"x" * 40 + b"\r\n\r\n":
            if closed.is_set():
                return
            conn.sendall(bytes([b]))
            time.sleep(0.25)

    r = RawReceiver(drip)
    try:
        await webhooks.register_endpoint(svc, shop_id=shop.shop_id, url=r.url)
        await _emit(svc, shop.shop_id)
        started = time.monotonic()
        # (the count of a pass may include other tests' leftovers; this shop's rows are what is checked)
        await asyncio.wait_for(webhooks.deliver_due(svc, timeout_s=1.0), timeout=8)
        assert time.monotonic() - started < 6  # the drip alone takes 14 s
        [d] = await _rows(svc, WebhookDelivery, shop.shop_id)
        assert (d.state, d.attempts, d.last_status, d.lease_until) == ("PENDING", 1, None, None)
        [a] = await _rows(svc, WebhookAttempt, shop.shop_id)
        assert a.status_code is None and a.duration_ms < 2000
    finally:
        r.close()


async def test_webhook_isolation_11_2_no_transaction_is_open_while_a_post_is_in_flight(svc, shop):
    """Claim, commit, post, record: while a receiver holds a POST open, no connection of this database is inside
    a transaction (a transaction left open across a POST held row locks and the event pull's horizon)."""
    hang = socket.socket()
    hang.bind(("127.0.0.1", 0))
    hang.listen(8)
    try:
        await webhooks.register_endpoint(svc, shop_id=shop.shop_id, url=f"http://127.0.0.1:{hang.getsockname()[1]}/h")
        await _emit(svc, shop.shop_id)
        task = asyncio.create_task(webhooks.deliver_due(svc, timeout_s=2.0))
        hang.settimeout(5)
        held, _ = await asyncio.to_thread(hang.accept)  # the POST is in flight
        await asyncio.sleep(0.2)
        async with svc.engine.connect() as c:
            open_ = (
                await c.execute(
                    text(
                        "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND pid <> pg_backend_pid()"
                        " AND xact_start IS NOT NULL"
                    )
                )
            ).scalar()
        assert open_ == 0
        [d] = await _rows(svc, WebhookDelivery, shop.shop_id)
        assert d.lease_until is not None and d.lease_token  # claimed by a lease, not by a held row lock
        held.close()
        await task
    finally:
        hang.close()


async def test_webhook_isolation_11_2_a_huge_answer_is_read_no_further_than_a_few_KiB(svc, shop):
    """A receiver answering 200 with a 64 MiB body: the worker reads at most a few KiB and closes the connection,
    so neither its memory nor its time grows with what a receiver sends."""
    size = 64 * 2**20
    sent = []

    def huge(conn, closed):
        conn.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 128 * 1024)
        conn.sendall(f"HTTP/1.1 200 OK\r\nContent-Length: {size}\r\n\r\n".encode())
        chunk, n = b"\0" * 65536, 0
        try:
            while n < size and not closed.is_set():
                conn.sendall(chunk)
                n += len(chunk)
        finally:
            sent.append(n)

    r = RawReceiver(huge)
    try:
        await webhooks.register_endpoint(svc, shop_id=shop.shop_id, url=r.url)
        await _emit(svc, shop.shop_id)
        tracemalloc.start()
        try:
            await asyncio.wait_for(webhooks.deliver_due(svc, timeout_s=3.0), timeout=10)
            _, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
        for _ in range(50):
            if sent:
                break
            await asyncio.sleep(0.1)
        assert sent and sent[0] < 16 * 2**20, sent  # the receiver could not push the body through
        assert peak < 16 * 2**20, peak
        [d] = await _rows(svc, WebhookDelivery, shop.shop_id)
        assert (d.state, d.last_status) == ("DELIVERED", 200)  # the status line is the answer
    finally:
        r.close()


async def test_webhook_isolation_11_2_the_worker_never_waits_for_its_slowest_lane(svc, shop):
    """The worker's delivery loop: while one shop's receiver holds a POST for the whole deadline, an event of
    another shop, emitted after that POST began, is delivered at once (a pass that waited for its slowest lane
    delayed it by the whole deadline)."""
    other = await shops.create_shop(svc, shop_id=f"t-{secrets.token_hex(5)}", name="Other", currency="CNY")
    hang = socket.socket()
    hang.bind(("127.0.0.1", 0))
    hang.listen(8)
    fast = Collector()
    stop = asyncio.Event()
    loop = None
    try:
        await webhooks.register_endpoint(svc, shop_id=shop.shop_id, url=f"http://127.0.0.1:{hang.getsockname()[1]}/h")
        await webhooks.register_endpoint(svc, shop_id=other.shop_id, url=fast.url)
        await _emit(svc, shop.shop_id)
        loop = asyncio.create_task(worker.worker_loop(svc, stop, interval=0.05))
        hang.settimeout(5)
        held, _ = await asyncio.to_thread(hang.accept)  # the slow POST is in flight (deadline 5 s)
        began = time.monotonic()
        await _emit(svc, other.shop_id)
        assert await asyncio.to_thread(fast.arrived.wait, 2.5)
        assert time.monotonic() - began < 2.5
        held.close()
    finally:
        stop.set()
        hang.close()
        if loop is not None:
            await asyncio.wait_for(loop, timeout=15)
        fast.close()


# ---------------------------------------------------------------- 11.3 SSRF

INTERNAL = [
    "http://127.0.0.1:8000/hook",
    "http://localhost/hook",
    "http://app.localhost/hook",
    "http://127.1/hook",
    "http://2130706433/hook",
    "http://0x7f000001/hook",
    "http://[::1]/hook",
    "http://[::ffff:127.0.0.1]/hook",
    "http://169.254.169.254/latest/meta-data/",
    "http://metadata.google.internal/computeMetadata/v1/",
    "http://10.0.0.5/hook",
    "http://172.16.3.4/hook",
    "http://192.168.1.10/hook",
    "http://100.64.0.1/hook",
    "http://224.0.0.1/hook",
    "http://0.0.0.0/hook",
    "http://[fe80::1]/hook",
    "http://[fd00::1]/hook",
    "http://[64:ff9b::7f00:1]/hook",
    "https://user:pw@hooks.example.com/hook",
    "https://hooks.example.com@127.0.0.1/hook",
    "ftp://hooks.example.com/x",
    "http:///nohost",
    "http://printer.local/hook",
    "http://db.internal:5432/",
]


@pytest.mark.parametrize("url", INTERNAL)
async def test_ssrf_11_3_registration_refuses_internal_targets(svc, shop, monkeypatch, url):
    """With loopback not allowed (production), every internal, loopback, link-local, private, CGNAT, multicast
    or unspecified target is refused — in every spelling — as are userinfo URLs; nothing is registered."""
    monkeypatch.setenv(webhook_targets.ALLOW_LOOPBACK_ENV, "0")
    with pytest.raises(RuleViolation) as e:
        await webhooks.register_endpoint(svc, shop_id=shop.shop_id, url=url)
    assert e.value.code == ErrorCode.INVALID_INPUT and e.value.field == "url"
    assert await webhooks.list_endpoints(svc, shop_id=shop.shop_id) == []


async def test_ssrf_11_3_a_public_address_is_accepted_and_loopback_only_by_the_setting(svc, shop, monkeypatch):
    monkeypatch.setenv(webhook_targets.ALLOW_LOOPBACK_ENV, "0")
    await webhooks.register_endpoint(svc, shop_id=shop.shop_id, url="https://93.184.215.14/hook")  # never posted to
    monkeypatch.setenv(webhook_targets.ALLOW_LOOPBACK_ENV, "1")
    await webhooks.register_endpoint(svc, shop_id=shop.shop_id, url="http://127.0.0.1:9/hook")
    with pytest.raises(RuleViolation):  # the setting allows loopback, nothing else
        await webhooks.register_endpoint(svc, shop_id=shop.shop_id, url="http://10.0.0.5/hook")
    assert len(await webhooks.list_endpoints(svc, shop_id=shop.shop_id)) == 2


async def test_ssrf_11_3_every_attempt_resolves_again_and_connects_to_the_checked_address(svc, shop, monkeypatch):
    """The name is resolved at every attempt and the POST goes to the address that was checked, with the name in
    the Host header (the client never resolves it again, so a rebinding answer between check and connect cannot
    be used). When the name now resolves to an address that is not allowed, nothing is sent, and the admin sees a
    generic failure."""
    r = Collector()
    answers = {"hooks.example.test": ["127.0.0.1"]}  # a name server for a name that has none

    async def resolve(host, port):
        if host not in answers:
            raise OSError("no such name")
        return answers[host]

    monkeypatch.setattr(webhook_targets, "resolver", resolve)
    try:
        port = r.url.split(":")[2].split("/")[0]
        url = r.url.replace("127.0.0.1", "hooks.example.test")
        await webhooks.register_endpoint(svc, shop_id=shop.shop_id, url=url)
        await _emit(svc, shop.shop_id, 1, prefix="first")
        await webhooks.deliver_due(svc)
        [(headers, _)] = r.got
        assert headers["host"] == f"hooks.example.test:{port}"

        monkeypatch.setenv(webhook_targets.ALLOW_LOOPBACK_ENV, "0")  # the name's address is no longer allowed
        await _emit(svc, shop.shop_id, 1, prefix="second")
        await webhooks.deliver_due(svc)
        assert len(r.got) == 1  # nothing was sent
        refused = [a for a in await _rows(svc, WebhookAttempt, shop.shop_id) if a.status_code is None]
        assert [a.error for a in refused] == [webhooks.GENERIC_FAILURE]
    finally:
        r.close()


async def test_ssrf_11_3_https_to_the_pinned_address_keeps_the_name_for_SNI_and_the_certificate(svc, shop, monkeypatch):
    """Over HTTPS the connection goes to the checked IP while the TLS handshake names the host (SNI) and the
    certificate is verified for that name: pinning does not weaken TLS. A certificate for another name fails."""
    import ssl
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    import trustme

    ca = trustme.CA()
    names: list[str | None] = []

    def serve(cert_for: str):
        ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        ca.issue_cert(cert_for).configure_cert(ctx)
        ctx.sni_callback = lambda sock, name, _: names.append(name)

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                self.rfile.read(int(self.headers["Content-Length"]))
                self.send_response(200)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *a):
                pass

        srv = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        srv.socket = ctx.wrap_socket(srv.socket, server_side=True)
        threading.Thread(target=srv.serve_forever, daemon=True).start()
        return srv

    async def resolve(host, port):
        return ["127.0.0.1"]

    monkeypatch.setattr(webhook_targets, "resolver", resolve)
    good, wrong = serve("hooks.example.test"), serve("other.example.test")
    client_ctx = ssl.create_default_context()
    ca.configure_trust(client_ctx)
    try:
        for srv in (good, wrong):
            await webhooks.register_endpoint(
                svc, shop_id=shop.shop_id, url=f"https://hooks.example.test:{srv.server_address[1]}/hook"
            )
        await _emit(svc, shop.shop_id)
        async with webhooks.webhook_client(verify=client_ctx) as client:
            await webhooks.deliver_due(svc, client=client)
        assert names and set(names) == {"hooks.example.test"}  # SNI: the name, not the IP
        statuses = sorted((d.last_status or 0) for d in await _rows(svc, WebhookDelivery, shop.shop_id))
        assert statuses == [0, 200]  # the certificate for another name was refused
    finally:
        for srv in (good, wrong):
            srv.shutdown()
            srv.server_close()


async def test_ssrf_11_3_attempt_records_do_not_tell_open_from_closed_ports(svc, shop):
    """A closed port (connection refused) and an open one that never answers (deadline) leave the same record:
    no status and one generic error, so attempts cannot be used to scan a network."""
    closed = socket.socket()
    closed.bind(("127.0.0.1", 0))
    closed_port = closed.getsockname()[1]
    closed.close()
    hang = socket.socket()
    hang.bind(("127.0.0.1", 0))
    hang.listen(8)
    try:
        for port in (closed_port, hang.getsockname()[1]):
            await webhooks.register_endpoint(svc, shop_id=shop.shop_id, url=f"http://127.0.0.1:{port}/h")
        await _emit(svc, shop.shop_id)
        await webhooks.deliver_due(svc, timeout_s=0.5)
        attempts = await _rows(svc, WebhookAttempt, shop.shop_id)
        assert sorted((a.status_code, a.error) for a in attempts) == [(None, webhooks.GENERIC_FAILURE)] * 2
        assert {d.last_error for d in await _rows(svc, WebhookDelivery, shop.shop_id)} == {webhooks.GENERIC_FAILURE}
    finally:
        hang.close()


# ---------------------------------------------------------------- 13.1 Standard Webhooks


async def test_standard_webhooks_13_1_every_delivery_verifies_with_the_official_package(svc, shop):
    """`webhook-id`, `webhook-timestamp` (the wall clock, though the service clock is 40 days ahead) and
    `webhook-signature: v1,<base64>` over `{id}.{timestamp}.{body}` under the decoded `whsec_` key: the
    `standardwebhooks` package verifies every delivery; secrets are standard base64 of 32 random bytes."""
    for _ in range(20):
        secret = webhooks.new_secret()
        assert secret.startswith("whsec_") and len(base64.b64decode(secret[6:], validate=True)) == 32
        Webhook(secret)  # the package accepts every fresh secret
    r = Collector()
    try:
        ep = await webhooks.register_endpoint(svc, shop_id=shop.shop_id, url=r.url)
        svc.clock.advance(timedelta(days=40))  # a test clock far from the wall clock
        await _emit(svc, shop.shop_id, 5)
        await webhooks.deliver_due(svc)  # (other tests' leftovers fall due too, 40 days on)
        assert len(r.got) == 5
        for headers, body in r.got:
            event = verify_standard(ep.secret, headers, body)
            assert event is not None and event["id"] == headers["webhook-id"]
            assert abs(int(headers["webhook-timestamp"]) - time.time()) < 60
            assert headers["webhook-signature"].startswith("v1,")
            assert json.loads(body) == event
    finally:
        r.close()
