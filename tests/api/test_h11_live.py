"""Issue 11 point 4: subscriptions under a bounded flood (loopback only) — one read per change per process
fanned out to every subscriber, caps per connection, per shop and per process, and a token's expiry ends
its subscriptions."""

from __future__ import annotations

import asyncio
import json
import secrets
import time
from datetime import timedelta

import httpx
import pytest
import websockets

from api.auth import mint_token
from api.relay import global_id
from service.usecases import campaigns, groups, orders
from service.usecases.shops import create_shop

QUERY = "subscription($g: ID!) { groupProgress(groupId: $g) { seatsHeld state } }"
SOCKETS, PER_SOCKET = 10, 20  # 200 subscribers of one group


async def _group(svc, now):
    shop = await create_shop(svc, shop_id=f"live-{secrets.token_hex(4)}", name="Live", currency="CNY")
    c = await campaigns.create_campaign(
        svc,
        shop_id=shop.shop_id,
        product_ref="p",
        title="t",
        list_price=1000,
        tiers=[(5, 900)],
        duration=timedelta(hours=1),
        payment_window=timedelta(minutes=10),
        starts_at=now - timedelta(minutes=5),
        ends_at=now + timedelta(days=1),
    )
    svc.clock.set(now)
    lead = await groups.open_group(svc, shop_id=shop.shop_id, campaign_id=c.campaign_id, user_id="a")
    await orders.confirm_payment(svc, shop_id=shop.shop_id, order_id=lead.order_id, amount=900, provider_ref="l1")
    return shop, lead


async def _socket(base: str, headers: dict):
    ws = await websockets.connect(
        base.replace("http", "ws") + "/graphql", subprotocols=["graphql-transport-ws"], additional_headers=headers
    )
    await ws.send(json.dumps({"type": "connection_init", "payload": {}}))
    assert json.loads(await ws.recv())["type"] == "connection_ack"
    return ws


async def _subscribe(ws, sid: str, gid: str) -> None:
    await ws.send(json.dumps({"id": sid, "type": "subscribe", "payload": {"query": QUERY, "variables": {"g": gid}}}))


async def _recv(ws, timeout: float = 20) -> dict:
    return json.loads(await asyncio.wait_for(ws.recv(), timeout))


async def _nexts(ws, n: int) -> list[dict]:
    """The next `n` "next" messages (the "complete" after a refused one is skipped)."""
    out = []
    while len(out) < n:
        msg = await _recv(ws)
        if msg["type"] == "next":
            out.append(msg)
    return out


def _view(server):
    """The SharecartGraphQL view of the session's test server."""
    return server["app"].state.graphql


@pytest.mark.slow
async def test_h11_4_subscription_flood_one_read_per_change_and_caps(server, svc):
    listener = _view(server).listener
    shop, lead = await _group(svc, server["svc"].now())
    gid = global_id("Group", lead.group_id)
    sockets = [await _socket(server["base"], {"X-Shop-Key": shop.public_key}) for _ in range(SOCKETS)]
    try:
        for ws in sockets:
            for i in range(PER_SOCKET):
                await _subscribe(ws, str(i), gid)
        for ws in sockets:  # everyone has the current state
            for _ in range(PER_SOCKET):
                msg = await _recv(ws)
                assert msg["type"] == "next" and msg["payload"]["data"]["groupProgress"]["seatsHeld"] == 1
        # the per-connection cap: the 21st on one socket is refused with a code; the others go on
        await _subscribe(sockets[0], "extra", gid)
        msg = await _recv(sockets[0])
        assert msg["type"] == "next" and msg["payload"]["errors"][0]["extensions"]["code"] == "QUERY_TOO_COMPLEX"
        assert await _recv(sockets[0]) == {"id": "extra", "type": "complete"}
        # 200 idle subscribers do not slow a public query down
        started = time.monotonic()
        r = httpx.post(
            f"{server['base']}/graphql",
            json={"query": "{ campaigns { totalCount } }"},
            headers={"X-Shop-Key": shop.public_key},
        )
        assert r.status_code == 200 and time.monotonic() - started < 2.0
        # one change: one read, fanned out to all 200
        reads = listener.reads
        started = time.monotonic()
        await groups.join_group(svc, shop_id=shop.shop_id, group_id=lead.group_id, user_id="b")
        for ws in sockets:
            for _ in range(PER_SOCKET):
                msg = await _recv(ws)
                assert msg["payload"]["data"]["groupProgress"]["seatsHeld"] == 2
        fan_out = time.monotonic() - started
        assert listener.reads - reads == 1, f"{listener.reads - reads} reads for one change"
        assert fan_out < 10, f"fan-out of one change to {SOCKETS * PER_SOCKET} subscribers took {fan_out:.1f} s"
    finally:
        for ws in sockets:
            await ws.close()
    for _ in range(50):  # closed sockets leave nothing behind
        if listener.total == 0:
            break
        await asyncio.sleep(0.1)
    assert listener.total == 0 and not listener.topics


async def test_h11_4_caps_per_shop_and_per_process(database_url, svc):
    from datetime import datetime, timezone

    from api.app import create_app
    from tests.api.conftest import AppServer

    def small(s):
        app = create_app(s, dev=True)
        app.state.graphql.listener.max_per_shop, app.state.graphql.listener.max_total = 3, 5
        return app

    srv = AppServer(database_url, small)
    try:
        shop, lead = await _group(svc, datetime.now(timezone.utc))
        other, other_lead = await _group(svc, datetime.now(timezone.utc))
        ws = await _socket(srv.base, {"X-Shop-Key": shop.public_key})
        ws2 = await _socket(srv.base, {"X-Shop-Key": other.public_key})
        for i in range(4):
            await _subscribe(ws, str(i), global_id("Group", lead.group_id))
        got = await _nexts(ws, 4)
        refused = [m for m in got if m["payload"].get("errors")]
        assert len(refused) == 1 and refused[0]["payload"]["errors"][0]["extensions"]["scope"] == "per shop"
        for i in range(3):
            await _subscribe(ws2, str(i), global_id("Group", other_lead.group_id))
        got = await _nexts(ws2, 3)
        refused = [m for m in got if m["payload"].get("errors")]
        assert len(refused) == 1 and refused[0]["payload"]["errors"][0]["extensions"]["scope"] == "per process"
        await ws.close()
        await ws2.close()
    finally:
        srv.stop()


async def test_h11_4_an_expired_token_ends_its_subscriptions(server, svc):
    shop, lead = await _group(svc, server["svc"].now())
    token = mint_token(shop, "watcher", ["customer"], 2)
    ws = await _socket(server["base"], {"Authorization": f"Bearer {token}"})
    try:
        await _subscribe(ws, "1", global_id("Group", lead.group_id))
        first = await _recv(ws)
        assert first["type"] == "next" and first["payload"]["data"]["groupProgress"]["seatsHeld"] == 1
        msg = await _recv(ws, timeout=10)
        while msg["type"] == "next" and "errors" not in msg["payload"]:
            msg = await _recv(ws, timeout=10)
        codes = (
            [e["extensions"]["code"] for e in msg["payload"]["errors"]]
            if msg["type"] == "next"
            else [e.get("extensions", {}).get("code") for e in msg["payload"]]
        )
        assert codes == ["UNAUTHENTICATED"], msg
    finally:
        await ws.close()
