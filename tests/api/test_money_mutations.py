"""Issue 10 point 2 through HTTP: the money mutations render what the use case wrote — no read after
commit. A mutation costs what an authenticated `{ __typename }` costs (authentication) plus the use
case's own statements: one locked load and one write (reportOrder: one)."""

from __future__ import annotations

from tests.api.test_query_count import StatementCounter
from tests.integration.test_money_paths import seed_available


def _cost(server, client, fn) -> tuple[int, object]:
    with StatementCounter(server["svc"].engine) as c:
        out = fn()
    return c.n, out


async def test_money_mutations_render_without_reading_again_after_commit(server, world, svc):
    sid = world["shop"].shop_id
    admin, backend, fin = world["as"]("boss", "admin"), world["as"]("be", "backend"), world["as"]("fin", "finance")
    dist = world["as"]("pat", "customer", "distributor")
    admin.mutate("updateDistributionSettings", {"minPayout": 100, "payoutFeeBp": 60}, "settings { minPayout }")
    await seed_available(svc, sid, "pat", 5_000)
    auth_backend, _ = _cost(server, backend, lambda: backend.data("{ __typename }"))
    auth_dist, _ = _cost(server, dist, lambda: dist.data("{ __typename }"))
    auth_fin, _ = _cost(server, fin, lambda: fin.data("{ __typename }"))

    n, r = _cost(
        server,
        backend,
        lambda: backend.mutate(
            "reportOrder",
            {"externalId": "m-1", "buyerId": "eve", "lines": [{"productRef": "x", "quantity": 1, "unitPrice": 10000}]},
            "order { id state goodsAmount buyerId }",
        ),
    )
    assert r["errors"] == [] and r["order"]["state"] == "CREATED" and r["order"]["goodsAmount"] == 10000
    assert n - auth_backend == 1, n
    oid = r["order"]["id"]
    backend.mutate("confirmPayment", {"orderId": oid, "amount": 10000, "providerRef": "m-pay"}, "accepted")

    n, r = _cost(
        server,
        backend,
        lambda: backend.mutate(
            "refundOrder", {"orderId": oid, "amount": 2500, "providerRef": "m-rf"}, "refund { id amount state full }"
        ),
    )
    assert r["errors"] == [] and r["refund"]["amount"] == 2500 and r["refund"]["full"] is False
    assert n - auth_backend == 2, n
    n, r = _cost(
        server,
        backend,
        lambda: backend.mutate("completeOrder", {"orderId": oid}, "order { state refundedAmount completedAt }"),
    )
    assert r["errors"] == [] and r["order"]["state"] == "COMPLETED" and r["order"]["refundedAmount"] == 2500
    assert n - auth_backend == 2, n

    n, r = _cost(server, dist, lambda: dist.mutate("requestPayout", {"amount": 1000}, "payout { id fee state }"))
    assert r["errors"] == [] and r["payout"]["fee"] == 6
    assert n - auth_dist == 2, n
    pid = r["payout"]["id"]
    n, r = _cost(
        server,
        fin,
        lambda: fin.mutate(
            "approvePayout", {"payoutId": pid, "externalRef": "b-1"}, "payout { state fee net externalRef }"
        ),
    )
    assert r["errors"] == [] and r["payout"] == {"state": "APPROVED", "fee": 6, "net": 994, "externalRef": "b-1"}
    assert n - auth_fin == 2, n
