"""Seed-71 service survivors of FR-3 (fraud holds): what a line flag records, the rule of a void as it posts, and a
line two open flags hold.

service/tx/fraud.py:269 (`hold=True` dropped from `ledger.line(session, (held, ()), hold=True)`) is equivalent:
the lines `screen_paid_order` holds were all posted by `post_commission_line` into the same batch and not yet
flushed, so `LedgerBatch.line` only replaces the new line (its INSERT writes `held` from the line itself); `hold=`
fills `_holds`, which only the UPDATE of already stored lines reads. `_line_and_group_flag` shows the line held.
"""

from __future__ import annotations

import json


from engine.fraud import FraudRules
from service.reads import fraud as fraud_reads
from service.usecases import fraud, groups, orders, webhooks
from tests.integration.helpers import assert_ledger_consistent, sql_rows
from tests.integration.test_fraud_review import _paid, _scalper_pair, _shop


async def _lines(svc, sid: str) -> dict[str, tuple]:
    rows = await sql_rows(
        svc, "SELECT order_id, state, standing, held FROM commission_lines WHERE shop_id = :s AND level = 1", s=sid
    )
    return {r[0]: r[1:] for r in rows}


async def test_FR3_a_line_flag_records_the_beneficiary_it_holds(svc):
    """FR-3: a flagged line's flag names whose commission it holds — in the review queue (the fraud_flags row)
    and in the `fraud.flagged` event. Kills service/tx/fraud.py:277 (`beneficiary_id=ln.beneficiary_id` dropped
    from the LINE `_flag` call)."""
    sid = await _shop(svc, FraudRules(velocity=True, velocity_max_orders=1))
    await _paid(svc, sid, "o1", "b1", {"DEVICE": "d"})
    o2, _ = await _paid(svc, sid, "o2", "b2", {"DEVICE": "d"})
    [flag] = await fraud_reads.review_queue(svc, shop_id=sid)
    assert (flag.subject, flag.order_id, flag.beneficiary_id) == ("LINE", o2, "ref")
    (ev,) = [e for e in await webhooks.events_since_caught_up(svc, shop_id=sid) if e.type == "fraud.flagged"]
    data = json.loads(webhooks.event_body(ev))["data"]
    assert (data["flag_id"], data["line_id"], data["beneficiary_id"]) == (flag.flag_id, flag.line_id, "ref")


async def test_FR3_a_line_voided_as_it_posts_emits_commission_voided_under_rule_FR3(svc):
    """FR-3: after the admin voided a flagged group's commission, the next member's line is voided as it posts,
    and its `commission.voided` event names rule FR-3 (column and webhook body). Kills service/tx/fraud.py:293
    (`rule="FR-3"` dropped from `_void_as_posted`'s event)."""
    sid, lead, _ = await _scalper_pair(svc)
    [flag] = await fraud_reads.review_queue(svc, shop_id=sid)
    await fraud.void_flag(svc, shop_id=sid, flag_id=flag.flag_id, actor="boss", reason="scalpers")
    seat = await groups.join_group(svc, shop_id=sid, group_id=lead.group_id, user_id="b3")
    await orders.confirm_payment(svc, shop_id=sid, order_id=seat.order_id, amount=seat.amount, provider_ref=f"{sid}-3")
    assert (await _lines(svc, sid))[seat.order_id] == ("VOID", 0, False)
    (ev,) = [
        e
        for e in await webhooks.events_since_caught_up(svc, shop_id=sid)
        if e.type == "commission.voided" and e.aggregate_id == seat.order_id
    ]
    body = json.loads(webhooks.event_body(ev))
    assert (body["rule"], body["data"]["rule"], body["data"]["cause"]) == ("FR-3", "FR-3", "FR-3")
    await assert_ledger_consistent(svc, sid)


async def _line_and_group_flag(svc):
    """A shop with the scalper rule (k = 2) and velocity (max 1): b1 opens a group and b2 joins, both paying from
    one device. b2's payment flags its line (velocity, a LINE flag) and the group (scalper, a GROUP flag): ref's
    line on b2's seat is held by both open flags, ref's line on b1's seat by the group's only."""
    sid, lead, seat = await _scalper_pair(
        svc, rules=FraudRules(scalper_group=True, scalper_min_seats=2, velocity=True, velocity_max_orders=1)
    )
    flags = {f.subject: f for f in await fraud_reads.review_queue(svc, shop_id=sid)}
    assert set(flags) == {"LINE", "GROUP"} and flags["LINE"].order_id == seat.order_id
    assert await _lines(svc, sid) == {lead.order_id: ("PENDING", 90, True), seat.order_id: ("PENDING", 90, True)}
    return sid, lead, seat, flags


async def test_FR3_clearing_a_line_flag_leaves_the_line_held_while_its_groups_flag_is_open(svc):
    """FR-3: a line held by its own flag and by its group's open flag stays held when the admin clears the line's
    flag (the clearance releases nothing); clearing the group's flag then releases both lines of the group.
    Kills service/usecases/fraud.py:80 (`if not lines:` -> `if not not lines:` in `_still_flagged`)."""
    sid, lead, seat, flags = await _line_and_group_flag(svc)
    done = await fraud.clear_flag(svc, shop_id=sid, flag_id=flags["LINE"].flag_id, actor="boss", reason="ok")
    assert done.state == "CLEARED"
    assert await _lines(svc, sid) == {lead.order_id: ("PENDING", 90, True), seat.order_id: ("PENDING", 90, True)}
    [open_flag] = await fraud_reads.review_queue(svc, shop_id=sid)
    assert (open_flag.flag_id, open_flag.held) == (flags["GROUP"].flag_id, 180)
    assert await fraud_reads.held_amount(svc, shop_id=sid, user_id="ref") == 180
    await fraud.clear_flag(svc, shop_id=sid, flag_id=flags["GROUP"].flag_id, actor="boss", reason="family")
    assert await _lines(svc, sid) == {lead.order_id: ("PENDING", 90, False), seat.order_id: ("PENDING", 90, False)}
    assert await fraud_reads.held_amount(svc, shop_id=sid, user_id="ref") == 0
    await assert_ledger_consistent(svc, sid)


async def test_FR3_clearing_a_group_flag_leaves_held_the_line_its_own_flag_still_holds(svc):
    """FR-3: clearing a group's flag releases the group's lines except one its own open LINE flag still holds;
    clearing that flag then releases it. Kills service/usecases/fraud.py:80 (`if not lines:` -> `if not not
    lines:` in `_still_flagged`), from the group's side."""
    sid, lead, seat, flags = await _line_and_group_flag(svc)
    await fraud.clear_flag(svc, shop_id=sid, flag_id=flags["GROUP"].flag_id, actor="boss", reason="family")
    assert await _lines(svc, sid) == {lead.order_id: ("PENDING", 90, False), seat.order_id: ("PENDING", 90, True)}
    await fraud.clear_flag(svc, shop_id=sid, flag_id=flags["LINE"].flag_id, actor="boss")
    assert await _lines(svc, sid) == {lead.order_id: ("PENDING", 90, False), seat.order_id: ("PENDING", 90, False)}
    await assert_ledger_consistent(svc, sid)
