"""Child process for the restart test: does committed work, reports, then waits to be killed."""

import asyncio
import sys
from datetime import datetime, timedelta, timezone

from service import groups, orders, shops
from service.context import Services
from store.database import create_engine
from tests.integration.helpers import make_campaign


async def main(url: str, shop_id: str) -> None:
    svc = Services(engine=create_engine(url))
    svc.clock.set(datetime(2026, 1, 5, 10, 0, tzinfo=timezone.utc))
    await shops.create_shop(svc, shop_id=shop_id, name="restart", currency="CNY")
    c = await make_campaign(svc, shop_id, tiers=[(2, 8000), (3, 7000)])
    seat = await groups.open_group(svc, shop_id=shop_id, campaign_id=c.campaign_id, user_id="lead")
    await orders.confirm_payment(svc, shop_id=shop_id, order_id=seat.order_id, amount=seat.amount, provider_ref="r1")
    m = await groups.join_group(svc, shop_id=shop_id, group_id=seat.group_id, user_id="m1")
    await orders.confirm_payment(svc, shop_id=shop_id, order_id=m.order_id, amount=m.amount, provider_ref="r2")
    print(f"READY {seat.group_id}", flush=True)
    while True:  # killed here, mid-life, with due work outstanding (the group expires in 24 h)
        svc.clock.advance(timedelta(seconds=1))
        await asyncio.sleep(0.05)


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], sys.argv[2]))
