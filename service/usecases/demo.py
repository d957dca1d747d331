"""A demo shop for first start, shaped so docs/walkthrough.md works from the printed tokens alone:

- a ladder campaign (2/3/5 people) and a plain 2-person campaign, each with an open group led by carol
  who has paid — so one more paid member forms the 2-person group on the spot (GB-4);
- a distributor tree alice <- bob <- {carol, dave}; bob is in good standing (DS-1);
- history: dave's order was paid and completed more than `freeze_days` ago, so bob's commission on it
  is already AVAILABLE (CM-6) and bob can ask for a payout that finance approves straight away (LG-2).

The history is made by running the ordinary use cases with the service clock set back (OR-5), then the
clock is restored and the work that became due is applied (GB-11, CM-6) — no row is forged.
"""

from __future__ import annotations

import contextlib
from datetime import timedelta

from engine.distribution import DistributionSettings, DistributorStatus
from engine.levels import Level
from service.usecases import campaigns, distribution, groups, orders, shops
from service.context import Services
from service.jobs.worker import release_due_lines
from service.reads import queries

DEMO_SHOP = "demo"
FREEZE_DAYS = 7
HISTORY = timedelta(days=FREEZE_DAYS + 3)  # how far back the first orders happened
PAIR_PRODUCT, LADDER_PRODUCT = "cup-celadon-pair", "tea-oolong-250g"
PAIR_PRICE = 4000  # what a member pays in the 2-person group (docs/walkthrough.md uses it)

# Who `sharecart serve` prints a token for, and docs/walkthrough.md acts as: name → (user id, roles)
DEMO_CALLERS: dict[str, tuple[str, tuple[str, ...]]] = {
    "erin": ("erin", ("customer",)),
    "frank": ("frank", ("customer",)),
    "gina": ("gina", ("customer",)),
    "carol": ("carol", ("customer",)),
    "bob": ("bob", ("customer", "distributor")),
    "admin": ("admin", ("admin",)),
    "finance": ("finance", ("finance",)),
    "backend": ("backend", ("backend",)),
}


@contextlib.contextmanager
def back_in_time(svc: Services, delta: timedelta):
    """Run the enclosed use cases `delta` ago on the service clock (OR-5), then restore it exactly."""
    svc.clock.advance(-delta)
    try:
        yield
    finally:
        svc.clock.advance(delta)


async def seed_demo(svc: Services, *, shop_id: str = DEMO_SHOP) -> dict:
    """Create the demo shop once; on later starts return what is there (ids of its campaigns and the
    2-person campaign's open group, if one is still open)."""
    existing = await shops.get_shop(svc, shop_id)
    if existing is not None:
        return {**await _find(svc, shop_id), "shop": existing, "created": False}
    with back_in_time(svc, HISTORY):
        shop = await _history(svc, shop_id)
    await release_due_lines(svc, shop_id=shop_id)  # dave's lines came due while the clock was back (CM-6)
    now = svc.now()
    ladder = await campaigns.create_campaign(
        svc,
        shop_id=shop_id,
        product_ref=LADDER_PRODUCT,
        title="Oolong ladder group",
        list_price=9900,
        tiers=[(2, 7900), (3, 6900), (5, 5900)],
        duration=timedelta(hours=24),
        payment_window=timedelta(minutes=15),
        starts_at=now - timedelta(hours=1),
        ends_at=now + timedelta(days=30),
        leader_discount=500,
        leader_commission_bp=300,
        stock=500,
        per_user_limit=3,
        max_quantity_per_order=2,
    )
    pair = await campaigns.create_campaign(
        svc,
        shop_id=shop_id,
        product_ref=PAIR_PRODUCT,
        title="Celadon cups, 2-person group",
        list_price=5000,
        tiers=[(2, PAIR_PRICE)],
        duration=timedelta(hours=24),
        payment_window=timedelta(minutes=30),
        starts_at=now - timedelta(hours=1),
        ends_at=now + timedelta(days=30),
    )
    for c, ref in ((ladder, "demo-pay-group-ladder"), (pair, "demo-pay-group-pair")):
        seat = await groups.open_group(svc, shop_id=shop_id, campaign_id=c.campaign_id, user_id="carol")
        await orders.confirm_payment(svc, shop_id=shop_id, order_id=seat.order_id, amount=seat.amount, provider_ref=ref)
    return {**await _find(svc, shop_id), "shop": shop, "created": True}


async def _history(svc: Services, shop_id: str):
    shop = await shops.create_shop(
        svc,
        shop_id=shop_id,
        name="Demo Tea House",
        currency="CNY",
        timezone="Asia/Shanghai",
        settings=DistributionSettings(
            level1_bp=1000, level2_bp=500, freeze_days=FREEZE_DAYS, min_payout=100, payout_fee_bp=60
        ),
    )
    await shops.set_levels(
        svc,
        shop_id=shop_id,
        levels=[
            Level(grade=0, name="Member", level1_bp=1000, level2_bp=500),
            Level(grade=1, name="Silver", level1_bp=1200, level2_bp=600, upgrade_bonus=500, min_direct_referrals=2),
            Level(
                grade=2,
                name="Gold",
                level1_bp=1500,
                level2_bp=800,
                upgrade_bonus=2000,
                min_direct_referrals=5,
                min_team_sales=100_000,
            ),
        ],
    )
    await shops.upsert_product(svc, shop_id=shop_id, product_ref=LADDER_PRODUCT, title="Oolong 250 g", category="tea")
    await shops.upsert_product(
        svc, shop_id=shop_id, product_ref=PAIR_PRODUCT, title="Celadon cups, pair", category="teaware"
    )
    await shops.upsert_product(svc, shop_id=shop_id, product_ref="cup-celadon", title="Celadon cup", category="teaware")
    # a distributor tree: alice <- bob <- carol, dave
    for user in ("alice", "bob"):
        await distribution.set_status(
            svc, shop_id=shop_id, user_id=user, status=DistributorStatus.ACTIVE, actor="demo", reason="demo seed"
        )
    await distribution.bind_referrer(svc, shop_id=shop_id, user_id="bob", referrer_id="alice")
    await distribution.bind_referrer(svc, shop_id=shop_id, user_id="carol", referrer_id="bob")
    await distribution.bind_referrer(svc, shop_id=shop_id, user_id="dave", referrer_id="bob")
    # dave's order: paid and completed back then, so its commission is available today (CM-6)
    o = await orders.report_order(
        svc,
        shop_id=shop_id,
        external_id="demo-1001",
        buyer_id="dave",
        lines=[orders.LineInput("cup-celadon", 2, 4500)],
        shipping_amount=800,
    )
    await orders.confirm_payment(svc, shop_id=shop_id, order_id=o.order_id, amount=9800, provider_ref="demo-pay-1001")
    await orders.complete_order(svc, shop_id=shop_id, order_id=o.order_id)
    # carol's order: paid, not yet delivered (bob's commission on it is pending)
    o2 = await orders.report_order(
        svc,
        shop_id=shop_id,
        external_id="demo-1002",
        buyer_id="carol",
        lines=[orders.LineInput(LADDER_PRODUCT, 1, 9900, discount=900)],
    )
    await orders.confirm_payment(svc, shop_id=shop_id, order_id=o2.order_id, amount=9000, provider_ref="demo-pay-1002")
    return shop


async def _find(svc: Services, shop_id: str) -> dict:
    by_product = {c.product_ref: c for c in await campaigns.list_campaigns(svc, shop_id=shop_id)}
    ladder, pair = by_product.get(LADDER_PRODUCT), by_product.get(PAIR_PRODUCT)
    open_ids = (
        (await queries.page_open_group_ids(svc, shop_id=shop_id, campaign_id=pair.campaign_id, limit=1, offset=0))[0]
        if pair
        else []
    )
    return {
        "campaign_id": ladder.campaign_id if ladder else None,
        "pair_campaign_id": pair.campaign_id if pair else None,
        "pair_group_id": open_ids[0] if open_ids else None,
    }
