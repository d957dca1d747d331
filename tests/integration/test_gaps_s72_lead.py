"""Seed-72 service survivors (docs/testing.md, "Session 2026-12-02 e"), killed through the service."""

from __future__ import annotations

import pytest

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


async def test_wh_an_endpoints_deliveries_page_newest_event_first(svc, shop):
    """Webhooks (docs/webhooks.md): `WebhookEndpoint.deliveries` lists what the endpoint is owed newest event
    first, and its cursor pages on towards the oldest. Kills service/reads/queries.py:299 (`descending=True`
    dropped from `page_deliveries`)."""
    from service.reads import queries
    from service.usecases import webhooks
    from tests.integration.test_gaps_hooks import URL, _emit

    ep = await webhooks.register_endpoint(svc, shop_id=shop.shop_id, url=URL)
    seqs = [(await _emit(svc, shop.shop_id, aggregate_id=f"o{i}")).seq for i in range(3)]
    page = lambda after: queries.page_deliveries(  # noqa: E731
        svc, shop_id=shop.shop_id, endpoint_id=ep.endpoint_id, state=None, limit=2, after=after
    )
    rows, total = await page(None)
    assert [d.seq for d in rows] == [seqs[2], seqs[1]] and total == 3
    rest, _ = await page((rows[-1].seq,))
    assert [d.seq for d in rest] == [seqs[0]]


async def test_DS1_CM7_a_cart_preview_counts_the_spend_net_of_discounts(svc):
    """DS-1/CM-7: in SPEND_THRESHOLD mode (10 000) a cart of 2 × 5 000 admits the buyer at payment, so with
    self-purchase on the preview makes them level 1 and D level 2; one unit of discount leaves the spend at
    9 999 — not admitted, D level 1. Kills service/reads/preview.py:170 (the cart's goods `- ln.discount` → `+`)."""
    from engine.distribution import DistributionMode, DistributorStatus
    from service.reads import preview
    from service.usecases import distribution
    from tests.integration.test_preview import _shop as _preview_shop

    sid = await _preview_shop(
        svc,
        mode=DistributionMode.SPEND_THRESHOLD,
        spend_threshold=10_000,
        self_purchase=True,
        level1_bp=1000,
        level2_bp=500,
    )
    await distribution.set_status(
        svc, shop_id=sid, user_id="dee", status=DistributorStatus.ACTIVE, actor="t", reason="t"
    )

    async def shares(discount: int):
        got = await preview.commission_preview(
            svc, shop_id=sid, buyer_id=None, bound_to="dee", lines=[preview.CartLine("plain", 2, 5000, discount)]
        )
        return [(s.level, s.beneficiary_id, s.least) for s in got.shares]

    assert await shares(0) == [(1, "", 1000), (2, "dee", 500)]
    assert await shares(1) == [(1, "dee", 999)]


async def test_RF1_DS1_in_everyone_mode_binding_to_a_new_referrer_makes_them_a_distributor(svc):
    """DS-1 EVERYONE / RF-1: binding to a referrer the shop has never seen makes that referrer an ACTIVE
    distributor and binds; binding to oneself is refused and creates no distributor. Kills
    service/usecases/distribution.py:223 (`ref_id != user_id` → `==` in the EVERYONE auto-admission)."""
    from engine.distribution import DistributionMode
    from engine.errors import RuleViolation
    from service.usecases import distribution
    from tests.integration.test_preview import _shop as _preview_shop

    sid = await _preview_shop(svc, mode=DistributionMode.EVERYONE)
    r = await distribution.bind_referrer(svc, shop_id=sid, user_id="newbie", referrer_id="fresh-ref")
    assert r.referrer_id == "fresh-ref"
    d = await distribution.get_distributor(svc, shop_id=sid, user_id="fresh-ref")
    assert d is not None and d.status == "ACTIVE"
    with pytest.raises(RuleViolation) as e:
        await distribution.bind_referrer(svc, shop_id=sid, user_id="loner", referrer_id="loner")
    assert e.value.rule == "RF-1"
    assert await distribution.get_distributor(svc, shop_id=sid, user_id="loner") is None


async def test_FR3_FR4_clearing_a_held_line_past_its_freeze_makes_it_available_and_says_so(svc):
    """FR-3/FR-4: a flagged line follows its life cycle while held (its order completes, the 1-day freeze
    passes) but is not released; clearing the flag makes it AVAILABLE at once with a `commission.available`
    event under CM-6, and the `fraud.cleared` event names the line and the amount it freed (1 000). Kills
    service/usecases/fraud.py:215 (`rule='CM-6'` dropped) and :209 (`cleared.append(new)` → `pass`)."""
    import json
    from datetime import timedelta

    from service.jobs.worker import release_due_lines
    from service.usecases import orders, webhooks

    sid = await _shop(svc, FraudRules(velocity=True, velocity_max_orders=1))
    await _paid(svc, sid, "o1", "b1", {"DEVICE": "d"})
    o2, _ = await _paid(svc, sid, "o2", "b2", {"DEVICE": "d"})
    await orders.complete_order(svc, shop_id=sid, order_id=o2)
    svc.clock.advance(timedelta(days=2))
    await release_due_lines(svc, shop_id=sid, wait=True)
    assert (await _lines(svc, sid))[o2] == ("FROZEN", 1000, True)  # held: not released with the others
    [flag] = await fraud_reads.review_queue(svc, shop_id=sid)
    await fraud.clear_flag(svc, shop_id=sid, flag_id=flag.flag_id, actor="boss", reason="one family")
    assert (await _lines(svc, sid))[o2] == ("AVAILABLE", 1000, False)
    evs = await webhooks.events_since_caught_up(svc, shop_id=sid)
    avail = [json.loads(webhooks.event_body(e))["data"] for e in evs if e.type == "commission.available"]
    assert [(d["line_id"], d["amount"]) for d in avail] == [(flag.line_id, 1000)]
    assert [e.rule for e in evs if e.type == "commission.available"] == ["CM-6"]
    (cleared,) = [json.loads(webhooks.event_body(e))["data"] for e in evs if e.type == "fraud.cleared"]
    assert (cleared["line_ids"], cleared["amount"]) == ([flag.line_id], 1000)
    await assert_ledger_consistent(svc, sid)


async def test_FR3_clearing_a_held_pending_line_announces_no_availability(svc):
    """FR-3: clearing the flag of a line still PENDING (its order not completed) lifts the hold only: the line
    stays PENDING and no `commission.available` event is written (service/usecases/fraud.py:210 `and` → `or`)."""
    from service.usecases import webhooks

    sid = await _shop(svc, FraudRules(velocity=True, velocity_max_orders=1))
    await _paid(svc, sid, "o1", "b1", {"DEVICE": "d"})
    o2, _ = await _paid(svc, sid, "o2", "b2", {"DEVICE": "d"})
    [flag] = await fraud_reads.review_queue(svc, shop_id=sid)
    await fraud.clear_flag(svc, shop_id=sid, flag_id=flag.flag_id, actor="boss", reason="ok")
    assert (await _lines(svc, sid))[o2] == ("PENDING", 1000, False)
    assert [
        e for e in await webhooks.events_since_caught_up(svc, shop_id=sid) if e.type == "commission.available"
    ] == []


async def test_RF1_RF3_a_lapsed_binding_reads_as_unbound_with_its_history(svc, shop):
    """RF-1 EXPIRING + RF-3: after `binding_days` the binding has lapsed, and reading it shows no referrer (a
    live one shows its referrer); the history still has the lapsed entry. Kills
    service/usecases/distribution.py:580 (`row is None or not live` → `and` in `binding_of`)."""
    from datetime import timedelta

    from engine.referral import BindingMode
    from service.usecases import distribution, shops
    from tests.integration.test_rules_wired import active

    sid = shop.shop_id
    await shops.update_settings(svc, shop_id=sid, binding=BindingMode.EXPIRING, binding_days=3)
    await active(svc, sid, "a")
    await distribution.bind_referrer(svc, shop_id=sid, user_id="u", referrer_id="a")
    live = await distribution.binding_of(svc, shop_id=sid, user_id="u")
    assert live.referrer_id == "a"
    svc.clock.advance(timedelta(days=3))
    lapsed = await distribution.binding_of(svc, shop_id=sid, user_id="u")
    assert lapsed.referrer_id is None and lapsed.bound_at is None
    assert [h.referrer_id for h in lapsed.history] == ["a"]


async def test_RP2_a_campaign_whose_groups_all_failed_has_no_time_to_form(svc, shop):
    """RP-2: `mean_seconds_to_form` is over the formed groups only, 0 when none formed — a campaign whose one
    group failed reports 1 opened, 1 failed, rate 0 and 0 seconds. Kills service/reads/reports.py:84
    (`_mean_seconds`'s `else 0` → `else 1`)."""
    from datetime import timedelta

    from service.jobs import worker
    from service.reads import reports
    from service.usecases import groups
    from tests.integration.helpers import make_campaign, pay

    c = await make_campaign(svc, shop.shop_id, tiers=[(2, 8000)])
    g = await groups.open_group(svc, shop_id=shop.shop_id, campaign_id=c.campaign_id, user_id="L")
    await pay(svc, shop.shop_id, g)
    svc.clock.advance(timedelta(days=2))
    await worker.run_due(svc)
    st = await reports.campaign_stats(svc, shop_id=shop.shop_id, campaign_id=c.campaign_id)
    t = st.total
    assert (t.opened, t.formed, t.failed, t.formation_rate_bp, t.mean_seconds_to_form) == (1, 0, 1, 0, 0)
