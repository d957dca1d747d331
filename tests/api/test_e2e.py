"""End to end through real HTTP: storefront, distributor and finance journeys; admin operations.

Tests assert codes (ER-1), never messages."""

from __future__ import annotations

from datetime import timedelta

import httpx

from tests.api.conftest import Client, codes, payload_codes

CAMPAIGN = "campaign { id tiers { members unitPrice } }"
SEAT = "group { id state seatsHeld } order { id state } amountToPay currency"


def make_campaign(admin: Client, svc, **kw) -> str:
    now = svc.now()
    inp = {"productRef": "sku-1", "title": "Tea", "listPrice": 10000,
           "tiers": [{"members": 2, "unitPrice": 8000}, {"members": 3, "unitPrice": 7000}],
           "durationSeconds": 86400, "paymentWindowSeconds": 900,
           "startsAt": (now - timedelta(hours=1)).isoformat(), "endsAt": (now + timedelta(days=5)).isoformat()}
    inp.update(kw)
    r = admin.mutate("createCampaign", inp, CAMPAIGN)
    assert r["errors"] == [], r
    return r["campaign"]["id"]


def test_storefront_journey_open_join_pay_form_refund_owed_GB1_GB5_GB10(world):
    admin, backend = world["as"]("boss", "admin"), world["as"]("be", "backend")
    cid = make_campaign(admin, world["svc"])
    ann = world["as"]("ann", "customer")
    lead = ann.mutate("openGroup", {"campaignId": cid, "idempotencyKey": "open-1"}, SEAT)
    assert lead["errors"] == [] and lead["amountToPay"] == 8000 and lead["currency"] == "CNY"
    assert lead["group"]["state"] == "PENDING" and lead["order"]["state"] == "CREATED"
    again = ann.mutate("openGroup", {"campaignId": cid, "idempotencyKey": "open-1"}, SEAT)
    assert again["order"]["id"] == lead["order"]["id"]  # GB-10: a retried open is the same seat
    gid = lead["group"]["id"]
    pay = {"orderId": lead["order"]["id"], "amount": 8000, "providerRef": "p-ann"}
    assert backend.mutate("confirmPayment", pay, "accepted replayed")["accepted"] is True
    assert backend.mutate("confirmPayment", pay, "accepted replayed")["replayed"] is True  # GB-10

    # the public campaign page (X-Shop-Key) shows the open group with seats, time and tier
    page = world["public"].data(
        "query($id: ID!) { campaign(id: $id) { title active openGroups(first: 5) { totalCount edges { node { "
        "id state seatsLeft secondsLeft tierReached { members } nextTier { members unitPrice } } } } } }", id=cid)
    node = page["campaign"]["openGroups"]["edges"][0]["node"]
    assert node["id"] == gid and node["state"] == "OPEN" and node["seatsLeft"] == 2 and node["secondsLeft"] > 0
    assert node["tierReached"] is None and node["nextTier"] == {"members": 2, "unitPrice": 8000}

    for u in ("bob", "cat"):
        s = world["as"](u, "customer").mutate("joinGroup", {"groupId": gid}, SEAT)
        assert s["errors"] == [] and s["amountToPay"] == 8000
        backend.mutate("confirmPayment", {"orderId": s["order"]["id"], "amount": 8000, "providerRef": f"p-{u}"},
                       "accepted")
    full = world["as"]("dan", "customer").mutate("joinGroup", {"groupId": gid}, SEAT)
    assert payload_codes(full) == ["GROUP_NOT_OPEN"]
    g = ann.data("query($id: ID!) { group(id: $id) { state tierReached { members unitPrice } seatsLeft "
                 "mySeat { role state } leaderUserId } }", id=gid)["group"]
    assert g == {"state": "FORMED", "tierReached": {"members": 3, "unitPrice": 7000}, "seatsLeft": 0,
                 "mySeat": {"role": "LEADER", "state": "PAID"}, "leaderUserId": "ann"}
    mine = ann.data("{ myGroups { totalCount edges { node { id state } } } myOrders { edges { node { id "
                    "paidAmount refundedAmount buyerId group { id } } } } }")
    assert mine["myGroups"]["edges"][0]["node"] == {"id": gid, "state": "FORMED"}
    order = mine["myOrders"]["edges"][0]["node"]
    assert order["paidAmount"] == 8000 and order["refundedAmount"] == 1000 and order["buyerId"] == "ann"
    assert order["group"]["id"] == gid

    owed = backend.data("{ owedRefunds(first: 10) { totalCount edges { node { id amount rule state "
                        "order { id } } } } }")["owedRefunds"]
    nodes = [e["node"] for e in owed["edges"]]
    assert sorted((n["amount"], n["rule"]) for n in nodes) == [(1000, "GB-5")] * 3 and owed["totalCount"] == 3
    c = backend.mutate("confirmRefund", {"refundId": nodes[0]["id"], "providerRef": "rf-1"}, "refund { state }")
    assert c["refund"]["state"] == "CONFIRMED"
    assert backend.data("{ owedRefunds { totalCount } }")["owedRefunds"]["totalCount"] == 2
    assert ann.data("{ mySegment }")["mySegment"] == "FIRST_ORDER"

    stats = admin.data("query($c: ID!) { campaignStats(campaignId: $c) { total { opened formed failed "
                       "formationRateBp units netSales } } }", c=cid)["campaignStats"]["total"]
    assert stats == {"opened": 1, "formed": 1, "failed": 0, "formationRateBp": 10000, "units": 3,
                     "netSales": 21000}


def test_leave_group_refunds_in_full_GB8(world):
    admin, backend = world["as"]("boss", "admin"), world["as"]("be", "backend")
    cid = make_campaign(admin, world["svc"], tiers=[{"members": 3, "unitPrice": 8000}])
    lead = world["as"]("ann", "customer").mutate("openGroup", {"campaignId": cid}, SEAT)
    backend.mutate("confirmPayment", {"orderId": lead["order"]["id"], "amount": 8000, "providerRef": "lg-1"},
                   "accepted")
    bob = world["as"]("bob", "customer")
    s = bob.mutate("joinGroup", {"groupId": lead["group"]["id"]}, SEAT)
    backend.mutate("confirmPayment", {"orderId": s["order"]["id"], "amount": 8000, "providerRef": "lg-2"}, "accepted")
    left = bob.mutate("leaveGroup", {"groupId": lead["group"]["id"], "idempotencyKey": "l1"},
                      "group { seatsHeld mySeat { state } }")
    assert left["errors"] == [] and left["group"]["seatsHeld"] == 1
    owed = backend.data("{ owedRefunds { edges { node { amount rule } } } }")["owedRefunds"]["edges"]
    assert [e["node"] for e in owed] == [{"amount": 8000, "rule": "GB-8"}]
    assert payload_codes(world["as"]("cat", "customer").mutate("leaveGroup", {"groupId": lead["group"]["id"]},
                                                              "group { id }")) == ["NOT_A_MEMBER"]


def test_distributor_and_finance_journey_RP1_LG2(world):
    admin, backend, fin = world["as"]("boss", "admin"), world["as"]("be", "backend"), world["as"]("fin", "finance")
    dist = world["as"]("dora", "customer", "distributor")
    code = dist.data("{ me { inviteCode balances { available } } }")["me"]["inviteCode"]
    assert world["public"].data("query($c: String!) { resolveInvite(code: $c) { valid } }", c=code)[
        "resolveInvite"] == {"valid": True}
    assert world["public"].data("{ resolveInvite(code: \"NOPE\") { valid } }")["resolveInvite"] == {"valid": False}
    buyer = world["as"]("eve", "customer")
    assert buyer.mutate("bindReferrer", {"inviteCode": code, "idempotencyKey": "b1"}, "changed")["changed"] is True
    assert payload_codes(dist.mutate("bindReferrer", {"inviteCode": code}, "changed")) == ["SELF_REFERRAL"]
    o = backend.mutate("reportOrder", {"externalId": "shop-1", "buyerId": "eve",
                                       "lines": [{"productRef": "x", "quantity": 2, "unitPrice": 5000}],
                                       "shippingAmount": 800}, "order { id }")["order"]
    same = backend.mutate("reportOrder", {"externalId": "shop-1", "buyerId": "eve",
                                          "lines": [{"productRef": "x", "quantity": 2, "unitPrice": 5000}],
                                          "shippingAmount": 800}, "order { id }")["order"]
    assert same["id"] == o["id"]  # OR-1
    assert payload_codes(backend.mutate("reportOrder", {"externalId": "shop-1", "buyerId": "eve", "lines": [
        {"productRef": "x", "quantity": 1, "unitPrice": 5000}]}, "order { id }")) == ["ORDER_CONFLICT"]
    assert payload_codes(backend.mutate("confirmPayment", {"orderId": o["id"], "amount": 10000, "providerRef": "bad"},
                                        "accepted")) == ["PAYMENT_AMOUNT_MISMATCH"]
    backend.mutate("confirmPayment", {"externalId": "shop-1", "amount": 10800, "providerRef": "pay-shop-1"}, "accepted")
    me = dist.data("{ me { balances { pending } downline { level1 { count sales } level2 { count } } "
                   "commissionLines { totalCount edges { node { level state original order { id externalId "
                   "buyerId } } } } } }")["me"]
    assert me["balances"] == {"pending": 1000}
    assert me["downline"] == {"level1": {"count": 1, "sales": 10000}, "level2": {"count": 0}}
    line = me["commissionLines"]["edges"][0]["node"]
    assert line["level"] == 1 and line["state"] == "PENDING" and line["original"] == 1000
    assert line["order"] == {"id": o["id"], "externalId": "shop-1", "buyerId": None}  # no buyer identity for them
    done = backend.mutate("completeOrder", {"orderId": o["id"]}, "order { state completedAt }")
    assert done["order"]["state"] == "COMPLETED"
    assert dist.data("{ me { balances { pending frozen } } }")["me"]["balances"] == {"pending": 0, "frozen": 1000}
    admin.mutate("advanceClock", {"seconds": 8 * 86400}, "now")
    assert dist.data("{ me { balances { frozen available } } }")["me"]["balances"] == {"frozen": 0, "available": 1000}
    low = dist.mutate("requestPayout", {"amount": 50}, "payout { id }")
    assert payload_codes(low) == ["PAYOUT_BELOW_MINIMUM"]
    p = dist.mutate("requestPayout", {"amount": 600, "idempotencyKey": "k1"}, "payout { id state }")["payout"]
    replay = dist.mutate("requestPayout", {"amount": 600, "idempotencyKey": "k1"}, "payout { id }")["payout"]
    assert replay["id"] == p["id"]  # GB-10
    assert payload_codes(dist.mutate("requestPayout", {"amount": 700, "idempotencyKey": "k1"}, "payout { id }")) == [
        "IDEMPOTENCY_CONFLICT"]
    assert payload_codes(dist.mutate("requestPayout", {"amount": 600}, "payout { id }")) == ["INSUFFICIENT_BALANCE"]
    pending = fin.data("{ pendingPayouts { totalCount edges { node { id amount } } } }")["pendingPayouts"]
    assert [e["node"]["id"] for e in pending["edges"]] == [p["id"]]
    ok = fin.mutate("approvePayout", {"payoutId": p["id"], "externalRef": "bank-9"}, "payout { state net }")
    assert ok["payout"]["state"] == "APPROVED" and ok["payout"]["net"] == 600
    me = dist.data("{ me { balances { available paid inPayout } payouts { edges { node { id state } } } } }")["me"]
    assert me["balances"] == {"available": 400, "paid": 600, "inPayout": 0}
    assert me["payouts"]["edges"][0]["node"] == {"id": p["id"], "state": "APPROVED"}
    assert payload_codes(fin.mutate("rejectPayout", {"payoutId": p["id"], "reason": "late"}, "payout { id }")) == [
        "INVALID_STATE"]


def test_admin_operations_settings_levels_status_products(world):
    admin, backend = world["as"]("boss", "admin"), world["as"]("be", "backend")
    s = admin.mutate("updateDistributionSettings", {"mode": "APPROVAL", "level1Bp": 1200, "minPayout": 500},
                     "settings { mode level1Bp level2Bp minPayout }")
    assert s["errors"] == [] and s["settings"] == {"mode": "APPROVAL", "level1Bp": 1200, "level2Bp": 500,
                                                   "minPayout": 500}
    bad = admin.mutate("updateDistributionSettings", {"level1Bp": 20000}, "settings { mode }")
    assert payload_codes(bad) == ["INVALID_INPUT"]
    lv = admin.mutate("setLevels", {"levels": [
        {"grade": 0, "name": "Member", "level1Bp": 1000, "level2Bp": 500},
        {"grade": 1, "name": "Silver", "level1Bp": 1500, "level2Bp": 600, "minDirectReferrals": 2,
         "upgradeBonus": 300}]}, "levels { grade name }")
    assert lv["errors"] == [] and [x["name"] for x in lv["levels"]] == ["Member", "Silver"]
    assert payload_codes(admin.mutate("setLevels", {"levels": [{"grade": 1, "name": "x", "level1Bp": 1,
                                                                "level2Bp": 1}]}, "levels { grade }")) == [
        "INVALID_INPUT"]
    gus = world["as"]("gus", "customer", "distributor")
    assert gus.data("{ me { status } }")["me"] is None  # APPROVAL mode: not a distributor yet (DS-1)
    assert gus.mutate("applyAsDistributor", {}, "status")["status"] == "APPLIED"
    d = admin.mutate("approveDistributor", {"userId": "gus"}, "distributor { status grade inviteCode }")
    assert d["distributor"]["status"] == "ACTIVE"
    me = gus.data("{ me { status grade level { name currency } levelProgress { nextLevel { name } metCount conditions "
                  "{ name requiredCount actualCount requiredAmount actualAmount currency met } } } }")["me"]
    assert me["status"] == "ACTIVE" and me["level"] == {"name": "Member", "currency": "CNY"}
    progress = me["levelProgress"]
    assert progress["nextLevel"] == {"name": "Silver"}
    conditions = {c.pop("name"): c for c in progress["conditions"]}
    assert conditions["directReferrals"] == {"requiredCount": 2, "actualCount": 0, "requiredAmount": None,
                                             "actualAmount": None, "currency": "CNY", "met": False}
    assert conditions["ownSpend"] == {"requiredCount": None, "actualCount": None, "requiredAmount": 0,
                                      "actualAmount": 0, "currency": "CNY", "met": True}  # money, not a count
    assert payload_codes(admin.mutate("suspendDistributor", {"userId": "gus", "reason": " "},
                                      "distributor { status }")) == ["INVALID_INPUT"]  # DS-1: a reason is required
    sus = admin.mutate("suspendDistributor", {"userId": "gus", "reason": "fraud check"}, "distributor { status }")
    assert sus["distributor"]["status"] == "SUSPENDED"
    assert payload_codes(admin.mutate("approveDistributor", {"userId": "gus"}, "distributor { status }")) == [
        "INVALID_STATE"]  # reinstating is its own operation
    back = admin.mutate("reinstateDistributor", {"userId": "gus", "reason": "cleared"}, "distributor { status }")
    assert back["distributor"]["status"] == "ACTIVE"
    up = admin.mutate("setDistributorLevel", {"userId": "gus", "grade": 1, "reason": "VIP"}, "distributor { grade }")
    assert up["distributor"]["grade"] == 1
    assert gus.data("{ me { balances { available } levelProgress { metCount } } }")["me"] == {
        "balances": {"available": 300}, "levelProgress": None}  # LV-4 bonus credited; top level reached
    assert payload_codes(admin.mutate("setDistributorLevel", {"userId": "nobody", "grade": 1, "reason": "x"},
                                      "distributor { grade }")) == ["NOT_A_DISTRIBUTOR"]
    p = backend.mutate("upsertProduct", {"productRef": "tea-1", "category": "tea", "level1Amount": 200},
                       "product { id productRef category level1Amount }")
    assert p["errors"] == [] and p["product"]["category"] == "tea" and p["product"]["level1Amount"] == 200
    assert admin.data("{ product(productRef: \"tea-1\") { category } }")["product"] == {"category": "tea"}
    assert admin.data("{ levels { totalCount edges { node { grade currency } } } distributionSettings { mode "
                      "minPayout currency } }") == {
        "levels": {"totalCount": 2, "edges": [{"node": {"grade": 0, "currency": "CNY"}},
                                              {"node": {"grade": 1, "currency": "CNY"}}]},
        "distributionSettings": {"mode": "APPROVAL", "minPayout": 500, "currency": "CNY"}}


def test_create_campaign_with_variants_lottery_fill_and_limits(world):
    admin = world["as"]("boss", "admin")
    cid = make_campaign(admin, world["svc"], tiers=[{"members": 3, "unitPrice": 8000}], lotteryWinners=1,
                        fillAtExpiry=2, newMembersOnly=True, stock=10, perUserLimit=2, maxQuantityPerOrder=2,
                        leaderDiscount=500, leaderCommissionBp=300,
                        variants=[{"name": "A", "weight": 1, "tiers": [{"members": 3, "unitPrice": 8000}]},
                                  {"name": "B", "weight": 1, "tiers": [{"members": 5, "unitPrice": 7000}]}])
    c = world["public"].data("query($id: ID!) { campaign(id: $id) { lotteryWinners fillAtExpiry newMembersOnly "
                             "stock stockLeft perUserLimit leaderDiscount leaderCommissionBp variants { name } } }",
                             id=cid)["campaign"]
    assert c == {"lotteryWinners": 1, "fillAtExpiry": 2, "newMembersOnly": True, "stock": 10, "stockLeft": 10,
                 "perUserLimit": 2, "leaderDiscount": 500, "leaderCommissionBp": 300,
                 "variants": [{"name": "A"}, {"name": "B"}]}
    r = world["as"]("ann", "customer").mutate("openGroup", {"campaignId": cid, "quantity": 3}, SEAT)
    assert payload_codes(r) and payload_codes(r)[0] in ("QUANTITY_LIMIT", "PER_USER_LIMIT")
    bad = admin.mutate("createCampaign", {"productRef": "x", "title": "x", "listPrice": 100,
                                          "tiers": [{"members": 1, "unitPrice": 200}], "durationSeconds": 60,
                                          "paymentWindowSeconds": 60, "startsAt": "2026-01-01T00:00:00+00:00",
                                          "endsAt": "2026-01-02T00:00:00+00:00"}, CAMPAIGN)
    assert payload_codes(bad) == ["INVALID_INPUT"]


def test_pagination_cursors_and_page_cap(world):
    backend, ann = world["as"]("be", "backend"), world["as"]("ann", "customer")
    for i in range(5):
        backend.mutate("reportOrder", {"externalId": f"pg-{i}", "buyerId": "ann",
                                       "lines": [{"productRef": "x", "quantity": 1, "unitPrice": 100}]}, "order { id }")
    q = "query($a: String) { myOrders(first: 2, after: $a) { totalCount pageInfo { hasNextPage endCursor } " \
        "edges { node { externalId } } } }"
    seen, after = [], None
    while True:
        page = ann.data(q, a=after)["myOrders"]
        assert page["totalCount"] == 5
        seen += [e["node"]["externalId"] for e in page["edges"]]
        if not page["pageInfo"]["hasNextPage"]:
            break
        after = page["pageInfo"]["endCursor"]
    assert sorted(seen) == [f"pg-{i}" for i in range(5)]
    assert len(ann.data("{ myOrders(first: 100000) { edges { cursor } } }")["myOrders"]["edges"]) == 5  # capped
    assert codes(ann.gql("{ myOrders(after: \"garbage\") { totalCount } }")) == ["INVALID_INPUT"]
    assert codes(ann.gql("{ myOrders(first: -1) { totalCount } }")) == ["INVALID_INPUT"]


def test_node_refetch_respects_ownership_SH0(world):
    backend = world["as"]("be", "backend")
    o = backend.mutate("reportOrder", {"externalId": "nd-1", "buyerId": "ann",
                                       "lines": [{"productRef": "x", "quantity": 1, "unitPrice": 100}]},
                       "order { id }")["order"]
    q = "query($id: ID!) { node(id: $id) { id ... on Order { externalId } } }"
    assert world["as"]("ann", "customer").data(q, id=o["id"])["node"] == {"id": o["id"], "externalId": "nd-1"}
    assert world["as"]("bob", "customer").data(q, id=o["id"])["node"] is None
    assert world["as"]("ann", "customer", s=world["other"]).data(q, id=o["id"])["node"] is None  # SH-1
    assert codes(world["public"].gql(q, id=o["id"])) == [] and world["public"].data(q, id=o["id"])["node"] is None


def test_admin_registers_webhook_and_replays_events_through_graphql(world):
    admin, backend = world["as"]("boss", "admin"), world["as"]("be", "backend")
    ep = admin.mutate("registerWebhook", {"url": "http://127.0.0.1:9/hook"}, "endpoint { id secret enabled }")
    assert ep["errors"] == [] and ep["endpoint"]["enabled"] and ep["endpoint"]["secret"].startswith("whsec_")
    bad = admin.mutate("registerWebhook", {"url": "ftp://x"}, "endpoint { id }")
    assert payload_codes(bad) == ["INVALID_INPUT"]
    o = backend.mutate("reportOrder", {"externalId": "w-1", "buyerId": "z",
                                       "lines": [{"productRef": "x", "quantity": 1, "unitPrice": 100}]}, "order { id }")
    backend.mutate("confirmPayment", {"orderId": o["order"]["id"], "amount": 100, "providerRef": "w-pay"}, "accepted")
    evs = [e["node"] for e in admin.data("{ events { edges { node { seq type } } } }")["events"]["edges"]]
    assert [e["type"] for e in evs] == ["order.paid"]
    r = admin.mutate("redeliverEvents", {"endpointId": ep["endpoint"]["id"], "fromSeq": evs[0]["seq"],
                                         "toSeq": evs[-1]["seq"]}, "queued")
    assert r["queued"] == 1
    rot = admin.mutate("rotateWebhookSecret", {"endpointId": ep["endpoint"]["id"]}, "endpoint { secret }")
    assert rot["endpoint"]["secret"] != ep["endpoint"]["secret"]
    assert codes(backend.gql("{ events { totalCount } }")) == ["FORBIDDEN"]


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
    assert fin.data("{ settlements { edges { node { id } } } }")["settlements"]["edges"] == [{"node": {"id": sid}}]
    for fmt in ("csv", "xlsx"):
        url = f"{world['base']}/exports/settlements/{sid}.{fmt}"
        a = httpx.get(url, headers=fin.headers)
        b = httpx.get(url, headers=fin.headers)
        assert a.status_code == 200 and a.content == b.content
    assert "distributor_id" in httpx.get(f"{world['base']}/exports/settlements/{sid}.csv", headers=fin.headers).text
    assert httpx.get(f"{world['base']}/exports/settlements/{sid}.csv", headers=backend.headers).status_code == 403
    assert httpx.get(f"{world['base']}/exports/settlements/{sid}.csv").status_code == 401


def test_graphiql_assets_are_served_locally(world):
    html = httpx.get(f"{world['base']}/graphiql").text
    assert "/static/graphiql.min.js" in html and "cdn" not in html.lower() and "https://" not in html
    for asset in ("graphiql.min.js", "graphiql.min.css", "react.production.min.js", "react-dom.production.min.js"):
        assert httpx.get(f"{world['base']}/static/{asset}").status_code == 200
    assert httpx.get(f"{world['base']}/", follow_redirects=False).headers["location"] == "/graphiql"
