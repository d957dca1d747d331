"""LG-2 through GraphQL: approvePayout charges the fee quoted at requestPayout, whatever the admin does
to `payoutFeeBp` in between (issue 10: a request quoted fee 6 was charged 1,000)."""

from __future__ import annotations

from engine.distribution import DistributorStatus
from service.usecases import distribution
from tests.integration.test_money_paths import seed_available


async def test_LG2_approvePayout_charges_the_fee_quoted_at_request_over_graphql(world, svc):
    sid = world["shop"].shop_id  # `svc`: this test's own loop (the server's runs in its thread)
    admin, fin = world["as"]("boss", "admin"), world["as"]("fin", "finance")
    dist = world["as"]("dora", "customer", "distributor")
    s = admin.mutate("updateDistributionSettings", {"minPayout": 100, "payoutFeeBp": 60}, "settings { payoutFeeBp }")
    assert s["errors"] == []
    await seed_available(svc, sid, "dora", 10_000)
    p = dist.mutate("requestPayout", {"amount": 1000}, "payout { id fee net state }")
    assert p["errors"] == [] and (p["payout"]["fee"], p["payout"]["net"]) == (6, 994)
    s = admin.mutate("updateDistributionSettings", {"payoutFeeBp": 10000}, "settings { payoutFeeBp }")
    assert s["settings"] == {"payoutFeeBp": 10000}
    ok = fin.mutate(
        "approvePayout", {"payoutId": p["payout"]["id"], "externalRef": "bank-1"}, "payout { state fee net }"
    )
    assert ok["errors"] == [] and ok["payout"] == {"state": "APPROVED", "fee": 6, "net": 994}
    me = dist.data("{ me { balances { available inPayout paid fees } } }")["me"]["balances"]
    assert me == {"available": 9000, "inPayout": 0, "paid": 994, "fees": 6}
    assert (
        await distribution.get_distributor(svc, shop_id=sid, user_id="dora")
    ).status == DistributorStatus.ACTIVE.value
