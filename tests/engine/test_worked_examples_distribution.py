"""Runs every row of docs/worked-examples/distribution.md against the engine
(RF-1, CM-2..CM-6, LV-2..LV-4, LG-2 and the group leader's reward).

A row that is missing, has a key or step the runner does not know, or disagrees with the engine fails."""

from __future__ import annotations

import re
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from engine import commission as cm
from engine import ledger as lg
from engine.distribution import BindingMode, DistributionSettings, DistributorStatus
from engine.errors import RuleViolation
from engine.levels import Level, Metrics, admin_set_level, evaluate_level, validate_levels
from engine.referral import Binding, BindingSource, current_referrer, decide_binding
from tests.engine.worked_examples import pairs, table_rows

DOC = Path(__file__).resolve().parents[2] / "docs" / "worked-examples" / "distribution.md"
HEADER = "| id | scenario | inputs | arithmetic written out | expected |"
REQUIRED = {f"D{i}" for i in range(1, 14)}
T0 = datetime(2025, 6, 1, tzinfo=timezone.utc)
DAY = timedelta(days=1)
INPUT_KEYS = {
    "commission": {"kind", "buyer", "refs", "ben", "lines", "cap", "self_purchase"},
    "ledger": {"kind", "line", "freeze_days", "min_payout", "fee_bp", "steps"},
    "levels": {"kind", "levels", "steps"},
    "leader": {"kind", "rate_bp", "members", "refunds"},
    "binding": {"kind", "binding", "steps"},
}
EXPECTED_KEYS = {
    "commission": {"commissions", "cap_amount"},
    "ledger": {"balances", "standing", "reversals", "refused"},
    "levels": {"grades", "bonuses"},
    "leader": {"amount", "standing", "reversals"},
    "binding": {"results", "referrer"},
}
STEP = re.compile(r"^(post|complete|release|refund|credit|request|approve|reject)(?:\s+(\d+))?@(\d+)$")
METRIC = {
    "direct": "direct_referrals",
    "team": "team_size",
    "spend": "own_spend",
    "orders": "own_orders",
    "direct_sales": "direct_sales",
    "team_sales": "team_sales",
}
CONDITION = {k: "min_" + v for k, v in METRIC.items()}


def rows() -> list[dict[str, str]]:
    return table_rows(DOC, HEADER)


def items(text: str) -> list[str]:
    return [] if text == "none" else [t.strip() for t in text.split(",") if t.strip()]


# ---------------------------------------------------------------- runners: each returns the observed `expected`
def run_commission(inp: dict[str, str]) -> dict[str, str]:
    s = DistributionSettings(
        max_total_bp=int(inp.get("cap", 5000)),
        self_purchase={"on": True, "off": False}[inp.get("self_purchase", "off")],
    )
    buyer, buyer_status = inp["buyer"].split(":")
    r1, r2 = [None if r == "-" else r for r in inp["refs"].split(",")]
    people = {}
    for spec in items(inp["ben"]):
        user, status, rates = spec.split(":")
        people[user] = (DistributorStatus(status), tuple(int(x) for x in rates.split("/")))
    lines = []
    for spec in items(inp["lines"]):
        ref, qty, base, *opts = spec.split(":")
        terms = {}
        for o in opts:
            if o == "nocomm":
                terms["earns_commission"] = False
            else:
                k, _, v = o.partition("=")
                terms[{"l1": "level1_amount", "l2": "level2_amount"}[k]] = int(v)
        lines.append(cm.LineBase(ref, int(qty), int(base), cm.ProductTerms(**terms)))
    l1, l2 = cm.beneficiaries(
        s, buyer_id=buyer, buyer_status=DistributorStatus(buyer_status), level1_referrer=r1, level2_referrer=r2
    )

    def ben(user, level):
        if user is None:
            return None
        status, rates = people[user]
        return cm.Beneficiary(user, level, status, rates[level - 1])

    got = cm.compute_commissions(s, lines=lines, level1=ben(l1, 1), level2=ben(l2, 2))
    return {
        "commissions": ", ".join(f"{a.user_id}:{a.level}:{a.amount}" for a in got) or "none",
        "cap_amount": str(cm.order_commission_base(lines) * s.max_total_bp // 10_000),
    }


def run_ledger(inp: dict[str, str]) -> dict[str, str]:
    s = DistributionSettings(
        freeze_days=int(inp.get("freeze_days", 7)),
        min_payout=int(inp.get("min_payout", 100)),
        payout_fee_bp=int(inp.get("fee_bp", 0)),
    )
    original, base = (int(x) for x in inp.get("line", "0/0").split("/"))
    line = None
    refunded = 0
    balances = lg.Balances()
    journal: list[lg.Posting] = []
    reversals, refused = [], []
    for step in items(inp["steps"]):
        m = STEP.match(step)
        assert m, f"cannot parse step {step!r}"
        action, n, day = m.group(1), int(m.group(2) or 0), int(m.group(3))
        now = T0 + day * DAY
        try:
            if action == "post":
                line, ps = cm.post_line(
                    id="l", order_id="o", beneficiary_id="a", level=1, amount=original, paid_base=base
                )
            elif action == "complete":
                line, ps = cm.freeze_line(line, now, s.freeze_days)
            elif action == "release":
                line, ps = cm.make_available(line, now)
            elif action == "refund":
                refunded += n
                line, ps = cm.reverse_line(line, refunded, base)
                reversals += [-p.amount for p in ps]
            elif action == "credit":
                ps = lg.bonus_postings([(1, n)])
            elif action == "request":
                ps = lg.request_payout(s, balances=balances, amount=n, status=DistributorStatus.ACTIVE)
            elif action == "approve":
                ps = lg.approve_payout(n, fee=lg.payout_fee(s, n))
            else:
                ps = lg.reject_payout(n)
        except RuleViolation as e:
            refused.append(f"{action} {n}:{e.code.value}")
            continue
        journal.extend(ps)
        balances = balances.apply(ps)
    assert balances == lg.Balances.from_postings(journal)  # LG-1
    b = balances
    return {
        "balances": f"pending:{b.pending},frozen:{b.frozen},available:{b.available},in_payout:{b.in_payout},"
        f"paid:{b.paid},fees:{b.fees}",
        "standing": str(line.standing if line else 0),
        "reversals": ",".join(map(str, reversals)) or "none",
        "refused": ", ".join(refused) or "none",
    }


def run_levels(inp: dict[str, str]) -> dict[str, str]:
    levels = []
    for spec in items(inp["levels"]):
        grade, name, rates, *conds = spec.split(":")
        l1, l2 = (int(x) for x in rates.split("/"))
        extra = {}
        for c in conds:
            k, _, v = c.partition("=")
            extra["upgrade_bonus" if k == "bonus" else CONDITION[k]] = int(v)
        levels.append(Level(int(grade), name, l1, l2, **extra))
    validate_levels(levels)
    grade, credited, grades, bonuses = 0, frozenset(), [], []
    for step in items(inp["steps"]):
        verb, _, arg = step.partition(" ")
        if verb == "eval":
            metrics = Metrics(**{METRIC[k]: int(v) for k, v in (kv.split(":") for kv in arg.split("/"))})
            d = evaluate_level(levels, current_grade=grade, metrics=metrics, bonuses_credited=credited)
        else:
            assert verb == "admin", f"cannot parse step {step!r}"
            d = admin_set_level(levels, current_grade=grade, new_grade=int(arg), bonuses_credited=credited)
        grade = d.grade
        credited |= {g for g, _ in d.bonuses}
        grades.append(str(grade))
        bonuses.append("/".join(f"{g}:{a}" for g, a in d.bonuses) or "none")
    return {"grades": ",".join(grades), "bonuses": ",".join(bonuses)}


def run_leader(inp: dict[str, str]) -> dict[str, str]:
    net = sum(int(spec.split(":")[1]) for spec in items(inp["members"]))
    amount = cm.leader_commission(int(inp["rate_bp"]), net)
    line, _ = cm.post_line(id="lr", order_id="leader", beneficiary_id="L", level=0, amount=amount, paid_base=net)
    refunded, reversals = 0, []
    for r in items(inp.get("refunds", "none")):
        refunded += int(r)
        line, ps = cm.reverse_line(line, refunded, net)
        reversals += [-p.amount for p in ps]
    return {"amount": str(amount), "standing": str(line.standing), "reversals": ",".join(map(str, reversals)) or "none"}


def run_binding(inp: dict[str, str]) -> dict[str, str]:
    mode, _, days = inp["binding"].partition(":")
    s = DistributionSettings(binding=BindingMode(mode), binding_days=int(days) if days else None)
    bindings: dict[str, Binding] = {}
    results = []
    now = T0
    for step in items(inp["steps"]):
        m = re.fullmatch(r"(\w+)->(\w+)@(\d+)", step)
        assert m, f"cannot parse step {step!r}"
        user, ref, now = m.group(1), m.group(2), T0 + int(m.group(3)) * DAY

        class View:
            def referrer_of(self, u, _now=now):
                return current_referrer(bindings.get(u), _now)

        try:
            b = decide_binding(
                s,
                user_id=user,
                referrer_id=ref,
                now=now,
                current=bindings.get(user),
                view=View(),
                referrer_status=DistributorStatus.ACTIVE,
                user_has_paid_order=False,
                source=BindingSource.INVITE_CODE,
            )
        except RuleViolation as e:
            results.append(e.code.value)
            continue
        if b is None:
            results.append("keep")
            continue
        bindings[user] = b
        results.append(b.referrer_id + (f"@{(b.expires_at - T0) // DAY}" if b.expires_at else ""))
    first_user = items(inp["steps"])[0].split("->")[0]
    return {"results": ", ".join(results), "referrer": current_referrer(bindings.get(first_user), now) or "none"}


RUNNERS = {
    "commission": run_commission,
    "ledger": run_ledger,
    "levels": run_levels,
    "leader": run_leader,
    "binding": run_binding,
}


def test_every_required_row_is_present_once():
    ids = [r["id"] for r in rows()]
    assert len(ids) == len(set(ids))
    assert REQUIRED <= set(ids), f"missing rows: {sorted(REQUIRED - set(ids))}"
    kinds = {pairs(r["inputs"]).get("kind") for r in rows()}
    assert set(RUNNERS) <= kinds


@pytest.mark.parametrize("row", rows(), ids=lambda r: r["id"])
def test_worked_example(row):
    inp, exp = pairs(row["inputs"]), pairs(row["expected"])
    kind = inp.get("kind")
    assert kind in RUNNERS, f"{row['id']}: unknown kind {kind!r}"
    assert set(inp) <= INPUT_KEYS[kind], f"{row['id']}: unknown inputs {set(inp) - INPUT_KEYS[kind]}"
    assert set(exp) <= EXPECTED_KEYS[kind] and exp, f"{row['id']}: unknown expected {set(exp) - EXPECTED_KEYS[kind]}"
    got = RUNNERS[kind](inp)

    def norm(v: str) -> str:
        return re.sub(r"\s+", "", v)

    for key, want in exp.items():
        assert norm(got[key]) == norm(want), f"{row['id']} {key}: engine says {got[key]!r}, doc says {want!r}"
