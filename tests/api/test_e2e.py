"""End to end through real HTTP: storefront, distributor and finance journeys; roles × shops."""

from __future__ import annotations

import secrets
from datetime import timedelta

import httpx
import jwt
import pytest

from api.auth import mint_token
from service.shops import create_shop
from tests.api.conftest import Client


@pytest.fixture
async def world(server, svc):
    shop = await create_shop(svc, shop_id=f"e2e-{secrets.token_hex(4)}", name="E2E", currency="CNY")
    other = await create_shop(svc, shop_id=f"e2e-{secrets.token_hex(4)}", name="Other", currency="JPY")
    base = server["base"]

    def as_(user, *roles, s=shop):
        return Client(base, mint_token(s, user, list(roles), 3600))

    return {"shop": shop, "other": other, "as": as_, "base": base, "svc": server["svc"]}


CAMPAIGN = """campaign { id tiers { members unitPrice } }"""


def _campaign(admin: Client, svc, **kw) -> str:
    now = svc.now()
    inp = {"productRef": "sku-1", "title": "Tea", "listPrice": 10000,
           "tiers": [{"members": 2, "unitPrice": 8000}, {"members": 3, "unitPrice": 7000}],
           "durationSeconds": 86400, "paymentWindowSeconds": 900,
           "startsAt": (now - timedelta(hours=1)).isoformat(), "endsAt": (now + timedelta(days=5)).isoformat()}
    inp.update(kw)
    r = admin.mutate("createCampaign", inp, CAMPAIGN)
    assert r["errors"] == [], r
    return r["campaign"]["id"]


SEAT = "groupId orderId amountToPay currency"


def test_storefront_journey_open_join_pay_form_refund_owed(world):
    admin, backend = world["as"]("boss", "admin"), world["as"]("be", "backend")
    cid = _campaign(admin, world["svc"])
    lead = world["as"]("ann", "customer").mutate("openGroup", {"campaignId": cid}, SEAT)
    assert lead["errors"] == [] and lead["amountToPay"] == 8000 and lead["currency"] == "CNY"
    paid = backend.mutate("confirmPayment", {"orderId": lead["orderId"], "amount": 8000, "providerRef": "p-ann"},
                          "accepted replayed")
    assert paid["accepted"] is True
    again = backend.mutate("confirmPayment", {"orderId": lead["orderId"], "amount": 8000, "providerRef": "p-ann"},
                           "accepted replayed")
    assert again["replayed"] is True  # GB-10
    for u in ("bob", "cat"):
        s = world["as"](u, "customer").mutate("joinGroup", {"groupId": lead["groupId"]}, SEAT)
        assert s["errors"] == []
        backend.mutate("confirmPayment", {"orderId": s["orderId"], "amount": 8000, "providerRef": f"p-{u}"},
                       "accepted")
    full = world["as"]("dan", "customer").mutate("joinGroup", {"groupId": lead["groupId"]}, SEAT)
    assert [e["code"] for e in full["errors"]] == ["GROUP_NOT_OPEN"]
    g = world["as"]("ann", "customer").gql("query($id: String!) { group(id: $id) { state tierMembers seatsLeft } }",
                                           id=lead["groupId"])["data"]["group"]
    assert g == {"state": "FORMED", "tierMembers": 3, "seatsLeft": 0}
    owed = backend.gql("{ owedRefunds(first: 10) { totalCount edges { node { id amount rule } } } }")
    nodes = [e["node"] for e in owed["data"]["owedRefunds"]["edges"]]
    assert sorted((n["amount"], n["rule"]) for n in nodes) == [(1000, "GB-5")] * 3
    c = backend.mutate("confirmRefund", {"refundId": nodes[0]["id"], "providerRef": "rf-1"}, "refund { state }")
    assert c["refund"]["state"] == "CONFIRMED"


def test_distributor_and_finance_journey(world):
    admin, backend, fin = world["as"]("boss", "admin"), world["as"]("be", "backend"), world["as"]("fin", "finance")
    dist = world["as"]("dora", "customer", "distributor")
    me = dist.gql("{ me { inviteCode balances { available } } }")["data"]["me"]
    code = me["inviteCode"]
    anon = Client(world["base"], shop_key=world["shop"].public_key)
    assert anon.gql("query($c: String!) { resolveInvite(code: $c) { valid } }", c=code)["data"]["resolveInvite"] == {
        "valid": True}
    buyer = world["as"]("eve", "customer")
    assert buyer.mutate("bindReferrer", {"inviteCode": code}, "changed")["changed"] is True
    o = backend.mutate("reportOrder", {"externalId": "shop-1", "buyerId": "eve",
                                       "lines": [{"productRef": "x", "quantity": 2, "unitPrice": 5000}]},
                       "order { id }")["order"]
    backend.mutate("confirmPayment", {"orderId": o["id"], "amount": 10000, "providerRef": "pay-shop-1"}, "accepted")
    assert dist.gql("{ me { balances { pending } level1 { count sales } } }")["data"]["me"] == {
        "balances": {"pending": 1000}, "level1": {"count": 1, "sales": 10000}}
    backend.mutate("completeOrder", {"orderId": o["id"]}, "order { state }")
    admin.mutate("advanceClock", {"seconds": 8 * 86400}, "now")
    assert dist.gql("{ me { balances { frozen available } } }")["data"]["me"]["balances"] == {
        "frozen": 0, "available": 1000}
    low = dist.mutate("requestPayout", {"amount": 50}, "payout { id }")
    assert [e["code"] for e in low["errors"]] == ["PAYOUT_BELOW_MINIMUM"]
    p = dist.mutate("requestPayout", {"amount": 600, "idempotencyKey": "k1"}, "payout { id state }")["payout"]
    too_much = dist.mutate("requestPayout", {"amount": 600}, "payout { id }")
    assert [e["code"] for e in too_much["errors"]] == ["INSUFFICIENT_BALANCE"]
    pending = fin.gql("{ pendingPayouts { edges { node { id amount } } } }")["data"]["pendingPayouts"]["edges"]
    assert [e["node"]["id"] for e in pending] == [p["id"]]
    ok = fin.mutate("approvePayout", {"payoutId": p["id"], "externalRef": "bank-9"}, "payout { state }")
    assert ok["payout"]["state"] == "APPROVED"
    assert dist.gql("{ me { balances { available paid } } }")["data"]["me"]["balances"] == {
        "available": 400, "paid": 600}


OPS = {
    "openGroup": ("customer", 'mutation { openGroup(input: {campaignId: "x"}) { errors { code } } }'),
    "confirmPayment": ("backend",
                       'mutation { confirmPayment(input: {orderId: "x", amount: 1, providerRef: "r"}) { errors { code } } }'),
    "createCampaign": ("admin", 'mutation { suspendDistributor(input: {userId: "x"}) { errors { code } } }'),
    "approvePayout": ("finance", 'mutation { approvePayout(input: {payoutId: "x", externalRef: "r"}) { errors { code } } }'),
    "requestPayout": ("distributor", 'mutation { requestPayout(input: {amount: 100}) { errors { code } } }'),
    "owedRefunds": ("backend", "{ owedRefunds { totalCount } }"),
    "pendingPayouts": ("finance", "{ pendingPayouts { totalCount } }"),
    "me": ("distributor", "{ me { inviteCode } }"),
}


@pytest.mark.parametrize("op", sorted(OPS))
@pytest.mark.parametrize("role", ["customer", "distributor", "admin", "finance", "backend"])
def test_every_forbidden_role_operation_is_refused_SH0(world, op, role):
    needed, query = OPS[op]
    body = world["as"]("u1", role).gql(query)
    if role == needed:
        assert not any(e.get("extensions", {}).get("code") == "FORBIDDEN" for e in body.get("errors", []))
    else:
        assert [e["extensions"]["code"] for e in body["errors"]] == ["FORBIDDEN"]


def test_another_shops_token_sees_nothing_of_this_shop_SH1(world):
    admin = world["as"]("boss", "admin")
    cid = _campaign(admin, world["svc"])
    outsider = world["as"]("boss", "admin", "customer", s=world["other"])
    assert outsider.gql("query($id: String!) { campaign(id: $id) { id } }", id=cid)["data"]["campaign"] is None
    r = outsider.mutate("openGroup", {"campaignId": cid}, SEAT)
    assert [e["code"] for e in r["errors"]] == ["NOT_FOUND"]


def test_bad_tokens_are_unauthenticated(world):
    shop = world["shop"]
    expired = mint_token(shop, "u", ["admin"], -10)
    forged = jwt.encode({"shop": shop.shop_id, "sub": "u", "roles": ["admin"], "exp": 9999999999}, "not-the-secret-not-the-secret-not-the-secret",
                        algorithm="HS256")
    for token in (expired, forged, "garbage"):
        body = Client(world["base"], token).gql("{ owedRefunds { totalCount } }")
        assert [e["extensions"]["code"] for e in body["errors"]] == ["UNAUTHENTICATED"]
        assert "Traceback" not in str(body)


def test_abuse_limits_and_no_internal_details(world):
    base = world["base"]
    r = httpx.post(f"{base}/graphql", content=b"{" + b" " * (300 * 1024) + b"}",
                   headers={"Content-Type": "application/json"})
    assert r.status_code == 413
    deep = "{ campaign(id: \"x\") { openGroups { edges { node { tiers { members } } } } } }"
    body = world["as"]("c", "customer").gql(deep.replace("members", "members") )
    assert "errors" not in body or all("Traceback" not in str(e) for e in body["errors"])
    page = world["as"]("be", "backend").gql("{ owedRefunds(first: 100000) { edges { cursor } } }")
    assert "errors" not in page  # first is capped at 100, not refused


def test_graphiql_assets_are_served_locally(world):
    html = httpx.get(f"{world['base']}/graphiql").text
    assert "/static/graphiql.min.js" in html and "cdn" not in html.lower()
    assert httpx.get(f"{world['base']}/static/graphiql.min.js").status_code == 200


def test_admin_registers_webhook_and_replays_events_through_graphql(world):
    admin, backend = world["as"]("boss", "admin"), world["as"]("be", "backend")
    ep = admin.mutate("registerWebhook", {"url": "http://127.0.0.1:9/hook"}, "endpoint { id secret enabled }")
    assert ep["errors"] == [] and ep["endpoint"]["enabled"] and ep["endpoint"]["secret"].startswith("whsec_")
    bad = admin.mutate("registerWebhook", {"url": "ftp://x"}, "endpoint { id }")
    assert [e["code"] for e in bad["errors"]] == ["INVALID_INPUT"]
    o = backend.mutate("reportOrder", {"externalId": "w-1", "buyerId": "z",
                                       "lines": [{"productRef": "x", "quantity": 1, "unitPrice": 100}]}, "order { id }")
    backend.mutate("confirmPayment", {"orderId": o["order"]["id"], "amount": 100, "providerRef": "w-pay"}, "accepted")
    evs = admin.gql("{ events { seq type } }")["data"]["events"]
    assert [e["type"] for e in evs] == ["order.paid"]
    r = admin.mutate("redeliverEvents", {"endpointId": ep["endpoint"]["id"], "fromSeq": evs[0]["seq"],
                                         "toSeq": evs[-1]["seq"]}, "queued", input_type="RedeliverInput")
    assert r["queued"] == 1
    forbidden = backend.gql("{ events { seq } }")
    assert forbidden["errors"][0]["extensions"]["code"] == "FORBIDDEN"


def test_finance_closes_a_period_and_downloads_identical_exports_LG3(world):
    fin, backend, admin = world["as"]("fin", "finance"), world["as"]("be", "backend"), world["as"]("boss", "admin")
    now = world["svc"].now()
    day_from = (now - timedelta(days=1)).date().isoformat()
    day_to = (now + timedelta(days=1)).date().isoformat()
    admin.mutate("advanceClock", {"seconds": 3 * 86400}, "now")
    r = fin.mutate("closePeriod", {"fromDate": day_from, "toDate": day_to}, "settlement { id closing currency }")
    assert r["errors"] == [] and r["settlement"]["currency"] == "CNY"
    sid = r["settlement"]["id"]
    again = fin.mutate("closePeriod", {"fromDate": day_from, "toDate": day_to}, "settlement { id }")
    assert again["settlement"]["id"] == sid  # the same period twice returns the first batch
    for fmt in ("csv", "xlsx"):
        url = f"{world['base']}/exports/settlements/{sid}.{fmt}"
        a = httpx.get(url, headers=fin.headers)
        b = httpx.get(url, headers=fin.headers)
        assert a.status_code == 200 and a.content == b.content
    assert "distributor_id" in httpx.get(f"{world['base']}/exports/settlements/{sid}.csv", headers=fin.headers).text
    assert httpx.get(f"{world['base']}/exports/settlements/{sid}.csv", headers=backend.headers).status_code == 403
    assert httpx.get(f"{world['base']}/exports/settlements/{sid}.csv").status_code == 401
