"""Runs every row of docs/worked-examples/groupbuy.md against the engine (GB-1..GB-12, GB-7 v2, GB-15).

A row that is missing, cannot be parsed, or disagrees with the engine fails."""

from __future__ import annotations

import re
from collections import defaultdict
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from engine import groupbuy as gb
from engine.groupbuy import Campaign, Tier
from tests.engine.worked_examples import table_rows

DOC = Path(__file__).resolve().parents[2] / "docs" / "worked-examples" / "groupbuy.md"
HEADER = "| id | scenario | inputs | arithmetic written out | expected |"
REQUIRED = {f"E{i}" for i in range(1, 18)}
T0 = datetime(2025, 6, 1, tzinfo=timezone.utc)
STEP = re.compile(r"^(open|join|pay|leave|advance)\s*([A-Za-z]\w*)?\s*(?:x(\d+))?\s*@(\d+)$")
INPUT_KEYS = {
    "tiers",
    "list",
    "discount",
    "fill",
    "K",
    "seed",
    "stock",
    "group",
    "steps",
    "groupseed",
    "almost",
    "soon",
}
EXPECTED_KEYS = {
    "state",
    "tier",
    "leader",
    "final",
    "refunds",
    "cancelled",
    "winners",
    "stock_left",
    "closed",
    "nudges",
    "commitment",
}


def rows() -> list[dict[str, str]]:
    return table_rows(DOC, HEADER)


def pairs(text: str, allowed: set[str]) -> dict[str, str]:
    d = {}
    for part in text.split(";"):
        key, sep, value = part.strip().partition("=")
        assert sep and key in allowed, f"cannot parse {part!r}"
        d[key] = value.strip()
    return d


def per_user(text: str) -> dict[str, str]:
    if text == "none":
        return {}
    out = {}
    for item in text.split(","):
        user, _, rest = item.strip().partition(":")
        out[user] = rest
    return out


def run(row: dict[str, str]) -> None:
    inp = pairs(row["inputs"], INPUT_KEYS)
    exp = pairs(row["expected"], EXPECTED_KEYS)
    tiers = tuple(Tier(*map(int, t.split(":"))) for t in inp["tiers"].split("/"))
    stock = int(inp["stock"]) if "stock" in inp else None
    c = Campaign(
        id="camp",
        list_price=int(inp.get("list", 10_000)),
        tiers=tiers,
        duration=timedelta(minutes=1440),
        payment_window=timedelta(minutes=15),
        starts_at=T0,
        ends_at=T0 + timedelta(days=7),
        leader_discount=int(inp.get("discount", 0)),
        stock=stock,
        max_quantity_per_order=5,
        fill_at_expiry=int(inp["fill"]) if "fill" in inp else None,
        lottery_winners=int(inp.get("K", 0)),
        lottery_seed=inp.get("seed", ""),
        almost_full_at=int(inp.get("almost", 0)),
        expiring_soon_before=timedelta(minutes=int(inp.get("soon", 0))),
    )
    gb.validate_campaign(c)
    gid = inp.get("group", "g")

    group: gb.Group | None = None
    stock_left = stock
    qty_of: dict[str, int] = {}
    refunds: list[tuple[str, int, str, bool]] = []
    finals: dict[str, int] = {}
    cancelled: list[str] = []
    nudges: list[str] = []  # GB-15: kind@minute

    def apply(d: gb.Decision) -> gb.Group:
        nonlocal stock_left
        for i in d.instructions:
            if isinstance(i, gb.RefundOwed):
                refunds.append((i.order_id, i.amount, i.rule, i.full))
            elif isinstance(i, gb.FinalPrice):
                finals[i.order_id] = i.final_unit_price
            elif isinstance(i, gb.CancelOrder):
                cancelled.append(i.order_id)
            elif isinstance(i, gb.ReturnStock) and stock_left is not None:
                stock_left += i.quantity
            elif isinstance(i, gb.GroupNudged):
                nudges.append(f"{i.kind}@{int((now - T0).total_seconds() // 60)}")
        return d.group

    steps = [s.strip() for s in inp["steps"].split(",")]
    for step in steps:
        m = STEP.match(step)
        assert m, f"{row['id']}: cannot parse step {step!r}"
        verb, user, qty, minute = m.group(1), m.group(2), int(m.group(3) or 1), int(m.group(4))
        now = T0 + timedelta(minutes=minute)
        oid = f"o-{user}"
        if verb == "open":
            d = gb.open_group(
                c,
                group_id=gid,
                order_id=oid,
                user_id=user,
                quantity=qty,
                now=now,
                stock_left=stock_left,
                user_units_held=0,
                lottery_seed=inp.get("groupseed"),
            )
        elif verb == "join":
            d = gb.join_group(
                c,
                group,
                order_id=oid,
                user_id=user,
                quantity=qty,
                now=now,
                stock_left=stock_left,
                user_units_held=0,
                user_has_paid_order=False,
            )
        elif verb == "pay":
            d = gb.pay_seat(c, group, order_id=oid, amount=group.seat_for_order(oid).amount, now=now)
        elif verb == "leave":
            d = gb.leave_group(c, group, user_id=user, now=now)
        else:
            d = gb.advance(c, group, now=now)
        if verb in ("open", "join"):
            qty_of[oid] = qty
            if stock_left is not None:
                stock_left -= qty
        group = apply(d)

    user = lambda oid: oid.removeprefix("o-")  # noqa: E731
    if "state" in exp:
        assert group.state.value == exp["state"]
    if "tier" in exp:
        assert group.tier_members == int(exp["tier"])
    if "leader" in exp:
        assert group.leader_user_id == exp["leader"]
    if "winners" in exp:
        assert [user(o) for o in group.winners] == [w.strip() for w in exp["winners"].split(",")]
    if "final" in exp:
        assert {user(o): p for o, p in finals.items()} == {u: int(p) for u, p in per_user(exp["final"]).items()}
    if "refunds" in exp:
        got = sorted((user(o), a, r) for o, a, r, _ in refunds)
        want = sorted((u, int(v.split(":")[0]), v.split(":")[1]) for u, v in per_user(exp["refunds"]).items())
        assert got == want
        assert all(full == (r != "GB-5") for _, _, r, full in refunds)
    if "cancelled" in exp:
        want = [] if exp["cancelled"] == "none" else [u.strip() for u in exp["cancelled"].split(",")]
        assert sorted(user(o) for o in cancelled) == sorted(want)
    if "stock_left" in exp:
        assert stock_left == int(exp["stock_left"])
    if "closed" in exp:  # GB-12: the instant the group decided, in minutes
        assert group.closed_at == T0 + timedelta(minutes=int(exp["closed"]))
    if "nudges" in exp:  # GB-15
        assert nudges == ([] if exp["nudges"] == "none" else [n.strip() for n in exp["nudges"].split(",")])
    if "commitment" in exp:  # GB-7 v2: the commitment starts with the digits given
        assert group.lottery_commitment is not None and group.lottery_commitment.startswith(exp["commitment"])
    # the same money invariant as everywhere (GB-5..GB-9): refunds never exceed what was paid
    total = defaultdict(int)
    for o, a, _, _ in refunds:
        total[o] += a
    for o, a in total.items():
        assert a <= group.seat_for_order(o).amount


ROWS = rows()


def test_worked_examples_table_is_complete():
    ids = [r["id"] for r in ROWS]
    assert len(ids) == len(set(ids)), "duplicate example id"
    assert REQUIRED <= set(ids), f"missing rows: {sorted(REQUIRED - set(ids))}"
    for r in ROWS:
        assert r["arithmetic"] and r["scenario"], r["id"]


@pytest.mark.parametrize("row", ROWS, ids=[r["id"] for r in ROWS])
def test_worked_example(row):
    run(row)
