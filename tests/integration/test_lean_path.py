"""Issue 10: the group-buy hot paths ask the database twice — one statement loads what the engine needs
(under the group's row lock), one writes its decision — and answer with what they wrote, so the API
reads nothing back. Counted with the service's own statement recorder (BEGIN/COMMIT are not statements).
"""

from __future__ import annotations

from datetime import timedelta

from service.usecases import groups
from service.jobs import worker
from service.uow import unit_of_work
from tests.integration.helpers import make_campaign, pay, raw_row, recorded_statements
from store.models import GroupRow, Order


async def test_open_join_leave_and_expiry_are_one_read_and_one_write_each_GB1_GB2_GB8_GB11(svc, shop):
    c = await make_campaign(svc, shop.shop_id, tiers=[(3, 8000)], stock=10, per_user_limit=2)
    with recorded_statements(svc) as seen:
        lead = await groups.open_group(svc, shop_id=shop.shop_id, campaign_id=c.campaign_id, user_id="L")
    assert len(seen) == 2, seen
    assert seen[0].lstrip().startswith("SELECT") and seen[1].lstrip().startswith("WITH")
    await pay(svc, shop.shop_id, lead)

    with recorded_statements(svc) as seen:
        m = await groups.join_group(svc, shop_id=shop.shop_id, group_id=lead.group_id, user_id="m")
    assert len(seen) == 2, seen
    assert "FOR UPDATE OF g" in seen[0] and seen[1].lstrip().startswith("WITH")
    # the typed result is what the API renders: the group with the new seat, the order as written
    assert m.group.seat_for_order(m.order_id).user_id == "m" and m.group.held_seats == 2
    assert m.order.state == "CREATED" and m.order.goods_amount == m.amount == 8000
    row = await raw_row(svc, Order, shop.shop_id, m.order_id)
    assert (row.state, row.goods_amount, row.buyer_id, row.group_id) == ("CREATED", 8000, "m", lead.group_id)

    with recorded_statements(svc) as seen:
        await groups.leave_group(svc, shop_id=shop.shop_id, group_id=lead.group_id, user_id="m")
    assert len(seen) == 2, seen
    assert (await raw_row(svc, Order, shop.shop_id, m.order_id)).state == "CANCELLED"

    late = await groups.open_group(svc, shop_id=shop.shop_id, campaign_id=c.campaign_id, user_id="late")
    svc.clock.advance(timedelta(hours=1))  # the unpaid leader's payment window has passed
    async with unit_of_work(svc) as s:
        with recorded_statements(svc) as seen:
            claimed = await groups.claim_due_group(s, shop_id=shop.shop_id, now=svc.now())
            assert claimed.group.id == late.group_id
            await groups.advance_claimed(s, claimed, now=svc.now())
    assert len(seen) == 2, seen
    assert "SKIP LOCKED" in seen[0]
    assert (await raw_row(svc, GroupRow, shop.shop_id, late.group_id)).state == "CANCELLED"
    assert await worker.run_due_groups(svc, shop_id=shop.shop_id) == 0


async def test_a_payment_that_takes_the_last_seat_and_forms_the_group_asks_seven_times_GB2_GB4_CM6(svc, shop):
    """confirmPayment of a group order, with no ORM unit of work: the order and the payment's claim (GB-10), the
    group under its lock, its orders and lines under lock (with the buyer's DS-1 facts), the commission context
    (PAID_CONTEXT: RF-2/RF-3, FR rules), one write (seat, group, order, counters, commission lines, ledger,
    events, NOTIFY), the claim's outcome."""
    from service.usecases import distribution
    from engine.distribution import DistributorStatus

    await distribution.set_status(
        svc, shop_id=shop.shop_id, user_id="ref", status=DistributorStatus.ACTIVE, actor="t", reason="t"
    )
    await distribution.bind_referrer(svc, shop_id=shop.shop_id, user_id="m", referrer_id="ref")
    c = await make_campaign(svc, shop.shop_id, tiers=[(2, 8000)])
    lead = await groups.open_group(svc, shop_id=shop.shop_id, campaign_id=c.campaign_id, user_id="L")
    await pay(svc, shop.shop_id, lead)
    m = await groups.join_group(svc, shop_id=shop.shop_id, group_id=lead.group_id, user_id="m")
    with recorded_statements(svc) as seen:
        assert (await pay(svc, shop.shop_id, m))["accepted"] is True
    assert [q.split()[0] for q in seen] == ["SELECT", "INSERT", "SELECT", "WITH", "WITH", "WITH", "UPDATE"], [
        q[:60] for q in seen
    ]
    assert "FOR UPDATE OF g" in seen[2] and "FOR UPDATE" in seen[3]
    assert (await raw_row(svc, GroupRow, shop.shop_id, lead.group_id)).state == "FORMED"
    o = await raw_row(svc, Order, shop.shop_id, m.order_id)
    assert (o.state, o.paid_amount, o.level1_id, o.source) == ("PAID", 8000, "ref", "GROUP_INVITE")


async def test_a_plain_payment_loads_once_and_writes_once_OR2_CM4(svc, shop):
    """confirmPayment of a plain order: the order and the payment's claim (GB-10), the order under lock with its
    DS-1 facts, the commission context (PAID_CONTEXT), one write, the claim's outcome; no ORM unit of work."""
    from service.usecases import orders

    o = await orders.report_order(
        svc, shop_id=shop.shop_id, external_id="e1", buyer_id="b", lines=[orders.LineInput("p", 1, 5000)]
    )
    await pay(svc, shop.shop_id, o.order_id, amount=5000)  # the buyer's first order (DS-1 may admit here)
    o2 = await orders.report_order(
        svc, shop_id=shop.shop_id, external_id="e2", buyer_id="b", lines=[orders.LineInput("p", 1, 5000)]
    )
    with recorded_statements(svc) as seen:
        assert (await pay(svc, shop.shop_id, o2.order_id, amount=5000))["accepted"] is True
    assert [q.split()[0] for q in seen] == ["SELECT", "INSERT", "WITH", "WITH", "WITH", "UPDATE"], [
        q[:60] for q in seen
    ]
    assert "FOR UPDATE" in seen[2]
    row = await raw_row(svc, Order, shop.shop_id, o2.order_id)
    assert (row.state, row.paid_amount) == ("PAID", 5000)


async def test_a_payment_that_moves_a_level_writes_it_in_one_more_statement_LV2_LV4(svc, shop):
    """LV-2/LV-4 at payment, no ORM row: after the payment's write, one statement loads the levels and the
    distributors' metrics (LEVEL_CONTEXT), the engine decides, and one more writes the new grade and bonuses,
    the audit row, the level event and the bonus posting (the balances UPDATE carries the grade)."""
    from sqlalchemy import select

    from engine.distribution import DistributorStatus
    from engine.levels import Level
    from service.usecases import distribution, orders, shops
    from store.models import Distributor, DistributorAudit, Event

    sid = shop.shop_id
    await shops.set_levels(
        svc,
        shop_id=sid,
        levels=[
            Level(grade=0, name="entry", level1_bp=1000, level2_bp=500),
            Level(grade=1, name="one", level1_bp=1000, level2_bp=500, upgrade_bonus=300, min_own_spend=5_000),
        ],
    )
    await distribution.set_status(svc, shop_id=sid, user_id="b", status=DistributorStatus.ACTIVE, actor="t", reason="t")
    o = await orders.report_order(
        svc, shop_id=sid, external_id="e1", buyer_id="b", lines=[orders.LineInput("p", 1, 5000)]
    )
    with recorded_statements(svc) as seen:
        assert (await pay(svc, sid, o.order_id, amount=5000))["accepted"] is True
    seen = [q for q in seen if "shops.currency" not in q]  # the shop's first event in this process (SH-2)
    assert [q.split()[0] for q in seen] == ["SELECT", "INSERT", "WITH", "WITH", "WITH", "SELECT", "WITH", "UPDATE"], [
        q[:60] for q in seen
    ]
    assert "LATERAL" in seen[5] and "distributor_audit" in seen[6] and "grade = COALESCE" in seen[6]
    d = await raw_row(svc, Distributor, sid, "b")
    assert (d.grade, d.bonuses_credited, d.available) == (1, [1], 300)
    async with svc.sessionmaker() as s:
        audit = (
            (
                await s.execute(
                    select(DistributorAudit).where(DistributorAudit.shop_id == sid, DistributorAudit.action == "LEVEL")
                )
            )
            .scalars()
            .all()
        )
        ev = (
            (await s.execute(select(Event).where(Event.shop_id == sid, Event.type == "distributor.level_changed")))
            .scalars()
            .all()
        )
    assert [(a.user_id, a.from_value, a.to_value, a.actor) for a in audit] == [("b", "0", "1", "system")]
    assert [(e.aggregate_id, e.payload["from"], e.payload["to"], e.rule) for e in ev] == [("b", 0, 1, "LV-2")]
