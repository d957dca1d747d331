"""The API fields the console (issue 14) reads, over real HTTP: `viewer`, settlement download paths,
`disableWebhook`, finance's view of owed refunds, the shop-wide earnings series and a campaign's groups."""

from __future__ import annotations

from datetime import timedelta

import httpx

from tests.api.conftest import codes


def test_viewer_names_the_caller_and_the_shops_currency_and_time_zone(world):
    v = world["as"]("boss", "admin", "finance").data(
        "{ viewer { userId roles shop { shopId name currency timezone } } }"
    )
    assert v["viewer"] == {
        "userId": "boss",
        "roles": ["admin", "finance"],
        "shop": {"shopId": world["shop"].shop_id, "name": "E2E", "currency": "CNY", "timezone": "UTC"},
    }
    pub = world["public"].data("{ viewer { userId roles shop { currency } } }")["viewer"]
    assert pub == {"userId": None, "roles": [], "shop": {"currency": "CNY"}}  # DS-2: the storefront formats money


def test_settlement_carries_its_download_paths_and_they_serve_the_export_LG3(world):
    fin = world["as"]("fin", "finance")
    today = world["svc"].now().date()
    r = fin.mutate(
        "closePeriod",
        {"fromDate": (today - timedelta(days=2)).isoformat(), "toDate": (today - timedelta(days=1)).isoformat()},
        "settlement { id csvPath xlsxPath }",
    )
    assert r["errors"] == []
    st = r["settlement"]
    raw = st["csvPath"].removeprefix("/exports/settlements/").removesuffix(".csv")
    assert raw.startswith("st_") and st["xlsxPath"] == f"/exports/settlements/{raw}.xlsx"  # the raw id: no escaping
    for path in (st["csvPath"], st["xlsxPath"]):
        got = httpx.get(world["base"] + path, headers=fin.headers, timeout=30)
        assert got.status_code == 200 and got.content


def test_disable_webhook_holds_deliveries_until_enabled_and_is_idempotent(world):
    admin = world["as"]("boss", "admin")
    ep = admin.mutate("registerWebhook", {"url": "http://127.0.0.1:9/hook"}, "endpoint { id }")["endpoint"]
    off = admin.mutate("disableWebhook", {"endpointId": ep["id"]}, "endpoint { enabled disabledAt }")
    assert off["errors"] == [] and off["endpoint"]["enabled"] is False and off["endpoint"]["disabledAt"]
    again = admin.mutate("disableWebhook", {"endpointId": ep["id"]}, "endpoint { enabled disabledAt }")
    assert again["endpoint"] == off["endpoint"]  # disabling twice changes nothing
    missing = admin.mutate("disableWebhook", {"endpointId": "V2ViaG9va0VuZHBvaW50Ondo"}, "endpoint { id }")
    assert [e["code"] for e in missing["errors"]] == ["NOT_FOUND"]
    on = admin.mutate("enableWebhook", {"endpointId": ep["id"]}, "endpoint { enabled disabledAt }")
    assert on["endpoint"] == {"enabled": True, "disabledAt": None}


def _earned(series) -> int:
    return sum(p["earned"] for p in series)


def test_shop_earnings_series_sums_every_distributor_RP1(world):
    backend, fin = world["as"]("be", "backend"), world["as"]("fin", "finance")
    q = (
        "query($f: Date!, $t: Date!) { %s(granularity: DAY, periodFrom: $f, periodTo: $t) "
        "{ periodFrom earned pending currency } }"
    )
    today = world["svc"].now().date()
    f, t = (today - timedelta(days=1)).isoformat(), (today + timedelta(days=2)).isoformat()
    for i, (dist, buyer, amount) in enumerate((("d1", "b1", 10000), ("d2", "b2", 3000))):
        code = world["as"](dist, "distributor").data("{ me { inviteCode } }")["me"]["inviteCode"]
        world["as"](buyer, "customer").mutate("bindReferrer", {"inviteCode": code}, "changed")
        backend.mutate(
            "reportOrder",
            {
                "externalId": f"se-{i}",
                "buyerId": buyer,
                "lines": [{"productRef": "x", "quantity": 1, "unitPrice": amount}],
            },
            "order { id }",
        )
        backend.mutate(
            "confirmPayment", {"externalId": f"se-{i}", "amount": amount, "providerRef": f"se-pay-{i}"}, "accepted"
        )
    mine = [
        _earned(
            world["as"](d, "distributor").data(q.replace("%s(", "me { earningsSeries(") + " }", f=f, t=t)["me"][
                "earningsSeries"
            ]
        )
        for d in ("d1", "d2")
    ]
    shop = fin.data(q % "shopEarningsSeries", f=f, t=t)["shopEarningsSeries"]
    assert [p["periodFrom"] for p in shop] == [(today + timedelta(days=i - 1)).isoformat() for i in range(3)]
    assert mine[0] > 0 and mine[1] > 0 and _earned(shop) == sum(mine)
    assert codes(world["as"]("c", "customer").gql(q % "shopEarningsSeries", f=f, t=t)) == ["FORBIDDEN"]


def test_campaign_groups_lists_every_state_for_admins_only(world):
    admin = world["as"]("boss", "admin")
    now = world["svc"].now()
    c = admin.mutate(
        "createCampaign",
        {
            "productRef": "cg",
            "title": "Groups",
            "listPrice": 1000,
            "tiers": [{"members": 2, "unitPrice": 800}],
            "durationSeconds": 3600,
            "paymentWindowSeconds": 600,
            "startsAt": (now - timedelta(minutes=1)).isoformat(),
            "endsAt": (now + timedelta(days=1)).isoformat(),
        },
        "campaign { id }",
    )["campaign"]
    g = world["as"]("u1", "customer").mutate("openGroup", {"campaignId": c["id"]}, "group { id }")["group"]
    q = (
        "query($id: ID!) { campaign(id: $id) { groups(states: %s) { totalCount edges { node { id state "
        "seatsHeld capacity } } } } }"
    )
    got = admin.data(q % "null", id=c["id"])["campaign"]["groups"]
    assert got["totalCount"] == 1 and got["edges"][0]["node"] == {
        "id": g["id"],
        "state": "PENDING",
        "seatsHeld": 1,
        "capacity": 2,
    }
    assert admin.data(q % "[FORMED]", id=c["id"])["campaign"]["groups"]["totalCount"] == 0
    assert codes(world["public"].gql(q % "null", id=c["id"])) == ["UNAUTHENTICATED"]
    assert codes(world["as"]("u1", "customer").gql(q % "null", id=c["id"])) == ["FORBIDDEN"]
