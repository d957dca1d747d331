"""Seed-72 service survivors (issue 12): the preview's cart bound, a leader reward of one minor unit, dissolving a
flag that is not a group's, 6to4/Teredo webhook targets, the fraud queue's total on an empty page, the delivery
task's done callback, DS-1 admission on a group seat's payment, and duplicate lottery candidates."""

from __future__ import annotations

import ipaddress
import logging
from datetime import timedelta

import pytest
from sqlalchemy import text

from engine.distribution import DistributionMode, DistributorStatus
from engine.errors import ErrorCode, RuleViolation
from engine.fraud import FraudRules
from service.reads import fraud as fraud_reads
from service.reads import preview
from service.usecases import distribution, fraud, groups, orders, shops, webhooks
from service.webhook_targets import address_allowed
from tests.integration.helpers import assert_ledger_consistent, make_campaign, pay, sql_rows


# ---------------------------------------------------------------- CM-7 preview (service/reads/preview.py)


async def test_CM7_a_preview_cart_of_100_lines_is_answered_and_101_refused(svc, shop):
    """CM-7 / ER-1: the cart bound is 100 lines: 100 are previewed, 101 are INVALID_INPUT on `lines`.
    Kills service/reads/preview.py:27 `MAX_LINES = 100` -> 101."""
    sid = shop.shop_id
    await shops.update_settings(svc, shop_id=sid, level1_bp=1000)
    await distribution.set_status(
        svc, shop_id=sid, user_id="ref", status=DistributorStatus.ACTIVE, actor="t", reason="t"
    )
    await distribution.bind_referrer(svc, shop_id=sid, user_id="buyer", referrer_id="ref")
    got = await preview.commission_preview(
        svc, shop_id=sid, buyer_id="buyer", lines=[preview.CartLine("plain", 1, 100)] * 100
    )
    assert [(s.level, s.beneficiary_id, s.least) for s in got.shares] == [(1, "ref", 1000)]
    with pytest.raises(RuleViolation) as e:
        await preview.commission_preview(
            svc, shop_id=sid, buyer_id="buyer", lines=[preview.CartLine("plain", 1, 100)] * 101
        )
    assert (e.value.code, e.value.field, e.value.rule) == (ErrorCode.INVALID_INPUT, "lines", "CM-7")


# ---------------------------------------------------------------- GB-4 leader reward (service/tx/commissions.py)


async def test_GB4_a_leader_reward_of_one_minor_unit_is_posted_when_the_worker_forms_the_group(svc, shop):
    """GB-4 (团长佣金): at 1 bp on the other member's net of 10 000 the reward is exactly 1; the worker's batch
    writer (`group_batch._formed`) posts it as a level-0 line of 1 on the leader's order. Seed 72 met this
    bound in `commissions.post_leader_reward` (`amount <= 0` -> `<= 1`), code only the ORM reference of the tests
    ran: it moved there, and this proves the product's `amount > 0`."""
    from service.jobs import worker

    sid = shop.shop_id
    c = await make_campaign(svc, sid, list_price=10_000, tiers=[(2, 10_000), (3, 9_000)], leader_commission_bp=1)
    lead = await groups.open_group(svc, shop_id=sid, campaign_id=c.campaign_id, user_id="lead")
    await pay(svc, sid, lead)
    await pay(svc, sid, await groups.join_group(svc, shop_id=sid, group_id=lead.group_id, user_id="m1"))
    svc.clock.advance(timedelta(hours=25))  # forms at expiry at the 2-member tier: no GB-5 refund
    assert await worker.run_due_groups(svc, shop_id=sid) == 1
    assert await sql_rows(svc, "SELECT state FROM groups WHERE shop_id = :s", s=sid) == [("FORMED",)]
    lines = await sql_rows(
        svc,
        "SELECT order_id, beneficiary_id, level, original, base FROM commission_lines WHERE shop_id = :s",
        s=sid,
    )
    assert lines == [(lead.order_id, "lead", 0, 1, 10_000)]
    await assert_ledger_consistent(svc, sid)


async def test_GB4_a_leader_reward_rounding_to_zero_posts_no_line(svc, shop):
    """GB-4: at 1 bp on the other member's net of 9 999 the reward floors to 0: the worker posts no line (no
    level-0 line of 0; `group_batch._formed`'s `amount > 0` -> `>= 0`)."""
    from service.jobs import worker

    sid = shop.shop_id
    c = await make_campaign(svc, sid, list_price=9_999, tiers=[(2, 9_999), (3, 9_000)], leader_commission_bp=1)
    lead = await groups.open_group(svc, shop_id=sid, campaign_id=c.campaign_id, user_id="lead")
    await pay(svc, sid, lead)
    await pay(svc, sid, await groups.join_group(svc, shop_id=sid, group_id=lead.group_id, user_id="m1"))
    svc.clock.advance(timedelta(hours=25))
    assert await worker.run_due_groups(svc, shop_id=sid) == 1
    assert await sql_rows(svc, "SELECT state FROM groups WHERE shop_id = :s", s=sid) == [("FORMED",)]
    assert await sql_rows(svc, "SELECT count(*) FROM commission_lines WHERE shop_id = :s", s=sid) == [(0,)]
    await assert_ledger_consistent(svc, sid)


# ---------------------------------------------------------------- FR-3 dissolve (service/usecases/fraud.py)


async def test_FR3_only_a_group_flag_with_its_group_can_be_dissolved(svc):
    """FR-3: `dissolveGroup` dissolves a GROUP flag's group only. A LINE flag is refused INVALID_STATE on flagId
    even when its row names a group (the service writes LINE flags without one, so the row is edited here to
    make the guard's second half matter), and so is a GROUP flag whose row has lost its group; the group, the
    flags and the refunds are unchanged. Kills service/usecases/fraud.py:306 `or` -> `and`."""
    from tests.integration.test_fraud_review import _scalper_pair

    sid, lead, _ = await _scalper_pair(svc)
    await fraud.set_rules(
        svc,
        shop_id=sid,
        rules=FraudRules(scalper_group=True, scalper_min_seats=2, velocity=True, velocity_max_orders=1),
        actor="t",
    )
    # b3 leads a group of their own, paying on the same device: velocity (FR-2b) flags the referrer's line of
    # this group order (one seat: no scalper flag for that group)
    [(cid,)] = await sql_rows(svc, "SELECT campaign_id FROM groups WHERE shop_id = :s", s=sid)
    b3 = await groups.open_group(svc, shop_id=sid, campaign_id=cid, user_id="b3")
    await orders.confirm_payment(
        svc,
        shop_id=sid,
        order_id=b3.order_id,
        amount=b3.amount,
        provider_ref=f"{sid}-3",
        fingerprints={"DEVICE": "phone"},
    )
    flags = {f.subject: f for f in await fraud_reads.review_queue(svc, shop_id=sid)}
    assert sorted(flags) == ["GROUP", "LINE"]
    assert flags["GROUP"].group_id == lead.group_id
    assert (flags["LINE"].order_id, flags["LINE"].group_id) == (b3.order_id, None)  # as the service writes it

    async def refused(flag_id: str) -> None:
        with pytest.raises(RuleViolation) as e:
            await fraud.dissolve_group(svc, shop_id=sid, flag_id=flag_id, actor="boss", reason="try")
        assert (e.value.code, e.value.field, e.value.rule) == (ErrorCode.INVALID_STATE, "flagId", "FR-3")

    async def flag_group(flag_id: str, group_id: str | None) -> None:
        async with svc.sessionmaker() as s:
            await s.execute(
                text("UPDATE fraud_flags SET group_id = :g WHERE shop_id = :s AND flag_id = :f"),
                {"s": sid, "f": flag_id, "g": group_id},
            )
            await s.commit()

    await refused(flags["LINE"].flag_id)
    await flag_group(flags["LINE"].flag_id, b3.group_id)  # a LINE flag that names its order's group
    await refused(flags["LINE"].flag_id)
    await flag_group(flags["GROUP"].flag_id, None)  # a GROUP flag without its group
    await refused(flags["GROUP"].flag_id)
    assert await sql_rows(svc, "SELECT DISTINCT state FROM groups WHERE shop_id = :s", s=sid) == [("OPEN",)]
    assert await sql_rows(svc, "SELECT count(*) FROM refunds WHERE shop_id = :s", s=sid) == [(0,)]
    assert await sql_rows(svc, "SELECT DISTINCT state FROM fraud_flags WHERE shop_id = :s", s=sid) == [("OPEN",)]
    assert await sql_rows(svc, "SELECT DISTINCT state FROM commission_lines WHERE shop_id = :s", s=sid) == [
        ("PENDING",)
    ]


# ---------------------------------------------------------------- SSRF (service/webhook_targets.py)


@pytest.mark.parametrize(
    ("addr", "allowed"),
    [
        ("2002:0a00:0001::808:808", False),  # 6to4 of 10.0.0.1 (its low 32 bits read 8.8.8.8)
        ("2002:0808:0808::a00:1", True),  # 6to4 of 8.8.8.8 (its low 32 bits read 10.0.0.1)
        ("2001:0:4136:e378:8000:63bf:3f57:fefe", False),  # Teredo, client 192.168.1.1
        ("64:ff9b::a00:1", False),  # NAT64 of 10.0.0.1
        ("64:ff9b::808:808", True),  # NAT64 of 8.8.8.8
        ("fe80::808:808", False),  # link-local: embeds nothing, whatever its low 32 bits read
        ("fd00::808:808", False),  # unique local
        ("2606:4700::a00:1", True),  # global unicast: its low 32 bits are no IPv4 address
    ],
)
def test_wh_an_ipv6_target_is_judged_by_the_ipv4_it_embeds_and_only_then(addr, allowed):
    """SSRF (issue 11.3): a v4-mapped, 6to4, Teredo or NAT64 address is allowed only if the IPv4 it embeds is;
    any other IPv6 address is judged as itself, never by its low 32 bits read as IPv4. Kills
    service/webhook_targets.py:77 `embedded is None and ip in NAT64` -> `or` (and its two comparisons)."""
    assert address_allowed(ipaddress.IPv6Address(addr), loopback=False) is allowed


# ---------------------------------------------------------------- FR-3 review queue (service/reads/fraud.py)


async def test_FR3_an_empty_page_of_the_review_queue_still_counts_every_flag(svc):
    """FR-3: the review queue's page says how many flags the whole list has, also when the page itself is empty
    (first: 0, or an offset past the end), and 0 when no flag matches. Kills service/reads/fraud.py:104 `or 0` ->
    `and 0` (and `or 1`)."""
    from tests.integration.test_fraud_review import _paid, _shop

    sid = await _shop(svc, FraudRules(velocity=True, velocity_max_orders=1))
    await _paid(svc, sid, "o1", "b1", {"DEVICE": "d"})
    await _paid(svc, sid, "o2", "b2", {"DEVICE": "d"})
    await _paid(svc, sid, "o3", "b3", {"DEVICE": "d"})
    page, total = await fraud_reads.review_queue_page(svc, shop_id=sid)
    assert (len(page), total) == (2, 2)
    assert await fraud_reads.review_queue_page(svc, shop_id=sid, limit=0) == ([], 2)
    assert await fraud_reads.review_queue_page(svc, shop_id=sid, offset=5) == ([], 2)
    assert await fraud_reads.review_queue_page(svc, shop_id=sid, state="CLEARED") == ([], 0)  # none match


# ---------------------------------------------------------------- webhook delivery (service/usecases/webhooks.py)


async def test_wh_a_delivery_that_ends_normally_logs_no_broken_worker(svc, shop, caplog):
    """A delivery accepted by its receiver is DELIVERED and its task's done callback logs nothing at ERROR: no
    `webhook delivery …/… broke the worker` line. Kills service/usecases/webhooks.py:499 `and` -> `or`."""
    from tests.integration.test_gaps_hooks import URL, Transport, _delivery, _emit
    from tests.integration.test_gaps_s71_hooks import _pass

    ep = await webhooks.register_endpoint(svc, shop_id=shop.shop_id, url=URL)
    ev = await _emit(svc, shop.shop_id)
    caplog.set_level(logging.INFO, logger=webhooks.log.name)
    assert await _pass(svc, Transport(shop.shop_id, 200)) == 1
    assert (await _delivery(svc, shop.shop_id, ep.endpoint_id, ev.event_id)).state == "DELIVERED"
    assert not [r for r in caplog.records if "broke the worker" in r.getMessage()]
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]


# ---------------------------------------------------------------- DS-1 on a group seat (service/tx/group_batch.py)


async def test_DS1_CM2_a_group_seat_buyer_admitted_by_the_payment_earns_self_purchase(svc, shop):
    """DS-1 + CM-2: in SPEND_THRESHOLD mode (10 000) with self-purchase on, the group leader's payment of 10 000
    admits them, and that very order already treats them as a distributor: level 1 is the buyer (10 % of
    10 000), level 2 their referrer. Kills service/tx/group_batch.py:425 `admitted=admitted` dropped."""
    sid = shop.shop_id
    await shops.update_settings(
        svc,
        shop_id=sid,
        mode=DistributionMode.SPEND_THRESHOLD,
        spend_threshold=10_000,
        self_purchase=True,
        level1_bp=1000,
        level2_bp=500,
    )
    await distribution.set_status(
        svc, shop_id=sid, user_id="ref", status=DistributorStatus.ACTIVE, actor="t", reason="t"
    )
    await distribution.bind_referrer(svc, shop_id=sid, user_id="lead", referrer_id="ref")
    c = await make_campaign(svc, sid, list_price=10_000, tiers=[(3, 10_000)])
    lead = await groups.open_group(svc, shop_id=sid, campaign_id=c.campaign_id, user_id="lead")
    status = "SELECT status FROM distributors WHERE shop_id = :s AND user_id = 'lead'"
    assert await sql_rows(svc, status, s=sid) in ([], [("NONE",)])  # not a distributor before paying
    await pay(svc, sid, lead)
    lines = await sql_rows(
        svc,
        "SELECT beneficiary_id, level, original FROM commission_lines WHERE shop_id = :s AND order_id = :o "
        "ORDER BY level",
        s=sid,
        o=lead.order_id,
    )
    assert lines == [("lead", 1, 1000), ("ref", 2, 500)]
    assert await sql_rows(svc, status, s=sid) == [("ACTIVE",)]
    await assert_ledger_consistent(svc, sid)


# ---------------------------------------------------------------- GB-7 lottery (engine/lottery.py)


def test_GB7_a_draw_among_duplicate_candidates_is_refused():
    """GB-7 v2: the candidates of a draw are distinct paid seats; a repeated order id is INVALID_INPUT on
    `candidates`. Kills engine/lottery.py:100 `raise refuse(...)` -> pass."""
    from engine import lottery

    seed = "ab" * 32
    with pytest.raises(RuleViolation) as e:
        lottery.draw(seed, ["o1", "o2", "o1"], 1)
    assert (e.value.code, e.value.field, e.value.rule) == (ErrorCode.INVALID_INPUT, "candidates", "GB-7")
    assert lottery.draw(seed, ["o1", "o2"], 1).winners[0] in ("o1", "o2")
