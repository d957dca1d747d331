"""The one-group-at-a-time ORM applier: the reference tests/integration/test_worker_batch.py compares the
worker's batches (service/tx/group_batch.py) with, row by row.

It was the product's applier before issue 10 moved every group change to the lean path and the batch
writer; no use case calls it, so it lives with the test that needs it (issue 12, the cut: code only a test
runs is not product code). It writes through the ORM what the batch writes in Core.
"""

from __future__ import annotations

from sqlalchemy import select, text, update
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm.attributes import flag_modified

from engine import commission as cm
from engine import groupbuy as gb
from engine.distribution import DistributorStatus
from engine.errors import ErrorCode, refuse
from engine.events import EventType
from service.tx import commissions, events, fraud, lean
from service.tx.group_batch import draw_payload
from service.tx.ledger import LedgerBatch, flush_pending
from service.usecases.refunds import apply_refund
from store import mapping
from store.models import CampaignRow, CommissionLineRow, GroupRow, Order, SeatRow


async def lock_group(session: AsyncSession, shop_id: str, group_id: str, *, skip_locked: bool = False):
    """The group row under FOR UPDATE, its seats, and its engine value."""
    q = select(GroupRow).where(GroupRow.shop_id == shop_id, GroupRow.group_id == group_id)
    q = q.with_for_update(skip_locked=skip_locked)
    row = (await session.execute(q.execution_options(populate_existing=True))).scalar_one_or_none()
    if row is None:
        if skip_locked:
            return None
        raise refuse(ErrorCode.NOT_FOUND, "group not found", field="groupId")
    seats = list(
        (
            await session.execute(
                select(SeatRow)
                .where(SeatRow.shop_id == shop_id, SeatRow.group_id == group_id)
                .execution_options(populate_existing=True)
            )
        ).scalars()
    )
    return row, seats, mapping.group_from_rows(row, seats)


async def give_back_stock(session: AsyncSession, shop_id: str, campaign_id: str, user_id: str, quantity: int) -> None:
    await session.execute(
        text(
            "UPDATE campaigns SET stock_left = stock_left + :q WHERE shop_id = :s AND campaign_id = :c "
            "AND stock_left IS NOT NULL"
        ),
        {"q": quantity, "s": shop_id, "c": campaign_id},
    )
    await session.execute(
        text(
            "UPDATE campaign_user_units SET units = units - :q WHERE shop_id = :s AND campaign_id = :c AND user_id = :u"
        ),
        {"q": quantity, "s": shop_id, "c": campaign_id, "u": user_id},
    )


async def apply_decision(
    session: AsyncSession,
    *,
    c: CampaignRow,
    row: GroupRow,
    seat_rows: list[SeatRow],
    decision: gb.Decision,
    now,
    paid_amounts: dict[str, int] | None = None,
) -> None:
    """Write the engine's new group state and carry out its instructions, in this transaction, through the ORM.
    The reference of the worker's batches (module docstring)."""
    g = decision.group
    shop_id = c.shop_id
    by_order = {s.order_id: s for s in seat_rows}
    mapping.group_to_row(g, row)
    row.due_at = gb.next_due_at(g, mapping.campaign_from_row(c))
    flag_modified(row, "due_at")  # always an UPDATE: service.tx.lean's freshness check relies on the row's xmin
    for seat in g.seats:
        existing = by_order.get(seat.order_id)
        if existing is None or mapping.seat_from_row(existing) != seat:
            r = mapping.seat_to_row(shop_id, g.id, seat, existing)
            if existing is None:
                session.add(r)
    await session.flush()

    ledger = LedgerBatch(shop_id, now)
    orders: dict[str, Order] = {}

    async def order_of(order_id: str) -> Order:
        if order_id not in orders:
            o = await session.get(Order, (shop_id, order_id), with_for_update=True)
            assert o is not None, f"seat without order {order_id}"
            orders[order_id] = o
        return orders[order_id]

    group_events = []
    touched_users: set[str] = set()
    for ins in decision.instructions:
        if isinstance(ins, gb.OrderPaid):
            o = await order_of(ins.order_id)
            o.state, o.paid_amount, o.paid_at = "PAID", (paid_amounts or {}).get(o.order_id, o.goods_amount), now
            await commissions.record_paid(session, o, now)
            settings = await commissions.load_settings(session, shop_id)
            await commissions.admit_if_due(session, shop_id, o.buyer_id, settings, now)
            await commissions.on_order_paid(
                session, ledger, order=o, now=now, enabled=c.commission_enabled, releasable=False, admitted=False
            )
            touched_users |= {o.buyer_id, o.level1_id, o.level2_id}
            events.emit(
                session,
                shop_id=shop_id,
                type=EventType.ORDER_PAID,
                aggregate_type="group",
                aggregate_id=g.id,
                now=now,
                rule=ins.rule,
                payload={
                    "order_id": o.order_id,
                    "amount": o.paid_amount,
                    "role": ins.role.value,
                    "buyer_id": o.buyer_id,
                },
            )
        elif isinstance(ins, gb.RefundOwed) and ins.rule == "GB-10":
            o = await order_of(ins.order_id)  # a further payment of a seat already paid: never a purchase
            w = lean.Writes(shop_id, now, events.known_currency(shop_id))
            w.extra_payment_refund(g.id, ins)
            await session.flush()
            await w.run(session)
            session.expire(o)
        elif isinstance(ins, gb.RefundOwed):
            o = await order_of(ins.order_id)
            await apply_refund(session, ledger, order=o, amount=ins.amount, rule=ins.rule, full=ins.full, now=now)
            touched_users |= {o.buyer_id, o.level1_id, o.level2_id}
        elif isinstance(ins, gb.CancelOrder):
            o = await order_of(ins.order_id)
            if o.state == "CREATED":
                o.state, o.cancelled_at = "CANCELLED", now
            events.emit(
                session,
                shop_id=shop_id,
                type=EventType.SEAT_RELEASED,
                aggregate_type="group",
                aggregate_id=g.id,
                now=now,
                rule=ins.rule,
                payload={"order_id": o.order_id, "user_id": o.buyer_id},
            )
        elif isinstance(ins, gb.ReturnStock):
            o = await order_of(ins.order_id)
            await give_back_stock(session, shop_id, c.campaign_id, o.buyer_id, ins.quantity)
        else:
            group_events.append(ins)

    for ins in group_events:
        if isinstance(ins, gb.GroupFormed):
            await on_formed(session, ledger, c=c, g=g, ins=ins, now=now, order_of=order_of)
        elif isinstance(ins, gb.GroupFailed):
            await commissions.void_order_lines(
                session, ledger, order_ids=[s.order_id for s in g.seats], shop_id=shop_id, now=now, rule=ins.rule
            )
            events.emit(
                session,
                shop_id=shop_id,
                type=EventType.GROUP_FAILED,
                aggregate_type="group",
                aggregate_id=g.id,
                now=now,
                rule=ins.rule,
                payload={"group_id": g.id, "campaign_id": c.campaign_id},
            )
        elif isinstance(ins, gb.GroupOpened):
            events.emit(
                session,
                shop_id=shop_id,
                type=EventType.GROUP_OPENED,
                aggregate_type="group",
                aggregate_id=g.id,
                now=now,
                rule=ins.rule,
                payload={
                    "group_id": g.id,
                    "campaign_id": c.campaign_id,
                    "leader_user_id": g.leader_user_id,
                    "expires_at": g.expires_at.isoformat(),
                    "lottery_commitment": g.lottery_commitment,
                },
            )
        elif isinstance(ins, gb.GroupNudged):  # GB-15
            events.emit(
                session,
                shop_id=shop_id,
                type=(EventType.GROUP_ALMOST_FULL if ins.kind == "almost_full" else EventType.GROUP_EXPIRING_SOON),
                aggregate_type="group",
                aggregate_id=g.id,
                now=now,
                rule=ins.rule,
                payload={
                    "group_id": g.id,
                    "campaign_id": c.campaign_id,
                    "seats_missing": ins.seats_missing,
                    "expires_at": ins.expires_at.isoformat() if ins.expires_at else "",
                },
            )
        elif isinstance(ins, gb.GroupCancelled):
            events.emit(
                session,
                shop_id=shop_id,
                type=EventType.GROUP_CANCELLED,
                aggregate_type="group",
                aggregate_id=g.id,
                now=now,
                rule=ins.rule,
                payload={"group_id": g.id},
            )
        elif isinstance(ins, gb.LeaderChanged):
            events.emit(
                session,
                shop_id=shop_id,
                type=EventType.GROUP_LEADER_CHANGED,
                aggregate_type="group",
                aggregate_id=g.id,
                now=now,
                rule=ins.rule,
                payload={"group_id": g.id, "from": ins.old_user_id, "to": ins.new_user_id},
            )
    await ledger.flush(session)
    await commissions.evaluate_levels(session, ledger, shop_id=shop_id, user_ids=touched_users, now=now)
    await ledger.flush(session)
    await notify_group(session, shop_id, g.id)


async def notify_group(session: AsyncSession, shop_id: str, group_id: str) -> None:
    """Live progress (subscriptions) across processes: PostgreSQL NOTIFY, delivered at commit."""
    await session.execute(text("SELECT pg_notify('sharecart_groups', :p)"), {"p": f"{shop_id}:{group_id}"})


# ------------------------------------------------------------------ a group formed (what the batch writer's _formed does)
async def on_formed(session, ledger: LedgerBatch, *, c: CampaignRow, g: gb.Group, ins, now, order_of) -> None:
    """GB-4..GB-7 consequences outside the group: commission lines become releasable (CM-6), lines of
    already completed orders freeze, and the leader's reward is posted (团长佣金)."""
    paid = [s for s in g.seats if s.state == gb.SeatState.PAID]
    order_ids = [s.order_id for s in paid]
    await make_releasable(session, shop_id=c.shop_id, order_ids=order_ids)
    for oid in order_ids:
        o = await order_of(oid)
        if o.state == "COMPLETED":
            await commissions.freeze_order_lines(session, ledger, order=o, now=now)
    leader_seat = next((s for s in paid if s.user_id == g.leader_user_id), None)
    if c.leader_commission_bp and c.commission_enabled and leader_seat is not None:
        await post_leader_reward(
            session,
            ledger,
            leader_order=await order_of(leader_seat.order_id),
            leader_user_id=g.leader_user_id,
            group_id=g.id,
            rate_bp=c.leader_commission_bp,
            enabled=c.commission_enabled,
            now=now,
            other_orders=[await order_of(s.order_id) for s in paid if s.order_id != leader_seat.order_id],
        )
    events.emit(
        session,
        shop_id=c.shop_id,
        type=EventType.GROUP_FORMED,
        aggregate_type="group",
        aggregate_id=g.id,
        now=now,
        rule=ins.rule,
        payload={
            "group_id": g.id,
            "campaign_id": c.campaign_id,
            "tier_members": ins.tier_members,
            "member_unit_price": ins.member_unit_price,
            "leader_unit_price": ins.leader_unit_price,
            "winners": list(ins.winners),
            "order_ids": order_ids,
            "leader_order_id": leader_seat.order_id if leader_seat else None,
            "draw": draw_payload(g),
        },
    )


async def post_leader_reward(
    session,
    ledger: LedgerBatch,
    *,
    leader_order,
    leader_user_id: str,
    group_id: str,
    rate_bp: int | None,
    enabled: bool,
    other_orders,
    now,
) -> cm.CommissionLine | None:
    """团长佣金 at forming (GB-4): the engine decides the amount on the other paid members' net
    (`cm.leader_reward`); a positive one is a level-0 line on the leader's order, releasable at once, and the
    leader gets a balance record even when not a distributor (readings 5). `leader_order` None: the
    leader's seat is not paid, no reward."""
    amount, base = cm.leader_reward(
        rate_bp,
        enabled=enabled,
        leader_paid=leader_order is not None,
        other_members=[(o.paid_amount, o.refunded_amount) for o in other_orders],
    )
    if amount <= 0:
        return None
    await commissions.ensure_distributor(
        session, leader_order.shop_id, leader_user_id, status=DistributorStatus.NONE, now=now
    )
    line = commissions.post_commission_line(
        session,
        ledger,
        order=leader_order,
        beneficiary_id=leader_user_id,
        level=0,
        amount=amount,
        now=now,
        releasable=True,
        base=base,
        group_id=group_id,
        rule="GB-4",
    )
    line = await fraud.hold_if_group_flagged(
        session, ledger, line=line, shop_id=leader_order.shop_id, group_id=group_id
    )  # FR-3: a flagged group's reward is held too
    if leader_order.state == "COMPLETED":
        await commissions.freeze_order_lines(session, ledger, order=leader_order, now=now)
    return line


async def make_releasable(session: AsyncSession, *, shop_id: str, order_ids: list[str]) -> None:
    """CM-6 (`cm.mark_releasable` for every line of a formed group's orders): one UPDATE, no money moves."""
    if order_ids:
        await flush_pending(session)
        await session.execute(
            update(CommissionLineRow)
            .where(CommissionLineRow.shop_id == shop_id, CommissionLineRow.order_id.in_(order_ids))
            .values(releasable=True)
        )
