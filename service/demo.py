"""A demo shop for first start: a running campaign, a few users, a distributor tree, some orders."""

from __future__ import annotations

from datetime import timedelta

from engine.distribution import DistributionSettings, DistributorStatus
from engine.levels import Level
from service import campaigns, distribution, groups, orders, shops
from service.context import Services

DEMO_SHOP = "demo"


async def seed_demo(svc: Services, *, shop_id: str = DEMO_SHOP) -> dict:
    """Idempotent: returns the existing demo's ids when it is already there."""
    existing = await shops.get_shop(svc, shop_id)
    if existing is not None:
        cs = await campaigns.list_campaigns(svc, shop_id=shop_id)
        return {"shop": existing, "campaign_id": cs[0].campaign_id if cs else None, "created": False}
    shop = await shops.create_shop(
        svc, shop_id=shop_id, name="Demo Tea House", currency="CNY", timezone="Asia/Shanghai",
        settings=DistributionSettings(level1_bp=1000, level2_bp=500, freeze_days=7, min_payout=100,
                                      payout_fee_bp=60),
    )
    await shops.set_levels(svc, shop_id=shop_id, levels=[
        Level(grade=0, name="Member", level1_bp=1000, level2_bp=500),
        Level(grade=1, name="Silver", level1_bp=1200, level2_bp=600, upgrade_bonus=500, min_direct_referrals=2),
        Level(grade=2, name="Gold", level1_bp=1500, level2_bp=800, upgrade_bonus=2000, min_direct_referrals=5,
              min_team_sales=100_000),
    ])
    await shops.upsert_product(svc, shop_id=shop_id, product_ref="tea-oolong-250g", title="Oolong 250 g",
                               category="tea")
    await shops.upsert_product(svc, shop_id=shop_id, product_ref="cup-celadon", title="Celadon cup",
                               category="teaware")
    now = svc.now()
    c = await campaigns.create_campaign(
        svc, shop_id=shop_id, product_ref="tea-oolong-250g", title="Oolong ladder group", list_price=9900,
        tiers=[(2, 7900), (3, 6900), (5, 5900)], duration=timedelta(hours=24), payment_window=timedelta(minutes=15),
        starts_at=now - timedelta(hours=1), ends_at=now + timedelta(days=30), leader_discount=500,
        leader_commission_bp=300, stock=500, per_user_limit=3, max_quantity_per_order=2,
    )
    # a distributor tree: alice <- bob <- carol; dave buys through bob
    for user in ("alice", "bob"):
        await distribution.set_status(svc, shop_id=shop_id, user_id=user, status=DistributorStatus.ACTIVE,
                                      actor="demo", reason="demo seed")
    await distribution.bind_referrer(svc, shop_id=shop_id, user_id="bob", referrer_id="alice")
    await distribution.bind_referrer(svc, shop_id=shop_id, user_id="carol", referrer_id="bob")
    await distribution.bind_referrer(svc, shop_id=shop_id, user_id="dave", referrer_id="bob")
    # one plain order paid and completed, one paid
    o = await orders.report_order(svc, shop_id=shop_id, external_id="demo-1001", buyer_id="dave",
                                  lines=[orders.LineInput("cup-celadon", 2, 4500)], shipping_amount=800)
    await orders.confirm_payment(svc, shop_id=shop_id, order_id=o.order_id, amount=9800, provider_ref="demo-pay-1001")
    await orders.complete_order(svc, shop_id=shop_id, order_id=o.order_id)
    o2 = await orders.report_order(svc, shop_id=shop_id, external_id="demo-1002", buyer_id="carol",
                                   lines=[orders.LineInput("tea-oolong-250g", 1, 9900, discount=900)])
    await orders.confirm_payment(svc, shop_id=shop_id, order_id=o2.order_id, amount=9000, provider_ref="demo-pay-1002")
    # an open group led by carol, paid, waiting for friends
    seat = await groups.open_group(svc, shop_id=shop_id, campaign_id=c.campaign_id, user_id="carol")
    await orders.confirm_payment(svc, shop_id=shop_id, order_id=seat.order_id, amount=seat.amount,
                                 provider_ref="demo-pay-group-1")
    return {"shop": shop, "campaign_id": c.campaign_id, "group_id": seat.group_id, "created": True}
