"""Group-buy use cases (GB-1..GB-11): each loads what the rules need, calls `engine.groupbuy`,
and writes its decision in one transaction.

Concurrency: every change to a group first takes the group row's lock (SELECT … FOR UPDATE),
so the engine decides on a state no one else can change underneath it — seats ≤ capacity
and one seat per user hold under any interleaving (also backed by a partial unique index).
Stock is a guarded UPDATE (stock_left >= q) and the per-user limit a guarded upsert, so
they hold across groups of the same campaign without a campaign-wide lock.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass, replace

from sqlalchemy import select, text
from sqlalchemy.ext.asyncio import AsyncSession

from engine import groupbuy as gb
from engine.errors import ErrorCode, RuleViolation, refuse
from engine.events import EventType
from engine.referral import current_referrer
from engine.variants import assign_variant
from service.tx import group_batch, lean
from service.context import Services
from service.tx.idempotency import once
from service.tx.ids import new_id
from service.uow import unit_of_work
from store import mapping
from store.models import CampaignRow, GroupRow, SeatRow


@dataclass(frozen=True)
class SeatResult:
    """A reserved seat; `group` and `order` as this transaction committed them, for the API to render
    without reading them back (None when an idempotency key replayed an earlier answer)."""

    group_id: str
    order_id: str
    amount: int
    group: gb.Group | None = None
    order: lean.OrderView | None = None
    attribution: object = None  # RF-3 (a): service.distribution.Attribution when a code came with the seat


# ------------------------------------------------------------------ loading
async def load_campaign(session: AsyncSession, shop_id: str, campaign_id: str) -> CampaignRow:
    row = await session.get(CampaignRow, (shop_id, campaign_id))
    if row is None:
        raise refuse(ErrorCode.NOT_FOUND, "campaign not found", field="campaignId")
    return row


# ------------------------------------------------------------------ the lean path (issue 10)
def _refuse_failed_guards(checks: dict[str, int]) -> None:
    """The write statement's guards (GB-1 stock, GB-2 per-user limit): a guard that matched no row refuses,
    and the transaction rolls back whole."""
    for name, matched in checks.items():
        if matched:
            continue
        if name.startswith("ok_stock"):
            raise refuse(
                ErrorCode.OUT_OF_STOCK,
                "the campaign has no stock left for this quantity",
                field="quantity",
                rule="GB-1",
            )
        raise refuse(
            ErrorCode.PER_USER_LIMIT,
            "this would exceed the per-user limit of the campaign",
            field="quantity",
            rule="GB-2",
        )


async def _carry_out(
    session: AsyncSession,
    ld: lean.Loaded,
    decision: gb.Decision,
    w: lean.Writes,
    *,
    now,
    paid_amounts: dict[str, int] | None = None,
) -> None:
    """Write `decision` on the loaded group: in one statement when every instruction is lean; otherwise the
    use case's own rows in one statement, then the money-moving instructions through `service.group_batch`."""
    w.campaign = ld.campaign
    if lean.lean_enough(decision):
        w.apply(ld.group, decision, ld.campaign_row.campaign_id)
        w.update_group(decision.group)
        _refuse_failed_guards(await w.run(session))
        return
    _refuse_failed_guards(await w.run(session))
    # payment, formation, failure, refunds owed: service/group_batch.py, a batch of this one group
    await group_batch.carry_out(session, ld.shop_id, now, [(ld, decision)], paid_amounts=paid_amounts)


def _check_user_id(user_id: str) -> None:
    if not user_id or len(user_id) > 64:
        raise refuse(ErrorCode.INVALID_INPUT, "user id must be 1-64 characters", field="userId")


# ------------------------------------------------------------------ use cases
async def open_group(
    svc: Services,
    *,
    shop_id: str,
    campaign_id: str,
    user_id: str,
    quantity: int = 1,
    idempotency_key: str | None = None,
    invite_code: str | None = None,
) -> SeatResult:
    """GB-1: reserve the first seat as leader; the group is PENDING until the leader pays.
    One read (campaign, currency, the user's units and binding), one write statement. `invite_code` (RF-3 a):
    the campaign's share link carried the sharer's code — tried first (`_attribute`)."""
    return await _take_seat(
        svc,
        shop_id=shop_id,
        user_id=user_id,
        scope="open_group",
        target={"campaign_id": campaign_id},
        quantity=quantity,
        idempotency_key=idempotency_key,
        invite_code=invite_code,
        seat_in=_open_in,
    )


def new_lottery_seed(user_id: str) -> str:
    """GB-7 v2: a group's seed — 32 bytes from the OS CSPRNG, whoever opens it (`user_id` is there only so a
    test comparing two runs of one scenario can make the seeds of both the same)."""
    return secrets.token_hex(32)


async def _open_in(
    s: AsyncSession, *, shop_id: str, campaign_id: str, user_id: str, quantity: int, now, made: dict
) -> dict:
    """GB-1 inside the caller's transaction (open_group, quick_join's openIfNone)."""
    lc = await lean.load_campaign(s, shop_id, campaign_id, user_id=user_id)
    if lc is None:
        raise refuse(ErrorCode.NOT_FOUND, "campaign not found", field="campaignId")
    c = lc.campaign_row
    variant = assign_variant(campaign_id, user_id, lc.campaign.variants)
    group_id, order_id = new_id("grp_"), new_id("ord_")
    # GB-7 v2: the group's own seed, from the OS CSPRNG, unpredictable and independent of every other
    seed = new_lottery_seed(user_id) if lc.campaign.lottery_winners > 0 else None
    decision = gb.open_group(
        lc.campaign,
        group_id=group_id,
        order_id=order_id,
        user_id=user_id,
        quantity=quantity,
        now=now,
        stock_left=c.stock_left,
        user_units_held=lc.user_units,
        variant=variant,
        lottery_seed=seed,
    )
    g = decision.group
    w = lean.Writes(shop_id, now, lc.currency, campaign=lc.campaign)
    w.ensure_user(user_id)
    w.take_stock(c, user_id, quantity)
    w.insert_group(g)
    source = "REFERRAL" if current_referrer(lc.binding, now) else "NONE"
    made["order"] = w.new_order(
        c, order_id=order_id, group_id=group_id, user_id=user_id, seat=g.seats[0], source=source
    )
    w.seats(None, g)
    w.notify.append(g.id)
    _refuse_failed_guards(await w.run(s))
    made["group"] = g
    return {"group_id": group_id, "order_id": order_id, "amount": g.seats[0].amount}


async def join_group(
    svc: Services,
    *,
    shop_id: str,
    group_id: str,
    user_id: str,
    quantity: int = 1,
    idempotency_key: str | None = None,
    invite_code: str | None = None,
) -> SeatResult:
    """GB-2: reserve a seat in an OPEN group. One read under the group's row lock (group, seats, campaign,
    currency, the user's units and paid orders), one write statement (user, stock and per-user guards,
    order and line, seat, group, events of the releases the catch-up made, NOTIFY)."""
    return await _take_seat(
        svc,
        shop_id=shop_id,
        user_id=user_id,
        scope="join_group",
        target={"group_id": group_id},
        quantity=quantity,
        idempotency_key=idempotency_key,
        invite_code=invite_code,
        seat_in=_join_in,
    )


async def _take_seat(
    svc: Services,
    *,
    shop_id: str,
    user_id: str,
    scope: str,
    target: dict[str, str],
    quantity: int,
    idempotency_key: str | None,
    invite_code: str | None,
    seat_in,
) -> SeatResult:
    """The shell open_group and join_group share: one unit of work, idempotent per (scope, user) (GB-10), the
    RF-3 (a) attribution of `invite_code` first — before the group's lock, as the binding takes the shop's
    binding lock — then `seat_in` (`_open_in` or `_join_in`) on `target` (the campaign or the group)."""
    _check_user_id(user_id)
    now = svc.now()
    made: dict = {}
    async with unit_of_work(svc) as s:

        async def run():
            if invite_code:
                made["attribution"] = await _attribute(s, shop_id, user_id, invite_code, now, **target)
            return await seat_in(s, shop_id=shop_id, user_id=user_id, quantity=quantity, now=now, made=made, **target)

        r = await once(
            s,
            shop_id=shop_id,
            scope=f"{scope}:{user_id}",
            key=idempotency_key,
            request={**target, "quantity": quantity, **({"invite_code": invite_code} if invite_code else {})},
            now=now,
            run=run,
        )
    return SeatResult(**r, group=made.get("group"), order=made.get("order"), attribution=made.get("attribution"))


async def _attribute(
    s: AsyncSession,
    shop_id: str,
    user_id: str,
    invite_code: str,
    now,
    *,
    campaign_id: str | None = None,
    group_id: str | None = None,
):
    """RF-3 (a): a group share link carried a member's (or the campaign sharer's) invite code: bind the user
    to its distributor (source GROUP_INVITE) under RF-1; a refused or unknown code leaves the join as it is."""
    from engine.referral import BindingSource
    from service.usecases.distribution import attribute_in_session

    if campaign_id is None and group_id is not None:
        campaign_id = (
            await s.execute(
                text("SELECT campaign_id FROM groups WHERE shop_id = :s AND group_id = :g"),
                {"s": shop_id, "g": group_id},
            )
        ).scalar()
    return await attribute_in_session(
        s,
        shop_id=shop_id,
        user_id=user_id,
        invite_code=invite_code[:64],
        now=now,
        source=BindingSource.GROUP_INVITE,
        campaign_id=campaign_id,
    )


async def _join_in(
    s: AsyncSession,
    *,
    shop_id: str,
    group_id: str,
    user_id: str,
    quantity: int,
    now,
    made: dict,
    campaign_id: str | None = None,
) -> dict:
    """GB-2 inside the caller's transaction (join_group, each attempt of quick_join)."""
    ld = await lean.load_group(s, shop_id, group_id, user_id=user_id)
    if ld is None or (campaign_id is not None and ld.campaign_row.campaign_id != campaign_id):
        raise refuse(ErrorCode.NOT_FOUND, "group not found", field="groupId")
    c = ld.campaign_row
    order_id = new_id("ord_")
    decision = gb.join_group(
        ld.campaign,
        ld.group,
        order_id=order_id,
        user_id=user_id,
        quantity=quantity,
        now=now,
        stock_left=c.stock_left,
        user_units_held=ld.user_units,
        user_has_paid_order=ld.user_has_paid_order,
    )
    seat = decision.group.seat_for_order(order_id)
    assert seat is not None, "a join the engine accepted holds a seat"
    w = lean.Writes(shop_id, now, ld.currency)
    w.ensure_user(user_id)
    w.take_stock(c, user_id, quantity)
    made["order"] = w.new_order(
        c, order_id=order_id, group_id=group_id, user_id=user_id, seat=seat, source="GROUP_INVITE"
    )
    await _carry_out(s, ld, decision, w, now=now)
    made["group"] = decision.group
    return {"group_id": group_id, "order_id": order_id, "amount": seat.amount}


# ------------------------------------------------------------------ GB-13 quick join
QUICK_JOIN_CANDIDATES = text(
    "SELECT g.group_id, g.tiers, g.state, g.held_seats, g.expires_at, g.opened_at, EXISTS (SELECT 1 FROM seats st "
    "WHERE st.shop_id = g.shop_id AND st.group_id = g.group_id AND st.user_id = :u AND st.state IN "
    "('RESERVED', 'PAID')) AS mine FROM groups g WHERE g.shop_id = :s AND g.campaign_id = :c AND g.state = 'OPEN' "
    "AND g.expires_at > :now ORDER BY g.expires_at, g.group_id LIMIT :lim"
)
QUICK_JOIN_SCAN = 200  # open groups read to choose from
QUICK_JOIN_ATTEMPTS = 20  # joins tried before giving up (or opening): bounded time under contention


async def quick_join(
    svc: Services,
    *,
    shop_id: str,
    campaign_id: str,
    user_id: str,
    quantity: int = 1,
    open_if_none: bool = False,
    idempotency_key: str | None = None,
) -> "QuickJoinResult":
    """GB-13 (凑团): a seat in the open group of the campaign closest to forming that the customer may join,
    in `engine.groupbuy.quick_join_order`'s order. Each attempt is a GB-2 join under the group's row lock in
    a savepoint: a refusal about that group (full, expired, …) rolls the attempt back (its lock with it) and
    the next group is tried; a refusal that holds for every group (stock, per-user limit) ends the quick join.
    None left: with `open_if_none` the customer opens a group as leader (GB-1), else NO_GROUP_AVAILABLE. One
    transaction and one idempotency key for the whole (GB-10)."""
    _check_user_id(user_id)
    now = svc.now()
    made: dict = {}
    async with unit_of_work(svc) as s:

        async def run():
            rows = (
                await s.execute(
                    QUICK_JOIN_CANDIDATES,
                    {"s": shop_id, "c": campaign_id, "u": user_id, "now": now, "lim": QUICK_JOIN_SCAN},
                )
            ).all()
            cands = [
                gb.QuickJoinCandidate(
                    group_id=r.group_id,
                    tiers=mapping.tiers_from_json(r.tiers),
                    state=gb.GroupState(r.state),
                    held_seats=r.held_seats,
                    expires_at=r.expires_at,
                    opened_at=r.opened_at,
                    user_holds_seat=r.mine,
                )
                for r in rows
            ]
            for gid in gb.quick_join_order(cands, now=now)[:QUICK_JOIN_ATTEMPTS]:
                try:
                    async with s.begin_nested():
                        r = await _join_in(
                            s,
                            shop_id=shop_id,
                            group_id=gid,
                            user_id=user_id,
                            quantity=quantity,
                            now=now,
                            made=made,
                            campaign_id=campaign_id,
                        )
                    return {**r, "opened": False}
                except RuleViolation as e:
                    if e.code not in gb.QUICK_JOIN_RETRY:
                        raise
                    made.clear()  # GB-13: that group filled (or closed) meanwhile: the next one
            if not open_if_none:
                raise refuse(
                    ErrorCode.NO_GROUP_AVAILABLE,
                    "no open group of this campaign can take you now",
                    rule="GB-13",
                    field="campaignId",
                )
            r = await _open_in(
                s, shop_id=shop_id, campaign_id=campaign_id, user_id=user_id, quantity=quantity, now=now, made=made
            )
            return {**r, "opened": True}

        r = await once(
            s,
            shop_id=shop_id,
            scope=f"quick_join:{user_id}",
            key=idempotency_key,
            request={"campaign_id": campaign_id, "quantity": quantity, "open_if_none": open_if_none},
            now=now,
            run=run,
        )
    r = dict(r)
    opened = bool(r.pop("opened", False))
    return QuickJoinResult(**r, group=made.get("group"), order=made.get("order"), opened=opened)


@dataclass(frozen=True)
class QuickJoinResult(SeatResult):
    opened: bool = False  # GB-13: no open group could take the customer; they opened one as leader


async def pay_group_order(session: AsyncSession, *, order: lean.OrderView, amount: int, now) -> bool:
    """GB-1/GB-2/GB-4/GB-9/GB-10 for a payment confirmation of a group order. True if it took a seat; a
    payment that takes none is owed back in full (GB-9 late, GB-10 a seat another payment took)."""
    ld = await lean.load_group(session, order.shop_id, order.group_id)
    assert ld is not None, f"group order {order.order_id} without its group"
    decision = gb.pay_seat(ld.campaign, ld.group, order_id=order.order_id, amount=amount, now=now)
    if gb.late_payment(decision, order.order_id) is not None and await _overflow_reseat_on(session, order.shop_id):
        if await _reseat(session, ld, decision, order=order, amount=amount, now=now):  # GB-14
            return True
    await _carry_out(
        session,
        ld,
        decision,
        lean.Writes(order.shop_id, now, ld.currency),
        now=now,
        paid_amounts={order.order_id: amount},
    )
    return any(isinstance(i, gb.OrderPaid) for i in decision.instructions)


# ------------------------------------------------------------------ GB-14 overflow re-seat
async def _overflow_reseat_on(session: AsyncSession, shop_id: str) -> bool:
    """GB-14's shop option (off by default); read only for a payment GB-9 would refund (a rare path)."""
    return bool(
        (await session.execute(text("SELECT overflow_reseat FROM shops WHERE shop_id = :s"), {"s": shop_id})).scalar()
    )


MOVE_SEAT = text(
    "WITH o AS (UPDATE orders SET group_id = :t, state = 'CREATED', cancelled_at = NULL "
    "WHERE shop_id = :s AND order_id = :o RETURNING 1) "
    "UPDATE seats SET group_id = :t WHERE shop_id = :s AND order_id = :o"
)


async def _reseat(session: AsyncSession, ld: lean.Loaded, late: gb.Decision, *, order, amount: int, now) -> bool:
    """GB-14: the payment GB-9 would refund takes a seat in another open group of the campaign, tried in
    GB-13's order (groups another transaction holds are skipped, so two re-seats never wait on each other):
    a GB-2 join at the same role and unit price, then the payment. The old group still releases the
    reservation (stock back); the order moves with its payment (`order.reseated`). False when no group can
    take the buyer: the caller refunds it (GB-9)."""
    seat = ld.group.seat_for_order(order.order_id)
    assert seat is not None
    shop_id, cid = ld.shop_id, ld.campaign_row.campaign_id
    rows = (
        await session.execute(
            QUICK_JOIN_CANDIDATES, {"s": shop_id, "c": cid, "u": seat.user_id, "now": now, "lim": QUICK_JOIN_SCAN}
        )
    ).all()
    cands = [
        gb.QuickJoinCandidate(
            group_id=r.group_id,
            tiers=mapping.tiers_from_json(r.tiers),
            state=gb.GroupState(r.state),
            held_seats=r.held_seats,
            expires_at=r.expires_at,
            opened_at=r.opened_at,
            user_holds_seat=r.mine,
        )
        for r in rows
        if r.group_id != ld.group.id
    ]
    for gid in gb.quick_join_order(cands, now=now)[:QUICK_JOIN_ATTEMPTS]:
        try:
            async with session.begin_nested():
                t = await lean.load_group(session, shop_id, gid, user_id=seat.user_id, skip_locked=True)
                if t is None:
                    continue
                # the old seat's units come back before the new seat takes them (GB-1/GB-2 guards hold)
                returned = seat.quantity if seat.state is gb.SeatState.RESERVED else 0
                stock_left = None if t.campaign_row.stock_left is None else t.campaign_row.stock_left + returned
                d = gb.reseat(
                    t.campaign,
                    t.group,
                    seat=seat,
                    amount=amount,
                    now=now,
                    stock_left=stock_left,
                    user_units_held=t.user_units - returned,
                    user_has_paid_order=t.user_has_paid_order,
                )
                old = gb.without_late_refund(late, order.order_id)
                await _carry_out(session, ld, old, lean.Writes(shop_id, now, ld.currency), now=now)
                await session.execute(MOVE_SEAT, {"s": shop_id, "o": order.order_id, "t": gid})
                moved = replace(
                    t, group=replace(t.group, seats=t.group.seats + (replace(seat, state=gb.SeatState.RELEASED),))
                )
                w = lean.Writes(shop_id, now, t.currency)
                w.take_stock(t.campaign_row, seat.user_id, seat.quantity)
                w.event(
                    type=EventType.ORDER_RESEATED,
                    aggregate_type="group",
                    aggregate_id=gid,
                    rule="GB-14",
                    payload={
                        "order_id": order.order_id,
                        "from_group_id": ld.group.id,
                        "to_group_id": gid,
                        "amount": amount,
                    },
                )
                await _carry_out(session, moved, d, w, now=now, paid_amounts={order.order_id: amount})
            return True
        except RuleViolation as e:
            if e.code not in gb.QUICK_JOIN_RETRY | {
                ErrorCode.OUT_OF_STOCK,
                ErrorCode.PER_USER_LIMIT,
                ErrorCode.NEW_MEMBERS_ONLY,
                ErrorCode.QUANTITY_LIMIT,
            }:
                raise
    return False


async def leave_group(
    svc: Services, *, shop_id: str, group_id: str, user_id: str, idempotency_key: str | None = None
) -> dict:
    """GB-8: a member cancels before forming; a paid seat is refunded in full."""
    now = svc.now()
    made: dict = {}
    async with unit_of_work(svc) as s:

        async def run():
            ld = await lean.load_group(s, shop_id, group_id, user_id=user_id)
            if ld is None:
                raise refuse(ErrorCode.NOT_FOUND, "group not found", field="groupId")
            decision = gb.leave_group(ld.campaign, ld.group, user_id=user_id, now=now)
            await _carry_out(s, ld, decision, lean.Writes(shop_id, now, ld.currency), now=now)
            made["group"] = decision.group
            return {"group_id": group_id}

        r = await once(
            s,
            shop_id=shop_id,
            scope=f"leave_group:{user_id}",
            key=idempotency_key,
            request={"group_id": group_id},
            now=now,
            run=run,
        )
    return {**r, "group": made.get("group")}


async def _advance_loaded(session: AsyncSession, ld: lean.Loaded, now) -> None:
    decision = gb.advance(ld.campaign, ld.group, now=now)
    if decision.instructions or decision.group != ld.group:
        await _carry_out(session, ld, decision, lean.Writes(ld.shop_id, now, ld.currency), now=now)
    elif gb.next_due_at(ld.group, ld.campaign) != ld.due_at:
        w = lean.Writes(ld.shop_id, now, ld.currency, campaign=ld.campaign)
        w.update_group(ld.group)
        await w.run(session)


async def advance_group(session: AsyncSession, *, shop_id: str, group_id: str, now, skip_locked: bool = False) -> bool:
    """GB-11: apply what is due on one group. Returns False if another worker holds it."""
    ld = await lean.load_group(session, shop_id, group_id, skip_locked=skip_locked)
    if ld is None:
        if skip_locked:
            return False
        raise refuse(ErrorCode.NOT_FOUND, "group not found", field="groupId")
    await _advance_loaded(session, ld, now)
    return True


async def claim_due_group(session: AsyncSession, *, shop_id: str, now) -> lean.Loaded | None:
    """GB-11, the worker's claim: the shop's most overdue group no one else holds, locked (FOR UPDATE SKIP
    LOCKED) and loaded by one statement. None if none is left."""
    return await lean.load_group(session, shop_id, due_before=now)


async def advance_claimed(session: AsyncSession, ld: lean.Loaded, *, now) -> None:
    """GB-11: apply what is due on a claimed group."""
    await _advance_loaded(session, ld, now)


async def catch_up(svc: Services, *, shop_id: str, group_ids) -> None:
    """GB-11: reads never show a state already past due — apply due work before reading."""
    now = svc.now()
    async with svc.reader() as s:  # the check is a read; only a due group gets a transaction
        due = list(
            (
                await s.execute(
                    select(GroupRow.group_id).where(
                        GroupRow.shop_id == shop_id, GroupRow.group_id.in_(list(group_ids)), GroupRow.due_at <= now
                    )
                )
            ).scalars()
        )
    await advance_due_groups(svc, shop_id=shop_id, group_ids=due, now=now)


async def advance_due_groups(svc: Services, *, shop_id: str, group_ids, now) -> None:
    """Advance groups a read found due, one transaction each (as the worker does). Waits for a
    group another transaction holds, then applies whatever is still due on it."""
    for gid in sorted(set(group_ids)):
        async with unit_of_work(svc) as s:
            await advance_group(s, shop_id=shop_id, group_id=gid, now=now)


async def get_group_caught_up(svc: Services, *, shop_id: str, group_id: str):
    await catch_up(svc, shop_id=shop_id, group_ids=[group_id])
    async with svc.reader() as s:
        row = await s.get(GroupRow, (shop_id, group_id))
        if row is None:
            return None
        seats = list(
            (await s.execute(select(SeatRow).where(SeatRow.shop_id == shop_id, SeatRow.group_id == group_id))).scalars()
        )
        return row, mapping.group_from_rows(row, seats)
