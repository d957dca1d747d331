"""Live group progress over a real websocket (graphql-transport-ws), fed by PostgreSQL NOTIFY."""

from __future__ import annotations

import asyncio
import json
import secrets
from datetime import timedelta

import websockets

from api.types import global_id
from service import campaigns, groups, orders
from service.shops import create_shop


async def test_group_progress_pushes_seats_and_forming_over_websocket(server, svc):
    shop = await create_shop(svc, shop_id=f"ws-{secrets.token_hex(4)}", name="WS", currency="CNY")
    now = server["svc"].now()
    c = await campaigns.create_campaign(svc, shop_id=shop.shop_id, product_ref="p", title="t", list_price=1000,
                                        tiers=[(2, 900)], duration=timedelta(hours=1),
                                        payment_window=timedelta(minutes=10), starts_at=now - timedelta(minutes=5),
                                        ends_at=now + timedelta(days=1))
    svc.clock.set(now)
    lead = await groups.open_group(svc, shop_id=shop.shop_id, campaign_id=c.campaign_id, user_id="a")
    await orders.confirm_payment(svc, shop_id=shop.shop_id, order_id=lead.order_id, amount=900, provider_ref="w1")
    url = server["base"].replace("http", "ws") + "/graphql"
    async with websockets.connect(url, subprotocols=["graphql-transport-ws"],
                                  additional_headers={"X-Shop-Key": shop.public_key}) as ws:
        await ws.send(json.dumps({"type": "connection_init", "payload": {}}))
        assert json.loads(await ws.recv())["type"] == "connection_ack"
        await ws.send(json.dumps({"id": "1", "type": "subscribe", "payload": {
            "query": "subscription($g: ID!) { groupProgress(groupId: $g) { state seatsHeld seatsPaid seatsLeft } }",
            "variables": {"g": global_id("Group", lead.group_id)}}}))

        async def next_data():
            msg = json.loads(await asyncio.wait_for(ws.recv(), 20))
            assert msg["type"] == "next", msg
            return msg["payload"]["data"]["groupProgress"]

        assert await next_data() == {"state": "OPEN", "seatsHeld": 1, "seatsPaid": 1, "seatsLeft": 1}
        m = await groups.join_group(svc, shop_id=shop.shop_id, group_id=lead.group_id, user_id="b")
        assert await next_data() == {"state": "OPEN", "seatsHeld": 2, "seatsPaid": 1, "seatsLeft": 0}
        await orders.confirm_payment(svc, shop_id=shop.shop_id, order_id=m.order_id, amount=900, provider_ref="w2")
        assert (await next_data())["state"] == "FORMED"
