"""GB-10 for mutations a client may retry, beyond the group and payout ones: creating a campaign and
a shop, distributor status and level changes. The same key with the same input replays the first
result with no second effect; the same key with other input is IDEMPOTENCY_CONFLICT.
(tests/api/test_idempotency_keys.py covers the key on every mutation through the API.)"""

from __future__ import annotations

import asyncio
import secrets

import pytest
from sqlalchemy import func, select

from engine.errors import ErrorCode, RuleViolation
from engine.levels import Level
from service.usecases import distribution, shops
from store.models import CampaignRow, DistributionSettingsRow, Distributor, DistributorAudit, Shop
from tests.integration.helpers import assert_ledger_consistent, make_campaign


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
    assert (
        await _count(
            svc,
            select(func.count()).select_from(DistributionSettingsRow).where(DistributionSettingsRow.shop_id == shop_id),
        )
        == 1
    )
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
    made = await asyncio.gather(
        *[
            shops.create_shop(svc, shop_id=shop_id, name="A", currency="CNY", idempotency_key="cs-race")
            for _ in range(5)
        ]
    )
    assert len({s.public_key for s in made}) == 1
    assert await _count(svc, select(func.count()).select_from(Shop).where(Shop.shop_id == shop_id)) == 1


async def test_a_status_change_retried_after_a_later_change_replays_it_DS1_GB10(svc, shop):
    """Which statuses approve/suspend/reinstate start from is decided under the row lock, after the key:
    a retried approval still answers as the first one did, though the distributor was suspended since."""
    sid = shop.shop_id
    first = await distribution.change_status(
        svc, shop_id=sid, user_id="gus", change="approve_distributor", actor="boss", reason="", idempotency_key="ap-1"
    )
    assert first.status == "ACTIVE"
    await distribution.change_status(
        svc, shop_id=sid, user_id="gus", change="suspend_distributor", actor="boss", reason="fraud check"
    )
    with pytest.raises(RuleViolation) as e:  # approving is not reinstating (DS-1)
        await distribution.change_status(
            svc, shop_id=sid, user_id="gus", change="approve_distributor", actor="boss", reason=""
        )
    assert e.value.code == ErrorCode.INVALID_STATE
    again = await distribution.change_status(
        svc, shop_id=sid, user_id="gus", change="approve_distributor", actor="boss", reason="", idempotency_key="ap-1"
    )
    assert again.user_id == "gus" and again.status == "SUSPENDED"  # the first answer's row, as it stands now
    audits = select(func.count()).select_from(DistributorAudit).where(DistributorAudit.shop_id == sid)
    assert await _count(svc, audits) == 2


async def test_concurrent_retries_of_a_level_change_with_one_key_answer_the_first_result_LV4_GB10(svc, shop):
    sid = shop.shop_id
    await shops.set_levels(
        svc, shop_id=sid, levels=[Level(0, "Member", 1000, 500), Level(1, "Silver", 1200, 500, upgrade_bonus=700)]
    )
    await distribution.change_status(
        svc, shop_id=sid, user_id="gus", change="approve_distributor", actor="boss", reason=""
    )
    made = await asyncio.gather(
        *[
            distribution.set_level(
                svc, shop_id=sid, user_id="gus", grade=1, actor="boss", reason="VIP", idempotency_key="lv-1"
            )
            for _ in range(5)
        ]
    )
    assert {d.grade for d in made} == {1}
    async with svc.sessionmaker() as s:
        assert (await s.get(Distributor, (sid, "gus"))).available == 700  # LV-4 once
    await assert_ledger_consistent(svc, sid)
    with pytest.raises(RuleViolation) as e:
        await distribution.set_level(
            svc, shop_id=sid, user_id="gus", grade=0, actor="boss", reason="VIP", idempotency_key="lv-1"
        )
    assert e.value.code == ErrorCode.IDEMPOTENCY_CONFLICT
