"""End to end through real HTTP: storefront, distributor and finance journeys; admin operations.

Tests assert codes (ER-1), never messages."""

from __future__ import annotations

import tempfile
from datetime import timedelta

import httpx

from tests.api.conftest import Client, codes, payload_codes

CAMPAIGN = "campaign { id tiers { members unitPrice } }"
SEAT = "group { id state seatsHeld } order { id state } amountToPay currency"


def settled_events(admin: Client, n: int, query: str = "{ events { edges { node { seq type } } } }") -> list:
    """The `events` pull serves an event once every older transaction has ended, and the test database
    server is shared: poll (briefly) until the n events expected are served."""
    import time

    deadline = time.monotonic() + 15
    while True:
        evs = [e["node"] for e in admin.data(query)["events"]["edges"]]
        if len(evs) >= n or time.monotonic() > deadline:
            return evs
        time.sleep(0.05)


def make_campaign(admin: Client, svc, **kw) -> str:
    now = svc.now()
    inp = {
        "productRef": "sku-1",
        "title": "Tea",
        "listPrice": 10000,
        "tiers": [{"members": 2, "unitPrice": 8000}, {"members": 3, "unitPrice": 7000}],
        "durationSeconds": 86400,
        "paymentWindowSeconds": 900,
        "startsAt": (now - timedelta(hours=1)).isoformat(),
        "endsAt": (now + timedelta(days=5)).isoformat(),
    }
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
        "id state seatsLeft secondsLeft tierReached { members } nextTier { members unitPrice } } } } } }",
        id=cid,
    )
    node = page["campaign"]["openGroups"]["edges"][0]["node"]
    assert node["id"] == gid and node["state"] == "OPEN" and node["seatsLeft"] == 2 and node["secondsLeft"] > 0
    assert node["tierReached"] is None and node["nextTier"] == {"members": 2, "unitPrice": 8000}

    for u in ("bob", "cat"):
        s = world["as"](u, "customer").mutate("joinGroup", {"groupId": gid}, SEAT)
        assert s["errors"] == [] and s["amountToPay"] == 8000
        backend.mutate(
            "confirmPayment", {"orderId": s["order"]["id"], "amount": 8000, "providerRef": f"p-{u}"}, "accepted"
        )
    full = world["as"]("dan", "customer").mutate("joinGroup", {"groupId": gid}, SEAT)
    assert payload_codes(full) == ["GROUP_NOT_OPEN"]
    g = ann.data(
        "query($id: ID!) { group(id: $id) { state tierReached { members unitPrice } seatsLeft "
        "mySeat { role state } leaderUserId } }",
        id=gid,
    )["group"]
    assert g == {
        "state": "FORMED",
        "tierReached": {"members": 3, "unitPrice": 7000},
        "seatsLeft": 0,
        "mySeat": {"role": "LEADER", "state": "PAID"},
        "leaderUserId": "ann",
    }
    mine = ann.data(
        "{ myGroups { totalCount edges { node { id state } } } myOrders { edges { node { id "
        "paidAmount refundedAmount buyerId group { id } } } } }"
    )
    assert mine["myGroups"]["edges"][0]["node"] == {"id": gid, "state": "FORMED"}
    order = mine["myOrders"]["edges"][0]["node"]
    assert order["paidAmount"] == 8000 and order["refundedAmount"] == 1000 and order["buyerId"] == "ann"
    assert order["group"]["id"] == gid

    owed = backend.data(
        "{ owedRefunds(first: 10) { totalCount edges { node { id amount rule state order { id } } } } }"
    )["owedRefunds"]
    nodes = [e["node"] for e in owed["edges"]]
    assert sorted((n["amount"], n["rule"]) for n in nodes) == [(1000, "GB-5")] * 3 and owed["totalCount"] == 3
    c = backend.mutate("confirmRefund", {"refundId": nodes[0]["id"], "providerRef": "rf-1"}, "refund { state }")
    assert c["refund"]["state"] == "CONFIRMED"
    assert backend.data("{ owedRefunds { totalCount } }")["owedRefunds"]["totalCount"] == 2
    assert ann.data("{ mySegment }")["mySegment"] == "FIRST_ORDER"

    stats = admin.data(
        "query($c: ID!) { campaignStats(campaignId: $c) { total { opened formed failed "
        "formationRateBp units netSales } } }",
        c=cid,
    )["campaignStats"]["total"]
    assert stats == {"opened": 1, "formed": 1, "failed": 0, "formationRateBp": 10000, "units": 3, "netSales": 21000}


def test_leave_group_refunds_in_full_GB8(world):
    admin, backend = world["as"]("boss", "admin"), world["as"]("be", "backend")
    cid = make_campaign(admin, world["svc"], tiers=[{"members": 3, "unitPrice": 8000}])
    lead = world["as"]("ann", "customer").mutate("openGroup", {"campaignId": cid}, SEAT)
    backend.mutate(
        "confirmPayment", {"orderId": lead["order"]["id"], "amount": 8000, "providerRef": "lg-1"}, "accepted"
    )
    bob = world["as"]("bob", "customer")
    s = bob.mutate("joinGroup", {"groupId": lead["group"]["id"]}, SEAT)
    backend.mutate("confirmPayment", {"orderId": s["order"]["id"], "amount": 8000, "providerRef": "lg-2"}, "accepted")
    left = bob.mutate(
        "leaveGroup", {"groupId": lead["group"]["id"], "idempotencyKey": "l1"}, "group { seatsHeld mySeat { state } }"
    )
    assert left["errors"] == [] and left["group"]["seatsHeld"] == 1
    owed = backend.data("{ owedRefunds { edges { node { amount rule } } } }")["owedRefunds"]["edges"]
    assert [e["node"] for e in owed] == [{"amount": 8000, "rule": "GB-8"}]
    assert payload_codes(
        world["as"]("cat", "customer").mutate("leaveGroup", {"groupId": lead["group"]["id"]}, "group { id }")
    ) == ["NOT_A_MEMBER"]


def test_distributor_and_finance_journey_RP1_LG2(world):
    admin, backend, fin = world["as"]("boss", "admin"), world["as"]("be", "backend"), world["as"]("fin", "finance")
    dist = world["as"]("dora", "customer", "distributor")
    code = dist.data("{ me { inviteCode balances { available } } }")["me"]["inviteCode"]
    assert world["public"].data("query($c: String!) { resolveInvite(code: $c) { valid } }", c=code)[
        "resolveInvite"
    ] == {"valid": True}
    assert world["public"].data('{ resolveInvite(code: "NOPE") { valid } }')["resolveInvite"] == {"valid": False}
    buyer = world["as"]("eve", "customer")
    assert buyer.mutate("bindReferrer", {"inviteCode": code, "idempotencyKey": "b1"}, "changed")["changed"] is True
    assert payload_codes(dist.mutate("bindReferrer", {"inviteCode": code}, "changed")) == ["SELF_REFERRAL"]
    o = backend.mutate(
        "reportOrder",
        {
            "externalId": "shop-1",
            "buyerId": "eve",
            "lines": [{"productRef": "x", "quantity": 2, "unitPrice": 5000}],
            "shippingAmount": 800,
        },
        "order { id }",
    )["order"]
    same = backend.mutate(
        "reportOrder",
        {
            "externalId": "shop-1",
            "buyerId": "eve",
            "lines": [{"productRef": "x", "quantity": 2, "unitPrice": 5000}],
            "shippingAmount": 800,
        },
        "order { id }",
    )["order"]
    assert same["id"] == o["id"]  # OR-1
    assert payload_codes(
        backend.mutate(
            "reportOrder",
            {
                "externalId": "shop-1",
                "buyerId": "eve",
                "lines": [{"productRef": "x", "quantity": 1, "unitPrice": 5000}],
            },
            "order { id }",
        )
    ) == ["ORDER_CONFLICT"]
    assert payload_codes(
        backend.mutate("confirmPayment", {"orderId": o["id"], "amount": 10000, "providerRef": "bad"}, "accepted")
    ) == ["PAYMENT_AMOUNT_MISMATCH"]
    backend.mutate("confirmPayment", {"externalId": "shop-1", "amount": 10800, "providerRef": "pay-shop-1"}, "accepted")
    me = dist.data(
        "{ me { balances { pending } downline { level1 { count sales } level2 { count } } "
        "commissionLines { totalCount edges { node { level state original order { id externalId "
        "buyerId } } } } } }"
    )["me"]
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
        "IDEMPOTENCY_CONFLICT"
    ]
    assert payload_codes(dist.mutate("requestPayout", {"amount": 600}, "payout { id }")) == ["INSUFFICIENT_BALANCE"]
    pending = fin.data("{ pendingPayouts { totalCount edges { node { id amount } } } }")["pendingPayouts"]
    assert [e["node"]["id"] for e in pending["edges"]] == [p["id"]]
    ok = fin.mutate("approvePayout", {"payoutId": p["id"], "externalRef": "bank-9"}, "payout { state net }")
    assert ok["payout"]["state"] == "APPROVED" and ok["payout"]["net"] == 600
    me = dist.data("{ me { balances { available paid inPayout } payouts { edges { node { id state } } } } }")["me"]
    assert me["balances"] == {"available": 400, "paid": 600, "inPayout": 0}
    assert me["payouts"]["edges"][0]["node"] == {"id": p["id"], "state": "APPROVED"}
    assert payload_codes(fin.mutate("rejectPayout", {"payoutId": p["id"], "reason": "late"}, "payout { id }")) == [
        "INVALID_STATE"
    ]
    # RP-1 per local day (a UTC shop): the line is posted and frozen one day, released 8 days later when
    # 600 is paid out; every other day is there with zeros
    day0 = (world["svc"].now() - timedelta(days=9)).date()
    series = dist.data(
        "query($f: Date!, $t: Date!) { me { earningsSeries(granularity: DAY, periodFrom: $f, "
        "periodTo: $t) { periodFrom currency earned pending frozen available inPayout paid fees } } }",
        f=day0.isoformat(),
        t=(day0 + timedelta(days=11)).isoformat(),
    )["me"]["earningsSeries"]
    assert [d["periodFrom"] for d in series] == [(day0 + timedelta(days=i)).isoformat() for i in range(11)]
    assert {d["currency"] for d in series} == {"CNY"}
    totals = {k: sum(d[k] for d in series) for k in ("earned", "pending", "frozen", "available", "inPayout", "paid")}
    assert totals == {"earned": 1000, "pending": 0, "frozen": 0, "available": 400, "inPayout": 0, "paid": 600}
    posted = [i for i, d in enumerate(series) if d["earned"]]
    paid = [i for i, d in enumerate(series) if d["paid"]]
    assert len(posted) == 1 and paid == [posted[0] + 8] and series[paid[0]]["available"] == 400
    assert codes(
        dist.gql(
            '{ me { earningsSeries(granularity: MONTH, periodFrom: "2026-01-15", periodTo: "2026-03-01") { earned } } }'
        )
    ) == ["INVALID_INPUT"]


def test_admin_operations_settings_levels_status_products(world):
    admin, backend = world["as"]("boss", "admin"), world["as"]("be", "backend")
    s = admin.mutate(
        "updateDistributionSettings",
        {"mode": "APPROVAL", "level1Bp": 1200, "minPayout": 500},
        "settings { mode level1Bp level2Bp minPayout }",
    )
    assert s["errors"] == [] and s["settings"] == {
        "mode": "APPROVAL",
        "level1Bp": 1200,
        "level2Bp": 500,
        "minPayout": 500,
    }
    bad = admin.mutate("updateDistributionSettings", {"level1Bp": 20000}, "settings { mode }")
    assert payload_codes(bad) == ["INVALID_INPUT"]
    lv = admin.mutate(
        "setLevels",
        {
            "levels": [
                {"grade": 0, "name": "Member", "level1Bp": 1000, "level2Bp": 500},
                {
                    "grade": 1,
                    "name": "Silver",
                    "level1Bp": 1500,
                    "level2Bp": 600,
                    "minDirectReferrals": 2,
                    "upgradeBonus": 300,
                },
            ]
        },
        "levels { grade name }",
    )
    assert lv["errors"] == [] and [x["name"] for x in lv["levels"]] == ["Member", "Silver"]
    assert payload_codes(
        admin.mutate(
            "setLevels", {"levels": [{"grade": 1, "name": "x", "level1Bp": 1, "level2Bp": 1}]}, "levels { grade }"
        )
    ) == ["INVALID_INPUT"]
    gus = world["as"]("gus", "customer", "distributor")
    assert gus.data("{ me { status } }")["me"] is None  # APPROVAL mode: not a distributor yet (DS-1)
    assert gus.mutate("applyAsDistributor", {}, "status")["status"] == "APPLIED"
    d = admin.mutate("approveDistributor", {"userId": "gus"}, "distributor { status grade inviteCode }")
    assert d["distributor"]["status"] == "ACTIVE"
    me = gus.data(
        "{ me { status grade level { name currency } levelProgress { nextLevel { name } metCount conditions "
        "{ name requiredCount actualCount requiredAmount actualAmount currency met } } } }"
    )["me"]
    assert me["status"] == "ACTIVE" and me["level"] == {"name": "Member", "currency": "CNY"}
    progress = me["levelProgress"]
    assert progress["nextLevel"] == {"name": "Silver"}
    conditions = {c.pop("name"): c for c in progress["conditions"]}
    assert conditions["directReferrals"] == {
        "requiredCount": 2,
        "actualCount": 0,
        "requiredAmount": None,
        "actualAmount": None,
        "currency": "CNY",
        "met": False,
    }
    assert conditions["ownSpend"] == {
        "requiredCount": None,
        "actualCount": None,
        "requiredAmount": 0,
        "actualAmount": 0,
        "currency": "CNY",
        "met": True,
    }  # money, not a count
    assert payload_codes(
        admin.mutate("suspendDistributor", {"userId": "gus", "reason": " "}, "distributor { status }")
    ) == ["INVALID_INPUT"]  # DS-1: a reason is required
    sus = admin.mutate("suspendDistributor", {"userId": "gus", "reason": "fraud check"}, "distributor { status }")
    assert sus["distributor"]["status"] == "SUSPENDED"
    assert payload_codes(admin.mutate("approveDistributor", {"userId": "gus"}, "distributor { status }")) == [
        "INVALID_STATE"
    ]  # reinstating is its own operation
    back = admin.mutate("reinstateDistributor", {"userId": "gus", "reason": "cleared"}, "distributor { status }")
    assert back["distributor"]["status"] == "ACTIVE"
    up = admin.mutate("setDistributorLevel", {"userId": "gus", "grade": 1, "reason": "VIP"}, "distributor { grade }")
    assert up["distributor"]["grade"] == 1
    assert gus.data("{ me { balances { available } levelProgress { metCount } } }")["me"] == {
        "balances": {"available": 300},
        "levelProgress": None,
    }  # LV-4 bonus credited; top level reached
    assert payload_codes(
        admin.mutate("setDistributorLevel", {"userId": "nobody", "grade": 1, "reason": "x"}, "distributor { grade }")
    ) == ["NOT_A_DISTRIBUTOR"]
    p = backend.mutate(
        "upsertProduct",
        {"productRef": "tea-1", "category": "tea", "level1Amount": 200},
        "product { id productRef category level1Amount }",
    )
    assert p["errors"] == [] and p["product"]["category"] == "tea" and p["product"]["level1Amount"] == 200
    assert admin.data('{ product(productRef: "tea-1") { category } }')["product"] == {"category": "tea"}
    assert admin.data(
        "{ levels { totalCount edges { node { grade currency } } } distributionSettings { mode minPayout currency } }"
    ) == {
        "levels": {
            "totalCount": 2,
            "edges": [{"node": {"grade": 0, "currency": "CNY"}}, {"node": {"grade": 1, "currency": "CNY"}}],
        },
        "distributionSettings": {"mode": "APPROVAL", "minPayout": 500, "currency": "CNY"},
    }


def test_create_campaign_with_variants_lottery_fill_and_limits(world):
    admin = world["as"]("boss", "admin")
    cid = make_campaign(
        admin,
        world["svc"],
        tiers=[{"members": 3, "unitPrice": 8000}],
        lotteryWinners=1,
        fillAtExpiry=2,
        newMembersOnly=True,
        stock=10,
        perUserLimit=2,
        maxQuantityPerOrder=2,
        leaderDiscount=500,
        leaderCommissionBp=300,
        variants=[
            {"name": "A", "weight": 1, "tiers": [{"members": 3, "unitPrice": 8000}]},
            {"name": "B", "weight": 1, "tiers": [{"members": 5, "unitPrice": 7000}]},
        ],
    )
    c = world["public"].data(
        "query($id: ID!) { campaign(id: $id) { lotteryWinners fillAtExpiry newMembersOnly "
        "stock stockLeft perUserLimit leaderDiscount leaderCommissionBp variants { name } } }",
        id=cid,
    )["campaign"]
    assert c == {
        "lotteryWinners": 1,
        "fillAtExpiry": 2,
        "newMembersOnly": True,
        "stock": 10,
        "stockLeft": 10,
        "perUserLimit": 2,
        "leaderDiscount": 500,
        "leaderCommissionBp": 300,
        "variants": [{"name": "A"}, {"name": "B"}],
    }
    r = world["as"]("ann", "customer").mutate("openGroup", {"campaignId": cid, "quantity": 3}, SEAT)
    assert payload_codes(r) and payload_codes(r)[0] in ("QUANTITY_LIMIT", "PER_USER_LIMIT")
    bad = admin.mutate(
        "createCampaign",
        {
            "productRef": "x",
            "title": "x",
            "listPrice": 100,
            "tiers": [{"members": 1, "unitPrice": 200}],
            "durationSeconds": 60,
            "paymentWindowSeconds": 60,
            "startsAt": "2026-01-01T00:00:00+00:00",
            "endsAt": "2026-01-02T00:00:00+00:00",
        },
        CAMPAIGN,
    )
    assert payload_codes(bad) == ["INVALID_INPUT"]


def test_create_campaign_retried_with_an_idempotency_key_is_one_campaign_GB10(world):
    admin, now = world["as"]("boss", "admin"), world["svc"].now()
    inp = {
        "productRef": "sku-1",
        "title": "Tea",
        "listPrice": 10000,
        "tiers": [{"members": 2, "unitPrice": 8000}],
        "durationSeconds": 86400,
        "paymentWindowSeconds": 900,
        "startsAt": (now - timedelta(hours=1)).isoformat(),
        "endsAt": (now + timedelta(days=5)).isoformat(),
        "idempotencyKey": "camp-1",
    }
    first = admin.mutate("createCampaign", inp, CAMPAIGN)
    again = admin.mutate("createCampaign", inp, CAMPAIGN)  # the client retries the same request
    assert first["errors"] == again["errors"] == [] and again["campaign"]["id"] == first["campaign"]["id"]
    assert admin.data("{ campaigns(first: 50) { totalCount } }")["campaigns"]["totalCount"] == 1
    other = admin.mutate("createCampaign", {**inp, "title": "Another"}, CAMPAIGN)
    assert payload_codes(other) == ["IDEMPOTENCY_CONFLICT"]


def test_pagination_cursors_and_page_cap(world):
    backend, ann = world["as"]("be", "backend"), world["as"]("ann", "customer")
    for i in range(5):
        backend.mutate(
            "reportOrder",
            {
                "externalId": f"pg-{i}",
                "buyerId": "ann",
                "lines": [{"productRef": "x", "quantity": 1, "unitPrice": 100}],
            },
            "order { id }",
        )
    q = (
        "query($a: String) { myOrders(first: 2, after: $a) { totalCount pageInfo { hasNextPage endCursor } "
        "edges { node { externalId } } } }"
    )
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
    assert codes(ann.gql('{ myOrders(after: "garbage") { totalCount } }')) == ["INVALID_INPUT"]
    assert codes(ann.gql("{ myOrders(first: -1) { totalCount } }")) == ["INVALID_INPUT"]


def test_node_refetch_respects_ownership_SH0(world):
    backend = world["as"]("be", "backend")
    o = backend.mutate(
        "reportOrder",
        {"externalId": "nd-1", "buyerId": "ann", "lines": [{"productRef": "x", "quantity": 1, "unitPrice": 100}]},
        "order { id }",
    )["order"]
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
    o = backend.mutate(
        "reportOrder",
        {"externalId": "w-1", "buyerId": "z", "lines": [{"productRef": "x", "quantity": 1, "unitPrice": 100}]},
        "order { id }",
    )
    backend.mutate("confirmPayment", {"orderId": o["order"]["id"], "amount": 100, "providerRef": "w-pay"}, "accepted")
    evs = settled_events(admin, 1)
    assert [e["type"] for e in evs] == ["order.paid"]
    end = admin.data("{ events(first: 1) { pageInfo { endCursor } } }")["events"]["pageInfo"]["endCursor"]
    rest = admin.data(
        "query($c: String) { events(after: $c) { edges { node { seq } } pageInfo { hasPreviousPage } } }", c=end
    )["events"]
    assert rest == {"edges": [], "pageInfo": {"hasPreviousPage": True}}  # resumed after the last one seen
    r = admin.mutate(
        "redeliverEvents",
        {"endpointId": ep["endpoint"]["id"], "fromSeq": evs[0]["seq"], "toSeq": evs[-1]["seq"]},
        "queued",
    )
    assert r["queued"] == 1
    rot = admin.mutate("rotateWebhookSecret", {"endpointId": ep["endpoint"]["id"]}, "endpoint { secret }")
    assert rot["endpoint"]["secret"] != ep["endpoint"]["secret"]
    assert codes(backend.gql("{ events { totalCount } }")) == ["FORBIDDEN"]


async def test_finance_closes_last_month_and_its_xlsx_in_libreoffice_matches_the_ledger_LG3(
    world, svc, tmp_path, monkeypatch
):
    """Issue 6's "done when", all over HTTP: a month of history (a commission released, clawed back in part
    by a refund, a payout approved); finance closes last month by GraphQL (too early: refused; twice: the
    same batch), downloads CSV and XLSX with its token (the same bytes twice; the XLSX with no temporary
    file left), LibreOffice headless converts the XLSX to CSV, and its TOTAL row equals the ledger's sums.

    By hand (a UTC shop, default settings: 10 %, freeze 7 days, no payout fee): 1000 released, 4000 of the
    10000 order refunded after release claws back 400, 500 paid out: closing 1000 − 400 − 500 = 100."""
    from datetime import datetime, time, timezone

    from tests.spreadsheets import assert_total_row_matches, ledger_sums, libreoffice_rows, soffice_or_skip

    soffice_or_skip()
    fin, backend, admin = world["as"]("fin", "finance"), world["as"]("be", "backend"), world["as"]("boss", "admin")

    def first_of_next_month(d):
        return (d.replace(day=1) + timedelta(days=32)).replace(day=1)

    def advance_to(at: datetime):
        seconds = int((at - world["svc"].now()).total_seconds()) + 1
        assert seconds > 0 and admin.mutate("advanceClock", {"seconds": seconds}, "now")["errors"] == []

    month = first_of_next_month(world["svc"].now().date())  # the history fills this month ...
    month_end = first_of_next_month(month)  # ... which is "last month" once this day has begun
    advance_to(datetime.combine(month, time(1), timezone.utc))
    dist = world["as"]("dora", "customer", "distributor")
    code = dist.data("{ me { inviteCode } }")["me"]["inviteCode"]
    world["as"]("eve", "customer").mutate("bindReferrer", {"inviteCode": code}, "changed")
    o = backend.mutate(
        "reportOrder",
        {"externalId": "lm-1", "buyerId": "eve", "lines": [{"productRef": "x", "quantity": 1, "unitPrice": 10000}]},
        "order { id }",
    )["order"]
    assert backend.mutate("confirmPayment", {"orderId": o["id"], "amount": 10000, "providerRef": "lm-pay"}, "accepted")[
        "accepted"
    ]
    backend.mutate("completeOrder", {"orderId": o["id"]}, "order { state }")
    admin.mutate("advanceClock", {"seconds": 8 * 86400}, "now")  # released (CM-6)
    assert (
        backend.mutate("refundOrder", {"orderId": o["id"], "amount": 4000, "providerRef": "lm-rf"}, "refund { id }")[
            "errors"
        ]
        == []
    )
    p = dist.mutate("requestPayout", {"amount": 500}, "payout { id }")["payout"]
    assert (
        fin.mutate("approvePayout", {"payoutId": p["id"], "externalRef": "bank-lm"}, "payout { state }")["payout"][
            "state"
        ]
        == "APPROVED"
    )

    period = {"fromDate": month.isoformat(), "toDate": month_end.isoformat()}
    early = fin.mutate("closePeriod", period, "settlement { id }")
    assert payload_codes(early) == ["PERIOD_NOT_ENDED"] and early["settlement"] is None
    advance_to(datetime.combine(month_end, time(0, 5), timezone.utc))  # the month has ended, grace included
    fields = "settlement { id localFrom localTo currency opening released reversals bonuses payouts fees closing }"
    r = fin.mutate("closePeriod", period, fields)
    assert r["errors"] == [] and r["settlement"] == {
        "id": r["settlement"]["id"],
        "localFrom": month.isoformat(),
        "localTo": month_end.isoformat(),
        "currency": "CNY",
        "opening": 0,
        "released": 1000,
        "reversals": -400,
        "bonuses": 0,
        "payouts": 500,
        "fees": 0,
        "closing": 100,
    }
    sid = r["settlement"]["id"]
    again = fin.mutate("closePeriod", period, "settlement { id }")
    assert again["settlement"]["id"] == sid  # the same period twice returns the first batch
    assert fin.data("{ settlements { edges { node { id } } } }")["settlements"]["edges"] == [{"node": {"id": sid}}]
    refetch = "query($id: ID!) { node(id: $id) { ... on Settlement { id closing } } }"
    assert fin.data(refetch, id=sid)["node"] == {"id": sid, "closing": 100}  # Relay refetch, finance/admin only
    assert world["as"]("be", "backend").data(refetch, id=sid)["node"] is None

    # The server runs in this process: give it a temporary folder of its own, so that other test runs
    # on the machine (sharing /tmp) cannot put their files in the picture.
    own_tmp = tmp_path / "server-tmp"
    own_tmp.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(own_tmp))
    leftovers = lambda: set(own_tmp.glob("sharecart-settlement-*"))  # noqa: E731
    before = leftovers()
    got = {}
    for fmt in ("csv", "xlsx"):
        url = f"{world['base']}/exports/settlements/{sid}.{fmt}"
        a = httpx.get(url, headers=fin.headers)
        b = httpx.get(url, headers=fin.headers)
        assert a.status_code == 200 and a.content == b.content
        got[fmt] = a.content
    # the XLSX is streamed with its Content-Length; no temporary file is left behind
    assert int(a.headers["content-length"]) == len(got["xlsx"]) and got["xlsx"][:2] == b"PK"
    assert leftovers() == before
    assert b"distributor_id" in got["csv"]
    assert httpx.get(f"{world['base']}/exports/settlements/{sid}.csv", headers=backend.headers).status_code == 403
    assert httpx.get(f"{world['base']}/exports/settlements/{sid}.csv").status_code == 401

    rows = libreoffice_rows(got["xlsx"], tmp_path)  # what a spreadsheet program shows
    utc = lambda d: datetime.combine(d, time(0), timezone.utc)  # noqa: E731  (the shop's zone is UTC)
    sums = await ledger_sums(svc, world["shop"].shop_id, utc(month), utc(month_end))
    assert sums == {
        "opening": 0,
        "released": 1000,
        "reversals": -400,
        "bonuses": 0,
        "payouts": 500,
        "fees": 0,
        "failed": 0,
        "closing": 100,
        "held": 0,
    }
    shown = assert_total_row_matches(rows, sums, digits=2)  # CNY: 2 minor digits
    assert (shown["closing"], shown["closing_minor"]) == ("1.00", "100")


def test_graphiql_assets_are_served_locally(world):
    html = httpx.get(f"{world['base']}/graphiql").text
    assert "/static/graphiql.min.js" in html and "cdn" not in html.lower() and "https://" not in html
    for asset in ("graphiql.min.js", "graphiql.min.css", "react.production.min.js", "react-dom.production.min.js"):
        assert httpx.get(f"{world['base']}/static/{asset}").status_code == 200
    assert httpx.get(f"{world['base']}/", follow_redirects=False).headers["location"] == "/graphiql"


def test_owed_refunds_paged_while_confirming_reaches_every_refund_GB10(world):
    """The owed list shrinks as refunds are confirmed: a backend paging 2 at a time with `after: endCursor`
    and confirming as it goes must still reach all 4 (a keyset cursor, not an offset)."""
    admin, backend = world["as"]("boss", "admin"), world["as"]("be", "backend")
    cid = make_campaign(admin, world["svc"], tiers=[{"members": 5, "unitPrice": 8000}])
    lead = world["as"]("u0", "customer").mutate("openGroup", {"campaignId": cid}, SEAT)
    backend.mutate(
        "confirmPayment", {"orderId": lead["order"]["id"], "amount": 8000, "providerRef": "ks-0"}, "accepted"
    )
    for i in (1, 2, 3):
        s = world["as"](f"u{i}", "customer").mutate("joinGroup", {"groupId": lead["group"]["id"]}, SEAT)
        backend.mutate(
            "confirmPayment", {"orderId": s["order"]["id"], "amount": 8000, "providerRef": f"ks-{i}"}, "accepted"
        )
    admin.mutate("advanceClock", {"seconds": 25 * 3600}, "now")  # the group fails: 4 full refunds owed (GB-6)
    q = (
        "query($after: String) { owedRefunds(first: 2, after: $after) { totalCount "
        "pageInfo { hasNextPage endCursor } edges { node { id rule } } } }"
    )
    confirmed, after = [], None
    while True:
        page = backend.data(q, after=after)["owedRefunds"]
        for e in page["edges"]:
            r = backend.mutate(
                "confirmRefund",
                {"refundId": e["node"]["id"], "providerRef": f"bank-{e['node']['id']}"},
                "refund { state }",
            )
            assert r["errors"] == [] and r["refund"]["state"] == "CONFIRMED"
            confirmed.append(e["node"]["id"])
        if not page["pageInfo"]["hasNextPage"]:
            break
        after = page["pageInfo"]["endCursor"]
    assert len(set(confirmed)) == 4
    assert backend.data("{ owedRefunds { totalCount } }")["owedRefunds"]["totalCount"] == 0
    bad = backend.gql('{ owedRefunds(after: "bm9wZQ==") { totalCount } }')
    assert codes(bad) == ["INVALID_INPUT"]


def test_owed_refunds_filtered_by_rule_GB5_GB8_GB10(world):
    """owedRefunds(rule:) lists only the owed refunds the rule caused, totalCount included, paged by its keyset
    within the filter; without the argument every owed refund is listed."""
    admin, backend = world["as"]("boss", "admin"), world["as"]("be", "backend")
    cid = make_campaign(admin, world["svc"])  # tiers 2 @ 8000, 3 @ 7000

    def seat(user, op, ref, **target):
        s = world["as"](user, "customer").mutate(op, target, SEAT)
        assert backend.mutate(
            "confirmPayment", {"orderId": s["order"]["id"], "amount": 8000, "providerRef": ref}, "accepted"
        )["accepted"]
        return s

    full = seat("rl-a", "openGroup", "rl-1", campaignId=cid)  # fills at 3: 1000 owed to each member (GB-5)
    for i, u in enumerate(("rl-b", "rl-c")):
        seat(u, "joinGroup", f"rl-{i + 2}", groupId=full["group"]["id"])
    other = seat("rl-d", "openGroup", "rl-4", campaignId=cid)
    seat("rl-e", "joinGroup", "rl-5", groupId=other["group"]["id"])
    left = world["as"]("rl-e", "customer").mutate("leaveGroup", {"groupId": other["group"]["id"]}, "group { id }")
    assert left["errors"] == []  # a full refund of 8000 owed (GB-8)

    q = (
        "query($rule: String, $after: String) { owedRefunds(rule: $rule, first: 2, after: $after) { totalCount "
        "pageInfo { hasNextPage endCursor } edges { node { id amount rule state order { id } } } } }"
    )

    def every(rule):
        nodes, after = [], None
        while True:
            page = backend.data(q, rule=rule, after=after)["owedRefunds"]
            nodes += [e["node"] for e in page["edges"]]
            if not page["pageInfo"]["hasNextPage"]:
                return page["totalCount"], nodes
            after = page["pageInfo"]["endCursor"]

    n5, gb5 = every("GB-5")
    assert n5 == 3 and sorted((n["rule"], n["amount"], n["state"]) for n in gb5) == [("GB-5", 1000, "OWED")] * 3
    n8, gb8 = every("GB-8")
    assert n8 == 1 and [(n["rule"], n["amount"]) for n in gb8] == [("GB-8", 8000)]
    assert every("GB-6") == (0, [])
    n_all, all_ = every(None)
    assert n_all == 4 and {n["id"] for n in all_} == {n["id"] for n in gb5 + gb8}
    # confirmed refunds leave the filtered list too
    backend.mutate("confirmRefund", {"refundId": gb8[0]["id"], "providerRef": "rl-bank"}, "refund { state }")
    assert every("GB-8") == (0, []) and every("GB-5")[0] == 3


ENDPOINTS = """{ webhookEndpoints { totalCount edges { node { id enabled consecutiveFailures failingSince disabledAt
  deliveries(first: 5) { totalCount edges { node { id state attempts lastError event { id type } } } }
  attempts(first: 5) { totalCount edges { node { id error statusCode event { type } } } } } } } }"""


async def test_admin_lists_endpoints_with_deliveries_and_attempts_and_re_enables_one(world, svc):
    """Endpoints with their state, recent deliveries and attempts (keyset connections, Relay nodes);
    enableWebhook releases what a disabled endpoint was owed; replay refuses an unknown endpoint."""
    from sqlalchemy import update

    from service.usecases import webhooks
    from service.uow import unit_of_work
    from store.models import WebhookEndpoint

    admin, backend = world["as"]("boss", "admin"), world["as"]("be", "backend")
    ep = admin.mutate("registerWebhook", {"url": "http://127.0.0.1:9/hook"}, "endpoint { id }")["endpoint"]
    o = backend.mutate(
        "reportOrder",
        {"externalId": "wl-1", "buyerId": "z", "lines": [{"productRef": "x", "quantity": 1, "unitPrice": 100}]},
        "order { id }",
    )
    backend.mutate("confirmPayment", {"orderId": o["order"]["id"], "amount": 100, "providerRef": "wl-pay"}, "accepted")
    svc.clock.set(world["svc"].now())
    await webhooks.deliver_due(svc, timeout_s=2)  # port 9 refuses: one failed attempt, recorded

    [node] = [e["node"] for e in admin.data(ENDPOINTS)["webhookEndpoints"]["edges"]]
    assert node["id"] == ep["id"] and node["enabled"] and node["consecutiveFailures"] == 1 and node["failingSince"]
    [d] = [e["node"] for e in node["deliveries"]["edges"]]
    assert d["state"] == "PENDING" and d["attempts"] == 1 and d["lastError"] and d["event"]["type"] == "order.paid"
    [a] = [e["node"] for e in node["attempts"]["edges"]]
    assert a["error"] and a["statusCode"] is None and a["event"]["type"] == "order.paid"

    q = "query($id: ID!) { node(id: $id) { id ... on WebhookDelivery { state } ... on WebhookEndpoint { url } } }"
    assert admin.data(q, id=d["id"])["node"] == {"id": d["id"], "state": "PENDING"}
    assert admin.data(q, id=ep["id"])["node"] == {"id": ep["id"], "url": "http://127.0.0.1:9/hook"}
    assert backend.data(q, id=ep["id"])["node"] is None  # admins only
    assert world["as"]("boss", "admin", s=world["other"]).data(q, id=ep["id"])["node"] is None  # SH-1
    ev = "query($id: ID!) { node(id: $id) { ... on ShopEvent { type } } }"
    assert admin.data(ev, id=d["event"]["id"])["node"] == {"type": "order.paid"}

    async with unit_of_work(svc) as s:  # as if it had failed for a day
        await s.execute(
            update(WebhookEndpoint)
            .where(WebhookEndpoint.shop_id == world["shop"].shop_id)
            .values(enabled=False, disabled_at=svc.now())
        )
    assert payload_codes(
        admin.mutate("enableWebhook", {"endpointId": "V2ViaG9va0VuZHBvaW50Ondo"}, "endpoint { id }")
    ) == ["NOT_FOUND"]
    r = admin.mutate("enableWebhook", {"endpointId": ep["id"]}, "endpoint { enabled disabledAt consecutiveFailures }")
    assert r["errors"] == [] and r["endpoint"] == {"enabled": True, "disabledAt": None, "consecutiveFailures": 0}
    assert codes(backend.gql("{ webhookEndpoints { totalCount } }")) == ["FORBIDDEN"]
    bad = admin.mutate(
        "redeliverEvents", {"endpointId": "V2ViaG9va0VuZHBvaW50Ondo", "fromSeq": 0, "toSeq": 10}, "queued"
    )
    assert payload_codes(bad) == ["NOT_FOUND"]


def test_admin_reports_segments_and_retention_with_hand_checked_figures_RP3_RP4(world):
    """Figures worked out by hand (today's local day of a UTC shop):

    buyer | acquired by | counting orders today             | categories | net
    ann   | REFERRAL    | a1 = 3000 tea + 2000 ware; a2 = 1000 tea | tea, ware | 6000
    dan   | REFERRAL    | d1 = 3000 tea, refunded 1001; d2 = 1000 tea | tea     | 1999 + 1000 = 2999
    bob   | NONE        | b1 = 4000 tea (b2 = 2000, refunded in full, does not count) | tea | 4000
    lee   | NONE        | leads a group: 8000 (no category)  | —          | 8000
    cat   | GROUP_INVITE| joins lee's group: 8000            | —          | 8000

    REFERRAL: 2 buyers, 2 repeat (10000 bp), 1 multi-category (5000 bp), net 8999, per buyer floor(8999/2) = 4499
    GROUP_INVITE: 1 buyer, 0 repeat (0 bp), 0 multi (0 bp), net 8000, per buyer 8000
    NONE: 2 buyers, 0 repeat, 0 multi, net 12000, per buyer 6000
    Segments (RP-3): ann, dan REPEAT; bob, lee, cat FIRST_ORDER (bob's refunded b2 does not count); nobody
    LOYAL or DORMANT. (NEW counts every other user the shop knows, e.g. dora, and is not pinned here.)
    """
    admin, backend = world["as"]("boss", "admin"), world["as"]("be", "backend")
    dora = world["as"]("dora", "customer", "distributor")
    code = dora.data("{ me { inviteCode } }")["me"]["inviteCode"]
    for user in ("ann", "dan"):
        world["as"](user, "customer").mutate("bindReferrer", {"inviteCode": code}, "changed")
    for ref, cat in (("tea", "tea"), ("cup", "ware")):
        backend.mutate("upsertProduct", {"productRef": ref, "category": cat}, "product { id }")

    def order(ext, buyer, lines, refund=0):
        o = backend.mutate(
            "reportOrder",
            {
                "externalId": ext,
                "buyerId": buyer,
                "lines": [{"productRef": p, "quantity": 1, "unitPrice": price} for p, price in lines],
            },
            "order { id }",
        )["order"]
        total = sum(price for _, price in lines)
        assert backend.mutate(
            "confirmPayment", {"orderId": o["id"], "amount": total, "providerRef": f"p-{ext}"}, "accepted"
        )["accepted"]
        if refund:
            r = backend.mutate(
                "refundOrder", {"orderId": o["id"], "amount": refund, "providerRef": f"r-{ext}"}, "refund { id }"
            )
            assert r["errors"] == []

    order("a1", "ann", [("tea", 3000), ("cup", 2000)])
    order("a2", "ann", [("tea", 1000)])
    order("d1", "dan", [("tea", 3000)], refund=1001)
    order("d2", "dan", [("tea", 1000)])
    order("b1", "bob", [("tea", 4000)])
    order("b2", "bob", [("tea", 2000)], refund=2000)
    cid = make_campaign(admin, world["svc"])
    lead = world["as"]("lee", "customer").mutate("openGroup", {"campaignId": cid}, SEAT)
    backend.mutate(
        "confirmPayment", {"orderId": lead["order"]["id"], "amount": 8000, "providerRef": "p-lee"}, "accepted"
    )
    seat = world["as"]("cat", "customer").mutate("joinGroup", {"groupId": lead["group"]["id"]}, SEAT)
    backend.mutate(
        "confirmPayment", {"orderId": seat["order"]["id"], "amount": 8000, "providerRef": "p-cat"}, "accepted"
    )

    today = world["svc"].now().date()
    rows = admin.data(
        "query($f: Date!, $t: Date!) { retention(periodFrom: $f, periodTo: $t) { source currency "
        "buyers repeatBuyers multiCategoryBuyers repurchaseRateBp multiCategoryRateBp netSales "
        "netSalesPerBuyer } }",
        f=today.isoformat(),
        t=(today + timedelta(days=1)).isoformat(),
    )["retention"]
    assert rows == [
        {
            "source": "REFERRAL",
            "currency": "CNY",
            "buyers": 2,
            "repeatBuyers": 2,
            "multiCategoryBuyers": 1,
            "repurchaseRateBp": 10000,
            "multiCategoryRateBp": 5000,
            "netSales": 8999,
            "netSalesPerBuyer": 4499,
        },
        {
            "source": "GROUP_INVITE",
            "currency": "CNY",
            "buyers": 1,
            "repeatBuyers": 0,
            "multiCategoryBuyers": 0,
            "repurchaseRateBp": 0,
            "multiCategoryRateBp": 0,
            "netSales": 8000,
            "netSalesPerBuyer": 8000,
        },
        {
            "source": "NONE",
            "currency": "CNY",
            "buyers": 2,
            "repeatBuyers": 0,
            "multiCategoryBuyers": 0,
            "repurchaseRateBp": 0,
            "multiCategoryRateBp": 0,
            "netSales": 12000,
            "netSalesPerBuyer": 6000,
        },
    ]
    # the day before: nobody bought
    before = admin.data(
        "query($f: Date!, $t: Date!) { retention(periodFrom: $f, periodTo: $t) { source buyers "
        "repurchaseRateBp netSales netSalesPerBuyer } }",
        f=(today - timedelta(days=1)).isoformat(),
        t=today.isoformat(),
    )["retention"]
    assert [(r["buyers"], r["repurchaseRateBp"], r["netSales"], r["netSalesPerBuyer"]) for r in before] == [
        (0, None, 0, None)
    ] * 3
    assert codes(admin.gql('{ retention(periodFrom: "2026-02-01", periodTo: "2026-01-01") { source } }')) == [
        "INVALID_INPUT"
    ]

    counts = {c["segment"]: c["count"] for c in admin.data("{ segmentCounts { segment count } }")["segmentCounts"]}
    assert list(counts) == ["NEW", "FIRST_ORDER", "REPEAT", "LOYAL", "DORMANT"]
    assert (counts["REPEAT"], counts["FIRST_ORDER"], counts["LOYAL"], counts["DORMANT"]) == (2, 3, 0, 0)
    seg = "query($u: String!) { userSegment(userId: $u) }"
    assert [admin.data(seg, u=u)["userSegment"] for u in ("ann", "bob", "cat", "nobody")] == [
        "REPEAT",
        "FIRST_ORDER",
        "FIRST_ORDER",
        "NEW",
    ]
    assert world["as"]("ann", "customer").data("{ mySegment }")["mySegment"] == "REPEAT"


async def test_admin_reads_campaign_stats_with_hand_computed_means_and_a_variant_winner_RP2(world, svc):
    """RP-2 over GraphQL on figures worked out by hand. The history is written through the service layer on the
    test's frozen clock (every group decided before the query, so nothing is left to catch up); variants are
    2-member groups at 8000, weight 1 each, and a leader's variant is variant_point(campaign, leader, 4).

    variant | decided | formed after (s)   | failed | rate bp             | mean s                     | units | net
    ctl     | 30      | 6 × 3600, 6 × 7201 | 18     | 4000                | 64806 / 12 = 5400.5 → 5400 | 24 | 192000
    alt     | 30      | 12 × 60, 12 × 61   | 6      | 8000                | 1452 / 24 = 60.5 → 60      | 48 | 384000
    few     | 3       | 10, 10, 11         | 0      | 10000               | 31 / 3 → 10                | 6  | 48000
    none    | 0       | —                  | 0      | null                | 0                          | 0  | 0
    total   | 63      | 39 formed          | 24     | 390000 // 63 = 6190 | 66289 / 39 = 1699.7 → 1699 | 78 | 624000

    (a failed group's leader is refunded in full, GB-6: it adds nothing to net sales; the total mean is taken
    over all 39 formed groups, not averaged from the variants' rounded means, which would give 1700.)

    Comparisons with the control, Newcombe's hybrid score interval (engine/stats.py) at z = 1.96: Wilson limits
    of 12/30 = [0.245904, 0.576799], 24/30 = [0.626940, 0.904950], 3/3 = [0.438494, 1]; so
    alt − ctl = 0.4 − sqrt((0.8 − 0.626940)² + (0.576799 − 0.4)²) … 0.4 + sqrt((0.904950 − 0.8)² + (0.4 −
    0.245904)²) = [0.152598, 0.586441] → [1525, 5865] bp: excludes 0 with 30 decided each — a winner;
    few − ctl = [0.011317, 0.754096] → [113, 7541] bp: excludes 0 too, but 3 decided groups are below the
    minimum of 30 — no winner; none has no decided group — no interval."""
    from engine.variants import variant_point
    from service.usecases import groups
    from service.jobs import worker
    from tests.integration.helpers import make_campaign as make_campaign_svc, pay

    shop_id = world["shop"].shop_id
    c = await make_campaign_svc(
        svc,
        shop_id,
        tiers=[(2, 8000)],
        variants=[("ctl", [(2, 8000)], 1), ("alt", [(2, 8000)], 1), ("few", [(2, 8000)], 1), ("none", [(2, 8000)], 1)],
    )
    names = ("ctl", "alt", "few", "none")
    leaders = {n: [] for n in names}
    k = 0
    while min(len(leaders[n]) for n in ("ctl", "alt")) < 30 or len(leaders["few"]) < 3:
        user = f"rp2-{k}"
        leaders[names[variant_point(c.campaign_id, user, 4)]].append(user)
        k += 1

    async def open_paid(leader):
        g = await groups.open_group(svc, shop_id=shop_id, campaign_id=c.campaign_id, user_id=leader)
        await pay(svc, shop_id, g)
        return g

    plan = {"ctl": [3600] * 6 + [7201] * 6, "alt": [60] * 12 + [61] * 12, "few": [10, 10, 11]}
    for variant, seconds in plan.items():  # formed one after the other: each forms `s` seconds after opening
        for leader, s in zip(leaders[variant], seconds):
            g = await open_paid(leader)
            svc.clock.advance(timedelta(seconds=s))
            m = await groups.join_group(svc, shop_id=shop_id, group_id=g.group_id, user_id=f"{leader}-m")
            assert (await pay(svc, shop_id, m))["accepted"]
    for variant, n_failed in (("ctl", 18), ("alt", 6)):
        for leader in leaders[variant][len(plan[variant]) : len(plan[variant]) + n_failed]:
            await open_paid(leader)
    svc.clock.advance(timedelta(hours=25))
    await worker.run_due(svc, shop_id=shop_id)  # the leaders left alone fail (GB-6)

    stats = "variant opened formed failed formationRateBp meanSecondsToForm units netSales currency"
    got = world["as"]("boss", "admin").data(
        f"query($c: ID!) {{ campaignStats(campaignId: $c) {{ currency minDecidedPerVariant hasWinner "
        f"total {{ {stats} }} variants {{ {stats} }} comparisons {{ variant control differenceBp differenceLowBp "
        f"differenceHighBp enoughData hasWinner }} }} }}",
        c=c.campaign_id,
    )["campaignStats"]

    def row(variant, opened, formed, failed, rate, mean, units, net):
        return {
            "variant": variant,
            "opened": opened,
            "formed": formed,
            "failed": failed,
            "formationRateBp": rate,
            "meanSecondsToForm": mean,
            "units": units,
            "netSales": net,
            "currency": "CNY",
        }

    assert got["total"] == row(None, 63, 39, 24, 6190, 1699, 78, 624_000)
    assert got["variants"] == [
        row("ctl", 30, 12, 18, 4000, 5400, 24, 192_000),
        row("alt", 30, 24, 6, 8000, 60, 48, 384_000),
        row("few", 3, 3, 0, 10000, 10, 6, 48_000),
        row("none", 0, 0, 0, None, 0, 0, 0),
    ]
    assert got["comparisons"] == [
        {
            "variant": "alt",
            "control": "ctl",
            "differenceBp": 4000,
            "differenceLowBp": 1525,
            "differenceHighBp": 5865,
            "enoughData": True,
            "hasWinner": True,
        },
        {
            "variant": "few",
            "control": "ctl",
            "differenceBp": 6000,
            "differenceLowBp": 113,
            "differenceHighBp": 7541,
            "enoughData": False,
            "hasWinner": False,
        },
        {
            "variant": "none",
            "control": "ctl",
            "differenceBp": None,
            "differenceLowBp": None,
            "differenceHighBp": None,
            "enoughData": False,
            "hasWinner": False,
        },
    ]
    assert (got["currency"], got["minDecidedPerVariant"], got["hasWinner"]) == ("CNY", 30, True)
