"""Staff listings and conventions through real HTTP: distributors by status, products, levels and
settlements as connections paged in SQL; ending a campaign; money always beside its currency; the
leader hidden (null, not an error) from public-key callers (DS-2)."""

from __future__ import annotations

from datetime import timedelta

from graphql import GraphQLList, GraphQLNonNull, GraphQLObjectType, get_named_type

from api.schema import make_schema
from tests.api.conftest import codes, payload_codes
from tests.api.test_e2e import SEAT, make_campaign


def _pages(client, field: str, node: str, size: int, args: str = "") -> tuple[list, set]:
    """Walk a connection page by page; returns the nodes and the totalCounts seen."""
    q = (
        f"query($a: String) {{ {field}(first: {size}, after: $a{args}) {{ totalCount pageInfo {{ hasNextPage "
        f"endCursor }} edges {{ node {{ {node} }} }} }} }}"
    )
    out, totals, after = [], set(), None
    while True:
        page = client.data(q, a=after)[field]
        totals.add(page["totalCount"])
        out += [e["node"] for e in page["edges"]]
        assert len(page["edges"]) <= size
        if not page["pageInfo"]["hasNextPage"]:
            return out, totals
        after = page["pageInfo"]["endCursor"]


def test_admin_lists_distributors_and_applicants_by_status_DS1(world):
    admin = world["as"]("boss", "admin")
    admin.mutate("updateDistributionSettings", {"mode": "APPROVAL"}, "settings { mode }")
    for u in ("ann", "bob", "cat"):
        assert world["as"](u, "customer").mutate("applyAsDistributor", {}, "status")["status"] == "APPLIED"
    admin.mutate("approveDistributor", {"userId": "bob"}, "distributor { status }")
    admin.mutate("approveDistributor", {"userId": "cat"}, "distributor { status }")
    admin.mutate("suspendDistributor", {"userId": "cat", "reason": "checks"}, "distributor { status }")

    applicants = admin.data(
        "{ distributors(statuses: [APPLIED]) { totalCount edges { node { id userId status appliedAt } } } }"
    )["distributors"]
    assert applicants["totalCount"] == 1 and applicants["edges"][0]["node"]["userId"] == "ann"
    assert applicants["edges"][0]["node"]["appliedAt"] is not None
    both = admin.data(
        "{ distributors(statuses: [ACTIVE, SUSPENDED]) { edges { node { userId status statusReason } } } }"
    )["distributors"]["edges"]
    assert [(e["node"]["userId"], e["node"]["status"]) for e in both] == [("bob", "ACTIVE"), ("cat", "SUSPENDED")]
    assert both[1]["node"]["statusReason"] == "checks"
    everyone, totals = _pages(admin, "distributors", "userId", 2)
    assert [n["userId"] for n in everyone] == ["ann", "bob", "cat"] and totals == {3}
    node_id = applicants["edges"][0]["node"]["id"]
    q = "query($id: ID!) { node(id: $id) { ... on Distributor { userId status } } }"
    assert admin.data(q, id=node_id)["node"] == {"userId": "ann", "status": "APPLIED"}
    assert world["as"]("ann", "customer", "distributor").data(q, id=node_id)["node"] is None
    assert codes(world["as"]("x", "finance").gql("{ distributors { totalCount } }")) == ["FORBIDDEN"]
    assert world["as"]("boss", "admin", s=world["other"]).data("{ distributors { totalCount } }") == {
        "distributors": {"totalCount": 0}
    }  # SH-1
    assert codes(admin.gql("{ distributors(statuses: [NOPE]) { totalCount } }")) == ["INVALID_INPUT"]


def test_backend_and_admin_page_through_products_OR3(world):
    backend = world["as"]("be", "backend")
    for i in range(5):
        backend.mutate(
            "upsertProduct", {"productRef": f"sku-{i}", "category": "tea", "level1Amount": 10 * i}, "product { id }"
        )
    products, totals = _pages(backend, "products", "productRef level1Amount currency", 2)
    assert [p["productRef"] for p in products] == [f"sku-{i}" for i in range(5)] and totals == {5}
    assert products[3] == {"productRef": "sku-3", "level1Amount": 30, "currency": "CNY"}
    assert world["as"]("boss", "admin").data("{ products(first: 1) { totalCount } }")["products"]["totalCount"] == 5
    for role in ("customer", "distributor", "finance"):
        assert codes(world["as"]("x", role).gql("{ products { totalCount } }")) == ["FORBIDDEN"]


def test_levels_and_settlements_are_connections_paged_in_sql_LG3(world):
    admin, fin = world["as"]("boss", "admin"), world["as"]("fin", "finance")
    admin.mutate(
        "setLevels",
        {
            "levels": [
                {"grade": g, "name": f"L{g}", "level1Bp": 1000 + g, "level2Bp": 500, "minDirectReferrals": g}
                for g in range(4)
            ]
        },
        "levels { grade }",
    )
    levels, totals = _pages(admin, "levels", "id grade name", 3)
    assert [lv["grade"] for lv in levels] == [0, 1, 2, 3] and totals == {4}
    q = "query($id: ID!) { node(id: $id) { ... on Level { grade level1Bp } } }"
    assert admin.data(q, id=levels[2]["id"])["node"] == {"grade": 2, "level1Bp": 1002}

    today = world["svc"].now().date()
    for k in range(5):  # five contiguous closed days, long past
        d = today - timedelta(days=20 - k)
        r = fin.mutate(
            "closePeriod",
            {"fromDate": d.isoformat(), "toDate": (d + timedelta(days=1)).isoformat()},
            "settlement { id }",
        )
        assert r["errors"] == [], r
    batches, totals = _pages(fin, "settlements", "localFrom closing currency", 2)
    assert [b["localFrom"] for b in batches] == [(today - timedelta(days=20 - k)).isoformat() for k in range(5)]
    assert totals == {5} and {b["currency"] for b in batches} == {"CNY"}
    assert admin.data("{ settlements(first: 1) { totalCount } }")["settlements"]["totalCount"] == 5


def test_admin_ends_a_campaign_open_groups_keep_their_expiry(world):
    admin, backend = world["as"]("boss", "admin"), world["as"]("be", "backend")
    cid = make_campaign(admin, world["svc"], tiers=[{"members": 2, "unitPrice": 8000}])
    lead = world["as"]("ann", "customer").mutate("openGroup", {"campaignId": cid}, SEAT)
    backend.mutate(
        "confirmPayment", {"orderId": lead["order"]["id"], "amount": 8000, "providerRef": "ec-1"}, "accepted"
    )
    ended = admin.mutate("endCampaign", {"campaignId": cid}, "campaign { active endsAt }")
    assert ended["errors"] == [] and ended["campaign"]["active"] is False
    again = admin.mutate("endCampaign", {"campaignId": cid}, "campaign { endsAt }")
    assert again["campaign"]["endsAt"] == ended["campaign"]["endsAt"]  # ending twice changes nothing
    r = world["as"]("bob", "customer").mutate("openGroup", {"campaignId": cid}, SEAT)
    assert payload_codes(r) == ["CAMPAIGN_NOT_ACTIVE"]
    join = world["as"]("cat", "customer").mutate("joinGroup", {"groupId": lead["group"]["id"]}, SEAT)
    assert join["errors"] == []  # the open group still takes members until its own expiry
    backend.mutate(
        "confirmPayment", {"orderId": join["order"]["id"], "amount": 8000, "providerRef": "ec-2"}, "accepted"
    )
    q = "query($id: ID!) { group(id: $id) { state } }"
    assert world["public"].data(q, id=lead["group"]["id"])["group"]["state"] == "FORMED"
    other = world["as"]("boss", "admin", s=world["other"]).mutate("endCampaign", {"campaignId": cid}, "campaign { id }")
    assert payload_codes(other) == ["NOT_FOUND"]  # SH-1
    assert payload_codes(admin.mutate("endCampaign", {"campaignId": "x"}, "campaign { id }")) == ["INVALID_INPUT"]


def test_public_callers_see_the_group_without_its_leader_DS2(world):
    admin, backend = world["as"]("boss", "admin"), world["as"]("be", "backend")
    cid = make_campaign(admin, world["svc"])
    lead = world["as"]("ann", "customer").mutate("openGroup", {"campaignId": cid}, SEAT)
    backend.mutate(
        "confirmPayment", {"orderId": lead["order"]["id"], "amount": 8000, "providerRef": "pl-1"}, "accepted"
    )
    q = (
        "query($id: ID!) { group(id: $id) { state leaderUserId currency tiers { unitPrice currency } "
        "mySeat { unitPrice } } }"
    )
    body = world["public"].gql(q, id=lead["group"]["id"])
    assert "errors" not in body, body  # the group is not nulled by a refused field any more
    assert body["data"]["group"] == {
        "state": "OPEN",
        "leaderUserId": None,
        "currency": "CNY",
        "tiers": [{"unitPrice": 8000, "currency": "CNY"}, {"unitPrice": 7000, "currency": "CNY"}],
        "mySeat": None,
    }
    mine = world["as"]("ann", "customer").data(q, id=lead["group"]["id"])["group"]
    assert mine["leaderUserId"] == "ann" and mine["mySeat"] == {"unitPrice": 8000}


# ---------------------------------------------------------------- conventions, from the schema
def _money_fields(t: GraphQLObjectType) -> list[str]:
    return [n for n, f in t.fields.items() if get_named_type(f.type).name == "MinorUnits"]


def test_every_object_with_money_carries_the_currency_beside_it_SH2():
    schema = make_schema(test_clock=True)._schema
    missing = [
        name
        for name, t in schema.type_map.items()
        if isinstance(t, GraphQLObjectType)
        and not name.startswith("__")
        and _money_fields(t)
        and "currency" not in t.fields
    ]
    assert missing == [], f"money without a currency field on: {missing}"


# Report rows of a fixed, tiny size (one per segment, one per acquisition source) are plain lists:
# there is nothing to page through. shopEarningsSeries is one row per period of a range the caller
# chooses, bounded (366 days, 120 months) and always complete, like me.earningsSeries. The RP-5
# leaderboard is a ranking, read from the top: its `first` (at most 100) is how far down it goes.
FIXED_REPORT_ROWS = {"segmentCounts", "retention", "shopEarningsSeries", "leaderboard"}


def test_every_list_of_the_query_root_is_a_connection():
    schema = make_schema(test_clock=True)._schema
    lists = []
    for name, f in schema.query_type.fields.items():
        t = f.type.of_type if isinstance(f.type, GraphQLNonNull) else f.type
        if isinstance(t, GraphQLList):
            lists.append(name)
    assert sorted(set(lists) - FIXED_REPORT_ROWS) == []
