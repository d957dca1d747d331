"""Runs every row of docs/worked-examples/distribution-v2.md against the engine (CM-7, RF-3, RP-5, RP-6).

A row that is missing, has a key the runner does not know, or disagrees with the engine fails."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest

from engine import commission as cm
from engine import groupbuy as gb
from engine import preview as pv
from engine.distribution import BindingMode, DistributionSettings, DistributorStatus
from engine.errors import RuleViolation
from engine.funnel import PaidOrder, first_buyers, take
from engine.leaderboard import MemberOrder, RankBy, Standing, member_figures, rank
from engine.levels import Level
from engine.referral import Binding, BindingSource, decide_admin_binding, decide_binding, decide_order_code
from tests.engine.test_worked_examples_distribution import T0, items, pairs
from tests.engine.worked_examples import table_rows

DOC = Path(__file__).resolve().parents[2] / "docs" / "worked-examples" / "distribution-v2.md"
HEADER = "| id | scenario | inputs | arithmetic written out | expected |"
REQUIRED = {f"V{i}" for i in range(1, 21)}
INPUT_KEYS = {
    "cart": {"kind", "l1", "l2", "cap", "self_purchase", "buyer", "refs", "grades", "levels", "lines"},
    "campaign": {"kind", "tiers", "variants", "leader_discount", "qty", "l1", "l2", "refs"},
    "order_code": {"kind", "live", "code", "overrides", "downline"},
    "rank": {"kind", "rows", "by"},
    "funnel": {"kind", "buyers", "period"},
    "visits": {"kind", "per_minute", "burst", "arrivals"},
    "bind": {"kind", "source", "mode", "days", "new_only", "paid", "live", "code", "status", "downline", "reason"},
    "downline": {"kind", "orders", "period"},
}


def rows() -> list[dict[str, str]]:
    return table_rows(DOC, HEADER)


def _settings(inp) -> DistributionSettings:
    return DistributionSettings(
        level1_bp=int(inp.get("l1", 1000)),
        level2_bp=int(inp.get("l2", 500)),
        max_total_bp=int(inp.get("cap", 5000)),
        self_purchase=inp.get("self_purchase", "off") == "on",
    )


def _facts(inp) -> pv.PaymentFacts:
    r1, r2 = [None if r == "-" else r for r in inp["refs"].split(",")]
    grades = dict((u, int(g)) for u, g in (x.split(":") for x in items(inp.get("grades", "none"))))
    parties = {u: pv.Party(DistributorStatus.ACTIVE, grades.get(u, 0)) for u in (r1, r2) if u}
    if inp.get("buyer", "-") != "-":
        parties["buyer"] = pv.Party(DistributorStatus(inp["buyer"]), 0)
    return pv.PaymentFacts("buyer", r1, r2, parties)


def _tiers(spec: str) -> tuple[gb.Tier, ...]:
    return tuple(gb.Tier(int(m), int(p)) for m, p in (t.split("@") for t in spec.replace("/", ",").split(",")))


def _preview_expected(p: pv.Preview) -> dict[str, str]:
    shares = ",".join(f"{s.level}:{s.least}-{s.most}" for s in p.shares) or "none"
    return {"shares": shares, "base": f"{p.base_least}-{p.base_most}"}


def run(inp: dict[str, str]) -> dict[str, str]:
    kind = inp["kind"]
    assert set(inp) <= INPUT_KEYS[kind], f"unknown keys {set(inp) - INPUT_KEYS[kind]}"
    if kind == "cart":
        levels = tuple(
            Level(int(g), f"L{g}", int(a), int(b))
            for g, (a, b) in ((x.split(":")[0], x.split(":")[1].split("/")) for x in items(inp.get("levels", "none")))
        )
        lines = []
        for spec in items(inp["lines"]):
            ref, qty, base, *fixed = spec.split(":")
            f = dict(x.split("=") for x in fixed)
            lines.append(
                cm.LineBase(
                    ref,
                    int(qty),
                    int(base),
                    cm.ProductTerms(
                        level1_amount=int(f["l1"]) if "l1" in f else None,
                        level2_amount=int(f["l2"]) if "l2" in f else None,
                    ),
                )
            )
        return _preview_expected(pv.preview_cart(_settings(inp), levels, _facts(inp), lines))
    if kind == "campaign":
        variants = tuple(
            gb.Variant(v.split(":")[0], _tiers(v.split(":")[1]), 1) for v in items(inp.get("variants", "none"))
        )
        c = gb.Campaign(
            id="c",
            list_price=10**6,
            tiers=_tiers(inp["tiers"]),
            duration=timedelta(hours=1),
            payment_window=timedelta(minutes=5),
            starts_at=T0,
            ends_at=T0 + timedelta(days=1),
            leader_discount=int(inp.get("leader_discount", 0)),
            variants=variants,
            max_quantity_per_order=int(inp.get("qty", 1)),
        )
        return _preview_expected(
            pv.preview_campaign(
                _settings(inp),
                (),
                _facts(inp),
                campaign=c,
                product_ref="p",
                terms=cm.ProductTerms(),
                quantity=int(inp.get("qty", 1)),
            )
        )
    if kind == "order_code":
        parents = {u: "buyer" for u in items(inp["downline"]) if u != "-"}
        live = None if inp["live"] == "-" else inp["live"]
        current = Binding("buyer", live, T0, BindingSource.INVITE_CODE) if live else None
        if live:
            parents["buyer"] = live

        class View:
            def referrer_of(self, u: str) -> str | None:
                return parents.get(u)

        try:
            d = decide_order_code(
                DistributionSettings(order_code_overrides=inp["overrides"] == "on"),
                buyer_id="buyer",
                referrer_id=inp["code"],
                now=T0,
                current=current,
                view=View(),
                referrer_status=DistributorStatus.ACTIVE,
                user_has_paid_order=False,
            )
        except RuleViolation as e:
            return {"outcome": e.code.value}
        return {"outcome": "BOUND" if d.binding else "OVERRIDE" if d.override else "UNCHANGED"}
    if kind == "rank":
        rows_ = [Standing(u, int(c), int(t), int(n)) for u, c, t, n in (r.split(":") for r in items(inp["rows"]))]
        return {"ranks": ",".join(f"{k}:{r.user_id}" for k, r in rank(rows_, RankBy(inp["by"])))}
    if kind == "funnel":
        buyers: dict[str, list[PaidOrder]] = {}
        for spec in items(inp["buyers"]):
            for o in spec.split("/"):
                u, day, attr, full = o.split(":")
                buyers.setdefault(u, []).append(PaidOrder(T0 + timedelta(days=int(day)), attr == "y", full == "y"))
        a, b = (int(x) for x in inp["period"].split("-"))
        first, repeat = first_buyers(buyers, T0 + timedelta(days=a), T0 + timedelta(days=b))
        return {"first": str(first), "repeat": str(repeat)}
    if kind == "visits":
        bucket, allowed = None, 0
        for s in items(inp["arrivals"]):
            ok, bucket = take(
                bucket, T0 + timedelta(seconds=int(s)), per_minute=int(inp["per_minute"]), burst=int(inp["burst"])
            )
            allowed += ok
        return {"allowed": str(allowed)}
    if kind == "bind":
        return run_bind(inp)
    if kind == "downline":
        orders = [
            MemberOrder(T0 + timedelta(days=int(d)), int(b), e == "y", f == "y")
            for d, b, e, f in (o.split(":") for o in items(inp["orders"]))
        ]
        a, b = (int(x) for x in inp["period"].split("-"))
        paid, base = member_figures(orders, T0 + timedelta(days=a), T0 + timedelta(days=b))
        return {"paid": str(paid), "base": str(base)}
    raise AssertionError(f"unknown kind {kind}")


def run_bind(inp: dict[str, str]) -> dict[str, str]:
    """RF-3 (a) a group link (`decide_binding`, source GROUP_INVITE) or (c) an admin (`decide_admin_binding`)
    binding the user `joiner` to `code`'s distributor, at day 10."""
    now = T0 + timedelta(days=10)
    settings = DistributionSettings(
        binding=BindingMode(inp.get("mode", "PERMANENT")),
        binding_days=int(inp["days"]) if "days" in inp else None,
        bind_new_users_only=inp.get("new_only", "off") == "on",
    )
    parents = {u: "joiner" for u in items(inp.get("downline", "-")) if u != "-"}
    live = None if inp.get("live", "-") == "-" else inp["live"]
    current = Binding("joiner", live, T0, BindingSource.INVITE_CODE) if live else None
    if live:
        parents["joiner"] = live

    class View:
        def referrer_of(self, u: str) -> str | None:
            return parents.get(u)

    status = DistributorStatus(inp.get("status", "ACTIVE"))
    try:
        if inp["source"] == "ADMIN":
            b = decide_admin_binding(
                settings,
                user_id="joiner",
                referrer_id=inp["code"],
                reason=inp.get("reason", "").strip('"'),
                now=now,
                current=current,
                view=View(),
                referrer_status=status,
            )
        else:
            b = decide_binding(
                settings,
                user_id="joiner",
                referrer_id=inp["code"],
                now=now,
                current=current,
                view=View(),
                referrer_status=status,
                user_has_paid_order=inp.get("paid", "n") == "y",
                source=BindingSource(inp["source"]),
            )
    except RuleViolation as e:
        return {"outcome": e.code.value}
    if b is None:
        return {"outcome": "UNCHANGED"}
    out = {"outcome": f"BOUND:{b.source.value}", "referrer": b.referrer_id}
    if b.expires_at is not None:
        out["expires"] = f"day {(b.expires_at - T0).days}"
    return out


def test_every_example_is_present():
    assert {r["id"] for r in rows()} == REQUIRED


@pytest.mark.parametrize("row", rows(), ids=lambda r: r["id"])
def test_worked_example_CM7_RF3_RP5_RP6(row):
    """CM-7, RF-3 (a, b, c), RP-5, RP-6: the row's expected figures are what the engine computes."""
    assert run(pairs(row["inputs"])) == pairs(row["expected"]), row["id"]
