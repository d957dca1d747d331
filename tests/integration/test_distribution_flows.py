"""Distribution rules whose decisive part lives in the service and the database (DS-2, CM-1)."""

from __future__ import annotations

import re
import secrets

from engine.distribution import DistributorStatus
from service.tx import commissions
from service.usecases import distribution, orders
from service.usecases.shops import create_shop
from tests.integration.helpers import assert_ledger_consistent, pay

CODE = re.compile(r"^[23456789ABCDEFGHJKLMNPQRSTUVWXYZ]{10}$")


async def test_DS2_invite_code_unique_stable_public(svc, shop, monkeypatch):
    """DS-2: every invite code is unique within the shop (a UNIQUE (shop_id, invite_code) constraint; a
    colliding draw is retried), stable for the distributor (suspension, reinstatement and re-application
    keep it), resolvable by code alone, and built from no personal data."""
    sid = shop.shop_id
    users = [f"13800{i:06d}@mail.example" for i in range(25)]  # user ids that look like personal data
    rows = [
        await distribution.set_status(
            svc, shop_id=sid, user_id=u, status=DistributorStatus.ACTIVE, actor="admin", reason="t"
        )
        for u in users
    ]
    codes = [r.invite_code for r in rows]
    assert len(set(codes)) == len(codes)
    for u, code in zip(users, codes):
        assert CODE.match(code)  # 10 chars of an alphabet without 0/1/I/O
        assert not any(part.upper() in code for part in re.findall(r"[A-Za-z0-9]{3,}", u))

    # stable: status changes, re-application and the caller's own view never re-issue the code
    u0 = users[0]
    await distribution.set_status(
        svc, shop_id=sid, user_id=u0, status=DistributorStatus.SUSPENDED, actor="admin", reason="t"
    )
    await distribution.set_status(
        svc, shop_id=sid, user_id=u0, status=DistributorStatus.ACTIVE, actor="admin", reason="t"
    )
    await distribution.apply(svc, shop_id=sid, user_id=u0)
    assert (await distribution.my_distributor(svc, shop_id=sid, user_id=u0)).invite_code == codes[0]

    # public: the code alone (any case, stray spaces) resolves; what a storefront sees is valid + code only
    d = await distribution.resolve_invite(svc, shop_id=sid, code=f"  {codes[0].lower()} ")
    assert d is not None and d.user_id == u0
    assert await distribution.resolve_invite(svc, shop_id=sid, code="ZZZZZZZZZZ") is None
    from api.distribution import InviteInfo

    assert set(InviteInfo.__annotations__) == {"valid", "code"}

    # unique even when the random draw collides: the insert is refused by the database and redrawn
    draws = iter([codes[1], codes[2], "NEWC2DE234"])
    monkeypatch.setattr(commissions, "new_invite_code", lambda: next(draws))
    late = await distribution.set_status(
        svc, shop_id=sid, user_id="late", status=DistributorStatus.ACTIVE, actor="admin", reason="t"
    )
    assert late.invite_code == "NEWC2DE234"
    assert (await distribution.resolve_invite(svc, shop_id=sid, code=codes[1])).user_id == users[1]

    # within the shop: another shop may hold the same code, and never resolves this shop's codes (SH-1)
    other = await create_shop(svc, shop_id=f"t-{secrets.token_hex(5)}", name="Other", currency="CNY")
    assert await distribution.resolve_invite(svc, shop_id=other.shop_id, code=codes[3]) is None
    monkeypatch.setattr(commissions, "new_invite_code", lambda: codes[3])
    twin = await distribution.set_status(
        svc, shop_id=other.shop_id, user_id="twin", status=DistributorStatus.ACTIVE, actor="admin", reason="t"
    )
    assert twin.invite_code == codes[3]
    assert (await distribution.resolve_invite(svc, shop_id=sid, code=codes[3])).user_id == users[3]


async def test_CM1_base_excludes_shipping_and_tax(svc, shop):
    """CM-1: the base is what the buyer paid for goods after line discounts — shipping and tax never earn
    commission — and every refund on the order reduces it (goods first, docs/rules-readings-service.md 2)."""
    sid = shop.shop_id
    for user in ("top", "ref"):
        await distribution.set_status(
            svc, shop_id=sid, user_id=user, status=DistributorStatus.ACTIVE, actor="t", reason="t"
        )
    await distribution.bind_referrer(svc, shop_id=sid, user_id="ref", referrer_id="top")
    await distribution.bind_referrer(svc, shop_id=sid, user_id="buyer", referrer_id="ref")
    o = await orders.report_order(
        svc,
        shop_id=sid,
        external_id="cm1",
        buyer_id="buyer",
        lines=[orders.LineInput("tea", 2, 5000, discount=1000), orders.LineInput("cup", 1, 3000)],
        shipping_amount=800,
        tax_amount=1200,
    )
    await pay(svc, sid, o.order_id, amount=9000 + 3000 + 800 + 1200)
    # base = 2 × 5000 − 1000 + 3000 = 12000 (not 14000): level 1 10 % = 1200, level 2 5 % = 600
    assert (await distribution.get_distributor(svc, shop_id=sid, user_id="ref")).pending == 1200
    assert (await distribution.get_distributor(svc, shop_id=sid, user_id="top")).pending == 600
    await orders.refund_order(svc, shop_id=sid, order_id=o.order_id, amount=3000, provider_ref="cm1-r1")
    # R = 3000 of B = 12000: 1200 − floor(1200 × 3000 / 12000) = 900; 600 − 150 = 450
    assert (await distribution.get_distributor(svc, shop_id=sid, user_id="ref")).pending == 900
    assert (await distribution.get_distributor(svc, shop_id=sid, user_id="top")).pending == 450
    await orders.refund_order(svc, shop_id=sid, order_id=o.order_id, amount=11_000, provider_ref="cm1-r2")
    # all goods refunded (shipping and tax are considered refunded last): nothing stands
    assert (await distribution.get_distributor(svc, shop_id=sid, user_id="ref")).pending == 0
    assert (await distribution.get_distributor(svc, shop_id=sid, user_id="top")).pending == 0
    await assert_ledger_consistent(svc, sid)
