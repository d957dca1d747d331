"""Child processes for the restart test (GB-11). Each is killed by the test, never stops by itself.

work   URL SHOP   commit a shop's history, then start one more join and stop inside its
                  transaction (writes sent, no commit): prints "IN_TX", waits to be killed.
worker URL SHOP   the service's own worker loop (`service.jobs.worker.worker_loop`) with the clock
                  past every due time of SHOP; with `--hang`, the first transaction that
                  advances one of SHOP's groups stops before its commit and prints "IN_TX".
"""

import asyncio
import sys
from datetime import datetime, timedelta, timezone

from engine.distribution import DistributionSettings, DistributorStatus
from service.usecases import distribution, groups, orders, shops
from service.tx import group_batch, lean
from service.jobs import worker
from service.context import Services
from store.database import create_engine
from tests.integration.helpers import make_campaign

T0 = datetime(2026, 1, 5, 10, 0, tzinfo=timezone.utc)
WORKER_AT = T0 + timedelta(hours=25)  # past the group's expiry, the reservation's window, the freeze


def stop_inside_transactions(shop_id: str) -> None:
    """The last statement of a group change is where this process stops: everything of the transaction
    has been sent to the server, nothing is committed. That is the lean write statement (which carries
    the NOTIFY) or the write of a batch of group decisions (service/group_batch.py: payments, formation,
    failure, the worker's batches)."""
    write = lean.Writes.run

    async def stall_after_write(self, session):
        out = await write(self, session)
        if self.shop_id == shop_id and self.notify:
            print(f"IN_TX {self.notify[0]}", flush=True)
            await asyncio.Event().wait()
        return out

    batch_flush = group_batch.GroupBatch.flush

    async def stall_after_batch(self):
        await batch_flush(self)
        if self.shop_id == shop_id and self.groups:
            print(f"IN_TX {sorted(self.groups)[0]}", flush=True)
            await asyncio.Event().wait()

    lean.Writes.run = stall_after_write
    group_batch.GroupBatch.flush = stall_after_batch


async def work(url: str, shop_id: str) -> None:
    svc = Services(engine=create_engine(url))
    svc.clock.set(T0)
    await shops.create_shop(
        svc,
        shop_id=shop_id,
        name="restart",
        currency="CNY",
        settings=DistributionSettings(level1_bp=1000, freeze_days=1),
    )
    c = await make_campaign(svc, shop_id, tiers=[(2, 8000), (3, 7000)], stock=10)
    lead = await groups.open_group(svc, shop_id=shop_id, campaign_id=c.campaign_id, user_id="lead")
    await orders.confirm_payment(svc, shop_id=shop_id, order_id=lead.order_id, amount=lead.amount, provider_ref="r1")
    m = await groups.join_group(svc, shop_id=shop_id, group_id=lead.group_id, user_id="m1")
    await orders.confirm_payment(svc, shop_id=shop_id, order_id=m.order_id, amount=m.amount, provider_ref="r2")
    late = await groups.open_group(svc, shop_id=shop_id, campaign_id=c.campaign_id, user_id="late")  # never pays
    await distribution.set_status(
        svc, shop_id=shop_id, user_id="d1", status=DistributorStatus.ACTIVE, actor="t", reason="t"
    )
    await distribution.bind_referrer(svc, shop_id=shop_id, user_id="b1", referrer_id="d1")
    o = await orders.report_order(
        svc, shop_id=shop_id, external_id="plain-1", buyer_id="b1", lines=[orders.LineInput("p", 1, 10_000)]
    )
    await orders.confirm_payment(svc, shop_id=shop_id, order_id=o.order_id, amount=10_000, provider_ref="r3")
    await orders.complete_order(svc, shop_id=shop_id, order_id=o.order_id)
    print(f"COMMITTED {c.campaign_id} {lead.group_id} {late.group_id} {late.order_id} {o.order_id}", flush=True)
    stop_inside_transactions(shop_id)
    await groups.join_group(svc, shop_id=shop_id, group_id=lead.group_id, user_id="ghost")  # killed in here
    raise AssertionError("the join was meant to stop before its commit")


async def run_worker(url: str, shop_id: str, hang: bool) -> None:
    svc = Services(engine=create_engine(url))
    svc.clock.set(WORKER_AT)
    if hang:
        stop_inside_transactions(shop_id)
    print("WORKER", flush=True)
    await worker.worker_loop(svc, asyncio.Event(), interval=0.2)


if __name__ == "__main__":
    mode, url, shop = sys.argv[1:4]
    if mode == "work":
        asyncio.run(work(url, shop))
    else:
        asyncio.run(run_worker(url, shop, hang="--hang" in sys.argv))
