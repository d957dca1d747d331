"""Citus readiness (docs/sharding.md): every query that locks or looks up one shop's rows names the
shop, so on a cluster distributed by `shop_id` it routes to one shard."""

from __future__ import annotations

import secrets

from service import shops


async def test_public_key_names_its_shop_and_resolves_only_with_it_DS2(svc, shop):
    assert shops.shop_of_public_key(shop.public_key) == shop.shop_id
    assert (await shops.shop_by_public_key(svc, shop.public_key)).shop_id == shop.shop_id
    other = await shops.create_shop(svc, shop_id=f"t-{secrets.token_hex(5)}", name="Other", currency="CNY")
    random_part = shop.public_key.rsplit("_", 1)[1]
    forged = f"pk_{other.shop_id}_{random_part}"  # the right secret under another shop's name
    for bad in (forged, f"pk_{shop.shop_id}_{'0' * 16}", "garbage", "", shop.public_key + "0",
                shop.public_key.upper()):
        assert await shops.shop_by_public_key(svc, bad) is None, bad
