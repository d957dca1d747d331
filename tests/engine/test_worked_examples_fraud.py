"""Runs every row of docs/worked-examples/fraud-and-payout-failure.md against the engine (FR-1..FR-4, LG-4).

A row that is missing, has a key or step the runner does not know, or disagrees with the engine fails."""

from __future__ import annotations

import re
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from dataclasses import asdict

from engine import commission as cm
from engine import fraud as fr
from engine import groupbuy as gb
from engine import ledger as lg
from engine.errors import RuleViolation
from engine.events import EventType, FraudFlagged, FraudResolved, check_payload
from engine.ledger import Balances, Bucket, EntryKind
from service.usecases.fraud import _check_reason
from tests.engine.worked_examples import items, pairs, table_rows

DOC = Path(__file__).resolve().parents[2] / "docs" / "worked-examples" / "fraud-and-payout-failure.md"
HEADER = "| id | rule | inputs | arithmetic written out | expected |"
REQUIRED = {f"F{i}" for i in range(1, 32)}
KEY = b"worked-example-server-key"  # FR-1: the server key of these examples (the real one: SHARECART_SECRET_KEY)
T0 = datetime(2026, 3, 1, tzinfo=timezone.utc)
INPUT_KEYS = {
    "fail": {"kind", "amount", "fee_bp", "available"},
    "mask": {"kind", "ref"},
    "order": {"kind", "rules", "buyer", "bens", "fps", "shared", "velocity", "downline"},
    "group": {"kind", "k", "seats"},
    "hold": {"kind", "line", "freeze_days", "steps"},
    "hash": {"kind", "shop", "fp", "value", "other"},
    "review": {
        "kind",
        "action",
        "by",
        "at",
        "reason",
        "line",
        "steps",
        "rules",
        "fps",
        "velocity",
        "shared",
        "downline",
        "seats",
        "group",
        "held",
    },
}
STEP = re.compile(r"^(post|flag|complete|release|refund|clear|void)(?:\s+(\d+))?@(\d+)$")


def rows() -> list[dict[str, str]]:
    return table_rows(DOC, HEADER, ("id", "rule", "inputs", "arithmetic", "expected"))


def run_fail(inp):
    amount, fee_bp = int(inp["amount"]), int(inp["fee_bp"])
    fee = amount * fee_bp // 10_000
    b = Balances(available=int(inp["available"]))
    b = b.apply(lg.move(amount, Bucket.AVAILABLE, Bucket.IN_PAYOUT, EntryKind.PAYOUT_REQUESTED))
    b = b.apply(lg.approve_payout(amount, fee=fee))
    failure = lg.fail_payout(amount, fee=fee)
    b = b.apply(failure)
    return {
        "fee": str(fee),
        "entries": ", ".join(f"{p.bucket.value}:{p.amount}" for p in failure),
        "balances": f"{b.available}/{b.paid}/{b.fees}",
    }


def run_mask(inp):
    return {"masked": lg.payee_method("BANK_ACCOUNT", inp["ref"]).masked_reference}


def screen(inp, bens):
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
    return fr.screen_order(
        rules,
        fr.OrderSignals(
            buyer_id=inp.get("buyer", "b"), fingerprints=fps, shared_with=shared, velocity=velocity, downline=downline
        ),
        bens,
    )


def run_order(inp):
    got = screen(inp, items(inp["bens"]))
    return {"flags": ", ".join(f"{b}:{f.rule.value}" for b, fs in got.items() for f in fs) or "none"}


def run_group(inp):
    seats: dict[str, set] = {}
    for s in items(inp["seats"]):
        order, fp = s.split(":")
        kind, _, value = fp.partition("#")
        seats.setdefault(order, set()).add(fr.Fingerprint(fr.FingerprintKind(kind), value))
    flag = fr.screen_group(
        fr.FraudRules(scalper_group=True, scalper_min_seats=int(inp["k"])), {k: frozenset(v) for k, v in seats.items()}
    )
    return {"flag": f"{flag.rule.value}:{flag.evidence['seats']}" if flag else "none"}


def play(inp):
    original, base = (int(x) for x in inp["line"].split("/"))
    freeze_days = int(inp.get("freeze_days", 7))
    line = None
    journal: list[lg.Posting] = []
    for step in items(inp.get("steps")):
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
    return line, journal


def run_hold(inp):
    line, journal = play(inp)
    b = Balances.from_postings(journal)
    return {
        "state": line.state.value,
        "standing": str(line.standing),
        "held": "yes" if line.held else "no",
        "balances": f"{b.pending}/{b.frozen}/{b.available}",
    }


def value(text: str) -> str:
    """A value as written: `"…"` keeps its outer spaces; `""` is the empty string."""
    return text[1:-1] if len(text) >= 2 and text[0] == text[-1] == '"' else text


def run_hash(inp):
    """FR-1: the keyed hash of `fp`:`value` in `shop`, compared with `other` (`shop:value` or `shop:KIND:value`)."""
    kind = fr.FingerprintKind(inp["fp"])
    raw = value(inp["value"])
    try:
        h = fr.fingerprint_hash(fr.shop_key(KEY, inp["shop"]), kind, raw)
    except RuleViolation as e:
        return {"refused": f"{e.code.value}:{e.rule}"}
    out = {
        "normalised": fr.normalise(kind, raw),
        "stored": "digest"
        if len(h) == 64 and set(h) <= set("0123456789abcdef") and fr.normalise(kind, raw) not in h
        else h,
        "hash": h[:12],
    }
    if "other" in inp:
        parts = inp["other"].split(":", 2)
        shop, okind, oval = (
            (parts[0], kind, parts[1]) if len(parts) == 2 else (parts[0], fr.FingerprintKind(parts[1]), parts[2])
        )
        out["same"] = "yes" if fr.fingerprint_hash(fr.shop_key(KEY, shop), okind, value(oval)) == h else "no"
    return out


def _event(t: EventType, payload: object) -> str:
    check_payload(t, asdict(payload))  # type: ignore[call-overload]
    return t.value


def run_review(inp):
    """FR-4: one review action — who (`by`), when (`at`: day N), why (the rules and evidence of a flag, the
    admin's `reason` of a decision) — its engine transition and the events it emits, each payload checked
    against the catalog (engine/events.py)."""
    action, by, now = inp["action"], inp["by"], T0 + timedelta(days=int(inp["at"]))
    reason = None if inp.get("reason", "none") == "none" else inp["reason"]
    out = {"by": by, "at": now.isoformat(), "reason": reason or "none"}
    try:
        if action != "flag":
            _check_reason(reason, required=action in ("void", "dissolve"))
        if action == "dissolve":
            seats = tuple(
                gb.Seat(
                    order_id=o,
                    user_id=f"u{i}",
                    quantity=1,
                    unit_price=int(p),
                    role=gb.PriceRole.LEADER if i == 0 else gb.PriceRole.MEMBER,
                    state=gb.SeatState.PAID,
                    reserved_at=T0,
                    pay_by=T0,
                    paid_at=T0,
                )
                for i, (o, p) in enumerate(s.split(":") for s in items(inp["seats"]))
            )
            g = gb.Group(
                id="g",
                campaign_id="c",
                tiers=(gb.Tier(len(seats) + 1, seats[0].unit_price),),
                leader_user_id="u0",
                state=gb.GroupState(inp.get("group", "OPEN")),
                seats=seats,
                opened_at=T0,
                expires_at=T0 + timedelta(days=30),
            )
            d = fr.dissolve_group(g, now=now)
            out["group"] = d.group.state.value
            out["refunds"] = ", ".join(
                f"{i.order_id}:{i.amount}"
                for i in d.instructions
                if isinstance(i, gb.RefundOwed) and i.full and i.rule == "GB-6"
            )
            out["events"] = _event(
                EventType.FRAUD_GROUP_DISSOLVED,
                FraudResolved(
                    flag_id="ff_1",
                    subject="GROUP",
                    line_ids=[],
                    group_id="g",
                    amount=int(inp["held"]),
                    by=by,
                    reason=reason,
                ),
            )
            out["amount"] = inp["held"]
            return out
        line, journal = play(inp)
        events: list[str] = []
        ps: tuple = ()
        if action == "flag":
            flags = screen(inp, [line.beneficiary_id]).get(line.beneficiary_id, ())
            if flags:
                line, ps = fr.hold_line(line), ()
                events.append(
                    _event(
                        EventType.FRAUD_FLAGGED,
                        FraudFlagged(
                            flag_id="ff_1",
                            subject="LINE",
                            rules=[f.rule.value for f in flags],
                            evidence={f.rule.value: dict(f.evidence) for f in flags},
                            line_id=line.id,
                            group_id=None,
                            order_id=line.order_id,
                            beneficiary_id=line.beneficiary_id,
                            amount=line.standing,
                            by="system",
                        ),
                    )
                )
                out["rules"] = ", ".join(f.rule.value for f in flags)
                out["evidence"] = ", ".join(f"{k} {v}" for f in flags for k, v in f.evidence.items())
            out["by"] = "system"  # a flag is raised by the rules, never by a person
            amount = line.standing
        elif action == "clear":
            was = line.state
            line, ps = fr.clear_line(line, now)
            if line.state == cm.CommissionState.AVAILABLE and was != cm.CommissionState.AVAILABLE:
                events.append(EventType.COMMISSION_AVAILABLE.value)
            events.append(
                _event(
                    EventType.FRAUD_CLEARED,
                    FraudResolved(
                        flag_id="ff_1",
                        subject="LINE",
                        line_ids=[line.id],
                        group_id=None,
                        amount=line.standing,
                        by=by,
                        reason=reason,
                    ),
                )
            )
            amount = line.standing
        else:
            amount = line.standing
            line, ps = fr.void_held_line(line)
            events.append(EventType.COMMISSION_VOIDED.value)
            events.append(
                _event(
                    EventType.FRAUD_VOIDED,
                    FraudResolved(
                        flag_id="ff_1",
                        subject="LINE",
                        line_ids=["l"],
                        group_id=None,
                        amount=amount,
                        by=by,
                        reason=reason,
                    ),
                )
            )
    except RuleViolation as e:
        return {"refused": f"{e.code.value}:{e.rule}"}
    out.update(
        events=", ".join(events) or "none",
        amount=str(amount),
        state=line.state.value,
        held="yes" if line.held else "no",
        entries=", ".join(f"{p.bucket.value}:{p.amount}" for p in ps) or "none",
    )
    return out


RUNNERS = {
    "fail": run_fail,
    "mask": run_mask,
    "order": run_order,
    "group": run_group,
    "hold": run_hold,
    "hash": run_hash,
    "review": run_review,
}


def test_every_example_is_present():
    assert {r["id"] for r in rows()} == REQUIRED


@pytest.mark.parametrize("row", rows(), ids=lambda r: r["id"])
def test_worked_example_FR1_FR4_LG4(row):
    inp = pairs(row["inputs"])
    assert set(inp) <= INPUT_KEYS[inp["kind"]], f"{row['id']}: unknown keys {set(inp) - INPUT_KEYS[inp['kind']]}"
    expected = pairs(row["expected"])
    got = RUNNERS[inp["kind"]](inp)
    assert {k: got[k] for k in expected} == expected, row["id"]
