"""Survivors of the service/ mutation samples (seeds 3, 5, 21 and 41, docs/testing.md), each killed by a test
through the service on a real PostgreSQL: what the mutant changed is checked here as an outcome a caller can
see. (Survivors whose area has a closer test file are killed there.)"""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import select

from engine.distribution import DistributorStatus
from engine.errors import ErrorCode, RuleViolation
from service.jobs import worker
from service.usecases import distribution, groups, orders, payouts, refunds, shops
from store.models import DistributorAudit, Order
from tests.integration.helpers import assert_ledger_consistent, make_campaign, pay, raw_row
from tests.integration.test_rules_wired import chain, owed, paid_order


async def test_ds1_a_new_distributor_has_its_status_audit_row_with_the_reason_through_service(svc, shop):
    """DS-1 (service/tx/commissions.py `ensure_distributor`): a distributor made by an admin has one STATUS
    audit row, from nothing to ACTIVE, with the admin and the reason given."""
    sid = shop.shop_id
    await distribution.set_status(
        svc, shop_id=sid, user_id="u", status=DistributorStatus.ACTIVE, actor="admin", reason="vip customer"
    )
    async with svc.sessionmaker() as s:
        rows = (
            (
                await s.execute(
                    select(DistributorAudit).where(DistributorAudit.shop_id == sid, DistributorAudit.user_id == "u")
                )
            )
            .scalars()
            .all()
        )
    assert [(r.action, r.from_value, r.to_value, r.actor, r.reason) for r in rows] == [
        ("STATUS", None, "ACTIVE", "admin", "vip customer")
    ]


async def test_rp4_an_order_without_a_referrer_keeps_source_none_through_service(svc, shop):
    """RP-4 (service/tx/commissions.py `on_order_paid`): only an order with a level-1 referrer becomes
    REFERRAL at payment; one without keeps NONE — a plain order and a group order alike."""
    sid = shop.shop_id
    plain = await paid_order(svc, sid, "alone", orders.LineInput("x", 1, 1000))
    c = await make_campaign(svc, sid, tiers=[(2, 8000)])
    lead = await groups.open_group(svc, shop_id=sid, campaign_id=c.campaign_id, user_id="lead")
    await pay(svc, sid, lead)
    await chain(svc, sid, "ref", "buyer")
    referred = await paid_order(svc, sid, "buyer", orders.LineInput("x", 1, 1000))
    assert (await raw_row(svc, Order, sid, plain.order_id)).source == "NONE"
    assert (await raw_row(svc, Order, sid, lead.order_id)).source == "NONE"
    assert (await raw_row(svc, Order, sid, referred.order_id)).source == "REFERRAL"


async def _two_requested_payouts(svc, sid):
    """LG-2 setup: "ref" earns 1,000 (released at completion) and requests payouts of 400 and 300."""
    await shops.update_settings(svc, shop_id=sid, min_payout=100, payout_fee_bp=0, freeze_days=0)
    await chain(svc, sid, "ref", "buyer")
    o = await paid_order(svc, sid, "buyer", orders.LineInput("x", 1, 10_000))
    await orders.complete_order(svc, shop_id=sid, order_id=o.order_id)
    assert (await distribution.get_distributor(svc, shop_id=sid, user_id="ref")).available == 1000  # released
    a = await payouts.request_payout(svc, shop_id=sid, user_id="ref", amount=400)
    r = await payouts.request_payout(svc, shop_id=sid, user_id="ref", amount=300)
    return a, r


async def test_lg2_a_decided_payout_is_not_decided_the_other_way_through_service(svc, shop):
    """LG-2 (service/usecases/payouts.py `decide_payout`): approving twice is a no-op, but rejecting an
    approved payout (or approving a rejected one) is INVALID_STATE and changes nothing."""
    sid = shop.shop_id
    a, r = await _two_requested_payouts(svc, sid)
    await payouts.decide_payout(svc, shop_id=sid, payout_id=a.payout_id, approve=True, actor="fin", external_ref="b-1")
    again = await payouts.decide_payout(
        svc, shop_id=sid, payout_id=a.payout_id, approve=True, actor="fin", external_ref="b-1"
    )
    assert again.state == "APPROVED"
    await payouts.decide_payout(svc, shop_id=sid, payout_id=r.payout_id, approve=False, actor="fin", reason="no")
    with pytest.raises(RuleViolation) as e:
        await payouts.decide_payout(svc, shop_id=sid, payout_id=a.payout_id, approve=False, actor="fin", reason="x")
    assert e.value.code == ErrorCode.INVALID_STATE
    with pytest.raises(RuleViolation) as e:
        await payouts.decide_payout(
            svc, shop_id=sid, payout_id=r.payout_id, approve=True, actor="fin", external_ref="b-2"
        )
    assert e.value.code == ErrorCode.INVALID_STATE
    d = await distribution.get_distributor(svc, shop_id=sid, user_id="ref")
    assert (d.available, d.in_payout, d.paid) == (600, 0, 400)
    await assert_ledger_consistent(svc, sid)


async def test_gb10_a_replayed_refund_confirmation_answers_the_first_result_through_service(svc, shop):
    """GB-10 (service/usecases/refunds.py `confirm_refund`): confirming an owed refund again with the same
    provider reference answers the confirmed refund, and writes nothing more."""
    sid = shop.shop_id
    c = await make_campaign(svc, sid, duration=timedelta(hours=1))
    lead = await groups.open_group(svc, shop_id=sid, campaign_id=c.campaign_id, user_id="lead")
    await pay(svc, sid, lead)
    svc.clock.advance(timedelta(hours=1))
    await worker.run_due(svc, shop_id=sid)
    assert list(await owed(svc, sid)) == [lead.order_id]
    (r,) = await refunds.list_refunds(svc, shop_id=sid, state="OWED")
    first = await refunds.confirm_refund(svc, shop_id=sid, refund_id=r.refund_id, provider_ref="bank-1")
    svc.clock.advance(timedelta(minutes=5))
    again = await refunds.confirm_refund(svc, shop_id=sid, refund_id=r.refund_id, provider_ref="bank-1")
    assert (again.state, again.provider_ref, again.confirmed_at, again.amount) == (
        "CONFIRMED",
        "bank-1",
        first.confirmed_at,
        first.amount,
    )
    assert [x.refund_id for x in await refunds.list_refunds(svc, shop_id=sid, state="CONFIRMED")] == [r.refund_id]


# ---------------------------------------------------------------- survivors of the second sample (seed 5)
async def test_or2_a_refund_of_an_unknown_order_is_not_found_through_service(svc, shop):
    """OR-2/ER-1 (service/usecases/orders.py `refund_order`): refunding an order the shop does not have is a
    coded NOT_FOUND on `orderId`, not a crash."""
    with pytest.raises(RuleViolation) as e:
        await orders.refund_order(svc, shop_id=shop.shop_id, order_id="ord_nope", amount=100, provider_ref="r-1")
    assert (e.value.code, e.value.field) == (ErrorCode.NOT_FOUND, "orderId")


async def test_a_rotated_webhook_secret_keeps_signing_for_24_hours_by_default_through_service(svc, shop):
    """docs/webhooks.md (rotation): without an overlap, the old secret keeps signing for 24 h — the service's
    default is the API's `overlapSeconds` default (86 400)."""
    from service.usecases import webhooks

    ep = await webhooks.register_endpoint(svc, shop_id=shop.shop_id, url="http://127.0.0.1:9/hook")
    old = ep.secret
    ep = await webhooks.rotate_secret(svc, shop_id=shop.shop_id, endpoint_id=ep.endpoint_id)
    assert (ep.previous_secret, ep.previous_secret_until) == (old, svc.now() + timedelta(hours=24))


# ---------------------------------------------------------------- survivors of the third sample (seed 21)
async def test_ssrf_11_3_a_url_with_a_user_name_or_password_is_refused_even_to_a_public_address(svc, shop, monkeypatch):
    """Issue 11.3 (service/webhook_targets.py `check_syntax`): userinfo in a webhook URL is refused for itself,
    not only because the host behind it is internal — here the host is a public address that is accepted
    without it."""
    from service import webhook_targets
    from service.usecases import webhooks

    monkeypatch.setenv(webhook_targets.ALLOW_LOOPBACK_ENV, "0")
    for url in ("https://user:pw@93.184.215.14/hook", "https://user@93.184.215.14/hook"):
        with pytest.raises(RuleViolation) as e:
            await webhooks.register_endpoint(svc, shop_id=shop.shop_id, url=url)
        assert (e.value.code, e.value.field) == (ErrorCode.INVALID_INPUT, "url")
    await webhooks.register_endpoint(svc, shop_id=shop.shop_id, url="https://93.184.215.14/hook")  # the control


async def test_cm6_the_demo_history_is_delivered_ten_days_ago_as_the_walkthrough_says(svc):
    """docs/walkthrough.md: dave's order was delivered ten days ago, so bob's commission on it is available
    (CM-6, freeze 7 days) — service/usecases/demo.py `HISTORY`."""
    import secrets

    from service.usecases import demo

    sid = f"demo-{secrets.token_hex(4)}"
    await demo.seed_demo(svc, shop_id=sid)
    async with svc.sessionmaker() as s:
        o = (await s.execute(select(Order).where(Order.shop_id == sid, Order.external_id == "demo-1001"))).scalar_one()
    assert o.completed_at == o.paid_at == svc.now() - timedelta(days=10)
    assert (await distribution.get_distributor(svc, shop_id=sid, user_id="bob")).available > 0


async def test_lg2_approving_an_approved_payout_again_with_another_reference_is_invalid_state_through_service(
    svc, shop
):
    """LG-2 (service/usecases/payouts.py `decide_payout`): a repeated approval is answered unchanged only with
    the same bank reference; another reference is INVALID_STATE. A repeated rejection is answered unchanged."""
    sid = shop.shop_id
    a, r = await _two_requested_payouts(svc, sid)
    await payouts.decide_payout(svc, shop_id=sid, payout_id=a.payout_id, approve=True, actor="fin", external_ref="b-1")
    with pytest.raises(RuleViolation) as e:
        await payouts.decide_payout(
            svc, shop_id=sid, payout_id=a.payout_id, approve=True, actor="fin", external_ref="b-9"
        )
    assert e.value.code == ErrorCode.INVALID_STATE
    await payouts.decide_payout(svc, shop_id=sid, payout_id=r.payout_id, approve=False, actor="fin", reason="no")
    again = await payouts.decide_payout(
        svc, shop_id=sid, payout_id=r.payout_id, approve=False, actor="fin", reason="no"
    )
    assert again.state == "REJECTED"


@pytest.mark.parametrize("transfer_ref", [None, "", "   ", "t" * 129])
async def test_lg4_a_failed_transfer_needs_its_reference_through_service(svc, shop, transfer_ref):
    """LG-4 (service/usecases/payouts.py `fail_payout`): the failed transfer's reference is 1..128 characters;
    without one it is INVALID_INPUT on `transferRef` (128 characters pass on, here to NOT_FOUND)."""
    with pytest.raises(RuleViolation) as e:
        await payouts.fail_payout(
            svc, shop_id=shop.shop_id, payout_id="po_nope", actor="fin", transfer_ref=transfer_ref, reason="r"
        )
    assert (e.value.code, e.value.field) == (ErrorCode.INVALID_INPUT, "transferRef")
    with pytest.raises(RuleViolation) as e:
        await payouts.fail_payout(
            svc, shop_id=shop.shop_id, payout_id="po_nope", actor="fin", transfer_ref="t" * 128, reason="r"
        )
    assert (e.value.code, e.value.field) == (ErrorCode.NOT_FOUND, "payoutId")


@pytest.mark.parametrize(
    "reason, refusal",
    [("", ("INVALID_INPUT", "reason")), ("   ", ("INVALID_INPUT", "reason")), ("x" * 501, ("INVALID_INPUT", "reason"))]
    + [("x" * 500, ("NOT_FOUND", "payoutId")), ("r", ("NOT_FOUND", "payoutId"))],  # a reason: on to the payout
)
async def test_lg4_a_failed_transfer_needs_a_reason_through_service(svc, shop, reason, refusal):
    """LG-4 (service/usecases/payouts.py `fail_payout`): marking a payout's transfer failed needs a reason of
    1..500 characters; without one it is INVALID_INPUT on `reason`, before anything is read (a payout that does
    not exist is then NOT_FOUND)."""
    with pytest.raises(RuleViolation) as e:
        await payouts.fail_payout(
            svc, shop_id=shop.shop_id, payout_id="po_nope", actor="fin", transfer_ref="t-1", reason=reason
        )
    assert (e.value.code.value, e.value.field) == refusal


async def test_gb15_a_campaign_made_without_nudge_fields_takes_the_rules_defaults_through_service(svc, shop):
    """GB-15 (service/usecases/campaigns.py `create_campaign`): without `almost_full_at` and
    `expiring_soon_before` a campaign nudges at 1 seat missing and 1 hour before expiry, as rules.md says."""
    from store.models import CampaignRow

    c = await make_campaign(svc, shop.shop_id)  # campaigns.create_campaign with neither field
    row = await raw_row(svc, CampaignRow, shop.shop_id, c.campaign_id)
    assert (row.almost_full_at, row.expiring_soon_before_s) == (1, 3600)


def test_http_latency_histogram_has_the_documented_buckets():
    """docs/operations.md: `sharecart_http_request_duration_seconds` has buckets from 2 ms to 10 s
    (service/metrics.py `LATENCY_BUCKETS`), not prometheus-client's defaults."""
    from service.metrics import HTTP_LATENCY, LATENCY_BUCKETS

    assert LATENCY_BUCKETS[0] == 0.002 and LATENCY_BUCKETS[-1] == 10.0
    assert tuple(HTTP_LATENCY._upper_bounds) == (*LATENCY_BUCKETS, float("inf"))


class _UnevenReceiver:
    """A receiver whose POSTs take 0.4 s and 0.05 s in turn, counting how many are answered at once."""

    def __init__(self):
        import threading

        from tests.http_receiver import LocalReceiver

        self.lock, self.n, self.busy, self.max_busy = threading.Lock(), 0, 0, 0
        self.server = LocalReceiver(self._answer)
        self.url = self.server.url

    def _answer(self, path, headers, body) -> int:
        import time

        with self.lock:
            self.n += 1
            slow = self.n % 2 == 1
            self.busy += 1
            self.max_busy = max(self.max_busy, self.busy)
        time.sleep(0.4 if slow else 0.05)
        with self.lock:
            self.busy -= 1
        return 200


async def test_webhook_lanes_at_most_per_endpoint_posts_to_one_endpoint_at_once_through_service(svc, shop):
    """docs/webhooks.md (lanes): at most `per_endpoint` POSTs to one endpoint are in flight at once, also when
    its POSTs end out of order (service/usecases/webhooks.py `Deliverer`: a lane freed while another to the same
    endpoint is still posting keeps that one counted)."""
    from service.tx import events
    from service.uow import unit_of_work
    from service.usecases import webhooks

    r = _UnevenReceiver()
    try:
        await webhooks.register_endpoint(svc, shop_id=shop.shop_id, url=r.url)
        async with unit_of_work(svc) as s:
            for i in range(8):  # 8 aggregates: deliverable side by side
                events.emit(
                    s,
                    shop_id=shop.shop_id,
                    type="test.burst",
                    aggregate_type="t",
                    aggregate_id=f"lane{i}",
                    now=svc.now(),
                    payload={"i": i},
                )
        posted = await webhooks.deliver_due(svc, concurrency=8, per_endpoint=2)
    finally:
        r.server.close()
    assert posted == 8 and r.n == 8
    assert r.max_busy == 2  # side by side, never more than the endpoint's lanes


async def test_cm6_a_pass_of_one_shop_releases_only_that_shops_due_lines_through_service(svc, shop):
    """CM-6/GB-11/SH-1 (service/jobs/worker.py `run_due(shop_id=…)`): a pass of one shop's due work releases that
    shop's due commission lines and decides its expired groups, and leaves another shop's, equally due, for its
    own pass (lines FROZEN, the group OPEN)."""
    import secrets

    from store.models import CommissionLineRow, GroupRow

    other = (await shops.create_shop(svc, shop_id=f"t-{secrets.token_hex(5)}", name="Other", currency="CNY")).shop_id
    group_of = {}
    for sid in (shop.shop_id, other):
        await shops.update_settings(svc, shop_id=sid, freeze_days=1)
        await chain(svc, sid, "ref", "buyer")
        o = await paid_order(svc, sid, "buyer", orders.LineInput("x", 1, 10_000))
        await orders.complete_order(svc, shop_id=sid, order_id=o.order_id)
        c = await make_campaign(svc, sid, duration=timedelta(hours=1))
        lead = await groups.open_group(svc, shop_id=sid, campaign_id=c.campaign_id, user_id="lead")
        await pay(svc, sid, lead)
        group_of[sid] = lead.group_id
    svc.clock.advance(timedelta(days=2))
    assert await worker.run_due(svc, shop_id=shop.shop_id) == 2  # one group decided + one line released
    assert (await raw_row(svc, GroupRow, shop.shop_id, group_of[shop.shop_id])).state == "FAILED"
    assert (await raw_row(svc, GroupRow, other, group_of[other])).state == "OPEN"

    async def states(sid):
        async with svc.sessionmaker() as s:
            rows = (await s.execute(select(CommissionLineRow.state).where(CommissionLineRow.shop_id == sid))).all()
        return sorted(r[0] for r in rows)

    assert await states(shop.shop_id) == ["AVAILABLE"]
    assert await states(other) == ["FROZEN"]


async def test_lg4_a_failed_transfer_emits_payout_failed_through_service(svc, shop):
    """LG-4 (service/usecases/payouts.py `fail_payout`): a failed transfer emits one `payout.failed` event with
    the amount back, the fee reversed and both references (docs/webhooks.md)."""
    from service.usecases import webhooks

    sid = shop.shop_id
    await shops.update_settings(svc, shop_id=sid, min_payout=100, payout_fee_bp=100, freeze_days=0)
    await chain(svc, sid, "ref", "buyer")
    o = await paid_order(svc, sid, "buyer", orders.LineInput("x", 1, 10_000))
    await orders.complete_order(svc, shop_id=sid, order_id=o.order_id)
    assert (await distribution.get_distributor(svc, shop_id=sid, user_id="ref")).available == 1000
    p = await payouts.request_payout(svc, shop_id=sid, user_id="ref", amount=500)
    await payouts.decide_payout(svc, shop_id=sid, payout_id=p.payout_id, approve=True, actor="fin", external_ref="b-1")
    await payouts.fail_payout(
        svc, shop_id=sid, payout_id=p.payout_id, actor="fin", transfer_ref="t-1", reason="bounced"
    )
    failed = [e for e in await webhooks.events_since_caught_up(svc, shop_id=sid) if e.type == "payout.failed"]
    assert len(failed) == 1
    assert {k: failed[0].payload[k] for k in ("payout_id", "user_id", "amount", "external_ref", "transfer_ref")} == {
        "payout_id": p.payout_id,
        "user_id": "ref",
        "amount": 500,
        "external_ref": "b-1",
        "transfer_ref": "t-1",
    }


async def test_rp5_a_distributor_without_a_downline_has_an_empty_page_and_total_0_through_service(svc, shop):
    """RP-5 (service/reads/reach.py `downline_page`): no members, total 0 (not 1), at both levels."""
    from service.reads import reach

    sid = shop.shop_id
    f, t = svc.now() - timedelta(days=1), svc.now() + timedelta(days=1)
    for level in (1, 2):
        assert await reach.downline_page(
            svc, shop_id=sid, user_id="lonely", level=level, period_from=f, period_to=t, limit=10, offset=0
        ) == ([], 0)


@pytest.mark.parametrize(
    "product_ref, field",
    [("", "productRef"), ("p" * 129, "productRef"), ("p", "inviteCode"), ("p" * 128, "inviteCode")]
    + [(None, "inviteCode")],  # none given: nothing to check
)
async def test_rp6_a_visit_with_a_product_ref_out_of_bounds_is_invalid_input_through_service(
    svc, shop, product_ref, field
):
    """RP-6 (service/usecases/visits.py `record_visit`): `productRef`, when given, is 1..128 characters; one in
    bounds passes on (here to the invite code, which this shop does not have)."""
    from service.usecases import visits

    with pytest.raises(RuleViolation) as e:
        await visits.record_visit(
            svc, shop_id=shop.shop_id, invite_code="abc123", visitor_id="visitor-1", product_ref=product_ref
        )
    assert e.value.field == field
    if field == "productRef":
        assert e.value.code == ErrorCode.INVALID_INPUT


async def test_sh1_a_user_id_is_1_to_64_characters_through_service(svc, shop):
    """SH-1/ER-1 (service/usecases/shops.py `ensure_user`, which the distribution use cases call): a user id of
    64 characters is a user; 65 or none is INVALID_INPUT on `userId`. (Orders and seats check their own.)"""
    sid = shop.shop_id
    ok = "u" * 64
    await distribution.set_status(svc, shop_id=sid, user_id=ok, status=DistributorStatus.ACTIVE, actor="a", reason="r")
    assert (await distribution.get_distributor(svc, shop_id=sid, user_id=ok)).status == DistributorStatus.ACTIVE
    for bad in ("u" * 65, ""):
        with pytest.raises(RuleViolation) as e:
            await distribution.set_status(
                svc, shop_id=sid, user_id=bad, status=DistributorStatus.ACTIVE, actor="a", reason="r"
            )
        assert (e.value.code, e.value.field) == (ErrorCode.INVALID_INPUT, "userId")


def test_webhook_client_follows_no_redirect_and_takes_no_proxy_from_the_environment():
    """Issue 11.3 (service/usecases/webhooks.py `webhook_client`): a 3xx is a failure, never followed, and
    HTTP(S)_PROXY of the environment is not used — either would reach a target nobody checked."""
    from service.usecases import webhooks

    c = webhooks.webhook_client()
    assert (c.follow_redirects, c.trust_env) == (False, False)


async def test_rp4_a_shop_without_buyers_has_three_rows_of_zeros_through_service(svc, shop):
    """RP-4 (service/reads/reports.py `retention`): every source has its row even without buyers, with 0
    buyers, repeaters, multi-category buyers and net sales, and no rate (nothing to divide by)."""
    from service.reads import reports

    rows = await reports.retention(
        svc, shop_id=shop.shop_id, period_from=svc.now() - timedelta(days=30), period_to=svc.now()
    )
    assert [(r.buyers, r.repeat_buyers, r.multi_category_buyers, r.net_sales, r.net_sales_per_buyer) for r in rows] == [
        (0, 0, 0, 0, None)
    ] * 3
    assert len({r.source for r in rows}) == 3


async def test_cm7_a_preview_line_price_is_at_most_10_to_the_13_through_service(svc, shop):
    """CM-7/OR-2 (service/reads/preview.py `_check_cart`): a cart line's unit price is bounded like a reported
    order's, 0..10^13 minor units; one more is INVALID_INPUT on that line."""
    from service.reads import preview

    def cart(price):
        return [preview.CartLine(product_ref="p", quantity=1, unit_price=price)]

    got = await preview.commission_preview(svc, shop_id=shop.shop_id, buyer_id="b", lines=cart(10**13))
    assert got.base_most == 10**13
    with pytest.raises(RuleViolation) as e:
        await preview.commission_preview(svc, shop_id=shop.shop_id, buyer_id="b", lines=cart(10**13 + 1))
    assert (e.value.code, e.value.field) == (ErrorCode.INVALID_INPUT, "lines.0")


@pytest.mark.parametrize("bp", [-1, 10_001])
async def test_gb4_a_campaign_leader_commission_out_of_0_to_10000_bp_is_refused_through_service(svc, shop, bp):
    """GB-4/CM-6 (service/usecases/campaigns.py `create_campaign`): the campaign's `leader_commission_bp` is
    validated with the rest of the campaign (0..10000), and 10000 is accepted."""
    with pytest.raises(RuleViolation) as e:
        await make_campaign(svc, shop.shop_id, leader_commission_bp=bp)
    assert (e.value.code, e.value.field) == (ErrorCode.INVALID_INPUT, "leader_commission_bp")
    await make_campaign(svc, shop.shop_id, leader_commission_bp=10_000)


async def test_rp5_a_period_that_ends_where_it_starts_is_refused_through_service(svc, shop):
    """RP-5 (service/reads/reach.py `_period`): a period is [from, to) and must end after it starts; an empty
    one (to == from) is INVALID_INPUT on `periodTo`, like a reversed one."""
    from service.reads import reach

    now = svc.now()
    for to in (now, now - timedelta(seconds=1)):
        with pytest.raises(RuleViolation) as e:
            await reach.downline_page(
                svc, shop_id=shop.shop_id, user_id="u", level=1, period_from=now, period_to=to, limit=10, offset=0
            )
        assert (e.value.code, e.value.field) == (ErrorCode.INVALID_INPUT, "periodTo")


async def test_gb10_gb15_a_campaign_with_the_default_nudges_keeps_the_v1_request_so_old_keys_replay(svc, shop):
    """GB-10/GB-15 (service/usecases/campaigns.py `create_campaign`): a campaign made with the default nudges
    (1 seat, 1 hour) hashes its idempotency request without the GB-15 fields, exactly as before v2, so a key
    stored by a v1 service still replays instead of answering IDEMPOTENCY_CONFLICT."""
    from datetime import timezone

    from service.tx.idempotency import request_hash, stored_scope
    from store.models import IdempotencyKey

    now = svc.now()
    starts, ends = now - timedelta(hours=1), now + timedelta(days=10)
    await make_campaign(svc, shop.shop_id, starts_at=starts, ends_at=ends, idempotency_key="k-v1")
    v1_request = {
        "product_ref": "sku-1",
        "title": "Tea",
        "list_price": 10_000,
        "tiers": [[3, 8_000]],
        "duration_s": 86_400.0,
        "payment_window_s": 900.0,
        "starts_at": starts.astimezone(timezone.utc).isoformat(),
        "ends_at": ends.astimezone(timezone.utc).isoformat(),
        "leader_discount": 0,
        "leader_commission_bp": None,
        "stock": None,
        "per_user_limit": None,
        "max_quantity_per_order": 1,
        "new_members_only": False,
        "fill_at_expiry": None,
        "lottery_winners": 0,
        "variants": [],
        "commission_enabled": True,
        "category": "",
    }
    row = await raw_row(svc, IdempotencyKey, shop.shop_id, stored_scope("create_campaign"), "k-v1")
    assert row.request_hash == request_hash(v1_request)


async def test_cm6_a_release_pass_takes_every_due_line_batch_after_batch_through_service(svc, shop):
    """CM-6 (service/jobs/worker.py `release_due_lines`): lines are released `batch` a transaction, and a full
    batch means there may be more: 3 due lines with batch 2 are all released by one call."""
    from store.models import CommissionLineRow

    sid = shop.shop_id
    await shops.update_settings(svc, shop_id=sid, freeze_days=1)
    for b in ("b1", "b2", "b3"):
        await chain(svc, sid, "ref", b)
        o = await paid_order(svc, sid, b, orders.LineInput("x", 1, 10_000))
        await orders.complete_order(svc, shop_id=sid, order_id=o.order_id)
    svc.clock.advance(timedelta(days=2))
    assert await worker.release_due_lines(svc, shop_id=sid, batch=2) == 3
    async with svc.sessionmaker() as s:
        rows = (await s.execute(select(CommissionLineRow.state).where(CommissionLineRow.shop_id == sid))).all()
    assert sorted(r[0] for r in rows) == ["AVAILABLE"] * 3


# ---------------------------------------------------------------- survivors of the fresh sample (seed 41)
@pytest.mark.parametrize("shipping, tax", [(-1, 0), (0, -1)])
async def test_or2_a_negative_shipping_or_tax_amount_is_invalid_input_through_service(svc, shop, shipping, tax):
    """OR-2 (service/usecases/orders.py `report_order`): shipping and tax are >= 0; a negative one is
    INVALID_INPUT on `shippingAmount` and no order is stored (0 and 0 are an order: the control)."""
    sid = shop.shop_id
    with pytest.raises(RuleViolation) as e:
        await orders.report_order(
            svc,
            shop_id=sid,
            external_id="neg-1",
            buyer_id="b",
            lines=[orders.LineInput("x", 1, 1000)],
            shipping_amount=shipping,
            tax_amount=tax,
        )
    assert (e.value.code, e.value.field) == (ErrorCode.INVALID_INPUT, "shippingAmount")
    async with svc.sessionmaker() as s:
        assert (await s.execute(select(Order).where(Order.shop_id == sid))).first() is None
    o = await orders.report_order(
        svc, shop_id=sid, external_id="neg-1", buyer_id="b", lines=[orders.LineInput("x", 1, 1000)]
    )
    assert o.state == "CREATED"


@pytest.mark.parametrize("approve", [True, False])
async def test_lg2_deciding_a_payout_the_shop_does_not_have_is_not_found_through_service(svc, shop, approve):
    """LG-2/ER-1 (service/usecases/payouts.py `decide_payout`): approving or rejecting an unknown payout is a
    coded NOT_FOUND on `payoutId`, not a crash."""
    with pytest.raises(RuleViolation) as e:
        await payouts.decide_payout(
            svc, shop_id=shop.shop_id, payout_id="po_nope", approve=approve, actor="fin", external_ref="b-1", reason="r"
        )
    assert (e.value.code, e.value.field) == (ErrorCode.NOT_FOUND, "payoutId")


async def test_gb10_a_second_payment_for_a_paid_group_seat_is_paid_and_owed_back_through_service(svc, shop):
    """GB-10 (service/tx/lean.py `extra_payment_refund`): a second payment (another provider reference) for a
    seat already paid takes nothing; it is money received, so the order's paid and refunded amounts both grow
    by it and a GB-10 refund of it is owed. (The engine's GB-10 refund is always the lone instruction of its
    decision, so it takes this lean path: the GB-10 branch of service/tx/group_batch.py `_refund` never runs.)"""
    from service.usecases import refunds

    sid = shop.shop_id
    c = await make_campaign(svc, sid, tiers=[(3, 8_000)])
    lead = await groups.open_group(svc, shop_id=sid, campaign_id=c.campaign_id, user_id="lead")
    assert (await pay(svc, sid, lead, ref="first"))["accepted"] is True
    assert (await pay(svc, sid, lead, ref="second"))["accepted"] is False
    o = await raw_row(svc, Order, sid, lead.order_id)
    assert (o.state, o.paid_amount, o.refunded_amount) == ("PAID", 16_000, 8_000)
    (r,) = await refunds.list_refunds(svc, shop_id=sid, state="OWED")
    assert (r.order_id, r.amount, r.rule) == (lead.order_id, 8_000, "GB-10")
    await assert_ledger_consistent(svc, sid)


async def test_gb2_a_member_who_holds_no_unit_may_join_up_to_the_per_user_limit_through_service(svc, shop):
    """GB-2 (service/tx/lean.py `load_group`: a user with no units in the campaign holds 0): with
    `per_user_limit` 1, a member who holds nothing joins for 1; a second seat is PER_USER_LIMIT."""
    sid = shop.shop_id
    c = await make_campaign(svc, sid, tiers=[(3, 8_000)], per_user_limit=1)
    lead = await groups.open_group(svc, shop_id=sid, campaign_id=c.campaign_id, user_id="lead")
    await pay(svc, sid, lead)
    seat = await groups.join_group(svc, shop_id=sid, group_id=lead.group_id, user_id="m")
    assert seat.amount == 8_000
    other = await groups.open_group(svc, shop_id=sid, campaign_id=c.campaign_id, user_id="lead2")
    await pay(svc, sid, other)
    with pytest.raises(RuleViolation) as e:
        await groups.join_group(svc, shop_id=sid, group_id=other.group_id, user_id="m")
    assert e.value.code == ErrorCode.PER_USER_LIMIT


async def test_cm6_a_group_members_line_is_not_releasable_before_the_group_forms_through_service(svc, shop):
    """CM-6/D-R24 (service/tx/commissions.py `post_commission_line`, `releasable=False` for a group payment):
    a referred member's order completed before the group forms keeps its line PENDING; the line freezes when
    the group forms."""
    from store.models import CommissionLineRow

    sid = shop.shop_id
    await chain(svc, sid, "ref", "m")
    c = await make_campaign(svc, sid, tiers=[(3, 8_000)])
    lead = await groups.open_group(svc, shop_id=sid, campaign_id=c.campaign_id, user_id="lead")
    await pay(svc, sid, lead)
    m = await groups.join_group(svc, shop_id=sid, group_id=lead.group_id, user_id="m")
    await pay(svc, sid, m)  # 2 of 3 paid: not formed
    await orders.complete_order(svc, shop_id=sid, order_id=m.order_id)

    async def states():
        async with svc.sessionmaker() as s:
            q = select(CommissionLineRow.state).where(
                CommissionLineRow.shop_id == sid, CommissionLineRow.order_id == m.order_id
            )
            return [r[0] for r in (await s.execute(q)).all()]

    assert await states() == ["PENDING"]  # completed, but not releasable: the group has not formed
    last = await groups.join_group(svc, shop_id=sid, group_id=lead.group_id, user_id="z")
    await pay(svc, sid, last)  # the group forms: the completed order's line freezes
    assert await states() == ["FROZEN"]


async def test_rp6_the_visit_limiter_keeps_a_visitors_bucket_while_it_holds_at_most_max_buckets(svc, shop):
    """RP-6 (service/usecases/visits.py `VisitLimiter`): a limiter of 2 buckets holds one visitor's and the
    shop's: the visitor's burst of 10 is spent, and the 11th visit is RATE_LIMITED (the limiter is asked
    before the invite code, so an unknown code answers the visits it lets through)."""
    from service.usecases import visits

    limiter = visits.VisitLimiter(max_buckets=2)
    got = []
    for _ in range(visits.PER_VISITOR[1] + 1):
        with pytest.raises(RuleViolation) as e:
            await visits.record_visit(
                svc, shop_id=shop.shop_id, invite_code="NOPE", visitor_id="visitor-1", limiter=limiter
            )
        got.append(e.value.code)
    assert got == [ErrorCode.INVALID_INVITE_CODE] * visits.PER_VISITOR[1] + [ErrorCode.RATE_LIMITED]


def test_metrics_counters_expose_only_their_documented_series_without_a_created_twin():
    """docs/operations.md (Metrics): a counter is the one `…_total` series of the table (a histogram its
    buckets, sum and count); service/metrics.py turns off prometheus-client's `…_created` twin of each."""
    from service.metrics import HTTP_LATENCY, WEBHOOK_FAILURES

    assert {s.name for m in WEBHOOK_FAILURES.collect() for s in m.samples} == {"sharecart_webhook_failures_total"}
    HTTP_LATENCY.labels("/mutation-gaps").observe(0.001)
    names = {s.name for m in HTTP_LATENCY.collect() for s in m.samples}
    assert not [n for n in names if n.endswith("_created")], names


async def test_lv1_setting_one_shops_levels_leaves_every_other_shops_levels_alone_through_service(svc, shop):
    """LV-1, SH-1 (`shops.set_levels`): replacing a shop's level table deletes that shop's old levels only —
    another shop's table is untouched, and the shop's own second table replaces its first."""
    from engine.levels import Level

    other = await shops.create_shop(svc, shop_id=f"{shop.shop_id}-b", name="Other", currency="CNY")
    theirs = [Level(grade=0, name="B-member", level1_bp=900, level2_bp=400)]
    await shops.set_levels(svc, shop_id=other.shop_id, levels=theirs)
    await shops.set_levels(
        svc, shop_id=shop.shop_id, levels=[Level(grade=0, name="first", level1_bp=800, level2_bp=300)]
    )
    mine = [
        Level(grade=0, name="member", level1_bp=1000, level2_bp=500),
        Level(grade=1, name="gold", level1_bp=1500, level2_bp=600),
    ]
    assert await shops.set_levels(svc, shop_id=shop.shop_id, levels=mine) == tuple(mine)
    assert await shops.get_levels(svc, shop.shop_id) == tuple(mine)
    assert await shops.get_levels(svc, other.shop_id) == tuple(theirs)


async def test_cm3_a_products_fixed_amount_may_be_0_and_not_below_through_service(svc, shop):
    """CM-3 (`shops.upsert_product`): a fixed per-unit amount is >= 0 — 0 is a valid amount (no commission at
    that level), -1 is INVALID_INPUT on the field given."""
    p = await shops.upsert_product(svc, shop_id=shop.shop_id, product_ref="free", level1_amount=0, level2_amount=0)
    assert (p.level1_amount, p.level2_amount) == (0, 0)
    for name, kwargs in (("level1Amount", {"level1_amount": -1}), ("level2Amount", {"level2_amount": -1})):
        with pytest.raises(RuleViolation) as e:
            await shops.upsert_product(svc, shop_id=shop.shop_id, product_ref="neg", **kwargs)
        assert (e.value.code, e.value.field) == (ErrorCode.INVALID_INPUT, name)


async def test_sh0_a_secret_rotation_overlaps_0_to_7_days_through_service(svc, shop):
    """docs/security.md (rotation): the old signing secret stays valid 0 to 604 800 s (7 days) — both ends
    accepted, one second more refused."""
    for overlap in (0, 7 * 86400):
        rotated = await shops.rotate_jwt_secret(svc, shop_id=shop.shop_id, overlap_s=overlap)
        assert rotated.previous_jwt_secret is not None
    for overlap in (-1, 7 * 86400 + 1):
        with pytest.raises(RuleViolation) as e:
            await shops.rotate_jwt_secret(svc, shop_id=shop.shop_id, overlap_s=overlap)
        assert (e.value.code, e.value.field) == (ErrorCode.INVALID_INPUT, "overlapSeconds")


async def test_ds_an_unknown_distribution_setting_is_refused_on_its_own_name_through_service(svc, shop):
    """`shops.update_settings`: a setting the shop does not have is INVALID_INPUT naming it, changing nothing."""
    before = await shops.get_settings(svc, shop.shop_id)
    with pytest.raises(RuleViolation) as e:
        await shops.update_settings(svc, shop_id=shop.shop_id, level3_bp=100)
    assert (e.value.code, e.value.field) == (ErrorCode.INVALID_INPUT, "level3_bp")
    assert await shops.get_settings(svc, shop.shop_id) == before
