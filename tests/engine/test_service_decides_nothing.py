"""Issue 10 point 3 / docs/architecture.md "Decisions and the applier": `engine/` decides every money
movement and `service/` only carries the decisions out. Checked on the syntax tree of every service/*.py,
so a new module is covered the moment it is added:

- no `Posting(...)` and no `move(...)` outside the engine: a posting is built by an engine rule
  (`engine.commission`, `engine.ledger`), never by hand (LG-1);
- no `apply_bp(...)` and no rule arithmetic that lives in the engine (`leader_commission`,
  `standing_amount`, `reversal_for_refund`, `payout_fee`, `raw_amount`): a rate is applied, a fee quoted
  and a CM-5 standing computed only by the engine (CM-4, CM-5, LG-2, 团长佣金);
- no `Bucket.X` / `EntryKind.X` named in the service but in the applier's column map (service/tx/ledger.py):
  naming a bucket is deciding where money goes.
"""

from __future__ import annotations

import ast
import pathlib

import pytest

import service

SERVICE_DIR = pathlib.Path(service.__file__).parent
MODULES = sorted(SERVICE_DIR.rglob("*.py"))
BUILDERS = {"Posting", "move"}
RULES = {"apply_bp", "leader_commission", "standing_amount", "reversal_for_refund", "payout_fee", "raw_amount"}
APPLIER = "ledger.py"


def _called(node: ast.Call) -> str | None:
    f = node.func
    return f.id if isinstance(f, ast.Name) else f.attr if isinstance(f, ast.Attribute) else None


def violations(source: str, name: str) -> list[str]:
    found = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Call):
            called = _called(node)
            if called in BUILDERS:
                found.append(f"{name}:{node.lineno} builds a posting by hand ({called}(...))")
            elif called in RULES:
                found.append(f"{name}:{node.lineno} recomputes a rule of the engine ({called}(...))")
        elif (
            isinstance(node, ast.Attribute)
            and isinstance(node.value, ast.Name)
            and node.value.id in ("Bucket", "EntryKind")
            and name != APPLIER
        ):
            found.append(
                f"{name}:{node.lineno} names {node.value.id}.{node.attr} (where money goes is the engine's decision)"
            )
    return found


def test_every_service_module_is_checked():
    assert {m.name for m in MODULES} >= {
        "commissions.py",
        "ledger.py",
        "payouts.py",
        "refunds.py",
        "orders.py",
        "groups.py",
        "worker.py",
        "distribution.py",
    }


@pytest.mark.parametrize("module", MODULES, ids=lambda p: p.name)
def test_service_builds_no_posting_and_recomputes_no_rule_LG1_CM4_CM5_LG2(module):
    assert violations(module.read_text(), module.name) == []


@pytest.mark.parametrize(
    "source, what",
    [
        (
            "from engine.ledger import Posting, Bucket, EntryKind\n"
            "def f(l): l.add('u', [Posting(Bucket.PENDING, 5, EntryKind.COMMISSION_POSTED)], ref_type='x', ref_id='y')",
            "builds a posting",
        ),
        ("from engine import ledger as lg\ndef f(): return lg.move(5, 1, 2, 3)", "builds a posting"),
        ("from engine.money import apply_bp\ndef f(net, bp): return apply_bp(net, bp)", "recomputes a rule"),
        ("from engine import ledger as lg\ndef f(s, p): return lg.payout_fee(s, p.amount)", "recomputes a rule"),
        (
            "from engine.commission import leader_commission\ndef f(c, net): return leader_commission(c, net)",
            "recomputes a rule",
        ),
        ("def f(line): return line.state == Bucket.FROZEN", "names Bucket.FROZEN"),
    ],
)
def test_the_scan_sees_a_posting_built_or_a_rule_recomputed_in_the_service(source, what):
    """The check is not blind: each of these, put in a service module, is a violation."""
    found = violations(source, "orders.py")
    assert found and all(f.startswith("orders.py:") for f in found)
    assert any(what in f for f in found), found
