"""Seed-72 service survivors (docs/testing.md, "Session 2026-12-02 e"), killed through the service."""

from __future__ import annotations

from engine.fraud import FraudRules
from service.reads import fraud as fraud_reads
from service.usecases import fraud
from tests.integration.helpers import assert_ledger_consistent
from tests.integration.test_fraud_review import _paid, _shop
from tests.integration.test_gaps_s71_fraud import _line_and_group_flag, _lines


async def test_FR3_a_line_voided_in_review_is_no_longer_held(svc):
    """FR-3: voiding a flagged line ends its hold with it — the line is VOID, standing 0 and not held, so no held
    amount is left on the beneficiary. Kills service/usecases/fraud.py:256 (`hold=True` dropped from the void's
    `ledger.line`: without it the stored `held` stands on a VOID line)."""
    sid = await _shop(svc, FraudRules(velocity=True, velocity_max_orders=1))
    o1, _ = await _paid(svc, sid, "o1", "b1", {"DEVICE": "d"})
    o2, _ = await _paid(svc, sid, "o2", "b2", {"DEVICE": "d"})
    before = await _lines(svc, sid)
    assert before[o2][0] == "PENDING" and before[o2][2] is True and before[o1][2] is False
    [flag] = await fraud_reads.review_queue(svc, shop_id=sid)
    await fraud.void_flag(svc, shop_id=sid, flag_id=flag.flag_id, actor="boss", reason="same device")
    after = await _lines(svc, sid)
    assert after[o2] == ("VOID", 0, False)
    assert after[o1] == before[o1]
    await assert_ledger_consistent(svc, sid)


async def test_FR3_a_group_flag_records_the_group_standing_with_the_flagging_payments_lines(svc):
    """FR-3: a group flagged at a member's payment records as its amount what the group's lines stood at before
    (ref's 90 on the leader's seat) plus the lines that payment posts (90 on b2's seat): 180 at stake, as the
    line flag records its own 90. Kills service/tx/fraud.py:259 (`+` → `-` in the GROUP `_flag`'s amount)."""
    sid, _, _, flags = await _line_and_group_flag(svc)
    assert (flags["GROUP"].amount, flags["GROUP"].held) == (180, 180)
    assert (flags["LINE"].amount, flags["LINE"].held) == (90, 90)
