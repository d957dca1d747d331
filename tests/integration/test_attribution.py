"""RF-3 attribution through the service and the real database: group share links, codes on reported
orders (with and without `order_code_overrides`), admin rebinding — every source under RF-1 and visible on
the binding."""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import text

from engine.distribution import DistributorStatus
from engine.errors import ErrorCode, RuleViolation
from service.usecases import distribution, groups, orders, shops
from tests.integration.helpers import make_campaign, pay
from tests.integration.test_rules_wired import lines_of


async def _active(svc, sid, *users):
    codes = {}
    for u in users:
        d = await distribution.set_status(
            svc, shop_id=sid, user_id=u, status=DistributorStatus.ACTIVE, actor="t", reason="t"
        )
        codes[u] = d.invite_code
    return codes


async def _events(svc, sid, type_):
    async with svc.sessionmaker() as s:
        return [
            dict(r)
            for (r,) in (
                await s.execute(
                    text("SELECT payload FROM events WHERE shop_id = :s AND type = :t ORDER BY seq"),
                    {"s": sid, "t": type_},
                )
            )
        ]


async def test_RF3a_group_link_binds_the_joiner_with_source_group_invite(svc, shop):
    """RF-3 (a): joining through a member's share link binds the joiner to that member (GROUP_INVITE, with
    the campaign on the history entry); a second link with another code (PERMANENT mode) is refused under
    RF-1 as ALREADY_BOUND — the join goes ahead, the binding stays."""
    sid = shop.shop_id
    code = await _active(svc, sid, "ann", "zed")
    c = await make_campaign(svc, sid)
    lead = await groups.open_group(svc, shop_id=sid, campaign_id=c.campaign_id, user_id="ann")
    await pay(svc, sid, lead)
    seat = await groups.join_group(svc, shop_id=sid, group_id=lead.group_id, user_id="bob", invite_code=code["ann"])
    assert seat.attribution.outcome == "BOUND"
    view = await distribution.binding_of(svc, shop_id=sid, user_id="bob")
    assert (view.referrer_id, view.source, view.referrer_code) == ("ann", "GROUP_INVITE", code["ann"])
    assert view.history[0].campaign_id == c.campaign_id
    other = await groups.open_group(svc, shop_id=sid, campaign_id=c.campaign_id, user_id="bob", invite_code=code["zed"])
    assert other.attribution.outcome == "REFUSED" and other.attribution.refusal == ErrorCode.ALREADY_BOUND
    assert other.order_id and (await distribution.binding_of(svc, shop_id=sid, user_id="bob")).referrer_id == "ann"
    # a cycle through a link is refused too (ann would be bound below bob, who is below ann)
    ann_seat = await groups.open_group(
        svc,
        shop_id=sid,
        campaign_id=c.campaign_id,
        user_id="ann",
        invite_code=(
            await distribution.set_status(
                svc, shop_id=sid, user_id="bob", status=DistributorStatus.ACTIVE, actor="t", reason="t"
            )
        ).invite_code,
    )
    assert ann_seat.attribution.refusal == ErrorCode.REFERRAL_CYCLE
    assert [e["source"] for e in await _events(svc, sid, "referral.bound")][-1] == "GROUP_INVITE"


async def test_RF3b_order_code_binds_a_buyer_without_referrer_before_the_snapshot(svc, shop):
    """RF-3 (b): a code on a reported order with no live referrer binds (ORDER_CODE) before the snapshot,
    so the payment pays the code's distributor; an unknown code leaves the order reported, unattributed."""
    sid = shop.shop_id
    code = await _active(svc, sid, "dee")
    got: list = []
    o = await orders.report_order(
        svc,
        shop_id=sid,
        external_id="c1",
        buyer_id="bo",
        invite_code=code["dee"].lower(),
        lines=[orders.LineInput("tea", 1, 10_000)],
        attribution_out=got,
    )
    assert got[0].outcome == "BOUND"
    assert (await distribution.binding_of(svc, shop_id=sid, user_id="bo")).source == "ORDER_CODE"
    await pay(svc, sid, o.order_id, 10_000)
    assert await lines_of(svc, sid, o.order_id) == {"dee": 1000}
    bad: list = []
    o2 = await orders.report_order(
        svc,
        shop_id=sid,
        external_id="c2",
        buyer_id="cy",
        invite_code="NOPE",
        lines=[orders.LineInput("tea", 1, 100)],
        attribution_out=bad,
    )
    assert bad[0].refusal == ErrorCode.INVALID_INVITE_CODE and o2.order_id
    # OR-1: the same external id with another code is other content
    with pytest.raises(RuleViolation) as e:
        await orders.report_order(
            svc, shop_id=sid, external_id="c1", buyer_id="bo", lines=[orders.LineInput("tea", 1, 10_000)]
        )
    assert e.value.code == ErrorCode.ORDER_CONFLICT


async def test_RF3b_order_code_overrides_the_snapshot_only_with_the_setting(svc, shop):
    """RF-3 (b) with a live referrer: `order_code_overrides` off — the binding's referrer earns; on — this
    order's snapshot takes the code's distributor (and their referrer as level 2), the binding is unchanged,
    later orders without a code pay the bound referrer again; a code from the buyer's own downline is
    REFERRAL_CYCLE and the order is paid by the binding."""
    sid = shop.shop_id
    code = await _active(svc, sid, "ref", "dee", "top", "buyer")
    await distribution.bind_referrer(svc, shop_id=sid, user_id="dee", referrer_id="top")
    await distribution.bind_referrer(svc, shop_id=sid, user_id="buyer", referrer_id="ref")

    async def order(ext, code_=None):
        got: list = []
        o = await orders.report_order(
            svc,
            shop_id=sid,
            external_id=ext,
            buyer_id="buyer",
            invite_code=code_,
            lines=[orders.LineInput("tea", 1, 10_000)],
            attribution_out=got,
        )
        await pay(svc, sid, o.order_id, 10_000)
        return (got[0].outcome if got else None), await lines_of(svc, sid, o.order_id)

    assert await order("o1", code["dee"]) == ("UNCHANGED", {"ref": 1000})
    await shops.update_settings(svc, shop_id=sid, order_code_overrides=True)
    assert await order("o2", code["dee"]) == ("OVERRIDE", {"dee": 1000, "top": 500})
    assert (await distribution.binding_of(svc, shop_id=sid, user_id="buyer")).referrer_id == "ref"
    assert await order("o3") == (None, {"ref": 1000})
    await distribution.bind_referrer(svc, shop_id=sid, user_id="kid", referrer_id="buyer")
    kid = (
        await distribution.set_status(
            svc, shop_id=sid, user_id="kid", status=DistributorStatus.ACTIVE, actor="t", reason="t"
        )
    ).invite_code
    got: list = []
    o = await orders.report_order(
        svc,
        shop_id=sid,
        external_id="o4",
        buyer_id="buyer",
        invite_code=kid,
        lines=[orders.LineInput("tea", 1, 10_000)],
        attribution_out=got,
    )
    assert got[0].refusal == ErrorCode.REFERRAL_CYCLE
    await pay(svc, sid, o.order_id, 10_000)
    assert await lines_of(svc, sid, o.order_id) == {"ref": 1000}


async def test_RF3c_admin_rebinds_with_a_reason_under_rf1(svc, shop):
    """RF-3 (c): an admin rebinds (PERMANENT mode, a paid buyer, bind_new_users_only on) with a reason; the
    binding shows ADMIN, who and why; history keeps the replaced referrer; `referral.rebound` carries from,
    by and reason; no reason is INVALID_INPUT; a cycle is REFERRAL_CYCLE; past orders keep their snapshot."""
    sid = shop.shop_id
    await _active(svc, sid, "ref", "dee")
    await distribution.bind_referrer(svc, shop_id=sid, user_id="buyer", referrer_id="ref")
    o = await orders.report_order(
        svc, shop_id=sid, external_id="p1", buyer_id="buyer", lines=[orders.LineInput("tea", 1, 10_000)]
    )
    await pay(svc, sid, o.order_id, 10_000)
    await shops.update_settings(svc, shop_id=sid, bind_new_users_only=True)
    svc.clock.advance(timedelta(minutes=5))
    with pytest.raises(RuleViolation) as e:
        await distribution.rebind_referrer(
            svc, shop_id=sid, user_id="buyer", referrer_id="dee", actor="boss", reason="  "
        )
    assert e.value.code == ErrorCode.INVALID_INPUT
    r = await distribution.rebind_referrer(
        svc,
        shop_id=sid,
        user_id="buyer",
        referrer_id="dee",
        actor="boss",
        reason="customer asked",
        idempotency_key="rb-1",
    )
    assert r.changed
    again = await distribution.rebind_referrer(
        svc,
        shop_id=sid,
        user_id="buyer",
        referrer_id="dee",
        actor="boss",
        reason="customer asked",
        idempotency_key="rb-1",
    )
    assert again == r
    view = await distribution.binding_of(svc, shop_id=sid, user_id="buyer")
    assert (view.referrer_id, view.source, view.bound_by, view.reason) == ("dee", "ADMIN", "boss", "customer asked")
    assert [(h.referrer_id, h.previous_referrer_id) for h in view.history] == [("dee", "ref"), ("ref", None)]
    assert await _events(svc, sid, "referral.rebound") == [
        {
            "user_id": "buyer",
            "referrer_id": "dee",
            "from": "ref",
            "by": "boss",
            "reason": "customer asked",
            "currency": "CNY",
            "rule": "RF-3",
        }
    ]
    assert await lines_of(svc, sid, o.order_id) == {"ref": 1000}  # RF-2: the past order keeps its snapshot
    await distribution.bind_referrer(svc, shop_id=sid, user_id="dee", referrer_id="ref")
    with pytest.raises(RuleViolation) as e:
        await distribution.rebind_referrer(
            svc, shop_id=sid, user_id="ref", referrer_id="buyer", actor="boss", reason="x"
        )
    assert e.value.code == ErrorCode.REFERRAL_CYCLE
