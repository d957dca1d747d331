"""Rules whose stored settings arrive through GraphQL (issue 12, point 2): each input field is set away
from its default in a mutation, and the rule's outcome shows that the API passed it on to the service.
The service-level twins are in tests/integration/test_rules_wired.py; docs/testing.md has the table."""

from __future__ import annotations

from datetime import timedelta

from engine.distribution import DistributorStatus
from service.usecases import distribution
from tests.api.conftest import payload_codes
from tests.integration.test_rules_wired import lines_of

ORDER = "order { id }"


async def _chain(svc, sid):
    for u in ("top", "ref", "buyer"):
        await distribution.set_status(
            svc, shop_id=sid, user_id=u, status=DistributorStatus.ACTIVE, actor="t", reason="t"
        )
    await distribution.bind_referrer(svc, shop_id=sid, user_id="ref", referrer_id="top")
    await distribution.bind_referrer(svc, shop_id=sid, user_id="buyer", referrer_id="ref")


def _paid(backend, ext, product="tea", qty=1, price=10_000) -> None:
    r = backend.mutate(
        "reportOrder",
        {
            "externalId": ext,
            "buyerId": "buyer",
            "lines": [{"productRef": product, "quantity": qty, "unitPrice": price}],
        },
        ORDER,
    )
    assert r["errors"] == [], r
    oid = r["order"]["id"]
    p = backend.mutate("confirmPayment", {"orderId": oid, "amount": qty * price, "providerRef": f"p-{ext}"}, "accepted")
    assert p["errors"] == [] and p["accepted"] is True, p


async def _raw(svc, sid, ext):
    """The raw order id (GraphQL answers a global id) of the order reported as `ext`."""
    from tests.integration.helpers import find_order

    async with svc.sessionmaker() as s:
        return (await find_order(s, sid, external_id=ext)).order_id


async def test_cm2_cm4_cm3_settings_set_over_graphql_decide_the_commission_api(world, svc):
    """CM-2 `selfPurchase`, CM-4 `maxTotalBp`, CM-3 `level1Bp`/`level2Bp` set with
    updateDistributionSettings; CM-3 product `level1Amount`/`level2Amount` and OR-3 `earnsCommission`
    with upsertProduct: the orders paid afterwards earn what those stored values say."""
    sid = world["shop"].shop_id
    admin, backend = world["as"]("boss", "admin"), world["as"]("be", "backend")
    await _chain(svc, sid)
    r = admin.mutate(
        "updateDistributionSettings", {"level1Bp": 1500, "level2Bp": 900, "maxTotalBp": 2000}, "settings { level1Bp }"
    )
    assert r["errors"] == [], r
    _paid(backend, "a1")
    o1 = await _raw(svc, sid, "a1")
    assert await lines_of(svc, sid, o1) == {"ref": 1500, "top": 500}  # cap 2000: level 2 cut first
    assert (
        admin.mutate("updateDistributionSettings", {"selfPurchase": True}, "settings { selfPurchase }")["errors"] == []
    )
    _paid(backend, "a2")
    o2 = await _raw(svc, sid, "a2")
    assert await lines_of(svc, sid, o2) == {"buyer": 1500, "ref": 500}
    assert (
        admin.mutate(
            "upsertProduct", {"productRef": "fixed", "level1Amount": 70, "level2Amount": 30}, "product { productRef }"
        )["errors"]
        == []
    )
    assert (
        admin.mutate("upsertProduct", {"productRef": "gift", "earnsCommission": False}, "product { productRef }")[
            "errors"
        ]
        == []
    )
    _paid(backend, "a3", product="fixed", qty=3)
    o3 = await _raw(svc, sid, "a3")
    assert await lines_of(svc, sid, o3) == {"buyer": 210, "ref": 90}
    _paid(backend, "a4", product="gift")
    o4 = await _raw(svc, sid, "a4")
    assert await lines_of(svc, sid, o4) == {}


async def test_gb3_gb4_campaign_fields_set_over_graphql_decide_the_group_api(world, svc):
    """GB-3 `leaderDiscount` and GB-4 `fillAtExpiry` given to createCampaign: the leader pays less, and a
    group short of its first tier forms at expiry with M paid seats."""
    from tests.api.test_e2e import make_campaign

    admin, backend, srv = world["as"]("boss", "admin"), world["as"]("be", "backend"), world["svc"]
    cid = make_campaign(
        admin, srv, tiers=[{"members": 3, "unitPrice": 8000}], leaderDiscount=700, fillAtExpiry=2, durationSeconds=3600
    )
    seat = "group { id state } order { id } amountToPay"
    lead = world["as"]("ann", "customer").mutate("openGroup", {"campaignId": cid}, seat)
    assert lead["errors"] == [] and lead["amountToPay"] == 7300
    backend.mutate("confirmPayment", {"orderId": lead["order"]["id"], "amount": 7300, "providerRef": "w-l"}, "accepted")
    m = world["as"]("bob", "customer").mutate("joinGroup", {"groupId": lead["group"]["id"]}, seat)
    assert m["errors"] == [] and m["amountToPay"] == 8000
    backend.mutate("confirmPayment", {"orderId": m["order"]["id"], "amount": 8000, "providerRef": "w-m"}, "accepted")
    srv.clock.advance(timedelta(hours=1, seconds=1))
    q = "query($id: ID!) { node(id: $id) { ... on Group { state tierReached { members } } } }"
    g = world["as"]("ann", "customer").data(q, id=lead["group"]["id"])["node"]
    assert g == {"state": "FORMED", "tierReached": {"members": 3}}


def test_webhook_subscription_to_an_unknown_event_type_is_invalid_input_api(world):
    """Event catalog (engine/events.py): registerWebhook takes only catalog types — a typo such as
    `group.formd` would match nothing and silently deliver nothing, so it is refused (ER-1)."""
    admin = world["as"]("boss", "admin")
    bad = admin.mutate(
        "registerWebhook",
        {"url": "http://127.0.0.1:9/h", "eventTypes": ["group.formed", "group.formd"]},
        "endpoint { id }",
    )
    assert payload_codes(bad) == ["INVALID_INPUT"] and bad["errors"][0]["field"] == "eventTypes"
    assert bad["endpoint"] is None
    ok = admin.mutate(
        "registerWebhook", {"url": "http://127.0.0.1:9/h", "eventTypes": ["group.formed"]}, "endpoint { id eventTypes }"
    )
    assert ok["errors"] == [] and ok["endpoint"]["eventTypes"] == ["group.formed"]
