"""FR-1..FR-4 and LG-4 through GraphQL: one scenario per fraud rule kind (FR-2 a-d), each ending in a review
decision (FR-3) whose record and event say who, when and why (FR-4); a payout whose transfer fails (LG-4)."""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import text

from engine.distribution import DistributorStatus
from service.usecases import distribution
from tests.api.conftest import payload_codes

ORDER = "order { id }"
FLAG = "flag { id subject rules evidence state amount held resolvedBy reason }"
QUEUE = (
    "query { fraudReviewQueue { totalCount edges { node { id subject rules evidence beneficiaryId amount held state "
    "flaggedBy } } } }"
)
ME = "query { me { balances { pending frozen available held } } }"


async def _setup(world, svc, rules: dict) -> dict:
    """`ref` is an active distributor; `b1`, `b2`, `b3` are bound to them; the shop's fraud rules are `rules`.
    `svc` (the test's own services, for reading the database) and the server's clock (`clock`)."""
    sid = world["shop"].shop_id
    await distribution.set_status(
        svc, shop_id=sid, user_id="ref", status=DistributorStatus.ACTIVE, actor="t", reason="t"
    )
    for b in ("b1", "b2", "b3"):
        await distribution.bind_referrer(svc, shop_id=sid, user_id=b, referrer_id="ref")
    admin = world["as"]("boss", "admin")
    r = admin.mutate("setFraudRules", rules, "rules { selfDealing velocity scalperGroup refundRate }")
    assert r["errors"] == [], r
    return {
        "admin": admin,
        "backend": world["as"]("be", "backend"),
        "ref": world["as"]("ref", "distributor"),
        "svc": svc,
        "sid": sid,
        "clock": world["svc"].clock,
        "server": world["svc"],
        "day0": world["svc"].now().date(),
        "finance": world["as"]("fin", "finance"),
    }


SETTLEMENT = "settlement { opening released payouts fees failed closing held }"


def _close(w) -> dict:
    """LG-3 over GraphQL: finance closes [the test's first day, tomorrow) once tomorrow 00:06 has come."""
    from datetime import datetime, time, timezone

    end = w["server"].now().date() + timedelta(days=1)
    w["clock"].advance(datetime.combine(end, time(0, 6), timezone.utc) - w["server"].now())
    r = w["finance"].mutate("closePeriod", {"fromDate": w["day0"].isoformat(), "toDate": end.isoformat()}, SETTLEMENT)
    assert r["errors"] == [], r
    return r["settlement"]


def _pay(w, ext: str, buyer: str, price: int = 10_000, **fingerprints) -> str:
    r = w["backend"].mutate(
        "reportOrder",
        {"externalId": ext, "buyerId": buyer, "lines": [{"productRef": "tea", "quantity": 1, "unitPrice": price}]},
        ORDER,
    )
    assert r["errors"] == [], r
    pay = {"orderId": r["order"]["id"], "amount": price, "providerRef": f"p-{ext}"}
    if fingerprints:
        pay["fingerprints"] = fingerprints
    p = w["backend"].mutate("confirmPayment", pay, "accepted")
    assert p["errors"] == [] and p["accepted"] is True, p
    return r["order"]["id"]


def _queue(w) -> list[dict]:
    return [e["node"] for e in w["admin"].data(QUEUE)["fraudReviewQueue"]["edges"]]


async def _events(w, *types: str) -> list[dict]:
    async with w["svc"].sessionmaker() as s:
        rows = (
            await s.execute(
                text(
                    "SELECT type, payload FROM events WHERE shop_id = :s AND type = ANY(:t) "
                    "ORDER BY occurred_at, event_id"
                ),
                {"s": w["sid"], "t": list(types)},
            )
        ).all()
    return [{"type": t, **p} for t, p in rows]


async def _stored(w, table: str, where: str = "true") -> list[dict]:
    async with w["svc"].sessionmaker() as s:
        return [
            dict(r)
            for r in (
                await s.execute(text(f"SELECT * FROM {table} WHERE shop_id = :s AND {where}"), {"s": w["sid"]})
            ).mappings()
        ]


async def test_FR2a_self_dealing_is_held_then_cleared_and_released_at_once_FR1_FR3_FR4_api(world, svc):
    """FR-2 (a): `ref` buys once from device D; `b1` (bound to ref) pays from device D too. ref's line is held
    (its own figure in the balances, FR-3), is not released when due, and an admin's clearance makes it
    available at once; the fingerprints are kept only as hashes (FR-1)."""
    w = await _setup(world, svc, {"selfDealing": True})
    _pay(w, "own", "ref", deviceId="Device-D", ipAddress="10.0.0.1")
    oid = _pay(w, "o1", "b1", deviceId="  device-d ")
    q = _queue(w)
    assert [(f["subject"], f["rules"], f["beneficiaryId"], f["amount"], f["held"], f["flaggedBy"]) for f in q] == [
        ("LINE", ["SELF_DEALING"], "ref", 1000, 1000, "system")
    ]
    assert q[0]["evidence"] == {"SELF_DEALING": {"shared": ["DEVICE"]}}
    assert w["ref"].data(ME)["me"]["balances"] == {"pending": 1000, "frozen": 0, "available": 0, "held": 1000}
    stored = await _stored(w, "payment_fingerprints")
    assert len(stored) == 3 and not any("device-d" in str(r).lower() or "10.0.0.1" in str(r) for r in stored)  # FR-1

    assert w["backend"].mutate("completeOrder", {"orderId": oid}, ORDER)["errors"] == []
    w["clock"].advance(timedelta(days=8))
    assert w["ref"].data(ME)["me"]["balances"] == {"pending": 0, "frozen": 1000, "available": 0, "held": 1000}
    c = w["admin"].mutate("clearFraudFlag", {"flagId": q[0]["id"], "reason": "same household"}, FLAG)
    assert c["errors"] == [] and c["flag"]["state"] == "CLEARED" and c["flag"]["resolvedBy"] == "boss"
    assert c["flag"]["held"] == 0 and c["flag"]["amount"] == 1000  # FR-3: no amount changed
    assert w["ref"].data(ME)["me"]["balances"] == {"pending": 0, "frozen": 0, "available": 1000, "held": 0}
    again = w["admin"].mutate("clearFraudFlag", {"flagId": q[0]["id"]}, FLAG)
    assert again["errors"] == [] and again["flag"]["state"] == "CLEARED"  # the same decision twice is one
    assert (
        w["admin"].mutate("voidFraudFlag", {"flagId": q[0]["id"], "reason": "x"}, FLAG)["errors"][0]["code"]
        == "INVALID_STATE"
    )
    ev = await _events(w, "fraud.flagged", "fraud.cleared")
    assert [(e["type"], e["by"]) for e in ev] == [("fraud.flagged", "system"), ("fraud.cleared", "boss")]  # FR-4
    assert ev[1]["reason"] == "same household" and ev[1]["amount"] == 1000
    assert _queue(w) == []


async def test_FR2b_velocity_flags_the_order_after_N_sharing_an_ip_and_a_void_reverses_it_FR3_FR4_api(world, svc):
    """FR-2 (b) with N = 1: the second order earning `ref` from the same IP within the window is flagged; the
    admin voids it with a reason — reversed by a new entry, pending back to the first line alone."""
    w = await _setup(world, svc, {"velocity": True, "velocityMaxOrders": 1, "velocityWindow": 3600})
    _pay(w, "o1", "b1", ipAddress="203.0.113.9")
    _pay(w, "o2", "b2", ipAddress="203.0.113.7")  # another IP: no velocity
    _pay(w, "o3", "b3", ipAddress="203.0.113.9", price=20_000)
    q = _queue(w)
    assert [(f["rules"], f["amount"]) for f in q] == [(["VELOCITY"], 2000)]
    assert q[0]["evidence"]["VELOCITY"]["orders"] == 2
    assert w["ref"].data(ME)["me"]["balances"]["held"] == 2000
    bad = w["admin"].mutate("voidFraudFlag", {"flagId": q[0]["id"]}, FLAG)
    assert payload_codes(bad) == ["INVALID_INPUT"] and bad["errors"][0]["rule"] == "FR-4"  # a void needs a reason
    v = w["admin"].mutate("voidFraudFlag", {"flagId": q[0]["id"], "reason": "click farm"}, FLAG)
    assert v["errors"] == [] and v["flag"]["state"] == "VOIDED" and v["flag"]["reason"] == "click farm"
    assert w["ref"].data(ME)["me"]["balances"] == {"pending": 2000, "frozen": 0, "available": 0, "held": 0}
    lines = await _stored(w, "commission_lines", "state = 'VOID'")
    assert [(ln["original"], ln["standing"]) for ln in lines] == [(2000, 0)]
    entries = await _stored(w, "ledger_entries", "kind = 'COMMISSION_VOIDED'")
    assert [e["amount"] for e in entries] == [-2000]  # LG-1: a new entry, the posting stays
    assert [(e["type"], e["by"], e["reason"]) for e in await _events(w, "fraud.voided")] == [
        ("fraud.voided", "boss", "click farm")
    ]


async def test_FR2c_a_scalper_group_is_held_and_dissolved_before_forming_with_GB6_refunds_FR3_FR4_api(world, svc):
    """FR-2 (c) with k = 2: leader and member pay from one device — the group is flagged and its lines held;
    the admin dissolves it: FAILED, every paid order owed a full refund (GB-6), its lines voided."""
    from tests.api.test_e2e import make_campaign

    w = await _setup(world, svc, {"scalperGroup": True, "scalperMinSeats": 2})
    cid = make_campaign(w["admin"], world["svc"], tiers=[{"members": 3, "unitPrice": 8000}])
    seat = "group { id state } order { id } amountToPay"
    lead = world["as"]("b1", "customer").mutate("openGroup", {"campaignId": cid}, seat)
    w["backend"].mutate(
        "confirmPayment",
        {"orderId": lead["order"]["id"], "amount": 8000, "providerRef": "g-1", "fingerprints": {"deviceId": "phone-1"}},
        "accepted",
    )
    assert _queue(w) == []
    m = world["as"]("b2", "customer").mutate("joinGroup", {"groupId": lead["group"]["id"]}, seat)
    r = w["backend"].mutate(
        "confirmPayment",
        {"orderId": m["order"]["id"], "amount": 8000, "providerRef": "g-2", "fingerprints": {"deviceId": "PHONE-1"}},
        "accepted",
    )
    assert r["accepted"] is True
    q = _queue(w)
    assert [(f["subject"], f["rules"], f["held"]) for f in q] == [("GROUP", ["SCALPER_GROUP"], 1600)]
    assert q[0]["evidence"]["SCALPER_GROUP"]["seats"] == 2
    assert w["ref"].data(ME)["me"]["balances"]["held"] == 1600  # both members' lines, the earlier one too
    d = w["admin"].mutate("dissolveFlaggedGroup", {"flagId": q[0]["id"], "reason": "one phone, two buyers"}, FLAG)
    assert d["errors"] == [] and d["flag"]["state"] == "DISSOLVED"
    g = world["as"]("b1", "customer").data(
        "query($id: ID!) { node(id: $id) { ... on Group { state } } }", id=lead["group"]["id"]
    )["node"]
    assert g == {"state": "FAILED"}
    owed = await _stored(w, "refunds")
    assert sorted(r["amount"] for r in owed) == [8000, 8000] and {r["rule"] for r in owed} == {"GB-6"}
    assert w["ref"].data(ME)["me"]["balances"] == {"pending": 0, "frozen": 0, "available": 0, "held": 0}
    again = w["admin"].mutate("dissolveFlaggedGroup", {"flagId": q[0]["id"], "reason": "again"}, FLAG)
    assert again["errors"] == [] and again["flag"]["state"] == "DISSOLVED"  # idempotent
    assert [e["by"] for e in await _events(w, "fraud.group_dissolved")] == ["boss"]


async def test_FR2d_a_downline_refunding_over_X_percent_holds_the_next_commission_api(world, svc):
    """FR-2 (d) with X = 30 % over 1 order at least: b1's order is refunded in full, so b2's order earning
    the same distributor is held; the figure shows in the balances until cleared."""
    w = await _setup(world, svc, {"refundRate": True, "refundRateMaxBp": 3000, "refundRateMinOrders": 1})
    o1 = _pay(w, "o1", "b1")
    assert _queue(w) == []  # no history yet
    r = w["backend"].mutate("refundOrder", {"orderId": o1, "amount": 10_000, "providerRef": "rf-1"}, "refund { id }")
    assert r["errors"] == [], r
    _pay(w, "o2", "b2", price=5000)
    q = _queue(w)
    assert [(f["rules"], f["amount"]) for f in q] == [(["REFUND_RATE"], 500)]
    assert q[0]["evidence"]["REFUND_RATE"] == {
        "orders": 1,
        "paid": 10_000,
        "refunded": 10_000,
        "rate_bp": 10_000,
        "max_bp": 3000,
    }
    assert w["ref"].data(ME)["me"]["balances"] == {"pending": 500, "frozen": 0, "available": 0, "held": 500}
    off = w["admin"].mutate("setFraudRules", {}, "rules { refundRate }")
    assert off["rules"] == {"refundRate": False}
    _pay(w, "o3", "b3", price=5000)  # rules off: nothing more is held
    assert len(_queue(w)) == 1 and w["ref"].data(ME)["me"]["balances"]["held"] == 500
    # FR-3 in settlements: the held figure at the period end, beside an identity it takes no part in
    assert _close(w) == {"opening": 0, "released": 0, "payouts": 0, "fees": 0, "failed": 0, "closing": 0, "held": 500}


def test_FR2_rules_and_queue_are_for_admins_only_api(world):
    customer = world["as"]("c", "customer")
    body = customer.gql("query { fraudReviewQueue { totalCount } }")
    assert body["data"] is None or body["data"].get("fraudReviewQueue") is None
    bad = world["as"]("boss", "admin").mutate(
        "setFraudRules", {"scalperGroup": True, "scalperMinSeats": 1}, "rules { scalperGroup }"
    )
    assert payload_codes(bad) == ["INVALID_INPUT"] and bad["errors"][0]["field"] == "scalperMinSeats"


PAYOUT = "payout { id state amount fee net payeeKind payeeReference failureRef failureReason }"


async def test_LG4_a_failed_transfer_returns_the_amount_and_the_fee_by_new_entries_api(world, svc):
    """LG-4: the payee method is recorded masked at request; finance approves; the backend marks the transfer
    FAILED (idempotently): available has all of A back, PAID and FEES net to zero, the payout stays in history."""
    sid = world["shop"].shop_id
    admin = world["as"]("boss", "admin")
    assert (
        admin.mutate("updateDistributionSettings", {"payoutFeeBp": 100, "freezeDays": 0}, "settings { payoutFeeBp }")[
            "errors"
        ]
        == []
    )
    w = await _setup(world, svc, {})
    oid = _pay(w, "o1", "b1", price=50_000)
    assert w["backend"].mutate("completeOrder", {"orderId": oid}, ORDER)["errors"] == []
    w["clock"].advance(timedelta(seconds=1))
    assert w["ref"].data(ME)["me"]["balances"]["available"] == 5000
    req = w["ref"].mutate(
        "requestPayout",
        {"amount": 4000, "payeeMethod": {"kind": "BANK_ACCOUNT", "accountReference": "6222 0212 3456 7890"}},
        PAYOUT,
    )
    assert req["errors"] == [] and (req["payout"]["payeeKind"], req["payout"]["payeeReference"]) == (
        "BANK_ACCOUNT",
        "****7890",
    )
    pid = req["payout"]["id"]
    finance, backend = world["as"]("fin", "finance"), w["backend"]
    early = backend.mutate("failPayout", {"payoutId": pid, "transferRef": "t-1", "reason": "bounced"}, PAYOUT)
    assert payload_codes(early) == ["INVALID_STATE"] and early["errors"][0]["rule"] == "LG-4"  # not approved yet
    assert finance.mutate("approvePayout", {"payoutId": pid, "externalRef": "bank-1"}, PAYOUT)["errors"] == []
    f = backend.mutate("failPayout", {"payoutId": pid, "transferRef": "t-1", "reason": "account closed"}, PAYOUT)
    assert f["errors"] == [] and f["payout"]["state"] == "FAILED"
    assert (f["payout"]["failureRef"], f["payout"]["failureReason"], f["payout"]["fee"]) == (
        "t-1",
        "account closed",
        40,
    )
    again = finance.mutate("failPayout", {"payoutId": pid, "transferRef": "t-1", "reason": "account closed"}, PAYOUT)
    assert again["errors"] == [] and again["payout"]["state"] == "FAILED"  # idempotent
    other = finance.mutate("failPayout", {"payoutId": pid, "transferRef": "t-2", "reason": "x"}, PAYOUT)
    assert payload_codes(other) == ["INVALID_STATE"]
    assert w["ref"].data(ME)["me"]["balances"]["available"] == 5000
    async with svc.sessionmaker() as s:
        b = (
            await s.execute(
                text("SELECT paid, fees, available FROM distributors WHERE shop_id = :s AND user_id = 'ref'"),
                {"s": sid},
            )
        ).one()
        kinds = (
            await s.execute(
                text(
                    "SELECT kind, bucket, amount FROM ledger_entries WHERE shop_id = :s "
                    "AND ref_type = 'payout' ORDER BY seq"
                ),
                {"s": sid},
            )
        ).all()
        stored = (await s.execute(text("SELECT payee_reference FROM payouts WHERE shop_id = :s"), {"s": sid})).scalar()
    assert tuple(b) == (0, 0, 5000) and stored == "****7890"
    assert [k for k, _, _ in kinds].count("PAYOUT_APPROVED") == 2  # the approval's entries stay (LG-1)
    assert sorted((k, bk, a) for k, bk, a in kinds if k.startswith("PAYOUT_F")) == [
        ("PAYOUT_FAILED", "AVAILABLE", 3960),
        ("PAYOUT_FAILED", "PAID", -3960),
        ("PAYOUT_FEE", "FEES", 40),
        ("PAYOUT_FEE_REVERSED", "AVAILABLE", 40),
        ("PAYOUT_FEE_REVERSED", "FEES", -40),
    ]
    ev = await _events(w, "payout.failed")
    assert [(e["amount"], e["fee_reversed"], e["transfer_ref"], e["by"]) for e in ev] == [(4000, 40, "t-1", "be")]
    # LG-4 in settlements: sent 3960 and charged 40, both given back in `failed`; the identity holds
    assert _close(w) == {
        "opening": 0,
        "released": 5000,
        "payouts": 3960,
        "fees": 40,
        "failed": 4000,
        "closing": 5000,
        "held": 0,
    }
    denied = world["as"]("c", "customer").gql(
        "mutation($i: FailPayoutInput!) { failPayout(input: $i) { errors { code } } }",
        i={"payoutId": pid, "transferRef": "t", "reason": "r"},
    )
    assert [e["extensions"]["code"] for e in denied["errors"]] == ["FORBIDDEN"]  # SH-0: finance or backend only
