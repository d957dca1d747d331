"""GB-7 v2: the stand-alone verifier of docs/lottery.md reproduces a real draw fetched over HTTP/GraphQL.

The verifier is executed from the document's text (it imports nothing of Sharecart); the draw comes from a
real group of a real campaign, through the server, as a member, finance and an outsider see it."""

from __future__ import annotations

import re
from pathlib import Path

from tests.api.test_e2e import make_campaign

ROOT = Path(__file__).resolve().parents[2]
SEAT = "group { id lotteryCommitment } order { id } amountToPay"
DRAW = (
    "query($id: ID!) { node(id: $id) { ... on Group { state lotteryCommitment draw { commitment seed "
    "candidates { orderId orderKey score } winners winnerKeys } } } }"
)


def verifier():
    doc = (ROOT / "docs" / "lottery.md").read_text()
    block = re.search(r"<!-- verifier:start -->\n```python\n(.*?)```\n<!-- verifier:end -->", doc, re.S).group(1)
    assert len(block.strip().splitlines()) <= 25, "the verifier stays short enough to read"
    assert not re.search(r"^\s*(from|import)\s+(?!hashlib|hmac|json|sys)", block, re.M), "stdlib hashlib+hmac only"
    ns: dict = {"__name__": "verifier"}
    exec(compile(block, "docs/lottery.md", "exec"), ns)
    return ns["verify"]


def test_GB7_v2_a_real_draw_is_reproduced_by_the_docs_verifier_api(world):
    admin, backend, srv = world["as"]("boss", "admin"), world["as"]("be", "backend"), world["svc"]
    cid = make_campaign(admin, srv, tiers=[{"members": 4, "unitPrice": 8000}], lotteryWinners=2)
    users = ["ann", "bob", "cat", "dan"]
    lead = world["as"]("ann", "customer").mutate("openGroup", {"campaignId": cid}, SEAT)
    gid, commitment = lead["group"]["id"], lead["group"]["lotteryCommitment"]
    assert re.fullmatch(r"[0-9a-f]{64}", commitment)  # public from opening, before anyone joins
    seats = [lead]
    backend.mutate(
        "confirmPayment",
        {"orderId": lead["order"]["id"], "amount": lead["amountToPay"], "providerRef": "lv-ann"},
        "accepted",
    )
    for u in users[1:]:
        s = world["as"](u, "customer").mutate("joinGroup", {"groupId": gid}, SEAT)
        assert s["errors"] == [] and s["group"]["lotteryCommitment"] == commitment
        if u != "dan":
            assert world["as"](u, "customer").data(DRAW, id=gid)["node"]["draw"] is None  # nothing revealed yet
        backend.mutate(
            "confirmPayment",
            {"orderId": s["order"]["id"], "amount": s["amountToPay"], "providerRef": f"lv-{u}"},
            "accepted",
        )
        seats.append(s)

    member = world["as"]("bob", "customer").data(DRAW, id=gid)["node"]
    assert member["state"] == "FORMED" and member["draw"] is not None
    fin = world["as"]("fin", "finance").data(DRAW, id=gid)["node"]
    assert fin == member  # finance sees the same draw to audit
    outsider = world["as"]("eve", "customer").data(DRAW, id=gid)["node"]
    assert outsider["draw"] is None and outsider["lotteryCommitment"] == commitment

    verify = verifier()
    winners = verify(member["draw"], commitment)
    assert len(winners) == 2 and set(member["draw"]["winners"]) <= {s["order"]["id"] for s in seats}
    assert {c["orderId"] for c in member["draw"]["candidates"]} == {s["order"]["id"] for s in seats}

    # the verifier refuses a draw that was tampered with
    import copy

    bad = copy.deepcopy(member["draw"])
    bad["winnerKeys"] = list(reversed([c["orderKey"] for c in bad["candidates"]]))[:2]
    try:
        verify(bad, commitment)
    except AssertionError:
        pass
    else:
        raise AssertionError("a tampered draw passed the verifier")
    other = copy.deepcopy(member["draw"])
    other["seed"] = "00" * 32
    try:
        verify(other, commitment)
    except AssertionError:
        pass
    else:
        raise AssertionError("a seed not matching the commitment passed the verifier")


def test_GB7_v2_finance_audits_the_draw_in_the_event_log_api(world):
    """The `group.formed` event (events pull, open to finance) carries the same draw."""
    from tests.api.test_e2e import settled_events

    admin, backend, srv = world["as"]("boss", "admin"), world["as"]("be", "backend"), world["svc"]
    cid = make_campaign(admin, srv, tiers=[{"members": 2, "unitPrice": 8000}], lotteryWinners=1)
    lead = world["as"]("ann", "customer").mutate("openGroup", {"campaignId": cid}, SEAT)
    backend.mutate(
        "confirmPayment",
        {"orderId": lead["order"]["id"], "amount": lead["amountToPay"], "providerRef": "le-ann"},
        "accepted",
    )
    s = world["as"]("bob", "customer").mutate("joinGroup", {"groupId": lead["group"]["id"]}, SEAT)
    backend.mutate("confirmPayment", {"orderId": s["order"]["id"], "amount": 8000, "providerRef": "le-bob"}, "accepted")
    fin = world["as"]("fin", "finance")
    q = '{ events(types: ["group.formed"]) { edges { node { seq type payloadJson } } } }'
    evs = settled_events(fin, 1, q)
    assert len(evs) == 1
    import json

    data = evs[0]["payloadJson"]
    data = json.loads(data) if isinstance(data, str) else data
    draw = data["draw"]
    ev_draw = {
        "seed": draw["seed"],
        "commitment": draw["commitment"],
        "candidates": [{"orderKey": c["order_id"], "score": c["score"]} for c in draw["candidates"]],
        "winnerKeys": draw["winners"],
    }
    assert verifier()(ev_draw, lead["group"]["lotteryCommitment"]) == data["winners"]


async def test_GB7_v2_the_seed_is_encrypted_at_rest_and_hidden_until_the_draw_api(world, db_engine):
    """A dump of the database does not hold an undrawn group's seed (store/secrets.py), and the API shows only
    its commitment until the group draws."""
    from sqlalchemy import text

    admin, srv = world["as"]("boss", "admin"), world["svc"]
    cid = make_campaign(admin, srv, tiers=[{"members": 3, "unitPrice": 8000}], lotteryWinners=1)
    lead = world["as"]("ann", "customer").mutate("openGroup", {"campaignId": cid}, SEAT)
    async with db_engine.connect() as c:
        stored, cm = (
            await c.execute(
                text("SELECT lottery_seed, lottery_commitment FROM groups WHERE shop_id = :s"),
                {"s": world["shop"].shop_id},
            )
        ).one()
    assert stored.startswith("fernet:") and cm == lead["group"]["lotteryCommitment"]
    g = admin.data(DRAW, id=lead["group"]["id"])["node"]
    assert g["draw"] is None and g["lotteryCommitment"] == cm
