"""Runs every row of docs/worked-examples/fraud-and-payout-failure.md against the engine (FR-2, FR-3, LG-4).

A row that is missing, has a key or step the runner does not know, or disagrees with the engine fails."""

from __future__ import annotations

import re
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from engine import commission as cm
from engine import fraud as fr
from engine import ledger as lg
from engine.ledger import Balances, Bucket, EntryKind

DOC = Path(__file__).resolve().parents[2] / "docs" / "worked-examples" / "fraud-and-payout-failure.md"
HEADER = "| id | rule | inputs | arithmetic written out | expected |"
REQUIRED = {f"F{i}" for i in range(1, 18)}
T0 = datetime(2026, 3, 1, tzinfo=timezone.utc)
INPUT_KEYS = {
    "fail": {"kind", "amount", "fee_bp", "available"},
    "mask": {"kind", "ref"},
    "order": {"kind", "rules", "buyer", "bens", "fps", "shared", "velocity", "downline"},
    "group": {"kind", "k", "seats"},
    "hold": {"kind", "line", "freeze_days", "steps"},
}
STEP = re.compile(r"^(post|flag|complete|release|refund|clear|void)(?:\s+(\d+))?@(\d+)$")


def rows() -> list[dict[str, str]]:
    lines = DOC.read_text(encoding="utf-8").splitlines()
    assert HEADER in lines, "worked-examples table header missing"
    out = []
    for line in lines[lines.index(HEADER) + 2:]:
        if not line.startswith("|"):
            break
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        assert len(cells) == 5, f"row does not have 5 cells: {line}"
        out.append(dict(zip(("id", "rule", "inputs", "arithmetic", "expected"), cells)))
    return out


def pairs(text: str) -> dict[str, str]:
    d: dict[str, str] = {}
    for part in text.split(";"):
        key, sep, value = part.strip().partition("=")
        assert sep and key and key not in d, f"cannot parse {part!r}"
        d[key] = value.strip()
    return d


def items(text: str | None) -> list[str]:
    return [] if not text or text == "none" else [t.strip() for t in text.split(",") if t.strip()]


def run_fail(inp):
    amount, fee_bp = int(inp["amount"]), int(inp["fee_bp"])
    fee = amount * fee_bp // 10_000
    b = Balances(available=int(inp["available"]))
    b = b.apply(lg.move(amount, Bucket.AVAILABLE, Bucket.IN_PAYOUT, EntryKind.PAYOUT_REQUESTED))
    b = b.apply(lg.approve_payout(amount, fee=fee))
    failure = lg.fail_payout(amount, fee=fee)
    b = b.apply(failure)
    return {"fee": str(fee), "entries": ", ".join(f"{p.bucket.value}:{p.amount}" for p in failure),
            "balances": f"{b.available}/{b.paid}/{b.fees}"}


def run_mask(inp):
    return {"masked": lg.payee_method("BANK_ACCOUNT", inp["ref"]).masked_reference}


def run_order(inp):
    kw: dict = {}
    for r in items(inp["rules"]):
        name, _, arg = r.partition(":")
        kw[name] = True
        if name == "velocity":
            kw["velocity_max_orders"] = int(arg)
        elif name == "refund_rate":
            x, n = arg.split("/")
            kw["refund_rate_max_bp"], kw["refund_rate_min_orders"] = int(x), int(n)
    rules = fr.validate_rules(fr.FraudRules(**kw))
    fps = frozenset(fr.Fingerprint(fr.FingerprintKind(k), k.lower()) for k in items(inp.get("fps")))
    shared = {b: frozenset({fr.FingerprintKind(k)}) for b, k in (s.split(":") for s in items(inp.get("shared")))}
    velocity = {b: int(n) for b, n in (s.split(":") for s in items(inp.get("velocity")))}
    downline = {}
    for s in items(inp.get("downline")):
        b, spec = s.split(":")
        downline[b] = fr.DownlineRefunds(*(int(x) for x in spec.split("/")))
    got = fr.screen_order(rules, fr.OrderSignals(buyer_id=inp["buyer"], fingerprints=fps, shared_with=shared,
                                                 velocity=velocity, downline=downline), items(inp["bens"]))
    return {"flags": ", ".join(f"{b}:{f.rule.value}" for b, fs in got.items() for f in fs) or "none"}


def run_group(inp):
    seats: dict[str, set] = {}
    for s in items(inp["seats"]):
        order, fp = s.split(":")
        kind, _, value = fp.partition("#")
        seats.setdefault(order, set()).add(fr.Fingerprint(fr.FingerprintKind(kind), value))
    flag = fr.screen_group(fr.FraudRules(scalper_group=True, scalper_min_seats=int(inp["k"])),
                           {k: frozenset(v) for k, v in seats.items()})
    return {"flag": f"{flag.rule.value}:{flag.evidence['seats']}" if flag else "none"}


def run_hold(inp):
    original, base = (int(x) for x in inp["line"].split("/"))
    freeze_days = int(inp.get("freeze_days", 7))
    line = None
    journal: list[lg.Posting] = []
    for step in items(inp["steps"]):
        m = STEP.match(step)
        assert m, f"cannot parse step {step!r}"
        action, n, now = m.group(1), int(m.group(2) or 0), T0 + timedelta(days=int(m.group(3)))
        ps: tuple = ()
        if action == "post":
            line, ps = cm.post_line(id="l", order_id="o", beneficiary_id="d", level=1, amount=original, paid_base=base)
        elif action == "flag":
            line = fr.hold_line(line)
        elif action == "complete":
            line, ps = cm.freeze_line(line, now, freeze_days)
        elif action == "release":
            line, ps = cm.make_available(line, now)
        elif action == "refund":
            line, ps = cm.refund_line(line, n)
        elif action == "clear":
            line, ps = fr.clear_line(line, now)
        else:
            line, ps = fr.void_held_line(line)
        journal += ps
    b = Balances.from_postings(journal)
    return {"state": line.state.value, "standing": str(line.standing), "held": "yes" if line.held else "no",
            "balances": f"{b.pending}/{b.frozen}/{b.available}"}


RUNNERS = {"fail": run_fail, "mask": run_mask, "order": run_order, "group": run_group, "hold": run_hold}


def test_every_example_is_present():
    assert {r["id"] for r in rows()} == REQUIRED


@pytest.mark.parametrize("row", rows(), ids=lambda r: r["id"])
def test_worked_example_FR2_FR3_LG4(row):
    inp = pairs(row["inputs"])
    assert set(inp) <= INPUT_KEYS[inp["kind"]], f"{row['id']}: unknown keys {set(inp) - INPUT_KEYS[inp['kind']]}"
    expected = pairs(row["expected"])
    got = RUNNERS[inp["kind"]](inp)
    assert {k: got[k] for k in expected} == expected, row["id"]
