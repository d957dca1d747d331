"""Live group progress over a real websocket (graphql-transport-ws), fed by PostgreSQL NOTIFY."""

from __future__ import annotations

import asyncio
import json
import secrets
from datetime import timedelta

import websockets

from api.relay import global_id
from service.usecases import campaigns, groups, orders
from service.usecases.shops import create_shop


async def test_group_progress_pushes_seats_and_forming_over_websocket(server, svc):
    shop = await create_shop(svc, shop_id=f"ws-{secrets.token_hex(4)}", name="WS", currency="CNY")
    now = server["svc"].now()
    c = await campaigns.create_campaign(
        svc,
        shop_id=shop.shop_id,
        product_ref="p",
        title="t",
        list_price=1000,
        tiers=[(2, 900)],
        duration=timedelta(hours=1),
        payment_window=timedelta(minutes=10),
        starts_at=now - timedelta(minutes=5),
        ends_at=now + timedelta(days=1),
    )
    svc.clock.set(now)
    lead = await groups.open_group(svc, shop_id=shop.shop_id, campaign_id=c.campaign_id, user_id="a")
    await orders.confirm_payment(svc, shop_id=shop.shop_id, order_id=lead.order_id, amount=900, provider_ref="w1")
    url = server["base"].replace("http", "ws") + "/graphql"
    async with websockets.connect(
        url, subprotocols=["graphql-transport-ws"], additional_headers={"X-Shop-Key": shop.public_key}
    ) as ws:
        await ws.send(json.dumps({"type": "connection_init", "payload": {}}))
        assert json.loads(await ws.recv())["type"] == "connection_ack"
        await ws.send(
            json.dumps(
                {
                    "id": "1",
                    "type": "subscribe",
                    "payload": {
                        "query": "subscription($g: ID!) { groupProgress(groupId: $g) { state seatsHeld seatsPaid seatsLeft } }",
                        "variables": {"g": global_id("Group", lead.group_id)},
                    },
                }
            )
        )

        async def next_data():
            msg = json.loads(await asyncio.wait_for(ws.recv(), 20))
            assert msg["type"] == "next", msg
            return msg["payload"]["data"]["groupProgress"]

        assert await next_data() == {"state": "OPEN", "seatsHeld": 1, "seatsPaid": 1, "seatsLeft": 1}
        m = await groups.join_group(svc, shop_id=shop.shop_id, group_id=lead.group_id, user_id="b")
        assert await next_data() == {"state": "OPEN", "seatsHeld": 2, "seatsPaid": 1, "seatsLeft": 0}
        await orders.confirm_payment(svc, shop_id=shop.shop_id, order_id=m.order_id, amount=900, provider_ref="w2")
        assert (await next_data())["state"] == "FORMED"


async def test_changes_made_through_another_service_process_reach_subscribers_of_both(svc, database_url):
    """Two `sharecart serve` processes on one database: a websocket on each (credentials in
    connection_init, as a browser sends them); the join and the payments go through the second process's
    HTTP API. Only PostgreSQL NOTIFY connects them — nothing is shared in memory. (Both are fresh
    processes so they share the wall clock; the in-test server's clock may have been advanced.)"""
    from datetime import datetime, timezone

    from api.auth import mint_token
    from tests.api.conftest import Client, ServiceProcess

    shop = await create_shop(svc, shop_id=f"ws2-{secrets.token_hex(4)}", name="WS2", currency="CNY")
    now = datetime.now(timezone.utc)
    svc.clock.set(now)
    c = await campaigns.create_campaign(
        svc,
        shop_id=shop.shop_id,
        product_ref="p",
        title="t",
        list_price=1000,
        tiers=[(2, 900)],
        duration=timedelta(hours=1),
        payment_window=timedelta(minutes=10),
        starts_at=now - timedelta(minutes=5),
        ends_at=now + timedelta(days=1),
    )
    lead = await groups.open_group(svc, shop_id=shop.shop_id, campaign_id=c.campaign_id, user_id="a")
    await orders.confirm_payment(svc, shop_id=shop.shop_id, order_id=lead.order_id, amount=900, provider_ref="x1")
    gid = global_id("Group", lead.group_id)
    first = ServiceProcess(database_url, "--no-demo", "--no-worker")
    other = ServiceProcess(database_url, "--no-demo", "--no-worker")
    try:
        assert other.base != first.base
        sub = {
            "query": "subscription($g: ID!) { groupProgress(groupId: $g) { state seatsHeld seatsPaid } }",
            "variables": {"g": gid},
        }
        inits = [
            (first.base, {"shopKey": shop.public_key}),
            (other.base, {"Authorization": f"Bearer {mint_token(shop, 'watcher', ['customer'], 600)}"}),
        ]
        sockets = []
        for base, payload in inits:
            ws = await websockets.connect(
                base.replace("http", "ws") + "/graphql", subprotocols=["graphql-transport-ws"]
            )
            await ws.send(json.dumps({"type": "connection_init", "payload": payload}))
            assert json.loads(await ws.recv())["type"] == "connection_ack"
            await ws.send(json.dumps({"id": "1", "type": "subscribe", "payload": sub}))
            sockets.append(ws)

        async def next_on_each():
            out = []
            for ws in sockets:
                msg = json.loads(await asyncio.wait_for(ws.recv(), 20))
                assert msg["type"] == "next", msg
                out.append(msg["payload"]["data"]["groupProgress"])
            return out

        assert await next_on_each() == [{"state": "OPEN", "seatsHeld": 1, "seatsPaid": 1}] * 2
        via_other = Client(other.base, mint_token(shop, "b", ["customer"], 600))
        seat = via_other.mutate("joinGroup", {"groupId": gid}, "order { id }")
        assert seat["errors"] == []
        assert await next_on_each() == [{"state": "OPEN", "seatsHeld": 2, "seatsPaid": 1}] * 2
        backend = Client(other.base, mint_token(shop, "be", ["backend"], 600))
        paid = backend.mutate(
            "confirmPayment", {"orderId": seat["order"]["id"], "amount": 900, "providerRef": "x2"}, "accepted"
        )
        assert paid["accepted"] is True
        assert [p["state"] for p in await next_on_each()] == ["FORMED", "FORMED"]
        for ws in sockets:  # a final state ends the subscription on both
            assert json.loads(await asyncio.wait_for(ws.recv(), 20))["type"] == "complete"
            await ws.close()
    finally:
        first.stop()
        other.stop()
