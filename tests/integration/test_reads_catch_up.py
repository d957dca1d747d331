"""GB-11: reads never show a state already past due, even when no worker has run. Orders follow
their group (a reservation released after its payment window); commission lines and balances
follow CM-6 (FROZEN → AVAILABLE at available_at). A read costs one indexed check when nothing is
due, whatever the number of rows, and writes only for what is due."""

from __future__ import annotations

from datetime import timedelta

from engine.distribution import DistributorStatus
from service.usecases import distribution, groups, orders
from service.reads import queries
from store.models import CommissionLineRow, Distributor, Order
from tests.integration.helpers import (
    assert_ledger_consistent,
    make_campaign,
    pay,
    raw_row,
    recorded_statements,
)

ORDER_READS = {
    "get_order_caught_up": lambda svc, shop_id, o: orders.get_order_caught_up(
        svc, shop_id=shop_id, order_id=o.order_id
    ),
    "list_orders_caught_up": lambda svc, shop_id, o: orders.list_orders_caught_up(
        svc, shop_id=shop_id, buyer_id=o.buyer_id
    ),
    "orders_by_ids_caught_up": lambda svc, shop_id, o: queries.orders_by_ids_caught_up(
        svc, shop_id=shop_id, ids=[o.order_id]
    ),
    "page_orders_caught_up": lambda svc, shop_id, o: queries.page_orders_caught_up(
        svc, shop_id=shop_id, buyer_id=o.buyer_id, limit=10, offset=0
    ),
}


def _state_of(result, order_id: str) -> str:
    if isinstance(result, Order):
        return result.state
    if isinstance(result, dict):
        return result[order_id].state
    rows = result[0] if isinstance(result, tuple) else result
    return next(r for r in rows if r.order_id == order_id).state


async def test_order_reads_show_a_released_reservation_without_a_worker_GB11(svc, shop):
    c = await make_campaign(svc, shop.shop_id, payment_window=timedelta(minutes=15))
    leader = await groups.open_group(svc, shop_id=shop.shop_id, campaign_id=c.campaign_id, user_id="lead")
    await pay(svc, shop.shop_id, leader)
    member = await groups.join_group(svc, shop_id=shop.shop_id, group_id=leader.group_id, user_id="m")
    seats = {}
    for name in ORDER_READS:  # a group of its own per read, so each read is the first to see its order
        seat = await groups.open_group(svc, shop_id=shop.shop_id, campaign_id=c.campaign_id, user_id=f"l-{name}")
        seats[name] = await raw_row(svc, Order, shop.shop_id, seat.order_id)
    svc.clock.advance(timedelta(minutes=16))  # every unpaid reservation is past its window; no worker runs
    for name, read in ORDER_READS.items():
        o = seats[name]
        assert (await raw_row(svc, Order, shop.shop_id, o.order_id)).state == "CREATED"  # stored: not yet applied
        assert _state_of(await read(svc, shop.shop_id, o), o.order_id) == "CANCELLED", name
    assert (await raw_row(svc, Order, shop.shop_id, member.order_id)).state == "CREATED"  # others' groups untouched
    assert (await orders.get_order_caught_up(svc, shop_id=shop.shop_id, order_id=member.order_id)).state == "CANCELLED"
    row, g = await groups.get_group_caught_up(svc, shop_id=shop.shop_id, group_id=leader.group_id)
    assert g.held_seats == 1 and g.state.value == "OPEN"


async def test_commission_reads_show_released_lines_and_balances_without_a_worker_CM6_GB11(svc, shop):
    reads = {
        "page_commission_lines": lambda d: queries.page_commission_lines(
            svc, shop_id=shop.shop_id, beneficiary_id=d, limit=10, offset=0
        ),
        "lines_by_ids": None,
        "distributors_by_ids": lambda d: queries.distributors_by_ids(svc, shop_id=shop.shop_id, ids=[d]),
        "get_distributor": lambda d: distribution.get_distributor(svc, shop_id=shop.shop_id, user_id=d),
    }
    lines = {}
    for i, name in enumerate(reads):
        d, b = f"d{i}", f"b{i}"
        await distribution.set_status(
            svc, shop_id=shop.shop_id, user_id=d, status=DistributorStatus.ACTIVE, actor="t", reason="t"
        )
        await distribution.bind_referrer(svc, shop_id=shop.shop_id, user_id=b, referrer_id=d)
        o = await orders.report_order(
            svc, shop_id=shop.shop_id, external_id=f"o{i}", buyer_id=b, lines=[orders.LineInput("p", 1, 10_000)]
        )
        await pay(svc, shop.shop_id, o.order_id, amount=10_000)
        await orders.complete_order(svc, shop_id=shop.shop_id, order_id=o.order_id)
        page, _ = await queries.page_commission_lines(svc, shop_id=shop.shop_id, beneficiary_id=d, limit=10, offset=0)
        assert [ln.state for ln in page] == ["FROZEN"]  # not yet due: the read changes nothing
        lines[name] = (d, page[0].line_id)
    reads["lines_by_ids"] = lambda d: queries.lines_by_ids(svc, shop_id=shop.shop_id, ids=[lines["lines_by_ids"][1]])
    svc.clock.advance(timedelta(days=8))  # past available_at (freeze_days = 7); no worker runs
    for name, read in reads.items():
        d, line_id = lines[name]
        assert (await raw_row(svc, CommissionLineRow, shop.shop_id, line_id)).state == "FROZEN"
        got = await read(d)
        if name == "page_commission_lines":
            assert [ln.state for ln in got[0]] == ["AVAILABLE"]
        elif name == "lines_by_ids":
            assert got[line_id].state == "AVAILABLE"
        else:
            dist = got[d] if isinstance(got, dict) else got
            assert (dist.frozen, dist.available) == (0, 1_000), name
        assert (await raw_row(svc, Distributor, shop.shop_id, d)).available == 1_000
    await assert_ledger_consistent(svc, shop.shop_id)


async def test_reads_check_due_work_in_one_query_and_write_only_what_is_due_GB11(svc, shop):
    c = await make_campaign(svc, shop.shop_id, payment_window=timedelta(minutes=15), tiers=[(30, 8000)])
    leader = await groups.open_group(svc, shop_id=shop.shop_id, campaign_id=c.campaign_id, user_id="lead")
    await pay(svc, shop.shop_id, leader)
    svc.clock.advance(timedelta(minutes=10))
    members = [
        await groups.join_group(svc, shop_id=shop.shop_id, group_id=leader.group_id, user_id=f"m{i}") for i in range(12)
    ]
    for m in members[:6]:
        await pay(svc, shop.shop_id, m)
    ids = [leader.order_id] + [m.order_id for m in members]

    async def statements_of(read):
        with recorded_statements(svc) as sent:
            await read()
        return sent

    few = await statements_of(lambda: queries.orders_by_ids_caught_up(svc, shop_id=shop.shop_id, ids=ids[:2]))
    many = await statements_of(lambda: queries.orders_by_ids_caught_up(svc, shop_id=shop.shop_id, ids=ids))
    assert len(few) == len(many) == 2  # the due check and the load: no query per order, no transaction
    assert not [q for q in many if "FOR UPDATE" in q]
    lines = await statements_of(
        lambda: queries.page_commission_lines(svc, shop_id=shop.shop_id, beneficiary_id="lead", limit=50, offset=0)
    )
    assert len(lines) == 3  # the due check, the count, the page

    svc.clock.advance(timedelta(minutes=20))  # the six unpaid reservations are now past their window
    due = await statements_of(lambda: queries.orders_by_ids_caught_up(svc, shop_id=shop.shop_id, ids=ids))
    assert len([q for q in due if "FROM groups" in q and "FOR UPDATE" in q]) == 1  # their one group, once
    got = await queries.orders_by_ids_caught_up(svc, shop_id=shop.shop_id, ids=ids)
    assert sorted(o.state for o in got.values()) == ["CANCELLED"] * 6 + ["PAID"] * 7


async def test_a_line_read_waits_for_a_due_line_another_transaction_holds_CM6_GB11(svc, shop):
    """CM-6/GB-11 (service/reads/queries.py `lines_by_ids`, `distributors_by_ids`: `wait=True`): a due FROZEN
    line that another transaction holds (a worker releasing it, a refund) is waited for, not skipped, so the
    read never answers it FROZEN (nor the balance with it frozen) after its available_at."""
    import asyncio

    from sqlalchemy import text

    sid = shop.shop_id
    line_of = {}
    for d in ("d1", "d2"):  # one line per read: the first read releases its own line only
        await distribution.set_status(
            svc, shop_id=sid, user_id=d, status=DistributorStatus.ACTIVE, actor="t", reason="t"
        )
        await distribution.bind_referrer(svc, shop_id=sid, user_id=f"b-{d}", referrer_id=d)
        o = await orders.report_order(
            svc, shop_id=sid, external_id=f"o-{d}", buyer_id=f"b-{d}", lines=[orders.LineInput("p", 1, 10_000)]
        )
        await pay(svc, sid, o.order_id, amount=10_000)
        await orders.complete_order(svc, shop_id=sid, order_id=o.order_id)
        page, _ = await queries.page_commission_lines(svc, shop_id=sid, beneficiary_id=d, limit=10, offset=0)
        line_of[d] = page[0].line_id
    svc.clock.advance(timedelta(days=8))  # due; no worker runs
    reads = {
        "d1": lambda: queries.lines_by_ids(svc, shop_id=sid, ids=[line_of["d1"]]),
        "d2": lambda: queries.distributors_by_ids(svc, shop_id=sid, ids=["d2"]),
    }
    got = {}
    for d, read in reads.items():
        async with svc.sessionmaker() as holder:
            await holder.execute(
                text("SELECT 1 FROM commission_lines WHERE shop_id = :s AND line_id = :l FOR UPDATE"),
                {"s": sid, "l": line_of[d]},
            )
            task = asyncio.create_task(read())
            await asyncio.sleep(0.3)
            assert not task.done(), d  # waiting for the holder, not answering past it
            await holder.rollback()
        got[d] = await task
    assert got["d1"][line_of["d1"]].state == "AVAILABLE"
    assert (got["d2"]["d2"].frozen, got["d2"]["d2"].available) == (0, 1_000)


async def test_a_balance_read_releases_due_lines_of_its_own_shop_only_CM6_SH1(svc, shop):
    """CM-6 on a read, SH-1: reading distributor "d"'s balance releases "d"'s due lines in this shop, never
    those of a "d" in another shop (a user id names a user within its shop; the other shop's worker or
    reads release them, and a transaction stays inside one shop)."""
    from service.usecases import shops

    other = await shops.create_shop(svc, shop_id=f"{shop.shop_id}-b", name="Other shop", currency="CNY")
    line_of = {}
    for sid in (shop.shop_id, other.shop_id):
        await distribution.set_status(
            svc, shop_id=sid, user_id="d", status=DistributorStatus.ACTIVE, actor="t", reason="t"
        )
        await distribution.bind_referrer(svc, shop_id=sid, user_id="b", referrer_id="d")
        o = await orders.report_order(
            svc, shop_id=sid, external_id="o", buyer_id="b", lines=[orders.LineInput("p", 1, 10_000)]
        )
        await pay(svc, sid, o.order_id, amount=10_000)
        await orders.complete_order(svc, shop_id=sid, order_id=o.order_id)
        page, _ = await queries.page_commission_lines(svc, shop_id=sid, beneficiary_id="d", limit=10, offset=0)
        line_of[sid] = page[0].line_id
    svc.clock.advance(timedelta(days=8))  # both lines due (freeze_days = 7); no worker runs
    got = await queries.distributors_by_ids(svc, shop_id=shop.shop_id, ids=["d"])
    assert (got["d"].frozen, got["d"].available) == (0, 1_000)
    assert (await raw_row(svc, CommissionLineRow, other.shop_id, line_of[other.shop_id])).state == "FROZEN"
    assert (await raw_row(svc, Distributor, other.shop_id, "d")).available == 0
    await assert_ledger_consistent(svc, shop.shop_id)
    await assert_ledger_consistent(svc, other.shop_id)
