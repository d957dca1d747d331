"""Survivors of the seed-72 mutation sample over service/ (issue 12), second batch: each killed by a test
through the service on a real PostgreSQL that asserts what a caller can see (the answer, the stored rows)."""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import func, select

from engine.errors import ErrorCode, RuleViolation
from service.reads import queries
from service.uow import unit_of_work
from service.usecases import campaigns, groups, orders
from store.models import CampaignRow, CampaignUserUnits, GroupRow, Order, Refund
from tests.integration.helpers import make_campaign, pay, pay_ref, raw_row
from tests.integration.test_rules_wired import paid_order


async def _units(svc, sid: str, campaign_id: str, user_id: str) -> int | None:
    row = await raw_row(svc, CampaignUserUnits, sid, campaign_id, user_id)
    return None if row is None else row.units


async def test_GB1_GB2_a_lapsed_reservation_gives_back_the_per_user_units(svc, shop):
    """GB-1/GB-2 (kills service/tx/lean.py `return_stock` const `(0, None)` -> `(1, None)`): a leader under a
    per-user limit of 1 who never pays holds 1 unit; once the payment window lapses and the worker releases the
    seat (the one-group path: claim_due_group + advance_claimed, lean writes), the units are back to 0 and the
    same user can open a group again."""
    sid = shop.shop_id
    c = await make_campaign(svc, sid, tiers=[(3, 8000)], stock=10, per_user_limit=1)
    first = await groups.open_group(svc, shop_id=sid, campaign_id=c.campaign_id, user_id="U")
    assert await _units(svc, sid, c.campaign_id, "U") == 1
    assert (await raw_row(svc, CampaignRow, sid, c.campaign_id)).stock_left == 9
    with pytest.raises(RuleViolation):  # the limit holds while the seat is reserved
        await groups.open_group(svc, shop_id=sid, campaign_id=c.campaign_id, user_id="U")

    svc.clock.advance(timedelta(hours=1))  # the 15-minute payment window has passed
    async with unit_of_work(svc) as s:
        claimed = await groups.claim_due_group(s, shop_id=sid, now=svc.now())
        assert claimed.group.id == first.group_id
        await groups.advance_claimed(s, claimed, now=svc.now())
    assert (await raw_row(svc, GroupRow, sid, first.group_id)).state == "CANCELLED"
    assert (await raw_row(svc, Order, sid, first.order_id)).state == "CANCELLED"
    assert await _units(svc, sid, c.campaign_id, "U") == 0
    assert (await raw_row(svc, CampaignRow, sid, c.campaign_id)).stock_left == 10  # the stock came back too

    again = await groups.open_group(svc, shop_id=sid, campaign_id=c.campaign_id, user_id="U")
    assert again.group_id != first.group_id
    assert await _units(svc, sid, c.campaign_id, "U") == 1


async def test_GB2_a_member_released_unpaid_can_join_again_under_a_limit_of_one(svc, shop):
    """GB-2/GB-11 (kills service/tx/lean.py `return_stock` const `(0, None)` -> `(1, None)`): a member who joined
    and never paid is released when a read catches the group up after the payment window; the member's units
    return to 0 and the member can join the same group again. Then the member leaves unpaid (GB-8): 0 again."""
    sid = shop.shop_id
    c = await make_campaign(svc, sid, tiers=[(3, 8000)], stock=10, per_user_limit=1)
    lead = await groups.open_group(svc, shop_id=sid, campaign_id=c.campaign_id, user_id="L")
    await pay(svc, sid, lead)
    await groups.join_group(svc, shop_id=sid, group_id=lead.group_id, user_id="m")
    assert await _units(svc, sid, c.campaign_id, "m") == 1

    svc.clock.advance(timedelta(minutes=20))  # past the member's window, far from the group's expiry
    await groups.catch_up(svc, shop_id=sid, group_ids=[lead.group_id])
    assert await _units(svc, sid, c.campaign_id, "m") == 0
    back = await groups.join_group(svc, shop_id=sid, group_id=lead.group_id, user_id="m")
    assert back.group.seat_for_order(back.order_id).user_id == "m"
    assert await _units(svc, sid, c.campaign_id, "m") == 1
    await groups.leave_group(svc, shop_id=sid, group_id=lead.group_id, user_id="m")
    assert await _units(svc, sid, c.campaign_id, "m") == 0
    assert (await raw_row(svc, Order, sid, back.order_id)).state == "CANCELLED"


async def test_GB11_the_storefront_batch_loads_answer_every_id_asked(svc, shop):
    """GB-11 (service/reads/queries.py CAMPAIGNS_BY_IDS / GROUPS_BY_IDS / SEATS_BY_GROUPS, the storefront's
    DataLoader batches): two campaigns and two groups asked at once come back keyed by id, each group with its
    own seats; another shop's id is not answered."""
    sid = shop.shop_id
    c1 = await make_campaign(svc, sid, tiers=[(3, 8000)])
    c2 = await make_campaign(svc, sid, tiers=[(2, 9000)], product_ref="sku-2")
    g1 = await groups.open_group(svc, shop_id=sid, campaign_id=c1.campaign_id, user_id="A")
    g2 = await groups.open_group(svc, shop_id=sid, campaign_id=c2.campaign_id, user_id="B")
    await pay(svc, sid, g2)
    await groups.join_group(svc, shop_id=sid, group_id=g2.group_id, user_id="C")

    got = await queries.campaigns_by_ids(svc, shop_id=sid, ids=[c1.campaign_id, c2.campaign_id, "cmp_nope"])
    assert set(got) == {c1.campaign_id, c2.campaign_id}
    assert (got[c1.campaign_id].list_price, got[c2.campaign_id].product_ref) == (10_000, "sku-2")
    assert await queries.campaigns_by_ids(svc, shop_id="other-shop", ids=[c1.campaign_id]) == {}

    gs = await queries.groups_by_ids_caught_up(svc, shop_id=sid, ids=[g1.group_id, g2.group_id])
    assert set(gs) == {g1.group_id, g2.group_id}
    assert sorted(s.user_id for s in gs[g1.group_id].seats) == ["A"]
    assert sorted(s.user_id for s in gs[g2.group_id].seats) == ["B", "C"]
    assert await queries.groups_by_ids_caught_up(svc, shop_id="other-shop", ids=[g1.group_id]) == {}


@pytest.mark.parametrize("ref", ["", None])
async def test_GB10_a_refund_without_a_provider_reference_is_refused_and_changes_nothing(svc, shop, ref):
    """GB-10 (kills service/usecases/orders.py `refund_order` stmt `raise refuse(... "providerRef" ...)` -> pass):
    a refund of a paid order with an empty (or missing) provider reference is INVALID_INPUT on `providerRef`,
    rule GB-10; no refund row is written and the order keeps its state and refunded amount."""
    sid = shop.shop_id
    o = await paid_order(svc, sid, "buyer", orders.LineInput("x", 1, 10_000))
    with pytest.raises(RuleViolation) as e:
        await orders.refund_order(svc, shop_id=sid, order_id=o.order_id, amount=1_000, provider_ref=ref)
    assert (e.value.code, e.value.field, e.value.rule) == (ErrorCode.INVALID_INPUT, "providerRef", "GB-10")
    async with svc.sessionmaker() as s:
        n = await s.scalar(select(func.count()).select_from(Refund).where(Refund.shop_id == sid))
        row = await s.get(Order, (sid, o.order_id))
    assert n == 0
    assert (row.state, row.paid_amount, row.refunded_amount) == ("PAID", 10_000, 0)


async def test_GB10_a_refund_retried_by_provider_reference_alone_is_a_replay(svc, shop):
    """GB-10/OR-2 (kills service/usecases/orders.py:477 bool `"replayed": True` -> False): a refund retried with
    the same provider reference and no idempotency key answers `replayed` True with the first refund's id and no
    refund; exactly one refund row exists and the order's refunded amount counts it once."""
    sid = shop.shop_id
    o = await paid_order(svc, sid, "buyer", orders.LineInput("x", 1, 10_000))
    ref = pay_ref()
    first = await orders.refund_order(svc, shop_id=sid, order_id=o.order_id, amount=1_000, provider_ref=ref)
    assert first["replayed"] is False and first["refund"] is not None
    again = await orders.refund_order(svc, shop_id=sid, order_id=o.order_id, amount=1_000, provider_ref=ref)
    assert (again["replayed"], again["refund_id"], again["order_id"], again["refund"]) == (
        True,
        first["refund_id"],
        o.order_id,
        None,
    )
    async with svc.sessionmaker() as s:
        n = await s.scalar(select(func.count()).select_from(Refund).where(Refund.shop_id == sid))
        row = await s.get(Order, (sid, o.order_id))
    assert (n, row.refunded_amount) == (1, 1_000)


async def test_CM3_a_campaign_created_with_commission_off_reads_back_off(svc, shop):
    """CM-3 (service/usecases/campaigns.py `create_campaign`, the `commission_enabled` switch; the engine
    Campaign's copy of it (line 71) is read by nothing, see the report): a campaign created with commission off is
    stored and read back off, by get_campaign and by the storefront's batch load; the default is on."""
    sid = shop.shop_id
    off = await make_campaign(svc, sid, commission_enabled=False)
    on = await make_campaign(svc, sid)
    assert (off.commission_enabled, on.commission_enabled) == (False, True)
    assert (await campaigns.get_campaign(svc, shop_id=sid, campaign_id=off.campaign_id)).commission_enabled is False
    got = await queries.campaigns_by_ids(svc, shop_id=sid, ids=[off.campaign_id, on.campaign_id])
    assert (got[off.campaign_id].commission_enabled, got[on.campaign_id].commission_enabled) == (False, True)
