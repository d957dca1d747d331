"""The event catalog (engine/events.py, issue 12 point 4): one list that the emitters, the webhook
subscription filter and docs/webhooks.md all read."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

from engine.events import COMMON_KEYS, PAYLOADS, EventType, check_payload, payload_keys

ROOT = Path(__file__).resolve().parents[2]


def test_every_type_has_a_payload_dataclass():
    assert set(PAYLOADS) == set(EventType)


def test_docs_webhooks_md_lists_exactly_the_catalog():
    """docs/webhooks.md, section "Event types", names every type of the catalog and no other."""
    doc = (ROOT / "docs" / "webhooks.md").read_text()
    section = doc.split("## Event types", 1)[1].split("\n## ", 1)[0]
    listed = set(re.findall(r"`([a-z_]+\.[a-z_]+)`", section))
    assert listed == {t.value for t in EventType}


def _emit_calls():
    """Every `emit(...)`/`events.emit(...)` and `ledger.event(...)` (the money applier's outbox) call in
    service/, with its file and line."""
    for path in sorted((ROOT / "service").rglob("*.py")):
        tree = ast.parse(path.read_text(), filename=str(path))
        for node in ast.walk(tree):
            if isinstance(node, ast.Call) and (
                (isinstance(node.func, ast.Attribute) and node.func.attr in ("emit", "event"))
                or (isinstance(node.func, ast.Name) and node.func.id == "emit")
            ):
                kw = {k.arg: k.value for k in node.keywords}
                if "type" in kw:
                    yield f"{path.name}:{node.lineno}", kw


def _types_named(expr: ast.expr) -> list[EventType]:
    """The catalog types an emit's `type=` may take: `EventType.X`, or a conditional of two of them."""
    if isinstance(expr, ast.IfExp):
        return _types_named(expr.body) + _types_named(expr.orelse)
    if isinstance(expr, ast.Attribute) and isinstance(expr.value, ast.Name) and expr.value.id == "EventType":
        return [EventType[expr.attr]]
    raise AssertionError(f"type={ast.unparse(expr)} is not a member of EventType (engine/events.py)")


def test_every_emitter_names_a_catalog_type_and_its_payload_keys():
    """Statically, at each of the emit call sites: the type is an EventType member (never a bare or
    formatted string) and a literal payload has exactly that type's keys."""
    sites = list(_emit_calls())
    assert len(sites) >= 20
    for where, kw in sites:
        types = _types_named(kw["type"])
        payload = kw.get("payload")
        if isinstance(payload, ast.Dict) and all(isinstance(k, ast.Constant) for k in payload.keys):
            keys = {k.value for k in payload.keys}
            for t in types:
                required, optional = payload_keys(t)
                assert required <= keys <= required | optional | COMMON_KEYS, (
                    f"{where}: {t.value} payload keys {sorted(keys)} ≠ {PAYLOADS[t].__name__}"
                )


def test_every_type_has_an_emitter():
    emitted = {t for _, kw in _emit_calls() for t in _types_named(kw["type"])}
    assert emitted == set(EventType)


def test_check_payload_refuses_unknown_types_and_keys():
    assert check_payload("group.cancelled", {"group_id": "g"}) is EventType.GROUP_CANCELLED
    with pytest.raises(ValueError):
        check_payload("group.canceled", {"group_id": "g"})
    with pytest.raises(ValueError):
        check_payload(EventType.GROUP_CANCELLED, {"group_id": "g", "extra": 1})
    with pytest.raises(ValueError):
        check_payload(EventType.GROUP_CANCELLED, {})
    assert check_payload(EventType.GROUP_LEADER_CHANGED, {"group_id": "g", "from": "a", "to": "b"})
    assert check_payload(EventType.ORDER_PAID, {"order_id": "o", "amount": 1, "buyer_id": "b"})  # role optional


def test_payloads_are_frozen_dataclasses():
    """A payload is a value: what was emitted is not changed afterwards."""
    import dataclasses

    for cls in set(PAYLOADS.values()):
        assert dataclasses.is_dataclass(cls) and cls.__dataclass_params__.frozen, cls.__name__
