"""Seed-71 service survivors closed by the lead (docs/testing.md, "Session 2026-12-02 d")."""

from __future__ import annotations

import pytest
from sqlalchemy import text

from engine.errors import ErrorCode, RuleViolation
from service.usecases import distribution, groups
from tests.integration.test_attribution import _active


async def test_RF3c_an_admin_rebinding_to_the_current_referrer_changes_nothing(svc, shop):
    """RF-3 (c): rebinding a user to the referrer they already have answers `changed: false` with the binding as
    it was (same referrer, same bound_at), whatever the reason says."""
    sid = shop.shop_id
    await _active(svc, sid, "ref")
    first = await distribution.bind_referrer(svc, shop_id=sid, user_id="buyer", referrer_id="ref")
    same = await distribution.rebind_referrer(
        svc, shop_id=sid, user_id="buyer", referrer_id="ref", actor="boss", reason="asked again"
    )
    assert (same.changed, same.referrer_id, same.bound_at) == (False, "ref", first.bound_at)


async def test_GB2_joining_a_group_the_shop_does_not_have_is_not_found(svc, shop):
    """GB-2 / ER-1: a join names a group of this shop; an unknown id is NOT_FOUND on groupId."""
    with pytest.raises(RuleViolation) as e:
        await groups.join_group(svc, shop_id=shop.shop_id, group_id="grp_none", user_id="u1")
    assert (e.value.code, e.value.field) == (ErrorCode.NOT_FOUND, "groupId")


async def test_FR3_deciding_one_of_several_open_flags_answers_that_flag(svc):
    """FR-3/FR-4: `clearFraudFlag` and `voidFraudFlag` answer the flag they decided, in its new state — not
    whichever flag heads the review queue."""
    from engine.fraud import FraudRules
    from service.reads import fraud as fraud_reads
    from service.usecases import fraud
    from tests.integration.test_fraud_review import _paid, _shop

    sid = await _shop(svc, FraudRules(velocity=True, velocity_max_orders=1))
    await _paid(svc, sid, "o1", "b1", {"DEVICE": "d"})
    o2, _ = await _paid(svc, sid, "o2", "b2", {"DEVICE": "d"})
    o3, _ = await _paid(svc, sid, "o3", "b3", {"DEVICE": "d"})
    flags = {f.order_id: f.flag_id for f in await fraud_reads.review_queue(svc, shop_id=sid)}
    cleared = await fraud.clear_flag(svc, shop_id=sid, flag_id=flags[o2], actor="boss")
    voided = await fraud.void_flag(svc, shop_id=sid, flag_id=flags[o3], actor="boss", reason="fake")
    assert (cleared.flag_id, cleared.state) == (flags[o2], "CLEARED")
    assert (voided.flag_id, voided.state) == (flags[o3], "VOIDED")


def test_RP6_the_visit_limiter_remembers_50_000_visitors_per_process():
    """RP-6 (docs/rules-readings-distribution.md D2-R15): the per-process LRU of token buckets is bounded at
    50 000 visitors."""
    from service.usecases import visits

    assert visits.VisitLimiter().max_buckets == 50_000


async def test_FR3_an_admin_dissolves_a_flagged_group_before_it_forms(svc):
    """FR-3: a scalper group (two paid seats on one device) dissolved by an admin fails at once with GB-6's full
    refunds, its commission lines are voided, and the flag is DISSOLVED with who and why; the books still balance."""
    from service.reads import fraud as fraud_reads
    from service.usecases import fraud
    from tests.integration.helpers import assert_ledger_consistent
    from tests.integration.test_fraud_review import _scalper_pair

    sid, lead, seat = await _scalper_pair(svc)
    [flag] = await fraud_reads.review_queue(svc, shop_id=sid)
    assert flag.subject == "GROUP" and flag.state == "OPEN"
    done = await fraud.dissolve_group(svc, shop_id=sid, flag_id=flag.flag_id, actor="boss", reason="one buyer")
    assert (done.flag_id, done.state) == (flag.flag_id, "DISSOLVED")
    [again] = await fraud_reads.review_queue(svc, shop_id=sid, state=None)
    assert again.state == "DISSOLVED"
    async with svc.sessionmaker() as s:
        group_state = (await s.execute(text("SELECT state FROM groups WHERE shop_id = :s"), {"s": sid})).scalar()
        refunds = (
            await s.execute(text("SELECT count(*), sum(amount) FROM refunds WHERE shop_id = :s"), {"s": sid})
        ).one()
        lines = (
            (await s.execute(text("SELECT state FROM commission_lines WHERE shop_id = :s"), {"s": sid})).scalars().all()
        )
    assert group_state == "FAILED"
    assert tuple(refunds) == (2, lead.amount + seat.amount)
    assert lines and set(lines) == {"VOID"}
    await assert_ledger_consistent(svc, sid)
