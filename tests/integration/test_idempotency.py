"""GB-10 for the admin mutations a client may retry: creating a campaign and creating a shop.
The same key with the same input replays the first result with no second effect; the same key
with other input is IDEMPOTENCY_CONFLICT."""

from __future__ import annotations

import asyncio
import secrets

import pytest
from sqlalchemy import func, select

from engine.errors import ErrorCode, RuleViolation
from service import campaigns, shops
from store.models import CampaignRow, DistributionSettingsRow, Shop
from tests.integration.helpers import make_campaign


async def _count(svc, q) -> int:
    async with svc.sessionmaker() as s:
        return (await s.execute(q)).scalar_one()


def _campaigns_of(shop_id: str):
    return select(func.count()).select_from(CampaignRow).where(CampaignRow.shop_id == shop_id)


async def test_create_campaign_retried_with_one_key_creates_one_campaign_GB10(svc, shop):
    first = await make_campaign(svc, shop.shop_id, idempotency_key="cc-1")
    again = await make_campaign(svc, shop.shop_id, idempotency_key="cc-1")
    assert again.campaign_id == first.campaign_id and again.lottery_seed == first.lottery_seed
    assert await _count(svc, _campaigns_of(shop.shop_id)) == 1
    racing = await asyncio.gather(*[make_campaign(svc, shop.shop_id, idempotency_key="cc-2") for _ in range(5)])
    assert len({c.campaign_id for c in racing}) == 1  # concurrent retries wait for the first, then replay
    assert await _count(svc, _campaigns_of(shop.shop_id)) == 2
    with pytest.raises(RuleViolation) as e:
        await make_campaign(svc, shop.shop_id, idempotency_key="cc-1", title="another title")
    assert e.value.code == ErrorCode.IDEMPOTENCY_CONFLICT
    await make_campaign(svc, shop.shop_id)  # without a key every call creates
    await make_campaign(svc, shop.shop_id)
    assert await _count(svc, _campaigns_of(shop.shop_id)) == 4


async def test_create_shop_retried_with_one_key_replays_GB10(svc):
    shop_id = f"idem-{secrets.token_hex(4)}"
    first = await shops.create_shop(svc, shop_id=shop_id, name="A", currency="CNY", idempotency_key="cs-1")
    again = await shops.create_shop(svc, shop_id=shop_id, name="A", currency="CNY", idempotency_key="cs-1")
    assert (again.shop_id, again.public_key, again.jwt_secret) == (first.shop_id, first.public_key, first.jwt_secret)
    assert await _count(svc, select(func.count()).select_from(DistributionSettingsRow)
                        .where(DistributionSettingsRow.shop_id == shop_id)) == 1
    with pytest.raises(RuleViolation) as e:
        await shops.create_shop(svc, shop_id=shop_id, name="B", currency="CNY", idempotency_key="cs-1")
    assert e.value.code == ErrorCode.IDEMPOTENCY_CONFLICT
    for key in (None, "cs-other"):  # an id already taken, by another request, stays refused
        with pytest.raises(RuleViolation) as e:
            await shops.create_shop(svc, shop_id=shop_id, name="A", currency="CNY", idempotency_key=key)
        assert e.value.code == ErrorCode.INVALID_INPUT
    assert (await shops.get_shop(svc, shop_id)).name == "A"


async def test_concurrent_create_shop_with_one_key_creates_it_once_GB10(svc):
    shop_id = f"idem-{secrets.token_hex(4)}"
    made = await asyncio.gather(*[shops.create_shop(svc, shop_id=shop_id, name="A", currency="CNY",
                                                    idempotency_key="cs-race") for _ in range(5)])
    assert len({s.public_key for s in made}) == 1
    assert await _count(svc, select(func.count()).select_from(Shop).where(Shop.shop_id == shop_id)) == 1
