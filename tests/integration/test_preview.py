"""CM-7 through the service and the real database: a preview is what the payment then posts, for any cart,
settings, levels and chain; for a campaign the group actually run lands within [least, most]; and a
preview writes nothing."""

from __future__ import annotations

import secrets
from hypothesis import HealthCheck, given, settings as hsettings
from hypothesis import strategies as st
from sqlalchemy import text

from engine.distribution import DistributionMode, DistributorStatus
from engine.levels import Level
from service.reads import preview
from service.usecases import distribution, groups, orders, shops
from tests.integration.helpers import make_campaign, pay
from tests.integration.test_rules_wired import lines_of

PRODUCTS = ["plain", "fixed", "gift"]


async def _shop(svc, *, mode: DistributionMode = DistributionMode.APPROVAL, **settings):
    shop = await shops.create_shop(svc, shop_id=f"pv-{secrets.token_hex(5)}", name="Preview", currency="CNY")
    sid = shop.shop_id
    await shops.update_settings(svc, shop_id=sid, mode=mode, **settings)
    await shops.upsert_product(svc, shop_id=sid, product_ref="fixed", level1_amount=70, level2_amount=30)
    await shops.upsert_product(svc, shop_id=sid, product_ref="gift", earns_commission=False)
    return sid


async def _chain(svc, sid, *, buyer_distributor: bool, top_grade: int = 0):
    for u in ("top", "ref") + (("buyer",) if buyer_distributor else ()):
        await distribution.set_status(
            svc, shop_id=sid, user_id=u, status=DistributorStatus.ACTIVE, actor="t", reason="t"
        )
    await distribution.bind_referrer(svc, shop_id=sid, user_id="ref", referrer_id="top")
    await distribution.bind_referrer(svc, shop_id=sid, user_id="buyer", referrer_id="ref")
    if top_grade:
        await distribution.set_level(svc, shop_id=sid, user_id="top", grade=top_grade, actor="t", reason="t")


cart_line = st.tuples(st.sampled_from(PRODUCTS), st.integers(1, 4), st.integers(0, 30_000), st.integers(0, 100))


@hsettings(
    max_examples=12, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow]
)
@given(
    cart=st.lists(cart_line, min_size=1, max_size=3),
    l1=st.integers(0, 4000),
    l2=st.integers(0, 4000),
    cap=st.integers(0, 6000),
    self_purchase=st.booleans(),
    buyer_distributor=st.booleans(),
    with_levels=st.booleans(),
)
async def test_CM7_preview_equals_what_the_payment_posts(
    svc, cart, l1, l2, cap, self_purchase, buyer_distributor, with_levels
):
    """CM-7: preview the signed-in buyer's cart, then report and pay it: every beneficiary's preview is the
    line the payment posted (levels, product overrides, cap, self-purchase), and the preview wrote nothing."""
    sid = await _shop(svc, level1_bp=l1, level2_bp=l2, max_total_bp=cap, self_purchase=self_purchase)
    if with_levels:
        await shops.set_levels(svc, shop_id=sid, levels=[Level(0, "entry", l1, l2), Level(1, "gold", 2500, 1500)])
    await _chain(svc, sid, buyer_distributor=buyer_distributor, top_grade=1 if with_levels else 0)
    lines = [preview.CartLine(ref, q, price, min(disc, price * q)) for ref, q, price, disc in cart]
    async with svc.sessionmaker() as s:
        before = (await s.execute(text("SELECT count(*) FROM events WHERE shop_id = :s"), {"s": sid})).scalar()
    got = await preview.commission_preview(svc, shop_id=sid, buyer_id="buyer", lines=lines)
    async with svc.sessionmaker() as s:
        assert (await s.execute(text("SELECT count(*) FROM events WHERE shop_id = :s"), {"s": sid})).scalar() == before
    ext = f"o-{secrets.token_hex(3)}"
    o = await orders.report_order(
        svc,
        shop_id=sid,
        external_id=ext,
        buyer_id="buyer",
        lines=[orders.LineInput(ln.product_ref, ln.quantity, ln.unit_price, ln.discount) for ln in lines],
    )
    if o.goods_amount > 0:
        await pay(svc, sid, o.order_id, o.goods_amount)
        posted = await lines_of(svc, sid, o.order_id)
    else:
        posted = {}
    assert {s.beneficiary_id: s.least for s in got.shares} == posted
    assert all(s.least == s.most for s in got.shares)


async def test_CM7_sharing_preview_for_a_new_buyer_everyone_mode_self_purchase(svc):
    """CM-7 "a buyer bound to D": in EVERYONE mode a new buyer is admitted at their first payment, so with
    self-purchase on the buyer is level 1 and D level 2 — the preview says so, and a new customer who binds
    to D and pays gets exactly that."""
    sid = await _shop(svc, mode=DistributionMode.EVERYONE, self_purchase=True, level1_bp=1000, level2_bp=500)
    d = await distribution.my_distributor(svc, shop_id=sid, user_id="dee")
    got = await preview.commission_preview(
        svc, shop_id=sid, buyer_id=None, bound_to="dee", lines=[preview.CartLine("plain", 2, 5000)]
    )
    assert [(s.level, s.beneficiary_id, s.least) for s in got.shares] == [(1, "", 1000), (2, "dee", 500)]
    by_code = await preview.commission_preview(
        svc, shop_id=sid, buyer_id=None, invite_code=d.invite_code.lower(), lines=[preview.CartLine("plain", 2, 5000)]
    )
    assert by_code == got
    await distribution.bind_referrer(svc, shop_id=sid, user_id="newbie", invite_code=d.invite_code)
    o = await orders.report_order(
        svc, shop_id=sid, external_id="n1", buyer_id="newbie", lines=[orders.LineInput("plain", 2, 5000)]
    )
    await pay(svc, sid, o.order_id, 10_000)
    assert await lines_of(svc, sid, o.order_id) == {"newbie": 1000, "dee": 500}


async def test_CM7_campaign_preview_bounds_the_group_that_forms(svc):
    """CM-7 for a campaign: tiers 2 @ 10000 and 3 @ 8000, leader discount 1000, level 1 at 10 %: least 700
    (the leader's seat after the GB-5 refund to 7000), most 1000 (a member at the first tier). A member of a
    group that forms at 3 ends at 800, within the bounds."""
    sid = await _shop(svc, level1_bp=1000, level2_bp=0)
    await _chain(svc, sid, buyer_distributor=False)
    c = await make_campaign(
        svc, sid, product_ref="plain", list_price=10_000, tiers=[(2, 10_000), (3, 8000)], leader_discount=1000
    )
    got = await preview.commission_preview(svc, shop_id=sid, buyer_id="buyer", campaign_id=c.campaign_id)
    assert [(s.level, s.beneficiary_id, s.least, s.most) for s in got.shares] == [(1, "ref", 700, 1000)]
    lead = await groups.open_group(svc, shop_id=sid, campaign_id=c.campaign_id, user_id="ann")
    await pay(svc, sid, lead)
    seats = [await groups.join_group(svc, shop_id=sid, group_id=lead.group_id, user_id=u) for u in ("buyer", "cy")]
    for seat in seats:
        await pay(svc, sid, seat)
    async with svc.sessionmaker() as s:
        standing = (
            await s.execute(
                text("SELECT standing FROM commission_lines WHERE shop_id = :s AND order_id = :o"),
                {"s": sid, "o": seats[0].order_id},
            )
        ).scalar_one()
    assert standing == 800 and 700 <= standing <= 1000


async def test_CM7_preview_refuses_bad_input_with_codes(svc):
    """ER-1: an unknown code, an unknown campaign, too many units, an empty or oversized cart are coded
    refusals."""
    import pytest

    from engine.errors import ErrorCode, RuleViolation

    sid = await _shop(svc)
    c = await make_campaign(svc, sid, product_ref="plain", max_quantity_per_order=2)
    cases = [
        (dict(invite_code="NOPE", lines=[preview.CartLine("plain", 1, 100)]), ErrorCode.INVALID_INVITE_CODE),
        (dict(campaign_id="nope"), ErrorCode.NOT_FOUND),
        (dict(campaign_id=c.campaign_id, quantity=3), ErrorCode.QUANTITY_LIMIT),
        (dict(lines=[]), ErrorCode.INVALID_INPUT),
        (dict(lines=[preview.CartLine("plain", 1, 1)] * 101), ErrorCode.INVALID_INPUT),
        (dict(lines=[preview.CartLine("plain", 1, 100, 101)]), ErrorCode.INVALID_INPUT),
        (dict(), ErrorCode.INVALID_INPUT),
    ]
    for kw, code in cases:
        with pytest.raises(RuleViolation) as e:
            await preview.commission_preview(svc, shop_id=sid, buyer_id="buyer", **kw)
        assert e.value.code == code, kw
