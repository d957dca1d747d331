"""Group-buy v2 (issue 15) through real HTTP/GraphQL: GB-12 payment grace, GB-7 v2 verifiable lottery,
GB-13 quick join, GB-14 overflow re-seat, GB-15 nudges. Codes are asserted, never messages."""

from __future__ import annotations

from datetime import timedelta

from tests.api.conftest import payload_codes
from tests.api.test_e2e import make_campaign

SEAT = "group { id state seatsHeld seatsPaid } order { id state } amountToPay"
GROUP = "query($id: ID!) { node(id: $id) { ... on Group { state seatsPaid formedAt expiresAt graceUntil } } }"


def _pay(backend, order_id: str, amount: int, ref: str) -> dict:
    return backend.mutate("confirmPayment", {"orderId": order_id, "amount": amount, "providerRef": ref}, "accepted")


def test_GB12_payment_in_time_after_expiry_takes_its_seat_and_nobody_joins_during_grace_api(world):
    """GB-12: bob reserves the last seat 5 minutes before expiry (pay_by = expiry + 10 min). At expiry the
    group waits for him instead of failing: cat cannot join (GROUP_EXPIRED), the group reads OPEN with
    `graceUntil` = bob's pay_by, and bob's payment 3 minutes after expiry takes the seat and forms it."""
    admin, backend, srv = world["as"]("boss", "admin"), world["as"]("be", "backend"), world["svc"]
    cid = make_campaign(admin, srv, tiers=[{"members": 3, "unitPrice": 8000}], durationSeconds=3600)
    ann = world["as"]("ann", "customer")
    lead = ann.mutate("openGroup", {"campaignId": cid}, SEAT)
    gid = lead["group"]["id"]
    assert _pay(backend, lead["order"]["id"], 8000, "g12-l")["accepted"] is True
    a = world["as"]("al", "customer").mutate("joinGroup", {"groupId": gid}, SEAT)
    assert _pay(backend, a["order"]["id"], 8000, "g12-a")["accepted"] is True
    srv.clock.advance(timedelta(minutes=55))
    bob = world["as"]("bob", "customer").mutate("joinGroup", {"groupId": gid}, SEAT)
    assert bob["errors"] == []
    srv.clock.advance(timedelta(minutes=7))  # 2 minutes past expires_at
    g = ann.data(GROUP, id=gid)["node"]
    assert g["state"] == "OPEN" and g["seatsPaid"] == 2 and g["graceUntil"] is not None
    late = world["as"]("cat", "customer").mutate("joinGroup", {"groupId": gid}, SEAT)
    assert payload_codes(late) == ["GROUP_EXPIRED"]
    srv.clock.advance(timedelta(minutes=1))
    assert _pay(backend, bob["order"]["id"], 8000, "g12-b")["accepted"] is True
    g = ann.data(GROUP, id=gid)["node"]
    assert g["state"] == "FORMED" and g["seatsPaid"] == 3 and g["graceUntil"] is None


def test_GB12_grace_ends_at_the_last_pay_by_and_the_group_decides_then_api(world):
    """GB-12: the reservation waited for is never paid; the group fails at its pay_by (never later than
    expires_at + payment_window), not at expires_at, and not later."""
    admin, backend, srv = world["as"]("boss", "admin"), world["as"]("be", "backend"), world["svc"]
    cid = make_campaign(admin, srv, tiers=[{"members": 2, "unitPrice": 8000}], durationSeconds=3600)
    ann = world["as"]("ann", "customer")
    lead = ann.mutate("openGroup", {"campaignId": cid}, SEAT)
    gid = lead["group"]["id"]
    _pay(backend, lead["order"]["id"], 8000, "g12b-l")
    srv.clock.advance(timedelta(minutes=50))
    world["as"]("bob", "customer").mutate("joinGroup", {"groupId": gid}, SEAT)  # pay_by = open + 65 min
    srv.clock.advance(timedelta(minutes=14))  # expires_at + 4 min: still waiting
    assert ann.data(GROUP, id=gid)["node"]["state"] == "OPEN"
    srv.clock.advance(timedelta(minutes=2))  # past bob's pay_by
    g = ann.data(GROUP, id=gid)["node"]
    assert g["state"] == "FAILED" and g["graceUntil"] is None


async def test_GB15_campaign_nudge_fields_over_graphql_events_pull_and_group_progress_api(world, svc):
    """GB-15: `almostFullAt` / `expiringSoonBeforeSeconds` set with createCampaign and read back; the nudges
    reach the `events` pull and the `groupProgress` subscription (`nudges`), emitted by the worker."""
    import asyncio
    import json

    import websockets

    from service.jobs import worker
    from tests.api.test_e2e import settled_events

    admin, backend, srv = world["as"]("boss", "admin"), world["as"]("be", "backend"), world["svc"]
    cid = make_campaign(
        admin,
        srv,
        tiers=[{"members": 3, "unitPrice": 8000}],
        durationSeconds=3600,
        almostFullAt=1,
        expiringSoonBeforeSeconds=600,
    )
    c = admin.data(
        "query($id: ID!) { node(id: $id) { ... on Campaign { almostFullAt expiringSoonBeforeSeconds } } }", id=cid
    )["node"]
    assert c == {"almostFullAt": 1, "expiringSoonBeforeSeconds": 600}
    lead = world["as"]("ann", "customer").mutate("openGroup", {"campaignId": cid}, SEAT)
    gid = lead["group"]["id"]
    _pay(backend, lead["order"]["id"], 8000, "g15-l")
    url = world["base"].replace("http", "ws") + "/graphql"
    async with websockets.connect(
        url, subprotocols=["graphql-transport-ws"], additional_headers={"X-Shop-Key": world["shop"].public_key}
    ) as ws:
        await ws.send(json.dumps({"type": "connection_init", "payload": {}}))
        assert json.loads(await ws.recv())["type"] == "connection_ack"
        await ws.send(
            json.dumps(
                {
                    "id": "1",
                    "type": "subscribe",
                    "payload": {
                        "query": "subscription($g: ID!) { groupProgress(groupId: $g) { state seatsPaid nudges } }",
                        "variables": {"g": gid},
                    },
                }
            )
        )

        async def next_data():
            msg = json.loads(await asyncio.wait_for(ws.recv(), 20))
            assert msg["type"] == "next", msg
            return msg["payload"]["data"]["groupProgress"]

        assert await next_data() == {"state": "OPEN", "seatsPaid": 1, "nudges": []}
        bob = world["as"]("bob", "customer").mutate("joinGroup", {"groupId": gid}, SEAT)
        assert (await next_data())["nudges"] == []
        _pay(backend, bob["order"]["id"], 8000, "g15-b")
        assert await next_data() == {"state": "OPEN", "seatsPaid": 2, "nudges": ["almost_full"]}
        srv.clock.advance(timedelta(minutes=51))
        svc.clock.set(srv.now())  # the worker runs here, on the server's clock (the server's loop is its own)
        assert await worker.run_due_groups(svc, shop_id=world["shop"].shop_id) == 1
        assert await next_data() == {"state": "OPEN", "seatsPaid": 2, "nudges": ["almost_full", "expiring_soon"]}
    q = '{ events(types: ["group.almost_full", "group.expiring_soon"]) { edges { node { type payloadJson } } } }'
    evs = settled_events(admin, 2, q)
    assert [e["type"] for e in evs] == ["group.almost_full", "group.expiring_soon"]
    assert all(json.loads(e["payloadJson"])["seats_missing"] == 1 for e in evs)


def test_GB13_quick_join_over_graphql_picks_the_closest_group_and_opens_if_none_api(world):
    """GB-13 `quickJoin`: the customer lands in the open group closest to forming; without openIfNone and
    nothing open it is NO_GROUP_AVAILABLE; with openIfNone the customer opens a group as leader."""
    admin, backend, srv = world["as"]("boss", "admin"), world["as"]("be", "backend"), world["svc"]
    cid = make_campaign(admin, srv, tiers=[{"members": 3, "unitPrice": 8000}])
    qj = "group { id state seatsHeld } order { id } amountToPay opened"
    none = world["as"]("x0", "customer").mutate("quickJoin", {"campaignId": cid}, qj)
    assert payload_codes(none) == ["NO_GROUP_AVAILABLE"] and none["errors"][0]["rule"] == "GB-13"
    groups = []
    for leader, members in (("ann", 0), ("bea", 1)):
        lead = world["as"](leader, "customer").mutate("openGroup", {"campaignId": cid}, SEAT)
        _pay(backend, lead["order"]["id"], 8000, f"qj-{leader}")
        for i in range(members):
            world["as"](f"{leader}{i}", "customer").mutate("joinGroup", {"groupId": lead["group"]["id"]}, SEAT)
        groups.append(lead["group"]["id"])
    got = world["as"]("q1", "customer").mutate("quickJoin", {"campaignId": cid}, qj)
    assert got["errors"] == [] and got["group"]["id"] == groups[1] and got["opened"] is False
    assert got["group"]["seatsHeld"] == 3 and got["amountToPay"] == 8000
    got = world["as"]("q2", "customer").mutate("quickJoin", {"campaignId": cid}, qj)
    assert got["group"]["id"] == groups[0]
    world["as"]("q3", "customer").mutate("quickJoin", {"campaignId": cid}, qj)  # fills ann's group
    opened = world["as"]("q4", "customer").mutate("quickJoin", {"campaignId": cid, "openIfNone": True}, qj)
    assert opened["errors"] == [] and opened["opened"] is True and opened["group"]["state"] == "PENDING"
    assert opened["group"]["id"] not in groups


def test_GB13_quick_join_over_graphql_follows_the_order_of_choice_and_skips_a_full_group_api(world):
    """GB-13's order over GraphQL: fewest seats missing first (a full group is never offered), then the earliest
    `expires_at` even when that group was opened later (bea opened after ann but paid first, GB-1), then the
    next; once every group is full, NO_GROUP_AVAILABLE."""
    admin, backend, srv = world["as"]("boss", "admin"), world["as"]("be", "backend"), world["svc"]
    cid = make_campaign(admin, srv, tiers=[{"members": 3, "unitPrice": 8000}])
    qj = "group { id seatsHeld } opened"
    ann = world["as"]("ann", "customer").mutate("openGroup", {"campaignId": cid}, SEAT)
    srv.clock.advance(timedelta(minutes=1))
    bea = world["as"]("bea", "customer").mutate("openGroup", {"campaignId": cid}, SEAT)
    _pay(backend, bea["order"]["id"], 8000, "q13-bea")
    srv.clock.advance(timedelta(minutes=1))
    _pay(backend, ann["order"]["id"], 8000, "q13-ann")  # ann's group expires a minute after bea's
    a, b = ann["group"]["id"], bea["group"]["id"]
    ga = world["as"]("ann", "customer").data(GROUP, id=a)["node"]
    gb_ = world["as"]("bea", "customer").data(GROUP, id=b)["node"]
    assert gb_["expiresAt"] < ga["expiresAt"]
    made = {}
    for leader, members in (("cat", 2), ("dan", 1)):  # cat's fills (3 of 3), dan's misses 1
        lead = world["as"](leader, "customer").mutate("openGroup", {"campaignId": cid}, SEAT)
        _pay(backend, lead["order"]["id"], 8000, f"q13-{leader}")
        for i in range(members):
            world["as"](f"{leader}{i}", "customer").mutate("joinGroup", {"groupId": lead["group"]["id"]}, SEAT)
        made[leader] = lead["group"]["id"]
    picks = []
    for i in range(5):
        got = world["as"](f"q{i}", "customer").mutate("quickJoin", {"campaignId": cid}, qj)
        assert got["errors"] == [] and got["opened"] is False, got
        picks.append(got["group"]["id"])
    assert picks == [made["dan"], b, b, a, a]  # 1 missing; then 2 missing, earliest expiry; then 1 missing; ...
    last = world["as"]("q9", "customer").mutate("quickJoin", {"campaignId": cid}, qj)
    assert payload_codes(last) == ["NO_GROUP_AVAILABLE"]


def test_GB14_overflow_reseat_set_over_graphql_reseats_a_late_payment_api(world):
    """GB-14: off by default (the late payment is refunded, GB-9); turned on with updateGroupBuySettings, a late
    payment takes a seat in another open group at its price, and the events say which happened."""
    import json

    from tests.api.test_e2e import settled_events

    admin, backend, srv = world["as"]("boss", "admin"), world["as"]("be", "backend"), world["svc"]
    assert admin.data("{ groupBuySettings { overflowReseat } }")["groupBuySettings"] == {"overflowReseat": False}
    cid = make_campaign(admin, srv, tiers=[{"members": 3, "unitPrice": 8000}])

    def late_member(tag):
        gids = []
        for leader in (f"{tag}a", f"{tag}b"):
            lead = world["as"](leader, "customer").mutate("openGroup", {"campaignId": cid}, SEAT)
            _pay(backend, lead["order"]["id"], 8000, f"g14-{leader}")
            gids.append(lead["group"]["id"])
        m = world["as"](f"{tag}m", "customer").mutate("joinGroup", {"groupId": gids[0]}, SEAT)
        return gids, m["order"]["id"]

    (a1, _), o1 = late_member("x")
    srv.clock.advance(timedelta(minutes=16))
    assert _pay(backend, o1, 8000, "g14-late1")["accepted"] is False  # off: refunded (GB-9)
    on = admin.mutate("updateGroupBuySettings", {"overflowReseat": True}, "settings { overflowReseat }")
    assert on["errors"] == [] and on["settings"] == {"overflowReseat": True}
    (a2, b2), o2 = late_member("y")
    srv.clock.advance(timedelta(minutes=16))
    assert _pay(backend, o2, 8000, "g14-late2")["accepted"] is True
    q = "query($id: ID!) { node(id: $id) { ... on Order { state group { id } } } }"
    got = admin.data(q, id=o2)["node"]
    assert got["state"] == "PAID" and got["group"]["id"] != a2
    evs = settled_events(
        admin, 2, '{ events(types: ["order.reseated", "refund.owed"]) { edges { node { type payloadJson } } } }'
    )
    kinds = [(e["type"], json.loads(e["payloadJson"]).get("reason")) for e in evs]
    assert kinds == [("refund.owed", "GB-9"), ("order.reseated", None)]
