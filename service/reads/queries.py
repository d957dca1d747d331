"""Read-only queries for the API: pages (limit/offset, or keyset for lists that change while paged, with a
total) and batch loads by id.

Every function is scoped by `shop_id` (SH-1) and runs a bounded number of statements whatever the
page size, so a GraphQL page of N items costs the same few queries (the API's DataLoaders batch the
by-id loads). Reads of groups, orders, commission lines and distributors catch up due work first
(GB-11): they never show a past-due state. Whether anything is due is one query on the indexed due
times (`groups.due_at`, FROZEN `commission_lines.available_at`); only then does a read write, and
only the work that is already due.
"""

from __future__ import annotations

from typing import Iterable, Sequence

from sqlalchemy import bindparam, func, select, tuple_

from engine import groupbuy as gb
from engine.levels import Metrics
from service.tx.commissions import METRICS_SQL
from service.context import Services
from service.usecases.groups import catch_up
from service.usecases.orders import catch_up_orders
from service.jobs.worker import release_due_lines
from store import mapping
from store.models import (
    CampaignRow,
    CommissionLineRow,
    Distributor,
    Event,
    GroupRow,
    Order,
    Payout,
    Product,
    Settlement,
    Refund,
    SeatRow,
    WebhookAttempt,
    WebhookDelivery,
    WebhookEndpoint,
    EventFeed,
)

Page = tuple[list, int]  # (rows of the page, total matching rows)


async def _page(svc: Services, q, order_by: Sequence, *, limit: int, offset: int) -> Page:
    assert 0 <= limit <= 1000 and offset >= 0, "pages are bounded"
    async with svc.reader() as s:
        total = (await s.execute(select(func.count()).select_from(q.order_by(None).subquery()))).scalar_one()
        rows = list((await s.execute(q.order_by(*order_by).limit(limit).offset(offset))).scalars())
    return rows, int(total)


async def _keyset_page(
    svc: Services, q, key: Sequence, *, limit: int, after: tuple | None, descending: bool = False
) -> Page:
    """Rows of `q` strictly after `after` in the order of the `key` columns (a unique key), and the total
    of `q` without the cursor. Costs two statements whatever the page."""
    assert 0 <= limit <= 1001, "pages are bounded"
    async with svc.reader() as s:
        total = (await s.execute(select(func.count()).select_from(q.order_by(None).subquery()))).scalar_one()
        if after is not None:
            k, a = tuple_(*key), tuple_(*after)
            q = q.where(k < a if descending else k > a)
        order = [c.desc() for c in key] if descending else list(key)
        rows = list((await s.execute(q.order_by(*order).limit(limit))).scalars())
    return rows, int(total)


# ------------------------------------------------------------------ the storefront page's statements
# Built once: building a select() per request (column comparisons, bind parameters, coercions) was ~10 % of a
# storefront page's server CPU in py-spy; a statement object built once also hits the compiled cache directly.
_C, _G, _S = CampaignRow.__table__, GroupRow.__table__, SeatRow.__table__
CAMPAIGNS_BY_IDS = select(_C).where(
    _C.c.shop_id == bindparam("s"), _C.c.campaign_id.in_(bindparam("ids", expanding=True))
)
GROUPS_BY_IDS = select(_G).where(_G.c.shop_id == bindparam("s"), _G.c.group_id.in_(bindparam("ids", expanding=True)))
SEATS_BY_GROUPS = select(_S).where(_S.c.shop_id == bindparam("s"), _S.c.group_id.in_(bindparam("ids", expanding=True)))
_OPEN = select(_G.c.group_id).where(
    _G.c.shop_id == bindparam("s"),
    _G.c.campaign_id == bindparam("c"),
    _G.c.state == "OPEN",
    _G.c.expires_at > bindparam("now"),
)
OPEN_COUNT = select(func.count()).select_from(_OPEN.subquery())
OPEN_PAGE = _OPEN.order_by(_G.c.expires_at, _G.c.group_id).limit(bindparam("lim")).offset(bindparam("off"))


# ------------------------------------------------------------------ batch loads (DataLoaders)
async def campaigns_by_ids(svc: Services, *, shop_id: str, ids: Iterable[str]) -> dict[str, CampaignRow]:
    """Campaign rows (Core rows with the ORM entity's attribute names: every page of groups loads them)."""
    async with svc.read_connection() as conn:
        rows = await conn.execute(CAMPAIGNS_BY_IDS, {"s": shop_id, "ids": list(set(ids))})
        return {r.campaign_id: r for r in rows}


async def groups_by_ids_caught_up(svc: Services, *, shop_id: str, ids: Iterable[str]) -> dict[str, gb.Group]:
    """Groups with their seats, due work applied first (GB-11). Two queries plus one per due group; Core rows
    on one connection (the storefront's page loads them on every request)."""
    ids = list(set(ids))
    if not ids:
        return {}
    await catch_up(svc, shop_id=shop_id, group_ids=ids)
    params = {"s": shop_id, "ids": ids}
    async with svc.read_connection() as conn:
        rows = list(await conn.execute(GROUPS_BY_IDS, params))
        seats = list(await conn.execute(SEATS_BY_GROUPS, params))
    by_group: dict[str, list] = {}
    for seat in seats:
        by_group.setdefault(seat.group_id, []).append(seat)
    return {r.group_id: mapping.group_from_rows(r, by_group.get(r.group_id, [])) for r in rows}


async def _by_ids(svc: Services, model, key, shop_id: str, ids: Iterable[str]) -> dict:
    ids = list(set(ids))
    if not ids:
        return {}
    async with svc.reader() as s:
        rows = (await s.execute(select(model).where(model.shop_id == shop_id, key.in_(ids)))).scalars()
        return {getattr(r, key.key): r for r in rows}


async def orders_by_ids_caught_up(svc: Services, *, shop_id: str, ids: Iterable[str]) -> dict[str, Order]:
    ids = list(set(ids))
    if ids:
        await catch_up_orders(svc, shop_id=shop_id, order_ids=ids)
    return await _by_ids(svc, Order, Order.order_id, shop_id, ids)


async def refunds_by_ids(svc: Services, *, shop_id: str, ids: Iterable[str]) -> dict[str, Refund]:
    return await _by_ids(svc, Refund, Refund.refund_id, shop_id, ids)


async def payouts_by_ids(svc: Services, *, shop_id: str, ids: Iterable[str]) -> dict[str, Payout]:
    return await _by_ids(svc, Payout, Payout.payout_id, shop_id, ids)


async def lines_by_ids(svc: Services, *, shop_id: str, ids: Iterable[str]) -> dict[str, CommissionLineRow]:
    ids = list(set(ids))
    if ids:
        await release_due_lines(svc, shop_id=shop_id, line_ids=ids, wait=True)
    return await _by_ids(svc, CommissionLineRow, CommissionLineRow.line_id, shop_id, ids)


async def products_by_refs(svc: Services, *, shop_id: str, refs: Iterable[str]) -> dict[str, Product]:
    return await _by_ids(svc, Product, Product.product_ref, shop_id, refs)


async def distributors_by_ids(svc: Services, *, shop_id: str, ids: Iterable[str]) -> dict[str, Distributor]:
    """Balances as of now: FROZEN lines already due are released first (CM-6, GB-11)."""
    ids = list(set(ids))
    if ids:
        await release_due_lines(svc, shop_id=shop_id, user_ids=ids, wait=True)
    return await _by_ids(svc, Distributor, Distributor.user_id, shop_id, ids)


async def settlements_by_ids(svc: Services, *, shop_id: str, ids: Iterable[str]) -> dict[str, Settlement]:
    return await _by_ids(svc, Settlement, Settlement.settlement_id, shop_id, ids)


async def endpoints_by_ids(svc: Services, *, shop_id: str, ids: Iterable[str]) -> dict[str, WebhookEndpoint]:
    return await _by_ids(svc, WebhookEndpoint, WebhookEndpoint.endpoint_id, shop_id, ids)


async def events_by_ids(svc: Services, *, shop_id: str, ids: Iterable[str]) -> dict[str, Event]:
    return await _by_ids(svc, Event, Event.event_id, shop_id, ids)


async def attempts_by_ids(svc: Services, *, shop_id: str, ids: Iterable[str]) -> dict[str, WebhookAttempt]:
    return await _by_ids(svc, WebhookAttempt, WebhookAttempt.attempt_id, shop_id, ids)


async def deliveries_by_ids(svc: Services, *, shop_id: str, ids: Iterable[str]) -> dict[str, WebhookDelivery]:
    """By "endpoint_id:event_id" (a delivery's key within the shop)."""
    pairs = {tuple(i.split(":", 1)) for i in ids if ":" in i}
    if not pairs:
        return {}
    async with svc.reader() as s:
        rows = (
            await s.execute(
                select(WebhookDelivery).where(
                    WebhookDelivery.shop_id == shop_id,
                    tuple_(WebhookDelivery.endpoint_id, WebhookDelivery.event_id).in_(list(pairs)),
                )
            )
        ).scalars()
        return {f"{r.endpoint_id}:{r.event_id}": r for r in rows}


# ------------------------------------------------------------------ pages
async def page_campaigns(svc: Services, *, shop_id: str, active_only: bool, limit: int, offset: int) -> Page:
    q = select(CampaignRow).where(CampaignRow.shop_id == shop_id)
    if active_only:
        now = svc.now()
        q = q.where(CampaignRow.starts_at <= now, CampaignRow.ends_at > now)
    return await _page(svc, q, (CampaignRow.ends_at, CampaignRow.campaign_id), limit=limit, offset=offset)


async def page_open_group_ids(svc: Services, *, shop_id: str, campaign_id: str, limit: int, offset: int) -> Page:
    """Ids of a campaign's OPEN groups, soonest to expire first (the storefront's "join one" list).
    A group whose `expires_at` has passed is no longer open, whether or not the worker has applied its
    fate yet (GB-11), so it is left out here rather than advanced on this read; the groups on the page
    are caught up when they are loaded (groups_by_ids_caught_up)."""
    assert 0 <= limit <= 1000 and offset >= 0, "pages are bounded"
    params = {"s": shop_id, "c": campaign_id, "now": svc.now(), "lim": limit, "off": offset}
    async with svc.read_connection() as conn:  # Core, one connection: the storefront asks on every page
        total = (await conn.execute(OPEN_COUNT, params)).scalar_one()
        ids = list((await conn.execute(OPEN_PAGE, params)).scalars())
    return ids, int(total)


async def page_campaign_group_ids(
    svc: Services, *, shop_id: str, campaign_id: str, states: list[str] | None, limit: int, offset: int
) -> Page:
    """Ids of a campaign's groups in any (or the given) states, most recently opened first (admin screens)."""
    q = select(GroupRow.group_id).where(GroupRow.shop_id == shop_id, GroupRow.campaign_id == campaign_id)
    if states:
        q = q.where(GroupRow.state.in_(states))
    return await _page(svc, q, (GroupRow.opened_at.desc(), GroupRow.group_id), limit=limit, offset=offset)


async def page_user_group_ids(svc: Services, *, shop_id: str, user_id: str, limit: int, offset: int) -> Page:
    """Ids of the groups a user has (or had) a seat in, newest first."""
    seat_groups = select(SeatRow.group_id).where(SeatRow.shop_id == shop_id, SeatRow.user_id == user_id)
    q = select(GroupRow.group_id).where(GroupRow.shop_id == shop_id, GroupRow.group_id.in_(seat_groups))
    return await _page(svc, q, (GroupRow.opened_at.desc(), GroupRow.group_id), limit=limit, offset=offset)


async def page_orders_caught_up(svc: Services, *, shop_id: str, buyer_id: str, limit: int, offset: int) -> Page:
    await catch_up_orders(svc, shop_id=shop_id, buyer_id=buyer_id)
    q = select(Order).where(Order.shop_id == shop_id, Order.buyer_id == buyer_id)
    return await _page(svc, q, (Order.created_at.desc(), Order.order_id), limit=limit, offset=offset)


async def page_refunds(
    svc: Services, *, shop_id: str, state: str | None, rule: str | None, limit: int, after: tuple | None
) -> Page:
    """Oldest first, keyset on (created_at, refund_id): confirming refunds while paging skips none."""
    q = select(Refund).where(Refund.shop_id == shop_id)
    if state:
        q = q.where(Refund.state == state)
    if rule:
        q = q.where(Refund.rule == rule)
    return await _keyset_page(svc, q, (Refund.created_at, Refund.refund_id), limit=limit, after=after)


async def page_payouts(
    svc: Services, *, shop_id: str, state: str | None, user_id: str | None, limit: int, offset: int
) -> Page:
    q = select(Payout).where(Payout.shop_id == shop_id)
    if state:
        q = q.where(Payout.state == state)
    if user_id:
        q = q.where(Payout.distributor_id == user_id)
    return await _page(svc, q, (Payout.requested_at, Payout.payout_id), limit=limit, offset=offset)


async def page_commission_lines(svc: Services, *, shop_id: str, beneficiary_id: str, limit: int, offset: int) -> Page:
    """RP-1: a distributor's commission lines, newest first; lines already due are released first (CM-6)."""
    await release_due_lines(svc, shop_id=shop_id, user_ids=[beneficiary_id], wait=True)
    q = select(CommissionLineRow).where(
        CommissionLineRow.shop_id == shop_id, CommissionLineRow.beneficiary_id == beneficiary_id
    )
    return await _page(
        svc, q, (CommissionLineRow.created_at.desc(), CommissionLineRow.line_id), limit=limit, offset=offset
    )


async def page_events_caught_up(
    svc: Services, *, shop_id: str, types: list[str] | None, limit: int, after: tuple | None
) -> Page:
    """The shop's events in feed (commit) order, keyset on their position (service/jobs/feed.py): every event
    committed before the call is in it, and one that commits later comes after any cursor handed out."""
    from service.jobs.feed import sequence
    from service.usecases.webhooks import feed

    await sequence(svc, shop_id=shop_id)
    q = feed(shop_id)
    if types:
        q = q.where(Event.type.in_(types))
    return await _keyset_page(svc, q, (EventFeed.position,), limit=limit, after=after)


async def page_endpoints(svc: Services, *, shop_id: str, limit: int, after: tuple | None) -> Page:
    q = select(WebhookEndpoint).where(WebhookEndpoint.shop_id == shop_id)
    return await _keyset_page(
        svc, q, (WebhookEndpoint.created_at, WebhookEndpoint.endpoint_id), limit=limit, after=after
    )


async def page_deliveries(
    svc: Services, *, shop_id: str, endpoint_id: str, state: str | None, limit: int, after: tuple | None
) -> Page:
    """An endpoint's deliveries, newest event first (keyset on seq: new ones arrive while paging)."""
    q = select(WebhookDelivery).where(WebhookDelivery.shop_id == shop_id, WebhookDelivery.endpoint_id == endpoint_id)
    if state:
        q = q.where(WebhookDelivery.state == state)
    return await _keyset_page(svc, q, (WebhookDelivery.seq,), limit=limit, after=after, descending=True)


async def page_attempts(svc: Services, *, shop_id: str, endpoint_id: str, limit: int, after: tuple | None) -> Page:
    """An endpoint's attempts, newest first."""
    q = select(WebhookAttempt).where(WebhookAttempt.shop_id == shop_id, WebhookAttempt.endpoint_id == endpoint_id)
    return await _keyset_page(
        svc, q, (WebhookAttempt.at, WebhookAttempt.attempt_id), limit=limit, after=after, descending=True
    )


# ------------------------------------------------------------------ levels (LV-1 progress)
async def distributor_metrics(svc: Services, *, shop_id: str, user_id: str) -> Metrics:
    """LV-1 metrics as the level evaluation computes them (the same SQL), for progress displays."""
    async with svc.reader() as s:
        m = (await s.execute(METRICS_SQL, {"s": shop_id, "d": user_id, "now": svc.now()})).mappings().one()
    return Metrics(**{k: int(v) for k, v in m.items()})
