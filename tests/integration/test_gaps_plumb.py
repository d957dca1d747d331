"""Survivors of the per-module mutation runs of branch `plumb` (docs/testing.md, "Session 2026-12-02 c"), each killed by a test
through the service on a real PostgreSQL: what the mutant changed is checked as an outcome a caller can see."""

from __future__ import annotations

import asyncio
import logging
import secrets
import time
from datetime import datetime, timedelta

import pytest
from sqlalchemy import select, text

from service.jobs import worker
from service.usecases import demo, groups, shops
from store.models import CommissionLineRow, GroupRow
from tests.integration.helpers import make_campaign, raw_row

# ---------------------------------------------------------------- the demo shop (service/usecases/demo.py)

H, D = 3600, 86400
BACK = -10 * D  # docs/walkthrough.md: dave's order was delivered ten days ago (HISTORY = freeze_days + 3)


async def _demo_state(svc, sid: str) -> dict:
    """The whole seeded shop, row by row, with generated ids named by what they are and instants given in
    seconds from now (the service clock)."""
    now = svc.now()

    async def rows(sql: str) -> list[dict]:
        async with svc.sessionmaker() as s:
            return [dict(r) for r in (await s.execute(text(sql), {"s": sid})).mappings().all()]

    names: dict[str, str] = {}
    for c in await rows("select campaign_id, product_ref from campaigns where shop_id = :s"):
        names[c["campaign_id"]] = c["product_ref"]
    for g in await rows("select group_id, campaign_id from groups where shop_id = :s"):
        names[g["group_id"]] = "group of " + names[g["campaign_id"]]
    for o in await rows("select order_id, external_id, campaign_id from orders where shop_id = :s"):
        names[o["order_id"]] = o["external_id"] if o["campaign_id"] is None else "seat in " + names[o["campaign_id"]]
    for cl in await rows("select line_id, order_id, level from commission_lines where shop_id = :s"):
        names[cl["line_id"]] = f"L{cl['level']} of {names[cl['order_id']]}"

    def plain(row: dict) -> dict:
        out = {}
        for k, v in row.items():
            if isinstance(v, datetime):
                v = int((v - now).total_seconds())
            elif isinstance(v, str) and v in names:
                v = names[v]
            out[k] = v
        return out

    async def table(sql: str) -> list[dict]:
        return sorted((plain(r) for r in await rows(sql)), key=repr)

    return {
        "shop": await table(
            "select name, currency, timezone, created_at, overflow_reseat from shops where shop_id = :s"
        ),
        "settings": await table(
            "select mode, binding, binding_days, bind_new_users_only, level1_bp, level2_bp, self_purchase, freeze_days,"
            " max_total_bp, min_payout, payout_fee_bp, spend_threshold, order_code_overrides"
            " from distribution_settings where shop_id = :s"
        ),
        "levels": await table(
            "select grade, name, level1_bp, level2_bp, upgrade_bonus, min_direct_referrals, min_team_size,"
            " min_own_spend, min_own_orders, min_direct_sales, min_team_sales from levels where shop_id = :s"
        ),
        "products": await table(
            "select product_ref, title, category, earns_commission, level1_amount, level2_amount"
            " from products where shop_id = :s"
        ),
        "campaigns": await table(
            "select product_ref, title, category, list_price, tiers, variants, leader_discount, leader_commission_bp,"
            " duration_s, payment_window_s, starts_at, ends_at, stock, stock_left, per_user_limit,"
            " max_quantity_per_order, new_members_only, fill_at_expiry, lottery_winners, commission_enabled,"
            " created_at from campaigns where shop_id = :s"
        ),
        "groups": await table(
            "select group_id, campaign_id, tiers, leader_user_id, state, opened_at, expires_at, formed_at,"
            " held_seats, paid_seats from groups where shop_id = :s"
        ),
        "seats": await table(
            "select order_id, group_id, user_id, quantity, unit_price, role, state, reserved_at, pay_by, paid_at"
            " from seats where shop_id = :s"
        ),
        "orders": await table(
            "select order_id, buyer_id, kind, group_id, state, goods_amount, shipping_amount, paid_amount,"
            " refunded_amount, level1_id, level2_id, created_at, paid_at, completed_at from orders where shop_id = :s"
        ),
        "order_lines": await table(
            "select order_id, product_ref, quantity, unit_price, discount from order_lines where shop_id = :s"
        ),
        "payments": await table(
            "select provider_ref, order_id, amount, accepted, received_at from payments where shop_id = :s"
        ),
        "commission_lines": await table(
            "select line_id, beneficiary_id, base, original, standing, state, created_at, available_at"
            " from commission_lines where shop_id = :s"
        ),
        "distributors": await table(
            "select user_id, status, grade, bonuses_credited, approved_by, pending, frozen, available, in_payout,"
            " paid, fees from distributors where shop_id = :s"
        ),
        "audit": await table(
            "select user_id, action, from_value, to_value, actor, reason, at from distributor_audit where shop_id = :s"
        ),
        "bindings": await table(
            "select user_id, referrer_id, source, bound_at, expires_at from bindings where shop_id = :s"
        ),
        "ledger": [
            plain(r)
            for r in await rows(
                "select distributor_id, bucket, amount, kind, ref_id, created_at from ledger_entries"
                " where shop_id = :s order by seq"
            )
        ],
    }


def _sorted(rows: list[dict]) -> list[dict]:
    return sorted(rows, key=repr)


LADDER, PAIR = demo.LADDER_PRODUCT, demo.PAIR_PRODUCT
G_LADDER, G_PAIR = "group of " + LADDER, "group of " + PAIR
S_LADDER, S_PAIR = "seat in " + LADDER, "seat in " + PAIR

DEMO_STATE = {
    # docs/walkthrough.md and docs/console.md: Demo Tea House, CNY, Asia/Shanghai, created back then
    "shop": [
        {
            "name": "Demo Tea House",
            "currency": "CNY",
            "timezone": "Asia/Shanghai",
            "created_at": BACK,
            "overflow_reseat": False,
        }
    ],
    # 10 % / 5 %, freeze 7 days (CM-6), payouts from ¥1.00 with a 0.6 % fee (LG-2): the walkthrough's fee = 6
    "settings": [
        {
            "mode": "EVERYONE",
            "binding": "PERMANENT",
            "binding_days": None,
            "bind_new_users_only": False,
            "level1_bp": 1000,
            "level2_bp": 500,
            "self_purchase": False,
            "freeze_days": 7,
            "max_total_bp": 5000,
            "min_payout": 100,
            "payout_fee_bp": 60,
            "spend_threshold": 0,
            "order_code_overrides": False,
        }
    ],
    "levels": _sorted(
        [
            {
                "grade": 0,
                "name": "Member",
                "level1_bp": 1000,
                "level2_bp": 500,
                "upgrade_bonus": 0,
                "min_direct_referrals": 0,
                "min_team_size": 0,
                "min_own_spend": 0,
                "min_own_orders": 0,
                "min_direct_sales": 0,
                "min_team_sales": 0,
            },
            {
                "grade": 1,
                "name": "Silver",
                "level1_bp": 1200,
                "level2_bp": 600,
                "upgrade_bonus": 500,
                "min_direct_referrals": 2,
                "min_team_size": 0,
                "min_own_spend": 0,
                "min_own_orders": 0,
                "min_direct_sales": 0,
                "min_team_sales": 0,
            },
            {
                "grade": 2,
                "name": "Gold",
                "level1_bp": 1500,
                "level2_bp": 800,
                "upgrade_bonus": 2000,
                "min_direct_referrals": 5,
                "min_team_size": 0,
                "min_own_spend": 0,
                "min_own_orders": 0,
                "min_direct_sales": 0,
                "min_team_sales": 100_000,
            },
        ]
    ),
    "products": _sorted(
        [
            {"product_ref": "cup-celadon", "title": "Celadon cup", "category": "teaware"},
            {"product_ref": PAIR, "title": "Celadon cups, pair", "category": "teaware"},
            {"product_ref": LADDER, "title": "Oolong 250 g", "category": "tea"},
        ]
    ),
    # the ladder (2/3/5 people) and the plain 2-person campaign at ¥40.00 a seat, open since an hour, for 30 days
    "campaigns": _sorted(
        [
            {
                "product_ref": LADDER,
                "title": "Oolong ladder group",
                "category": "tea",
                "list_price": 9900,
                "tiers": [[2, 7900], [3, 6900], [5, 5900]],
                "variants": [],
                "leader_discount": 500,
                "leader_commission_bp": 300,
                "duration_s": 24 * H,
                "payment_window_s": 15 * 60,
                "starts_at": -H,
                "ends_at": 30 * D,
                "stock": 500,
                "stock_left": 499,
                "per_user_limit": 3,
                "max_quantity_per_order": 2,
                "new_members_only": False,
                "fill_at_expiry": None,
                "lottery_winners": 0,
                "commission_enabled": True,
                "created_at": 0,
            },
            {
                "product_ref": PAIR,
                "title": "Celadon cups, 2-person group",
                "category": "teaware",
                "list_price": 5000,
                "tiers": [[2, demo.PAIR_PRICE]],
                "variants": [],
                "leader_discount": 0,
                "leader_commission_bp": None,
                "duration_s": 24 * H,
                "payment_window_s": 30 * 60,
                "starts_at": -H,
                "ends_at": 30 * D,
                "stock": None,
                "stock_left": None,
                "per_user_limit": None,
                "max_quantity_per_order": 1,
                "new_members_only": False,
                "fill_at_expiry": None,
                "lottery_winners": 0,
                "commission_enabled": True,
                "created_at": 0,
            },
        ]
    ),
    # carol leads an open group in each, her seat paid: one more paid member forms the 2-person group (GB-4)
    "groups": _sorted(
        [
            {
                "group_id": G_LADDER,
                "campaign_id": LADDER,
                "tiers": [[2, 7900], [3, 6900], [5, 5900]],
                "leader_user_id": "carol",
                "state": "OPEN",
                "opened_at": 0,
                "expires_at": 24 * H,
                "formed_at": None,
                "held_seats": 1,
                "paid_seats": 1,
            },
            {
                "group_id": G_PAIR,
                "campaign_id": PAIR,
                "tiers": [[2, 4000]],
                "leader_user_id": "carol",
                "state": "OPEN",
                "opened_at": 0,
                "expires_at": 24 * H,
                "formed_at": None,
                "held_seats": 1,
                "paid_seats": 1,
            },
        ]
    ),
    "seats": _sorted(
        [
            {
                "order_id": S_LADDER,
                "group_id": G_LADDER,
                "user_id": "carol",
                "quantity": 1,
                "unit_price": 7400,
                "role": "LEADER",
                "state": "PAID",
                "reserved_at": 0,
                "pay_by": 15 * 60,
                "paid_at": 0,
            },
            {
                "order_id": S_PAIR,
                "group_id": G_PAIR,
                "user_id": "carol",
                "quantity": 1,
                "unit_price": 4000,
                "role": "LEADER",
                "state": "PAID",
                "reserved_at": 0,
                "pay_by": 30 * 60,
                "paid_at": 0,
            },
        ]
    ),
    # dave's order paid and completed ten days ago; carol's paid then, not delivered; carol's two seats today
    "orders": _sorted(
        [
            {
                "order_id": "demo-1001",
                "buyer_id": "dave",
                "kind": "PLAIN",
                "group_id": None,
                "state": "COMPLETED",
                "goods_amount": 9000,
                "shipping_amount": 800,
                "paid_amount": 9800,
                "refunded_amount": 0,
                "level1_id": "bob",
                "level2_id": "alice",
                "created_at": BACK,
                "paid_at": BACK,
                "completed_at": BACK,
            },
            {
                "order_id": "demo-1002",
                "buyer_id": "carol",
                "kind": "PLAIN",
                "group_id": None,
                "state": "PAID",
                "goods_amount": 9000,
                "shipping_amount": 0,
                "paid_amount": 9000,
                "refunded_amount": 0,
                "level1_id": "bob",
                "level2_id": "alice",
                "created_at": BACK,
                "paid_at": BACK,
                "completed_at": None,
            },
            {
                "order_id": S_LADDER,
                "buyer_id": "carol",
                "kind": "GROUP",
                "group_id": G_LADDER,
                "state": "PAID",
                "goods_amount": 7400,
                "shipping_amount": 0,
                "paid_amount": 7400,
                "refunded_amount": 0,
                "level1_id": "bob",
                "level2_id": "alice",
                "created_at": 0,
                "paid_at": 0,
                "completed_at": None,
            },
            {
                "order_id": S_PAIR,
                "buyer_id": "carol",
                "kind": "GROUP",
                "group_id": G_PAIR,
                "state": "PAID",
                "goods_amount": 4000,
                "shipping_amount": 0,
                "paid_amount": 4000,
                "refunded_amount": 0,
                "level1_id": "bob",
                "level2_id": "alice",
                "created_at": 0,
                "paid_at": 0,
                "completed_at": None,
            },
        ]
    ),
    "order_lines": _sorted(
        [
            {"order_id": "demo-1001", "product_ref": "cup-celadon", "quantity": 2, "unit_price": 4500, "discount": 0},
            {"order_id": "demo-1002", "product_ref": LADDER, "quantity": 1, "unit_price": 9900, "discount": 900},
            {"order_id": S_LADDER, "product_ref": LADDER, "quantity": 1, "unit_price": 7400, "discount": 0},
            {"order_id": S_PAIR, "product_ref": PAIR, "quantity": 1, "unit_price": 4000, "discount": 0},
        ]
    ),
    "payments": _sorted(
        [
            {
                "provider_ref": "demo-pay-1001",
                "order_id": "demo-1001",
                "amount": 9800,
                "accepted": True,
                "received_at": BACK,
            },
            {
                "provider_ref": "demo-pay-1002",
                "order_id": "demo-1002",
                "amount": 9000,
                "accepted": True,
                "received_at": BACK,
            },
            {
                "provider_ref": "demo-pay-group-ladder",
                "order_id": S_LADDER,
                "amount": 7400,
                "accepted": True,
                "received_at": 0,
            },
            {
                "provider_ref": "demo-pay-group-pair",
                "order_id": S_PAIR,
                "amount": 4000,
                "accepted": True,
                "received_at": 0,
            },
        ]
    ),
    # bob (Silver since dave bound: 12 %) and alice (5 %); dave's lines came due 3 days ago (CM-6)
    "commission_lines": _sorted(
        [
            {
                "line_id": "L1 of demo-1001",
                "beneficiary_id": "bob",
                "base": 9000,
                "original": 1080,
                "standing": 1080,
                "state": "AVAILABLE",
                "created_at": BACK,
                "available_at": -3 * D,
            },
            {
                "line_id": "L2 of demo-1001",
                "beneficiary_id": "alice",
                "base": 9000,
                "original": 450,
                "standing": 450,
                "state": "AVAILABLE",
                "created_at": BACK,
                "available_at": -3 * D,
            },
            *(
                {
                    "line_id": f"L{lv} of {o}",
                    "beneficiary_id": who,
                    "base": base,
                    "original": base * bp // 10_000,
                    "standing": base * bp // 10_000,
                    "state": "PENDING",
                    "created_at": at,
                    "available_at": None,
                }
                for o, base, at in (("demo-1002", 9000, BACK), (S_LADDER, 7400, 0), (S_PAIR, 4000, 0))
                for lv, who, bp in ((1, "bob", 1200), (2, "alice", 500))
            ),
        ]
    ),
    # docs/walkthrough.md step 2: bob's available = 1580 (1080 on dave's order + the Silver bonus of 500)
    "distributors": _sorted(
        [
            {
                "user_id": "alice",
                "status": "ACTIVE",
                "grade": 0,
                "bonuses_credited": [],
                "approved_by": "demo",
                "pending": 450 + 370 + 200,
                "frozen": 0,
                "available": 450,
                "in_payout": 0,
                "paid": 0,
                "fees": 0,
            },
            {
                "user_id": "bob",
                "status": "ACTIVE",
                "grade": 1,
                "bonuses_credited": [1],
                "approved_by": "demo",
                "pending": 1080 + 888 + 480,
                "frozen": 0,
                "available": 1580,
                "in_payout": 0,
                "paid": 0,
                "fees": 0,
            },
            *(
                {
                    "user_id": u,
                    "status": "ACTIVE",
                    "grade": 0,
                    "bonuses_credited": [],
                    "approved_by": "system",
                    "pending": 0,
                    "frozen": 0,
                    "available": 0,
                    "in_payout": 0,
                    "paid": 0,
                    "fees": 0,
                }
                for u in ("carol", "dave")
            ),
        ]
    ),
    "audit": _sorted(
        [
            *(
                {
                    "user_id": u,
                    "action": "STATUS",
                    "from_value": None,
                    "to_value": "ACTIVE",
                    "actor": "demo",
                    "reason": "demo seed",
                    "at": BACK,
                }
                for u in ("alice", "bob")
            ),
            {
                "user_id": "bob",
                "action": "LEVEL",
                "from_value": "0",
                "to_value": "1",
                "actor": "system",
                "reason": "LV-2 evaluation",
                "at": BACK,
            },
            *(
                {
                    "user_id": u,
                    "action": "STATUS",
                    "from_value": None,
                    "to_value": "ACTIVE",
                    "actor": "system",
                    "reason": "",
                    "at": BACK,
                }
                for u in ("carol", "dave")
            ),
        ]
    ),
    # the tree alice <- bob <- carol, dave
    "bindings": _sorted(
        [
            {"user_id": u, "referrer_id": r, "source": "INVITE_CODE", "bound_at": BACK, "expires_at": None}
            for u, r in (("bob", "alice"), ("carol", "bob"), ("dave", "bob"))
        ]
    ),
    "ledger": [
        {"distributor_id": who, "bucket": b, "amount": a, "kind": k, "ref_id": ref, "created_at": at}
        for who, b, a, k, ref, at in (
            ("bob", "AVAILABLE", 500, "UPGRADE_BONUS", "bob:1", BACK),
            ("alice", "PENDING", 450, "COMMISSION_POSTED", "L2 of demo-1001", BACK),
            ("bob", "PENDING", 1080, "COMMISSION_POSTED", "L1 of demo-1001", BACK),
            ("alice", "PENDING", -450, "COMMISSION_FROZEN", "L2 of demo-1001", BACK),
            ("alice", "FROZEN", 450, "COMMISSION_FROZEN", "L2 of demo-1001", BACK),
            ("bob", "PENDING", -1080, "COMMISSION_FROZEN", "L1 of demo-1001", BACK),
            ("bob", "FROZEN", 1080, "COMMISSION_FROZEN", "L1 of demo-1001", BACK),
            ("alice", "PENDING", 450, "COMMISSION_POSTED", "L2 of demo-1002", BACK),
            ("bob", "PENDING", 1080, "COMMISSION_POSTED", "L1 of demo-1002", BACK),
            ("alice", "FROZEN", -450, "COMMISSION_RELEASED", "L2 of demo-1001", 0),
            ("alice", "AVAILABLE", 450, "COMMISSION_RELEASED", "L2 of demo-1001", 0),
            ("bob", "FROZEN", -1080, "COMMISSION_RELEASED", "L1 of demo-1001", 0),
            ("bob", "AVAILABLE", 1080, "COMMISSION_RELEASED", "L1 of demo-1001", 0),
            ("alice", "PENDING", 370, "COMMISSION_POSTED", f"L2 of {S_LADDER}", 0),
            ("bob", "PENDING", 888, "COMMISSION_POSTED", f"L1 of {S_LADDER}", 0),
            ("alice", "PENDING", 200, "COMMISSION_POSTED", f"L2 of {S_PAIR}", 0),
            ("bob", "PENDING", 480, "COMMISSION_POSTED", f"L1 of {S_PAIR}", 0),
        )
    ],
}


async def test_cm6_lg2_gb4_the_seeded_demo_shop_is_the_one_the_walkthrough_describes_through_service(svc):
    """docs/walkthrough.md, docs/console.md (service/usecases/demo.py `seed_demo`): the whole seeded shop —
    settings, levels, products, both campaigns, carol's two open groups, the four orders and their payments,
    the commission lines and ledger entries, each distributor's balances, audit rows and the referral tree —
    made by the ordinary use cases ten days back, the clock then restored and dave's lines released (CM-6).
    A second start finds the same shop and seeds nothing."""
    sid = f"demo-{secrets.token_hex(4)}"
    t0 = svc.now()
    first = await demo.seed_demo(svc, shop_id=sid)
    assert svc.now() == t0  # the clock is restored exactly
    state = await _demo_state(svc, sid)
    for part, expected in DEMO_STATE.items():
        got = state[part]
        if part == "products":
            got = [{k: r[k] for k in ("product_ref", "title", "category")} for r in got]
            assert all(r["earns_commission"] and r["level1_amount"] is None for r in state[part])
        assert got == expected, part

    ids = await _demo_state_ids(svc, sid)
    assert (first["created"], first["shop"].shop_id) == (True, sid)
    assert {k: first[k] for k in ("campaign_id", "pair_campaign_id", "pair_group_id")} == ids
    again = await demo.seed_demo(svc, shop_id=sid)
    assert (again["created"], again["shop"].shop_id, {k: again[k] for k in ids}) == (False, sid, ids)
    assert await _demo_state(svc, sid) == state  # nothing seeded twice


async def _demo_state_ids(svc, sid: str) -> dict:
    async with svc.sessionmaker() as s:
        by_product = dict(
            (
                await s.execute(text("select product_ref, campaign_id from campaigns where shop_id = :s"), {"s": sid})
            ).all()
        )
        pair_group = (
            await s.execute(
                text("select group_id from groups where shop_id = :s and campaign_id = :c and state = 'OPEN'"),
                {"s": sid, "c": by_product[PAIR]},
            )
        ).scalar_one()
    return {"campaign_id": by_product[LADDER], "pair_campaign_id": by_product[PAIR], "pair_group_id": pair_group}


async def test_the_demo_on_a_shop_without_its_campaigns_finds_none_through_service(svc):
    """service/usecases/demo.py `_find`: a start that finds the shop but not its campaigns (a shop of that id
    made otherwise) seeds nothing and answers no campaign and no group."""
    sid = f"demo-{secrets.token_hex(4)}"
    await shops.create_shop(svc, shop_id=sid, name="Not the demo", currency="CNY")
    r = await demo.seed_demo(svc, shop_id=sid)
    assert (r["created"], r["shop"].name) == (False, "Not the demo")
    assert {k: r[k] for k in ("campaign_id", "pair_campaign_id", "pair_group_id")} == dict.fromkeys(
        ("campaign_id", "pair_campaign_id", "pair_group_id")
    )


async def test_cm6_seeding_the_demo_releases_only_the_demo_shops_due_lines_through_service(svc, shop):
    """service/usecases/demo.py `seed_demo`: the release of dave's lines names the demo shop; another shop's
    line that is due stays FROZEN for that shop's own worker pass (CM-6)."""
    from service.usecases import orders
    from tests.integration.test_rules_wired import chain, paid_order

    sid = shop.shop_id
    await shops.update_settings(svc, shop_id=sid, freeze_days=1, level2_bp=0)
    with demo.back_in_time(svc, timedelta(days=3)):
        await chain(svc, sid, "r1", "b1")
        o = await paid_order(svc, sid, "b1", orders.LineInput("x", 1, 10_000))
        await orders.complete_order(svc, shop_id=sid, order_id=o.order_id)
    await demo.seed_demo(svc, shop_id=f"demo-{secrets.token_hex(4)}")
    assert [st for _, st in (await _frozen_lines(svc, sid)).values()] == ["FROZEN"]
    assert await worker.release_due_lines(svc, shop_id=sid) == 1  # it was due: the shop's own pass takes it


# ---------------------------------------------------------------- service/metrics.py `database_gauges`


def _samples(registry) -> dict:
    return {(s.name, tuple(sorted(s.labels.items()))): s.value for m in registry.collect() for s in m.samples}


async def test_the_scrape_time_gauges_are_read_from_the_database_into_a_fresh_registry(svc, db_engine):
    """docs/operations.md: each scrape reads the outbox depth and lag, each worker queue's lag (0 when nothing
    is due, here by a service clock long before every row) and the freshest heartbeat's age (the database's
    clock; a beat stamped an hour ahead reads as -3600 s) into a registry of its own."""
    from service import metrics

    svc.clock.set(datetime(1990, 1, 1, tzinfo=svc.now().tzinfo))
    worker_id = f"gauge-test-{secrets.token_hex(4)}"
    async with db_engine.begin() as c:
        await c.execute(
            text(
                "INSERT INTO worker_heartbeats (worker_id, host, pid, started_at, beat_at)"
                " VALUES (:w, 'h', 1, now(), now() + interval '1 hour')"
            ),
            {"w": worker_id},
        )
    try:
        async with db_engine.connect() as c:
            pending = (
                await c.execute(text("SELECT count(*) FROM webhook_deliveries WHERE state = 'PENDING'"))
            ).scalar_one()
        first = _samples(await metrics.database_gauges(svc))
        again = _samples(await metrics.database_gauges(svc))  # a fresh registry each time: no duplicate series
    finally:
        async with db_engine.begin() as c:
            await c.execute(text("DELETE FROM worker_heartbeats WHERE worker_id = :w"), {"w": worker_id})
    age = first.pop(("sharecart_worker_heartbeat_age_seconds", ()))
    assert -3600 <= age < -3590
    assert first == {
        ("sharecart_outbox_pending_deliveries", ()): pending,
        ("sharecart_outbox_lag_seconds", ()): 0.0,
        ("sharecart_worker_lag_seconds", (("queue", "groups"),)): 0.0,
        ("sharecart_worker_lag_seconds", (("queue", "commission_lines"),)): 0.0,
    }
    assert set(again) == set(first) | {("sharecart_worker_heartbeat_age_seconds", ())}


# ---------------------------------------------------------------- service/jobs/heartbeat.py


class _Clock:
    def __init__(self, t: float) -> None:
        self.t = t

    def __call__(self) -> float:
        return self.t


async def _beats(db_engine, worker_id: str) -> list:
    async with db_engine.connect() as c:
        return list(
            (
                await c.execute(
                    text("SELECT host, pid, beat_at FROM worker_heartbeats WHERE worker_id = :w"), {"w": worker_id}
                )
            ).all()
        )


async def test_a_worker_beats_at_most_every_interval_prunes_day_old_beats_once_and_forgets_its_own(
    svc, db_engine, monkeypatch
):
    """service/jobs/heartbeat.py `Heartbeat`: the first beat writes the row (host name cut to 255 characters)
    and prunes rows a day old; a beat less than `interval` after the last writes nothing, one `interval` after
    moves `beat_at`; later beats prune nothing; `forget` removes the worker's own row only."""
    from service.jobs import heartbeat

    clock = _Clock(1000.0)
    monkeypatch.setattr(heartbeat.time, "monotonic", clock)
    monkeypatch.setattr(heartbeat.socket, "gethostname", lambda: "h" * 300)
    stale = [f"stale-{secrets.token_hex(4)}" for _ in range(2)]

    async def add_stale(worker_id: str) -> None:
        async with db_engine.begin() as c:
            await c.execute(
                text(
                    "INSERT INTO worker_heartbeats (worker_id, host, pid, started_at, beat_at)"
                    " VALUES (:w, 'old', 1, now() - interval '3 days', now() - interval '2 days')"
                ),
                {"w": worker_id},
            )

    await add_stale(stale[0])
    hb = heartbeat.Heartbeat(svc, interval=10.0)
    assert hb.worker_id.startswith("h" * 100 + ":") and len(hb.worker_id) <= 128
    try:
        await hb.beat()
        [(host, pid, first)] = await _beats(db_engine, hb.worker_id)
        assert (host, pid) == ("h" * 255, __import__("os").getpid())
        assert await _beats(db_engine, stale[0]) == []  # pruned by the first beat
        await add_stale(stale[1])
        clock.t = 1009.9
        await hb.beat()
        assert [r.beat_at for r in await _beats(db_engine, hb.worker_id)] == [first]
        clock.t = 1010.0
        await hb.beat()
        [(_, _, second)] = await _beats(db_engine, hb.worker_id)
        assert second > first
        assert len(await _beats(db_engine, stale[1])) == 1  # only the first beat prunes
    finally:
        await hb.forget()
        async with db_engine.begin() as c:
            await c.execute(text("DELETE FROM worker_heartbeats WHERE worker_id = :w"), {"w": stale[1]})
    assert await _beats(db_engine, hb.worker_id) == []


async def test_a_heartbeat_that_cannot_be_removed_is_logged_and_left_to_age(svc, caplog):
    """service/jobs/heartbeat.py `forget`: with the database away a clean stop still ends, with one warning."""
    from service.jobs import heartbeat

    class _Away:
        def begin(self):
            raise ConnectionRefusedError("away")

    hb = heartbeat.Heartbeat(svc, interval=1.0)
    hb.svc = type("S", (), {"engine": _Away()})()
    with caplog.at_level("WARNING", logger="sharecart.worker"):
        await hb.forget()
    assert [r.getMessage() for r in caplog.records] == [f"could not remove heartbeat {hb.worker_id}"]


async def test_the_freshest_heartbeat_age_is_none_without_beats_and_seconds_with_one(db_engine):
    """service/jobs/heartbeat.py `freshest_age` (what /ready compares): inside one transaction (rolled back),
    no rows → None; the freshest row 90 s old → 90.0."""
    from service.jobs.heartbeat import freshest_age

    async with db_engine.connect() as c:
        t = await c.begin()
        try:
            await c.execute(text("DELETE FROM worker_heartbeats"))
            assert await freshest_age(c) is None
            await c.execute(
                text(
                    "INSERT INTO worker_heartbeats (worker_id, host, pid, started_at, beat_at) VALUES"
                    " ('a', 'h', 1, now(), now() - interval '90 seconds'),"
                    " ('b', 'h', 2, now(), now() - interval '300 seconds')"
                )
            )
            age = await freshest_age(c)
            assert (type(age), age) == (float, 90.0)
        finally:
            await t.rollback()


# ---------------------------------------------------------------- service/jobs/worker.py


async def _unpaid_groups(svc, sid: str, n: int, *, gap=timedelta(0)) -> list:
    """`n` groups whose leaders never pay, opened `gap` apart; the clock is then moved past every payment
    window, so each is due (GB-2, GB-11) and the first opened is the most overdue."""
    c = await make_campaign(svc, sid)
    seats = []
    for i in range(n):
        seats.append(await groups.open_group(svc, shop_id=sid, campaign_id=c.campaign_id, user_id=f"u{i}"))
        svc.clock.advance(gap)
    svc.clock.advance(timedelta(minutes=30))
    return seats


async def _states(svc, sid: str, seats) -> list[str]:
    return [(await raw_row(svc, GroupRow, sid, s.group_id)).state for s in seats]


async def test_gb11_a_worker_pass_advances_at_most_its_limit_in_batches_and_only_the_shop_named(svc, shop):
    """GB-11 (service/jobs/worker.py `run_due_groups`): a pass advances at most `limit` groups, most overdue
    first, in batches of `batch`; named, it takes only that shop's groups; `run_due` adds the groups and the
    lines it did."""
    other = await shops.create_shop(svc, shop_id=f"t-{secrets.token_hex(5)}", name="Other", currency="CNY")
    seats = await _unpaid_groups(svc, shop.shop_id, 5, gap=timedelta(seconds=1))
    theirs = await _unpaid_groups(svc, other.shop_id, 1)
    assert await worker.run_due_groups(svc, shop_id=shop.shop_id, limit=3, batch=2) == 3
    assert await _states(svc, shop.shop_id, seats) == ["CANCELLED"] * 3 + ["PENDING"] * 2
    assert await _states(svc, other.shop_id, theirs) == ["PENDING"]
    assert await worker.run_due(svc, shop_id=shop.shop_id) == 2
    assert await _states(svc, other.shop_id, theirs) == ["PENDING"]
    assert await worker.run_due_groups(svc, shop_id=shop.shop_id) == 0
    # every shop with due work: the other one, and any a test before this one left due in the run's database
    assert await worker.run_due_groups(svc) >= 1
    assert await _states(svc, other.shop_id, theirs) == ["CANCELLED"]


async def test_gb11_a_failed_batch_is_redone_one_group_at_a_time_and_counts_those_that_went_through(
    svc, shop, monkeypatch
):
    """GB-11 (service/jobs/worker.py `_advance_due_batch`): one failing group fails its batch; the batch's
    groups are then advanced one a transaction, the count is of those that went through, and the failing one
    is due again one minute later."""
    from engine import groupbuy as gb

    sid = shop.shop_id
    seats = await _unpaid_groups(svc, sid, 4)
    real = gb.advance

    def broken_for_one(campaign, group, *, now):
        if group.id == seats[1].group_id:
            raise RuntimeError("this group cannot be advanced")
        return real(campaign, group, now=now)

    monkeypatch.setattr(gb, "advance", broken_for_one)
    assert await worker.run_due_groups(svc, shop_id=sid) == 3
    assert await _states(svc, sid, seats) == ["CANCELLED", "PENDING", "CANCELLED", "CANCELLED"]
    assert (await raw_row(svc, GroupRow, sid, seats[1].group_id)).due_at == svc.now() + timedelta(minutes=1)


async def test_gb11_a_claim_that_fails_is_raised_to_the_loop(svc, shop, monkeypatch):
    """GB-11 (service/jobs/worker.py `_advance_due_batch`): when the claim itself fails (the database away)
    nothing was taken, so the error goes to the worker's loop (its backoff) instead of being swallowed."""
    from service.tx import group_batch

    await _unpaid_groups(svc, shop.shop_id, 1)

    async def gone(*a, **kw):
        raise ConnectionResetError("gone")

    monkeypatch.setattr(group_batch, "claim_due", gone)
    with pytest.raises(ConnectionResetError):
        await asyncio.wait_for(worker.run_due_groups(svc, shop_id=shop.shop_id), 10)


async def _frozen_lines(svc, sid: str) -> dict[str, tuple]:
    async with svc.sessionmaker() as s:
        rows = (
            await s.execute(
                select(CommissionLineRow.beneficiary_id, CommissionLineRow.line_id, CommissionLineRow.state).where(
                    CommissionLineRow.shop_id == sid
                )
            )
        ).all()
    return {r.line_id: (r.beneficiary_id, r.state) for r in rows}


async def test_cm6_a_release_pass_takes_the_lines_due_by_now_of_the_users_or_lines_named(svc, shop):
    """CM-6 (service/jobs/worker.py `release_due_lines`): a line is released at its `available_at` exactly;
    named users or lines limit the pass to theirs (an empty list to none); the count is what was released, and
    `run_due` adds it to the groups'."""
    from service.usecases import orders
    from tests.integration.test_rules_wired import chain, paid_order

    sid = shop.shop_id
    await shops.update_settings(svc, shop_id=sid, freeze_days=1, level2_bp=0)
    await chain(svc, sid, "r1", "b1")
    await chain(svc, sid, "r2", "b2")
    await chain(svc, sid, "r3", "b3")
    for b in ("b1", "b2", "b3"):
        o = await paid_order(svc, sid, b, orders.LineInput("x", 1, 10_000))
        await orders.complete_order(svc, shop_id=sid, order_id=o.order_id)
    lines = {who: lid for lid, (who, _) in (await _frozen_lines(svc, sid)).items()}
    assert sorted(lines) == ["r1", "r2", "r3"]
    svc.clock.advance(timedelta(days=1))  # exactly every line's available_at
    assert await worker.release_due_lines(svc, shop_id=sid, user_ids=[]) == 0
    assert await worker.release_due_lines(svc, shop_id=sid, line_ids=[]) == 0
    assert await worker.release_due_lines(svc, shop_id=sid, user_ids=["r2", "r2"]) == 1
    assert await worker.release_due_lines(svc, shop_id=sid, line_ids=[lines["r3"]], wait=True) == 1
    assert {who: st for who, st in (await _frozen_lines(svc, sid)).values()} == {
        "r1": "FROZEN",
        "r2": "AVAILABLE",
        "r3": "AVAILABLE",
    }
    assert await worker.run_due(svc, shop_id=sid) == 1  # no group due, one line
    assert {st for _, st in (await _frozen_lines(svc, sid)).values()} == {"AVAILABLE"}


async def test_cm6_the_worker_skips_a_line_another_transaction_holds(svc, shop, db_engine):
    """CM-6 (service/jobs/worker.py `_release_in_shop`): the worker's pass skips a locked line (SKIP LOCKED)
    instead of waiting for it; a read that must not show a past-due state (`wait=True`) waits for it."""
    from service.usecases import orders
    from tests.integration.test_rules_wired import chain, paid_order

    sid = shop.shop_id
    await shops.update_settings(svc, shop_id=sid, freeze_days=1, level2_bp=0)
    await chain(svc, sid, "r1", "b1")
    o = await paid_order(svc, sid, "b1", orders.LineInput("x", 1, 10_000))
    await orders.complete_order(svc, shop_id=sid, order_id=o.order_id)
    svc.clock.advance(timedelta(days=2))
    async with db_engine.connect() as c:
        t = await c.begin()
        await c.execute(text("SELECT 1 FROM commission_lines WHERE shop_id = :s FOR UPDATE"), {"s": sid})
        assert await asyncio.wait_for(worker.release_due_lines(svc, shop_id=sid), 5) == 0
        waiting = asyncio.create_task(worker.release_due_lines(svc, shop_id=sid, wait=True))
        await asyncio.sleep(0.2)
        assert not waiting.done()
        await t.rollback()
    assert await asyncio.wait_for(waiting, 5) == 1


async def test_a_worker_loop_after_a_full_pass_starts_the_next_at_once_and_otherwise_pauses(monkeypatch):
    """service/jobs/worker.py `_every`: a pass that did `busy` items or more is followed by the next at once (a
    backlog), one that did fewer by the pause `interval`."""
    calls: list[float] = []
    stop = asyncio.Event()
    results = iter([3, 5, 2, 0])

    async def work():
        calls.append(time.monotonic())
        n = next(results)
        if n == 0:
            stop.set()
        return n

    # a 1 s pause against "at once" (< 0.5 s): a margin a loaded machine keeps (0.3 against 0.1 s failed there)
    await asyncio.wait_for(worker._every(1.0, stop, work, "test", busy=3), 10)
    gaps = [b - a for a, b in zip(calls, calls[1:])]
    assert len(calls) == 4
    assert gaps[0] < 0.5 and gaps[1] < 0.5 and gaps[2] >= 0.98, gaps


async def test_the_worker_loop_caps_every_loops_pause_at_backoff_max():
    """service/jobs/worker.py `worker_loop`: `backoff_max` caps the pause of each of its three loops (due work,
    webhook delivery, feed sequencing) while the database is away: 0.05 s caps make many tries in 0.8 s,
    where the default 30 s cap would double the pause to 0.8 s by the fifth."""
    from collections import Counter

    from service.context import Services
    from store.database import create_engine
    from tests.api.conftest import _free_port

    svc = Services(engine=create_engine(f"postgresql://postgres@127.0.0.1:{_free_port()}/nothing", pool_size=1))
    seen: list[str] = []

    class _H(logging.Handler):
        def emit(self, record):
            seen.append(record.getMessage())

    h = _H()
    loggers = [logging.getLogger(n) for n in ("sharecart.worker", "sharecart.webhooks")]
    for lg in loggers:
        lg.addHandler(h)
    stop = asyncio.Event()
    try:
        loop = asyncio.create_task(worker.worker_loop(svc, stop, interval=0.05, backoff_max=0.05))

        def per_loop() -> Counter:
            return Counter(m.split(":")[0] for m in list(seen) if "database unavailable" in m)

        # seven failures of each loop: ~0.4 s with the 0.05 s cap, >= 3.15 s if the pauses doubled uncapped
        # (0.05 … 1.6 s); waiting for the count rather than a fixed time keeps a loaded machine from failing it
        started = time.monotonic()
        while (len(per_loop()) < 3 or min(per_loop().values()) < 7) and time.monotonic() < started + 20:
            await asyncio.sleep(0.05)
        took = time.monotonic() - started
        stop.set()
        await asyncio.wait_for(loop, 5)
    finally:
        for lg in loggers:
            lg.removeHandler(h)
        await svc.engine.dispose()
    counts = per_loop()
    assert len(counts) == 3 and min(counts.values()) >= 7, counts
    assert took < 2, took  # uncapped: the six pauses alone take 3.15 s


# ---------------------------------------------------------------- service/jobs/feed.py


async def test_sequencing_a_shop_with_nothing_queued_positions_nothing_and_says_so(svc, shop):
    """service/jobs/feed.py `sequence`: once the shop's queued events have their positions, another call
    finds none queued and answers 0 (the usual case, without taking the head's lock)."""
    from service.jobs import feed
    from tests.integration.test_event_feed import _emit

    async with svc.sessionmaker() as s, s.begin():
        _emit(svc, s, shop.shop_id, "queued")
    assert await feed.sequence(svc, shop_id=shop.shop_id) == 1
    assert await feed.sequence(svc, shop_id=shop.shop_id) == 0


async def test_the_worker_loop_runs_each_loop_every_interval_and_a_full_pass_again_at_once(db_engine, monkeypatch):
    """service/jobs/worker.py `worker_loop`: due work, webhook delivery and feed sequencing each pass every
    `interval`; a due-work pass that did PASS_LIMIT items (a backlog) is followed by the next at once."""
    from service.context import Services
    from service.metrics import WORKER_PASSES

    loops = ("due work", "webhook delivery", "event feed sequencing")
    before = {w: WORKER_PASSES.labels(w, "ok")._value.get() for w in loops}
    calls: list[float] = []

    async def backlog_then_nothing(svc, *, shop_id=None):
        calls.append(time.monotonic())
        return 1 if len(calls) < 3 else 0

    monkeypatch.setattr(worker, "run_due", backlog_then_nothing)
    monkeypatch.setattr(worker, "PASS_LIMIT", 1)
    stop = asyncio.Event()
    loop = asyncio.create_task(worker.worker_loop(Services(engine=db_engine), stop, interval=0.4))

    def passes() -> dict:
        return {w: WORKER_PASSES.labels(w, "ok")._value.get() - before[w] for w in loops}

    # wait for the outcome, not a fixed time: on two cores shared with another test worker a loop may lag
    deadline = time.monotonic() + 20
    while (len(calls) < 4 or min(passes().values()) < 3) and time.monotonic() < deadline:
        await asyncio.sleep(0.05)
    stop.set()
    await asyncio.wait_for(loop, 5)
    assert all(n >= 3 for n in passes().values()), passes()  # every loop keeps passing
    assert calls[2] - calls[1] < 0.2 <= calls[3] - calls[2], calls  # a full pass is followed by the next at once
