"""Citus readiness (docs/sharding.md): every query that locks or looks up one shop's rows names the
shop, so on a cluster distributed by `shop_id` it routes to one shard."""

from __future__ import annotations

import json
import re
import secrets
from datetime import timedelta

from engine.distribution import DistributorStatus
from service.usecases import distribution, groups, orders, shops
from service.jobs import worker
from store.models import Distributor, GroupRow
from tests.integration.helpers import make_campaign, pay, raw_row, recorded_statements


async def test_public_key_names_its_shop_and_resolves_only_with_it_DS2(svc, shop):
    assert shops.shop_of_public_key(shop.public_key) == shop.shop_id
    assert (await shops.shop_by_public_key(svc, shop.public_key)).shop_id == shop.shop_id
    other = await shops.create_shop(svc, shop_id=f"t-{secrets.token_hex(5)}", name="Other", currency="CNY")
    random_part = shop.public_key.rsplit("_", 1)[1]
    forged = f"pk_{other.shop_id}_{random_part}"  # the right secret under another shop's name
    for bad in (forged, f"pk_{shop.shop_id}_{'0' * 16}", "garbage", "", shop.public_key + "0", shop.public_key.upper()):
        assert await shops.shop_by_public_key(svc, bad) is None, bad


async def test_worker_locks_only_with_the_shop_in_the_where_GB11(svc, shop):
    """Citus runs `FOR UPDATE` only on a query routed to one shard: every locking statement the
    worker sends names its shop; only the discovery reads (no lock) span shops."""
    await distribution.set_status(
        svc, shop_id=shop.shop_id, user_id="d1", status=DistributorStatus.ACTIVE, actor="t", reason="t"
    )
    await distribution.bind_referrer(svc, shop_id=shop.shop_id, user_id="b1", referrer_id="d1")
    o = await orders.report_order(
        svc, shop_id=shop.shop_id, external_id="o1", buyer_id="b1", lines=[orders.LineInput("p", 1, 10_000)]
    )
    await pay(svc, shop.shop_id, o.order_id, amount=10_000)
    await orders.complete_order(svc, shop_id=shop.shop_id, order_id=o.order_id)
    c = await make_campaign(svc, shop.shop_id)
    seat = await groups.open_group(svc, shop_id=shop.shop_id, campaign_id=c.campaign_id, user_id="b2")
    svc.clock.advance(timedelta(days=30))
    with recorded_statements(svc) as sent:
        assert await worker.run_due(svc) >= 2
    assert (await raw_row(svc, GroupRow, shop.shop_id, seat.group_id)).state == "CANCELLED"
    assert (await raw_row(svc, Distributor, shop.shop_id, "d1")).available == 1_000
    locking = [q for q in sent if "FOR UPDATE" in q.upper()]
    assert locking and all(re.search(r"\bshop_id = ", q) for q in locking), locking
    spanning = [
        q
        for q in sent
        if re.match(r"\s*(SELECT|UPDATE|DELETE)\b.*\b(FROM|UPDATE) [a-z_]+", q, re.S | re.I) and "shop_id = " not in q
    ]
    assert spanning and all(q.startswith("SELECT DISTINCT shop_id FROM") for q in spanning), spanning


async def test_webhook_delivery_locks_only_with_the_shop_in_the_where(svc, shop):
    """Webhook delivery claims shop by shop too: its locking statements name the shop; the only
    statement spanning shops is the discovery read of shops with due deliveries."""
    import httpx

    from service.usecases import webhooks

    await webhooks.register_endpoint(svc, shop_id=shop.shop_id, url="http://127.0.0.1:9/hook")
    o = await orders.report_order(
        svc, shop_id=shop.shop_id, external_id="w1", buyer_id="b1", lines=[orders.LineInput("p", 1, 1_000)]
    )
    await pay(svc, shop.shop_id, o.order_id, amount=1_000)
    posted = []

    def receive(request: httpx.Request) -> httpx.Response:
        posted.append(json.loads(request.content)["type"])
        return httpx.Response(200)

    async with httpx.AsyncClient(transport=httpx.MockTransport(receive)) as client:
        with recorded_statements(svc) as sent:
            assert await webhooks.deliver_due(svc, client=client) >= 1
    assert "order.paid" in posted
    locking = [q for q in sent if "FOR UPDATE" in q.upper()]
    assert locking and all(re.search(r"\bshop_id = ", q) for q in locking), locking
    spanning = [
        q
        for q in sent
        if re.match(r"\s*(SELECT|UPDATE|DELETE)\b.*\b(FROM|UPDATE) [a-z_]+", q, re.S | re.I) and "shop_id = " not in q
    ]
    assert all(q.startswith("SELECT DISTINCT shop_id FROM") for q in spanning), spanning
