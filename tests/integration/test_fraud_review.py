"""FR-1..FR-3 on the payment path: fingerprints cost confirmPayment no round trip of their own; the screening
costs one statement, only in a shop that has a rule on; a held line survives every other writer of lines."""

from __future__ import annotations

import secrets
import threading
from datetime import timedelta

from sqlalchemy import event, text

from engine.distribution import DistributionSettings, DistributorStatus
from engine.fraud import FraudRules
from service.jobs import worker
from service.reads import fraud as fraud_reads
from service.usecases import distribution, fraud, orders, shops
from tests.integration.helpers import assert_ledger_consistent


class Statements:
    def __init__(self, engine) -> None:
        self.engine, self.n, self.lock = engine.sync_engine, 0, threading.Lock()

    def __enter__(self):
        event.listen(self.engine, "before_cursor_execute", self._count)
        return self

    def __exit__(self, *exc):
        event.remove(self.engine, "before_cursor_execute", self._count)

    def _count(self, *args, **kwargs) -> None:
        with self.lock:
            self.n += 1


async def _shop(svc, rules: FraudRules | None = None) -> str:
    sid = f"fr-{secrets.token_hex(4)}"
    await shops.create_shop(
        svc, shop_id=sid, name="fr", currency="CNY", settings=DistributionSettings(level1_bp=1000, freeze_days=1)
    )
    await distribution.set_status(
        svc, shop_id=sid, user_id="ref", status=DistributorStatus.ACTIVE, actor="t", reason="t"
    )
    for b in ("b1", "b2", "b3", "b4"):
        await distribution.bind_referrer(svc, shop_id=sid, user_id=b, referrer_id="ref")
    if rules is not None:
        await fraud.set_rules(svc, shop_id=sid, rules=rules, actor="t")
    return sid


async def _paid(svc, sid: str, ext: str, buyer: str, fps=None) -> tuple[str, int]:
    o = await orders.report_order(
        svc, shop_id=sid, external_id=ext, buyer_id=buyer, lines=[orders.LineInput("tea", 1, 10_000)]
    )
    with Statements(svc.engine) as n:
        await orders.confirm_payment(
            svc, shop_id=sid, order_id=o.order_id, amount=10_000, provider_ref=f"{sid}-{ext}", fingerprints=fps
        )
    return o.order_id, n.n


async def _scalper_pair(svc, *, leader_commission_bp: int = 0, rules: FraudRules | None = None):
    """A shop with the scalper rule (k = 2; or `rules`) and a 3-person group whose leader b1 and member b2 paid
    from one device: the group is flagged (FR-2c) and still OPEN. Returns the shop id and the two seats."""
    from service.usecases import campaigns, groups

    sid = await _shop(svc, rules or FraudRules(scalper_group=True, scalper_min_seats=2))
    now = svc.now()
    c = await campaigns.create_campaign(
        svc,
        shop_id=sid,
        product_ref="tea",
        title="Tea",
        list_price=1000,
        tiers=[(3, 900)],
        duration=timedelta(days=1),
        payment_window=timedelta(hours=1),
        starts_at=now - timedelta(hours=1),
        ends_at=now + timedelta(days=3),
        leader_commission_bp=leader_commission_bp,
    )
    lead = await groups.open_group(svc, shop_id=sid, campaign_id=c.campaign_id, user_id="b1")
    await orders.confirm_payment(
        svc,
        shop_id=sid,
        order_id=lead.order_id,
        amount=lead.amount,
        provider_ref=f"{sid}-l",
        fingerprints={"DEVICE": "phone"},
    )
    seat = await groups.join_group(svc, shop_id=sid, group_id=lead.group_id, user_id="b2")
    await orders.confirm_payment(
        svc,
        shop_id=sid,
        order_id=seat.order_id,
        amount=seat.amount,
        provider_ref=f"{sid}-2",
        fingerprints={"DEVICE": "phone"},
    )
    return sid, lead, seat


async def test_FR1_fingerprints_add_no_statement_to_confirm_payment_and_rules_add_one(svc):
    """FR-1: with every rule off, a payment with fingerprints runs as many statements as one without (they are
    written by the payment's own applier statement); with a rule on, the screening is one statement more."""
    off = await _shop(svc)
    _, plain = await _paid(svc, off, "o1", "b1")
    _, with_fps = await _paid(svc, off, "o2", "b2", {"DEVICE": "d-1", "IP": "10.1.1.1", "PAYER": "acct-9"})
    assert with_fps == plain
    async with svc.sessionmaker() as s:
        kept = (
            await s.execute(text("SELECT count(*) FROM payment_fingerprints WHERE shop_id = :s"), {"s": off})
        ).scalar()
    assert kept == 3
    on = await _shop(svc, FraudRules(velocity=True, velocity_max_orders=5))
    _, plain_on = await _paid(svc, on, "o1", "b1")
    _, screened = await _paid(svc, on, "o2", "b2", {"DEVICE": "d-1"})
    assert plain_on == plain and screened == plain + 1  # no fingerprint: velocity has nothing to compare


async def test_FR3_a_held_line_stays_held_through_completion_refunds_and_the_worker(svc):
    """FR-3: completion (freeze), a partial refund (CM-5) and the release worker all write the line; none of them
    lifts the hold, and the worker never releases it; clearing then releases it at once (LG-1 holds throughout)."""
    sid = await _shop(svc, FraudRules(velocity=True, velocity_max_orders=1))
    await _paid(svc, sid, "o1", "b1", {"DEVICE": "d"})
    oid, _ = await _paid(svc, sid, "o2", "b2", {"DEVICE": "d"})
    await orders.complete_order(svc, shop_id=sid, order_id=oid)
    await orders.refund_order(svc, shop_id=sid, order_id=oid, amount=2_500, provider_ref=f"{sid}-rf")
    svc.clock.advance(timedelta(days=3))
    await worker.release_due_lines(svc, shop_id=sid)
    async with svc.sessionmaker() as s:
        line = (
            await s.execute(
                text("SELECT state, standing, held FROM commission_lines WHERE shop_id = :s AND order_id = :o"),
                {"s": sid, "o": oid},
            )
        ).one()
    assert tuple(line) == ("FROZEN", 750, True)
    assert await fraud_reads.held_amount(svc, shop_id=sid, user_id="ref") == 750
    [flag] = await fraud_reads.review_queue(svc, shop_id=sid)
    assert flag.held == 750 and flag.amount == 1000
    await fraud.clear_flag(svc, shop_id=sid, flag_id=flag.flag_id, actor="boss")
    async with svc.sessionmaker() as s:
        line = (
            await s.execute(
                text("SELECT state, standing, held FROM commission_lines WHERE shop_id = :s AND order_id = :o"),
                {"s": sid, "o": oid},
            )
        ).one()
    assert tuple(line) == ("AVAILABLE", 750, False)
    await assert_ledger_consistent(svc, sid)


async def test_FR2c_FR3_a_flagged_groups_leader_reward_is_held_at_forming_and_cleared_with_the_group(svc):
    """FR-3 (团长佣金): a scalper group that is not dissolved forms; the leader's reward posted at forming is held
    under the group's flag like the members' lines, and clearing the flag lifts every hold of the group."""
    from service.usecases import campaigns, groups

    sid = await _shop(svc, FraudRules(scalper_group=True, scalper_min_seats=2))
    now = svc.now()
    c = await campaigns.create_campaign(
        svc,
        shop_id=sid,
        product_ref="tea",
        title="Tea",
        list_price=1000,
        tiers=[(3, 900)],
        duration=timedelta(days=1),
        payment_window=timedelta(hours=1),
        starts_at=now - timedelta(hours=1),
        ends_at=now + timedelta(days=3),
        leader_commission_bp=1000,
    )
    lead = await groups.open_group(svc, shop_id=sid, campaign_id=c.campaign_id, user_id="b1")
    await orders.confirm_payment(
        svc,
        shop_id=sid,
        order_id=lead.order_id,
        amount=lead.amount,
        provider_ref=f"{sid}-l",
        fingerprints={"DEVICE": "phone"},
    )
    for i, (u, device) in enumerate((("b2", "phone"), ("b3", "other"))):
        seat = await groups.join_group(svc, shop_id=sid, group_id=lead.group_id, user_id=u)
        await orders.confirm_payment(
            svc,
            shop_id=sid,
            order_id=seat.order_id,
            amount=seat.amount,
            provider_ref=f"{sid}-{i}",
            fingerprints={"DEVICE": device},
        )
    async with svc.sessionmaker() as s:
        lines = (
            await s.execute(
                text(
                    "SELECT beneficiary_id, level, standing, held FROM commission_lines "
                    "WHERE shop_id = :s ORDER BY level, beneficiary_id"
                ),
                {"s": sid},
            )
        ).all()
        state = (await s.execute(text("SELECT state FROM groups WHERE shop_id = :s"), {"s": sid})).scalar()
    assert state == "FORMED"
    assert [tuple(r) for r in lines] == [
        ("b1", 0, 180, True),
        ("ref", 1, 90, True),
        ("ref", 1, 90, True),
        ("ref", 1, 90, True),
    ]
    [flag] = await fraud_reads.review_queue(svc, shop_id=sid)
    assert flag.subject == "GROUP" and flag.held == 450
    await fraud.clear_flag(svc, shop_id=sid, flag_id=flag.flag_id, actor="boss", reason="family")
    async with svc.sessionmaker() as s:
        held = (
            await s.execute(text("SELECT count(*) FROM commission_lines WHERE shop_id = :s AND held"), {"s": sid})
        ).scalar()
    assert held == 0
    await assert_ledger_consistent(svc, sid)


async def test_FR3_after_a_group_flag_is_voided_the_groups_later_commission_is_voided_as_it_posts(svc):
    """FR-3 reading FR-R8: voiding a flagged group's commission before it forms covers what the group earns later —
    the next member's line and the leader reward at forming are posted and voided at once (never available)."""
    from service.usecases import groups

    sid, lead, _ = await _scalper_pair(svc, leader_commission_bp=1000)
    [flag] = await fraud_reads.review_queue(svc, shop_id=sid)
    await fraud.void_flag(svc, shop_id=sid, flag_id=flag.flag_id, actor="boss", reason="scalpers")
    seat = await groups.join_group(svc, shop_id=sid, group_id=lead.group_id, user_id="b3")
    await orders.confirm_payment(svc, shop_id=sid, order_id=seat.order_id, amount=seat.amount, provider_ref=f"{sid}-3")
    async with svc.sessionmaker() as s:
        lines = (
            await s.execute(
                text(
                    "SELECT level, original, standing, state FROM commission_lines "
                    "WHERE shop_id = :s ORDER BY level, created_at"
                ),
                {"s": sid},
            )
        ).all()
    assert [tuple(r) for r in lines] == [
        (0, 180, 0, "VOID"),
        (1, 90, 0, "VOID"),
        (1, 90, 0, "VOID"),
        (1, 90, 0, "VOID"),
    ]
    await assert_ledger_consistent(svc, sid)


async def test_FR4_a_cleared_flag_emits_fraud_cleared_on_its_order_and_a_voided_one_fraud_voided(svc):
    """FR-4 (service/usecases/fraud.py): deciding an order's flag emits `fraud.cleared` (or `fraud.voided`) on that
    order's aggregate, so a receiver orders it with the order's other events."""
    from service.usecases import webhooks

    sid = await _shop(svc, FraudRules(velocity=True, velocity_max_orders=1))
    await _paid(svc, sid, "o1", "b1", {"DEVICE": "d"})
    o2, _ = await _paid(svc, sid, "o2", "b2", {"DEVICE": "d"})
    o3, _ = await _paid(svc, sid, "o3", "b3", {"DEVICE": "d"})
    flags = {f.order_id: f for f in await fraud_reads.review_queue(svc, shop_id=sid)}
    await fraud.clear_flag(svc, shop_id=sid, flag_id=flags[o2].flag_id, actor="boss")
    await fraud.void_flag(svc, shop_id=sid, flag_id=flags[o3].flag_id, actor="boss", reason="fake")
    got = [
        (e.type, e.aggregate_type, e.aggregate_id)
        for e in await webhooks.events_since_caught_up(svc, shop_id=sid)
        if e.type in ("fraud.cleared", "fraud.voided")
    ]
    assert got == [("fraud.cleared", "order", o2), ("fraud.voided", "order", o3)]


async def test_FR3_a_flag_emits_fraud_flagged_under_rule_FR3_on_its_order(svc):
    """FR-3 (service/tx/fraud.py `_flag`): the hold a rule makes emits `fraud.flagged` on the order's aggregate,
    and its webhook body names rule FR-3 (docs/webhooks.md) with the rules that flagged it."""
    import json

    from service.usecases import webhooks

    sid = await _shop(svc, FraudRules(velocity=True, velocity_max_orders=1))
    await _paid(svc, sid, "o1", "b1", {"DEVICE": "d"})
    o2, _ = await _paid(svc, sid, "o2", "b2", {"DEVICE": "d"})
    (ev,) = [e for e in await webhooks.events_since_caught_up(svc, shop_id=sid) if e.type == "fraud.flagged"]
    body = json.loads(webhooks.event_body(ev))
    assert (body["aggregate_type"], body["aggregate_id"], body["rule"]) == ("order", o2, "FR-3")
    assert body["data"]["rules"] == ["VELOCITY"]  # FR-2 (b) flagged it
