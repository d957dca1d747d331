"""GraphQL object types, Relay nodes and cursor connections.

Ids: every object with an identity is a Relay `Node`; its `id` is a global id (opaque base64 of
`Type:raw-id`). Inputs that name objects take those global ids (`ID!`); `raw_id()` decodes them and
refuses an id of the wrong type (INVALID_INPUT). A global id carries no shop: it is always looked up
in the caller's shop, so an id from another shop finds nothing (SH-1).

Money: the `MinorUnits` scalar — an integer amount in minor units (fen, cents) of the shop currency,
serialized as a JSON number. It is not GraphQL's `Int` (32-bit: ¥21,474,836.47 would overflow);
values stay within ±2^53 so JavaScript clients read them exactly. Every object with money carries the
shop's ISO 4217 `currency` beside it (SH-2: one currency per shop).

Lists are connections (`edges { cursor node }`, `pageInfo`, `totalCount`), paged forwards with
`first` (default 20, at most 100; larger values are capped, not refused) and `after`. Lists that
change while a client pages through them (owed refunds, events, webhook deliveries) use keyset
cursors (`Keyset`): `after` is the sort key of the last row seen, so rows leaving or joining the list
never make a page skip one.
"""

from __future__ import annotations

import base64
import json
from dataclasses import dataclass
from datetime import date, datetime
from enum import Enum
from typing import Any, Awaitable, Callable, Iterable, NewType, Optional

import strawberry
from strawberry import relay
from strawberry.relay.types import NodeType
from strawberry.types import Info

from api import groupbuy_v2
from api.permissions import IsAdmin, sees_user_ids, user_alias
from engine import groupbuy as gb
from engine.distribution import DistributorStatus
from engine.errors import ErrorCode, refuse
from engine.segments import Segment
from service.reports import Granularity

MinorUnits = NewType("MinorUnits", int)


def _parse_minor_units(value: Any) -> int:
    """Client input: the ValueError's message reaches the client (api.errors), so it says what is wrong."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValueError("MinorUnits is a whole number of minor units (fen, cents), without a fraction or exponent")
    if abs(value) > 2**53:
        raise ValueError("MinorUnits must be within ±2^53 (9007199254740992)")
    return value


MINOR_UNITS = strawberry.scalar(
    name="MinorUnits", serialize=int, parse_value=_parse_minor_units,
    description="An amount in integer minor units (fen, cents) of the shop currency; a JSON number "
                "within ±2^53 (not the 32-bit Int).")

DEFAULT_PAGE, MAX_PAGE = 20, 100
MAX_OFFSET = 10**9  # a cursor further than this is not one this API gave out (10^21 overflowed OFFSET)
FIRST_DAY, LAST_DAY = date(1900, 1, 1), date(9000, 1, 1)  # calendar days an input may name
MAX_MINOR = 2**53 - 1  # what MinorUnits can carry: an order total beyond it could never be paid


def bounded_day(day: date, field: str) -> date:
    """A calendar day of an input, refused (INVALID_INPUT) outside FIRST_DAY..LAST_DAY: 0001-01-01 in a shop's
    time zone is before the first instant a datetime can hold."""
    if not FIRST_DAY <= day <= LAST_DAY:
        raise refuse(ErrorCode.INVALID_INPUT, f"a day from {FIRST_DAY} to {LAST_DAY}", field=field)
    return day


# ---------------------------------------------------------------- ids
# The prefixes of Sharecart's own ids (service/ids.py). Webhook payloads and exports carry these raw ids,
# so an input takes them as well as the global id: a backend acting on a webhook needs no re-encoding.
RAW_PREFIX = {"Order": "ord_", "Group": "grp_", "Refund": "rf_", "Campaign": "cmp_", "Payout": "po_",
              "Settlement": "st_", "WebhookEndpoint": "wh_", "CommissionLine": "cl_"}


def raw_id(value: str, type_name: str, field: str) -> str:
    """The raw id of a global id of `type_name` (or the raw id itself, by its prefix); INVALID_INPUT (with
    `field`) for anything else."""
    prefix = RAW_PREFIX.get(type_name)
    if prefix and value.startswith(prefix) and len(value) > len(prefix):
        return value
    try:
        gid = relay.GlobalID.from_id(value)
    except Exception:
        raise refuse(ErrorCode.INVALID_INPUT, f"not a global id: expected a {type_name} id", field=field)
    if gid.type_name != type_name:
        raise refuse(ErrorCode.INVALID_INPUT, f"expected a {type_name} id, got a {gid.type_name} id", field=field)
    return gid.node_id


def global_id(type_name: str, raw: str) -> str:
    return str(relay.GlobalID(type_name, raw))


# ---------------------------------------------------------------- connections
@strawberry.type(name="Connection", description="A page of a list: edges with cursors, page info, total count.")
class Connection(relay.Connection[NodeType]):
    total_count: int = strawberry.field(description="How many items the whole list has.")


def _cursor(position: int) -> str:
    return base64.b64encode(f"c:{position}".encode()).decode()


def page_args(first: Optional[int], after: Optional[str]) -> tuple[int, int]:
    """(limit, offset) from `first`/`after`: first defaults to 20 and is capped at 100."""
    if first is None:
        first = DEFAULT_PAGE
    if first < 0:
        raise refuse(ErrorCode.INVALID_INPUT, "first must be >= 0", field="first")
    offset = 0
    if after:
        try:
            kind, n = base64.b64decode(after, validate=True).decode().split(":")
            assert kind == "c"
            offset = int(n)
            assert 0 <= offset <= MAX_OFFSET
        except Exception:
            raise refuse(ErrorCode.INVALID_INPUT, "after: not a cursor of this list", field="after")
    return min(first, MAX_PAGE), offset


def make_connection(items: list, total: int, offset: int) -> Connection:
    edges = [relay.Edge(cursor=_cursor(offset + i + 1), node=n) for i, n in enumerate(items)]
    return Connection(
        edges=edges, total_count=total,
        page_info=relay.PageInfo(has_next_page=offset + len(items) < total, has_previous_page=offset > 0,
                                 start_cursor=edges[0].cursor if edges else None,
                                 end_cursor=edges[-1].cursor if edges else None))


async def paginate(fetch: Callable[..., Awaitable[tuple[list, int]]], first: Optional[int], after: Optional[str],
                   convert: Callable[[Any], Any]) -> Connection:
    """`fetch(limit=, offset=)` returns (rows, total); each row becomes a node through `convert`."""
    limit, offset = page_args(first, after)
    rows, total = await fetch(limit=limit, offset=offset)
    return make_connection([convert(r) for r in rows], total, offset)



@dataclass(frozen=True)
class Keyset:
    """A keyset cursor for a list whose rows can appear or vanish while a client pages through it (owed
    refunds leave the list as they are confirmed; events arrive): the cursor is the sort key of the last
    row seen, so the next page starts right after it whatever happened before it. An offset would skip
    rows when the list shrinks and repeat them when it grows."""

    kind: str  # names the list, so a cursor of another list is refused
    key: Callable[[Any], list]  # row -> its sort key as JSON values
    parse: Callable[[list], tuple]  # JSON values -> the key the query compares with


def keyset_args(first: Optional[int], after: Optional[str], ks: Keyset) -> tuple[int, Optional[tuple]]:
    """(limit, key after which the page starts) from `first`/`after`; first defaults to 20, capped at 100."""
    limit, _ = page_args(first, None)
    if not after:
        return limit, None
    try:
        kind, *values = json.loads(base64.b64decode(after, validate=True))
        assert kind == ks.kind
        return limit, ks.parse(values)
    except Exception:
        raise refuse(ErrorCode.INVALID_INPUT, "after: not a cursor of this list", field="after")


def _keyset_cursor(ks: Keyset, row) -> str:
    return base64.b64encode(json.dumps([ks.kind, *ks.key(row)], separators=(",", ":")).encode()).decode()


async def paginate_keyset(fetch: Callable[..., Awaitable[tuple[list, int]]], first: Optional[int],
                          after: Optional[str], ks: Keyset, convert: Callable[[Any], Any]) -> Connection:
    """`fetch(limit=, after=)` returns (up to `limit` rows after the key in sort order, total); one row more
    than the page is asked for, to know whether a next page exists."""
    limit, key = keyset_args(first, after, ks)
    rows, total = await fetch(limit=limit + 1, after=key)
    page = rows[:limit]
    edges = [relay.Edge(cursor=_keyset_cursor(ks, r), node=convert(r)) for r in page]
    return Connection(
        edges=edges, total_count=total,
        page_info=relay.PageInfo(has_next_page=len(rows) > limit, has_previous_page=key is not None,
                                 start_cursor=edges[0].cursor if edges else None,
                                 end_cursor=edges[-1].cursor if edges else None))


def _one_int(v: list) -> tuple[int]:
    (position,) = v  # a cursor of the old (txid, seq) order has two values: refused, not misread
    return (int(position),)


EVENTS_KEYSET = Keyset("events", key=lambda e: [e.position], parse=_one_int)  # the feed position (service/feed.py)
ENDPOINTS_KEYSET = Keyset("endpoints", key=lambda e: [e.created_at.isoformat(), e.endpoint_id],
                          parse=lambda v: (datetime.fromisoformat(v[0]), str(v[1])))
DELIVERIES_KEYSET = Keyset("deliveries", key=lambda d: [d.seq], parse=lambda v: (int(v[0]),))  # newest first
ATTEMPTS_KEYSET = Keyset("attempts", key=lambda a: [a.at.isoformat(), a.attempt_id],  # newest first
                         parse=lambda v: (datetime.fromisoformat(v[0]), str(v[1])))
REFUNDS_KEYSET = Keyset("refunds", key=lambda r: [r.created_at.isoformat(), r.refund_id],
                        parse=lambda v: (datetime.fromisoformat(v[0]), str(v[1])))


# ---------------------------------------------------------------- node resolution helpers
async def _resolve(info: Info, loader: str, node_ids: Iterable[str], convert, visible) -> list:
    ctx = info.context
    rows = await getattr(ctx.loaders, loader).load_many(list(node_ids))
    return [convert(r, ctx) if r is not None and visible(ctx, r) else None for r in rows]


# ---------------------------------------------------------------- group-buy
@strawberry.type
class Tier:
    members: int
    unit_price: MinorUnits
    currency: str


@strawberry.type
class VariantInfo:
    name: str
    tiers: list[Tier]
    weight: int


@strawberry.type(description="A user's seat in a group (GB-2/GB-3): price role fixed when it is paid (GB-8).")
class Seat:
    role: str
    state: str
    quantity: int
    unit_price: MinorUnits
    currency: str
    reserved_at: datetime
    pay_by: datetime
    paid_at: Optional[datetime]
    order_id: strawberry.ID


@strawberry.type(description="A group (拼团): seats, the tier reached, time left (GB-1..GB-8).")
class Group(relay.Node):
    id: relay.NodeID[str]
    campaign_id: strawberry.ID
    state: str = strawberry.field(description="PENDING, OPEN, FORMED, FAILED or CANCELLED")
    variant: Optional[str]
    currency: str = strawberry.field(description="The shop currency of every amount in this group (tiers, seats)")
    capacity: int
    min_size: int
    seats_held: int = strawberry.field(description="Reserved plus paid seats (GB-2)")
    seats_paid: int
    seats_left: int
    tier_reached: Optional[Tier] = strawberry.field(
        description="The tier the paid seats reach now (the final tier once FORMED, GB-5); null below the first")
    next_tier: Optional[Tier] = strawberry.field(description="The next tier up the ladder, if any")
    tiers: list[Tier]
    opened_at: datetime
    expires_at: Optional[datetime]
    seconds_left: Optional[int] = strawberry.field(description="Until expiry while OPEN, else null")
    formed_at: Optional[datetime]
    my_seat: Optional[Seat] = strawberry.field(description="The caller's latest seat in this group, if any")
    _leader: strawberry.Private[str]
    _leader_visible: strawberry.Private[bool]
    _leader_alias: strawberry.Private[Optional[str]]

    @strawberry.field(description="The leader's user id: for shop staff and the leader only; null for other "
                                  "customers, distributors and public-key callers (they see leaderAlias).")
    def leader_user_id(self) -> Optional[str]:
        return self._leader if self._leader_visible else None

    @strawberry.field(description="The name the shop shows for the leader to other customers (`member-…`, the "
                                  "same for one user across the shop's groups); null for public-key callers.")
    def leader_alias(self) -> Optional[str]:
        return self._leader_alias

    @strawberry.field
    async def campaign(self, info: Info) -> Optional["Campaign"]:
        row = await info.context.loaders.campaign.load(self._campaign)
        return campaign_type(row, info.context) if row else None

    _campaign: strawberry.Private[str]
    _g: strawberry.Private[Any] = None  # the engine group, for the group-buy v2 fields (api/groupbuy_v2.py)
    grace_until: Optional[datetime] = strawberry.field(resolver=groupbuy_v2.grace_until, description=(
        "GB-12: while the group waits past expiresAt for reservations still inside their payment window, the "
        "latest instant it can decide (their last payBy); null otherwise"))
    lottery_commitment: Optional[str] = strawberry.field(resolver=groupbuy_v2.lottery_commitment, description=(
        "GB-7 v2: SHA-256 of the group's lottery seed, public from opening; null without a lottery or for groups "
        "opened before v2 (they draw with the v1 procedure, docs/lottery.md)"))
    nudges: list[str] = strawberry.field(resolver=groupbuy_v2.nudges, description=(
        "GB-15: the nudges this group has emitted — `almost_full`, `expiring_soon` — each at most once"))
    draw: Optional[groupbuy_v2.LotteryDraw] = strawberry.field(resolver=groupbuy_v2.lottery_draw, description=(
        "GB-7 v2: the revealed draw once the group has formed — for its members, admins and finance"))

    @classmethod
    async def resolve_nodes(cls, *, info: Info, node_ids: Iterable[str], required: bool = False):
        return await _resolve(info, "group", node_ids, group_type, lambda ctx, g: True)


def _tier(t, currency: str) -> Tier:
    return Tier(members=t.members, unit_price=t.unit_price, currency=currency)


def _seat(s: gb.Seat, currency: str) -> Seat:
    return Seat(role=s.role.value, state=s.state.value, quantity=s.quantity, unit_price=s.unit_price,
                currency=currency, reserved_at=s.reserved_at, pay_by=s.pay_by, paid_at=s.paid_at,
                order_id=strawberry.ID(global_id("Order", s.order_id)))


def group_type(g: gb.Group, ctx) -> Group:
    now = ctx.svc.now()
    state = g.state.value
    left = int((g.expires_at - now).total_seconds()) if g.expires_at and state == "OPEN" else None
    if g.tier_members is not None:
        reached = next((t for t in g.tiers if t.members == g.tier_members), None)
    else:
        reached = next((t for t in reversed(g.tiers) if t.members <= g.paid_seats), None)
    nxt = next((t for t in g.tiers if reached is None or t.members > reached.members), None)
    mine = None
    if ctx.principal is not None:
        own = [s for s in g.seats if s.user_id == ctx.principal.user_id]
        mine = _seat(own[-1], ctx.currency) if own else None
    cur = ctx.currency
    return Group(id=g.id, campaign_id=strawberry.ID(global_id("Campaign", g.campaign_id)), state=state,
                 variant=g.variant, currency=cur, capacity=g.capacity, min_size=g.min_size, seats_held=g.held_seats,
                 seats_paid=g.paid_seats, seats_left=g.seats_left,
                 tier_reached=_tier(reached, cur) if reached else None, next_tier=_tier(nxt, cur) if nxt else None,
                 tiers=[_tier(t, cur) for t in g.tiers], opened_at=g.opened_at, expires_at=g.expires_at,
                 seconds_left=max(left, 0) if left is not None else None, formed_at=g.formed_at, my_seat=mine,
                 _leader=g.leader_user_id, _leader_visible=sees_user_ids(ctx, g.leader_user_id),
                 _leader_alias=user_alias(ctx.shop_id, g.leader_user_id) if ctx.principal is not None else None,
                 _campaign=g.campaign_id, _g=g)


@strawberry.type(description="A group-buy campaign: one product at group prices for a time window.")
class Campaign(relay.Node):
    id: relay.NodeID[str]
    title: str
    product_ref: str
    currency: str
    list_price: MinorUnits
    tiers: list[Tier]
    leader_discount: MinorUnits
    leader_commission_bp: Optional[int]
    duration_seconds: int
    payment_window_seconds: int
    starts_at: datetime
    ends_at: datetime
    active: bool = strawberry.field(description="Groups can be opened now (starts_at ≤ now < ends_at)")
    stock: Optional[int]
    stock_left: Optional[int]
    per_user_limit: Optional[int]
    max_quantity_per_order: int
    new_members_only: bool
    fill_at_expiry: Optional[int]
    lottery_winners: int
    commission_enabled: bool
    variants: list[VariantInfo]
    almost_full_at: int = strawberry.field(description="GB-15: paid seats missing to capacity at which "
                                                       "`group.almost_full` is emitted (0: never)")
    expiring_soon_before_seconds: int = strawberry.field(description="GB-15: `group.expiring_soon` this long "
                                                                     "before expiresAt (0: never)")

    @strawberry.field(description="Groups of this campaign open for joining, soonest to expire first.")
    async def open_groups(self, info: Info, first: Optional[int] = None,
                          after: Optional[str] = None) -> Connection[Group]:
        from service import queries

        ctx = info.context
        limit, offset = page_args(first, after)
        ids, total = await queries.page_open_group_ids(ctx.svc, shop_id=ctx.shop_id, campaign_id=self.id,
                                                       limit=limit, offset=offset)
        groups = await ctx.loaders.group.load_many(ids)
        return make_connection([group_type(g, ctx) for g in groups if g is not None], total, offset)

    @strawberry.field(permission_classes=[IsAdmin], description="Admin: every group of this campaign (or those in `states`: PENDING, OPEN, "
                                  "FORMED, FAILED, CANCELLED), most recently opened first.")
    async def groups(self, info: Info, states: Optional[list[str]] = None, first: Optional[int] = None,
                     after: Optional[str] = None) -> Connection[Group]:
        from service import queries

        ctx = info.context
        limit, offset = page_args(first, after)
        ids, total = await queries.page_campaign_group_ids(ctx.svc, shop_id=ctx.shop_id, campaign_id=self.id,
                                                           states=states, limit=limit, offset=offset)
        groups = await ctx.loaders.group.load_many(ids)
        return make_connection([group_type(g, ctx) for g in groups if g is not None], total, offset)

    @classmethod
    async def resolve_nodes(cls, *, info: Info, node_ids: Iterable[str], required: bool = False):
        return await _resolve(info, "campaign", node_ids, campaign_type, lambda ctx, c: True)


def campaign_type(c, ctx) -> Campaign:
    from store import mapping

    now = ctx.svc.now()
    return Campaign(
        id=c.campaign_id, title=c.title, product_ref=c.product_ref, currency=ctx.currency, list_price=c.list_price,
        tiers=[_tier(t, ctx.currency) for t in mapping.tiers_from_json(c.tiers)], leader_discount=c.leader_discount,
        leader_commission_bp=c.leader_commission_bp, duration_seconds=c.duration_s,
        payment_window_seconds=c.payment_window_s, starts_at=c.starts_at, ends_at=c.ends_at,
        active=c.starts_at <= now < c.ends_at, stock=c.stock, stock_left=c.stock_left,
        per_user_limit=c.per_user_limit, max_quantity_per_order=c.max_quantity_per_order,
        new_members_only=c.new_members_only, fill_at_expiry=c.fill_at_expiry, lottery_winners=c.lottery_winners,
        commission_enabled=c.commission_enabled, almost_full_at=c.almost_full_at,
        expiring_soon_before_seconds=c.expiring_soon_before_s,
        variants=[VariantInfo(name=v.name, tiers=[_tier(t, ctx.currency) for t in v.tiers], weight=v.weight)
                  for v in mapping.variants_from_json(c.variants or [])])


# ---------------------------------------------------------------- orders, refunds
def _own_order_or_staff(ctx, o) -> bool:
    return (ctx.principal is not None and o.buyer_id == ctx.principal.user_id
            and "customer" in ctx.principal.roles) or ctx.has_role("backend", "admin", "finance")


@strawberry.type(description="An order: a group seat's order (GB-1/GB-2) or one reported by the backend (OR-1).")
class Order(relay.Node):
    id: relay.NodeID[str]
    external_id: str
    kind: str = strawberry.field(description="GROUP or PLAIN")
    state: str = strawberry.field(description="CREATED, PAID, COMPLETED or CANCELLED")
    currency: str
    goods_amount: MinorUnits = strawberry.field(description="Goods after discounts: the commission base (CM-1)")
    shipping_amount: MinorUnits
    tax_amount: MinorUnits
    paid_amount: MinorUnits
    refunded_amount: MinorUnits
    created_at: datetime
    paid_at: Optional[datetime]
    completed_at: Optional[datetime]
    _buyer: strawberry.Private[str]
    _group: strawberry.Private[Optional[str]]
    _buyer_visible: strawberry.Private[bool]

    @strawberry.field(description="The buyer; null unless you are the buyer or shop staff (a distributor "
                                  "sees the orders of their commission lines, not who placed them).")
    def buyer_id(self) -> Optional[str]:
        return self._buyer if self._buyer_visible else None

    @strawberry.field
    async def group(self, info: Info) -> Optional[Group]:
        if not self._group:
            return None
        g = await info.context.loaders.group.load(self._group)
        return group_type(g, info.context) if g else None

    @classmethod
    async def resolve_nodes(cls, *, info: Info, node_ids: Iterable[str], required: bool = False):
        return await _resolve(info, "order", node_ids, order_type, _own_order_or_staff)


def order_type(o, ctx) -> Order:
    return Order(id=o.order_id, external_id=o.external_id, kind=o.kind, state=o.state, currency=ctx.currency,
                 goods_amount=o.goods_amount, shipping_amount=o.shipping_amount, tax_amount=o.tax_amount,
                 paid_amount=o.paid_amount, refunded_amount=o.refunded_amount, created_at=o.created_at,
                 paid_at=o.paid_at, completed_at=o.completed_at, _buyer=o.buyer_id, _group=o.group_id,
                 _buyer_visible=_own_order_or_staff(ctx, o))


@strawberry.type(description="A refund decided by the rules (OWED: GB-5..GB-9) or reported by the backend (OR-2).")
class Refund(relay.Node):
    id: relay.NodeID[str]
    amount: MinorUnits
    currency: str
    rule: str
    full: bool
    state: str = strawberry.field(description="OWED or CONFIRMED (GB-10)")
    provider_ref: Optional[str]
    created_at: datetime
    confirmed_at: Optional[datetime]
    _order: strawberry.Private[str]

    @strawberry.field
    async def order(self, info: Info) -> Optional[Order]:
        o = await info.context.loaders.order.load(self._order)
        return order_type(o, info.context) if o else None

    @classmethod
    async def resolve_nodes(cls, *, info: Info, node_ids: Iterable[str], required: bool = False):
        return await _resolve(info, "refund", node_ids, refund_type,
                              lambda ctx, r: ctx.has_role("backend", "admin", "finance"))


def refund_type(r, ctx) -> Refund:
    return Refund(id=r.refund_id, amount=r.amount, currency=ctx.currency, rule=r.rule, full=r.full, state=r.state,
                  provider_ref=r.provider_ref, created_at=r.created_at, confirmed_at=r.confirmed_at,
                  _order=r.order_id)


@strawberry.type(description="A product's category and commission terms (OR-3, CM-3).")
class Product(relay.Node):
    id: relay.NodeID[str]
    product_ref: str
    title: str
    category: str
    earns_commission: bool
    level1_amount: Optional[MinorUnits] = strawberry.field(description="CM-3: fixed per unit, replaces the rate")
    level2_amount: Optional[MinorUnits]
    currency: str

    @classmethod
    async def resolve_nodes(cls, *, info: Info, node_ids: Iterable[str], required: bool = False):
        return await _resolve(info, "product", node_ids, product_type,
                              lambda ctx, p: ctx.has_role("backend", "admin"))


def product_type(p, ctx) -> Product:
    return Product(id=p.product_ref, product_ref=p.product_ref, title=p.title, category=p.category,
                   earns_commission=p.earns_commission, level1_amount=p.level1_amount,
                   level2_amount=p.level2_amount, currency=ctx.currency)


# ---------------------------------------------------------------- distribution
def _own_or_staff(ctx, user_id: str, *staff: str) -> bool:
    return (ctx.principal is not None and ctx.principal.user_id == user_id
            and "distributor" in ctx.principal.roles) or ctx.has_role(*staff)


@strawberry.type(description="A commission line (CM-4..CM-6) with the order it came from (RP-1).")
class CommissionLine(relay.Node):
    id: relay.NodeID[str]
    level: int = strawberry.field(description="1 or 2, or 0 for a group leader's reward (团长佣金)")
    state: str = strawberry.field(description="PENDING, FROZEN, AVAILABLE, PAID_OUT or VOID (CM-6)")
    currency: str
    base: MinorUnits
    original: MinorUnits
    standing: MinorUnits = strawberry.field(description="After reversals (CM-5)")
    created_at: datetime
    available_at: Optional[datetime]
    _order: strawberry.Private[str]

    @strawberry.field
    async def order(self, info: Info) -> Optional[Order]:
        o = await info.context.loaders.order.load(self._order)
        return order_type(o, info.context) if o else None

    @classmethod
    async def resolve_nodes(cls, *, info: Info, node_ids: Iterable[str], required: bool = False):
        return await _resolve(info, "commission_line", node_ids, line_type,
                              lambda ctx, ln: _own_or_staff(ctx, ln.beneficiary_id, "admin", "finance"))


def line_type(ln, ctx) -> CommissionLine:
    return CommissionLine(id=ln.line_id, level=ln.level, state=ln.state, currency=ctx.currency, base=ln.base,
                          original=ln.original, standing=ln.standing, created_at=ln.created_at,
                          available_at=ln.available_at, _order=ln.order_id)


@strawberry.type(description="A payout request (LG-2): the distributor receives amount − fee.")
class Payout(relay.Node):
    id: relay.NodeID[str]
    distributor_id: str
    amount: MinorUnits
    fee: MinorUnits
    net: MinorUnits
    currency: str
    state: str = strawberry.field(description="REQUESTED, APPROVED or REJECTED")
    requested_at: datetime
    decided_at: Optional[datetime]
    external_ref: Optional[str]
    reason: Optional[str]

    @classmethod
    async def resolve_nodes(cls, *, info: Info, node_ids: Iterable[str], required: bool = False):
        return await _resolve(info, "payout", node_ids, payout_type,
                              lambda ctx, p: _own_or_staff(ctx, p.distributor_id, "finance", "admin"))


def payout_type(p, ctx) -> Payout:
    return Payout(id=p.payout_id, distributor_id=p.distributor_id, amount=p.amount, fee=p.fee,
                  net=p.amount - p.fee, currency=ctx.currency, state=p.state, requested_at=p.requested_at,
                  decided_at=p.decided_at, external_ref=p.external_ref, reason=p.reason)


@strawberry.type
class Balances:
    currency: str
    pending: MinorUnits
    frozen: MinorUnits
    available: MinorUnits = strawberry.field(description="May be negative after a clawback (CM-6)")
    in_payout: MinorUnits
    paid: MinorUnits
    fees: MinorUnits


@strawberry.type
class DownlineLevel:
    count: int
    sales: MinorUnits = strawberry.field(description="Net paid spend of these users")
    currency: str


@strawberry.type
class Downline:
    level1: DownlineLevel
    level2: DownlineLevel


@strawberry.type(description="A distributor level (LV-1): its rates, upgrade bonus and upgrade conditions.")
class Level(relay.Node):
    id: relay.NodeID[str]
    grade: int
    name: str
    level1_bp: int
    level2_bp: int
    currency: str
    upgrade_bonus: MinorUnits
    min_direct_referrals: int
    min_team_size: int
    min_own_spend: MinorUnits
    min_own_orders: int
    min_direct_sales: MinorUnits
    min_team_sales: MinorUnits

    @classmethod
    async def resolve_nodes(cls, *, info: Info, node_ids: Iterable[str], required: bool = False):
        from service.shops import get_levels

        ctx = info.context
        if not ctx.has_role("admin", "distributor"):
            return [None for _ in node_ids]
        levels = {str(lv.grade): lv for lv in await get_levels(ctx.svc, ctx.shop_id)}
        return [level_type(levels[i], ctx) if i in levels else None for i in node_ids]


def level_type(lv, ctx) -> Level:
    return Level(id=str(lv.grade), grade=lv.grade, name=lv.name, level1_bp=lv.level1_bp, level2_bp=lv.level2_bp,
                 currency=ctx.currency, upgrade_bonus=lv.upgrade_bonus, min_direct_referrals=lv.min_direct_referrals,
                 min_team_size=lv.min_team_size, min_own_spend=lv.min_own_spend, min_own_orders=lv.min_own_orders,
                 min_direct_sales=lv.min_direct_sales, min_team_sales=lv.min_team_sales)


@strawberry.type(description="One upgrade condition of the next level: required vs. where you stand (LV-1). A "
                             "count condition fills `requiredCount`/`actualCount`, an amount condition "
                             "`requiredAmount`/`actualAmount` (in `currency`); the other pair is null.")
class LevelCondition:
    name: str = strawberry.field(description="directReferrals, teamSize, ownOrders (counts); ownSpend, directSales, "
                                             "teamSales (amounts)")
    required_count: Optional[int]
    actual_count: Optional[int]
    required_amount: Optional[MinorUnits]
    actual_amount: Optional[MinorUnits]
    currency: str
    met: bool


@strawberry.type
class LevelProgress:
    next_level: Level
    conditions: list[LevelCondition]
    met_count: int


DistributorStatusEnum = strawberry.enum(DistributorStatus, name="DistributorStatus",
                                        description="DS-1: APPLIED waits for an admin's approval (APPROVAL mode).")


@strawberry.type(name="Distributor", description="A distributor or applicant, for admins (DS-1, LV-3).")
class DistributorSummary(relay.Node):
    id: relay.NodeID[str]
    user_id: str
    status: DistributorStatusEnum
    grade: int
    invite_code: str
    applied_at: Optional[datetime]
    approved_at: Optional[datetime]
    approved_by: Optional[str]
    status_reason: Optional[str] = strawberry.field(description="Why it was last suspended or reinstated (DS-1)")

    @classmethod
    async def resolve_nodes(cls, *, info: Info, node_ids: Iterable[str], required: bool = False):
        return await _resolve(info, "distributor", node_ids, distributor_summary,
                              lambda ctx, d: ctx.has_role("admin"))


def distributor_summary(d, ctx=None) -> DistributorSummary:
    return DistributorSummary(id=d.user_id, user_id=d.user_id, status=DistributorStatus(d.status), grade=d.grade,
                              invite_code=d.invite_code, applied_at=d.applied_at, approved_at=d.approved_at,
                              approved_by=d.approved_by, status_reason=d.status_reason)


@strawberry.type(description="Distribution settings of the shop (section 3).")
class DistributionSettings:
    mode: str
    binding: str
    binding_days: Optional[int]
    bind_new_users_only: bool
    level1_bp: int
    level2_bp: int
    self_purchase: bool
    freeze_days: int
    max_total_bp: int
    currency: str
    min_payout: MinorUnits
    payout_fee_bp: int
    spend_threshold: MinorUnits


def settings_type(s, ctx) -> DistributionSettings:
    return DistributionSettings(mode=s.mode.value, binding=s.binding.value, binding_days=s.binding_days,
                                bind_new_users_only=s.bind_new_users_only, level1_bp=s.level1_bp,
                                level2_bp=s.level2_bp, self_purchase=s.self_purchase, freeze_days=s.freeze_days,
                                max_total_bp=s.max_total_bp, currency=ctx.currency, min_payout=s.min_payout,
                                payout_fee_bp=s.payout_fee_bp, spend_threshold=s.spend_threshold)


@strawberry.type(description="DS-2: what a storefront may learn from an invite code — no personal data.")
class InviteInfo:
    valid: bool
    code: str


# ---------------------------------------------------------------- reporting
@strawberry.type
class VariantStats:
    variant: Optional[str]
    opened: int
    formed: int
    failed: int
    formation_rate_bp: Optional[int] = strawberry.field(description="formed / (formed + failed), basis points")
    mean_seconds_to_form: int = strawberry.field(
        description="Mean time from opening to forming over the formed groups, in whole seconds rounded down; "
                    "0 when none formed")
    units: int
    net_sales: MinorUnits
    currency: str


@strawberry.type(description="RP-2: one A/B variant against the control (the campaign's first variant): the "
                             "difference in formation rate with its 95 % interval (Newcombe's hybrid score interval).")
class VariantComparison:
    variant: str
    control: str
    difference_bp: Optional[int] = strawberry.field(
        description="formationRateBp(variant) − formationRateBp(control); null until both have decided groups")
    difference_low_bp: Optional[int] = strawberry.field(description="95 % lower limit, rounded down")
    difference_high_bp: Optional[int] = strawberry.field(description="95 % upper limit, rounded up")
    enough_data: bool = strawberry.field(
        description="Both variants have at least `minDecidedPerVariant` decided (formed or failed) groups")
    has_winner: bool = strawberry.field(description="enoughData and the 95 % interval excludes 0")


def variant_comparison(c) -> VariantComparison:
    d = c.difference
    return VariantComparison(variant=c.variant, control=c.control, difference_bp=d.difference_bp if d else None,
                             difference_low_bp=d.low_bp if d else None, difference_high_bp=d.high_bp if d else None,
                             enough_data=bool(d and d.enough_data), has_winner=bool(d and d.has_winner))


@strawberry.type(description="RP-2 for one campaign: totals and per A/B variant.")
class CampaignStats:
    currency: str
    total: VariantStats
    variants: list[VariantStats] = strawberry.field(description="In the campaign's order; the first is the control")
    comparisons: list[VariantComparison] = strawberry.field(
        description="Each variant after the first against the control, pairwise")
    min_decided_per_variant: int = strawberry.field(
        description="Decided groups each variant needs before a comparison can call a winner")
    has_winner: bool = strawberry.field(description="Some comparison has a winner")


def variant_stats(x, currency: str) -> VariantStats:
    return VariantStats(variant=x.variant, opened=x.opened, formed=x.formed, failed=x.failed,
                        formation_rate_bp=x.formation_rate_bp, mean_seconds_to_form=x.mean_seconds_to_form,
                        units=x.units, net_sales=x.net_sales, currency=currency)


UserSegment = strawberry.enum(Segment, name="UserSegment",
                              description="RP-3 lifecycle segment: NEW (no paid order), FIRST_ORDER, REPEAT (2-3), "
                                          "LOYAL (>= 4 paid orders), DORMANT (paid orders, none in the last 90 days; "
                                          "takes precedence). Orders refunded in full do not count as paid.")


@strawberry.enum(name="AcquisitionSource", description="RP-4: how a buyer was acquired — the source of their first "
                                                       "paid order")
class AcquisitionSource(Enum):
    REFERRAL = "REFERRAL"
    GROUP_INVITE = "GROUP_INVITE"
    NONE = "NONE"


EarningsGranularity = strawberry.enum(Granularity, name="EarningsGranularity",
                                      description="Calendar days or months of the shop's time zone")


@strawberry.type(description="RP-3: how many of the shop's users are in a segment now.")
class SegmentCount:
    segment: UserSegment
    count: int


@strawberry.type(description="RP-4 for one period and one acquisition source: buyers with a paid order in the "
                             "period (refunded in full does not count), grouped by how they were acquired.")
class RetentionRow:
    source: AcquisitionSource
    currency: str
    buyers: int
    repeat_buyers: int = strawberry.field(description="Buyers with 2 or more paid orders in the period")
    multi_category_buyers: int = strawberry.field(description="Buyers whose period orders span 2 or more categories")
    repurchase_rate_bp: Optional[int] = strawberry.field(
        description="repeatBuyers / buyers in basis points, floored; null without buyers")
    multi_category_rate_bp: Optional[int] = strawberry.field(
        description="multiCategoryBuyers / buyers in basis points, floored; null without buyers")
    net_sales: MinorUnits = strawberry.field(description="Paid less refunded of the buyers' period orders")
    net_sales_per_buyer: Optional[MinorUnits] = strawberry.field(
        description="floor(netSales / buyers); null without buyers")


def retention_row(r, currency: str) -> RetentionRow:
    return RetentionRow(source=AcquisitionSource(r.source), currency=currency, buyers=r.buyers,
                        repeat_buyers=r.repeat_buyers, multi_category_buyers=r.multi_category_buyers,
                        repurchase_rate_bp=r.repurchase_rate_bp, multi_category_rate_bp=r.multi_category_rate_bp,
                        net_sales=r.net_sales, net_sales_per_buyer=r.net_sales_per_buyer)


@strawberry.type(description="RP-1: one local day or month of a distributor's ledger.")
class EarningsPeriod:
    period_from: date = strawberry.field(description="First local day of the period (shop time zone)")
    period_to: date = strawberry.field(description="Local day after the period (half-open)")
    starts_at: datetime = strawberry.field(description="periodFrom 00:00 in the shop's time zone, as an instant")
    ends_at: datetime
    currency: str
    earned: MinorUnits = strawberry.field(
        description="Commission posted less reversals and voids, plus upgrade bonuses, in the period")
    pending: MinorUnits = strawberry.field(description="How much each balance moved in the period (sums of entries)")
    frozen: MinorUnits
    available: MinorUnits
    in_payout: MinorUnits
    paid: MinorUnits
    fees: MinorUnits


def earnings_period(p, currency: str) -> EarningsPeriod:
    m = p.moved
    return EarningsPeriod(period_from=p.day_from, period_to=p.day_to, starts_at=p.starts_at, ends_at=p.ends_at,
                          currency=currency, earned=p.earned, pending=m["PENDING"], frozen=m["FROZEN"],
                          available=m["AVAILABLE"], in_payout=m["IN_PAYOUT"], paid=m["PAID"], fees=m["FEES"])


@strawberry.type(description="An immutable settlement batch (LG-3).")
class Settlement(relay.Node):
    id: relay.NodeID[str]
    local_from: str
    local_to: str
    currency: str
    distributors: int
    opening: MinorUnits
    released: MinorUnits
    reversals: MinorUnits
    bonuses: MinorUnits
    payouts: MinorUnits
    fees: MinorUnits
    closing: MinorUnits

    @strawberry.field(description="Path of the CSV export (GET with a finance token, LG-3)")
    def csv_path(self) -> str:
        return f"/exports/settlements/{self.id}.csv"

    @strawberry.field(description="Path of the XLSX export (GET with a finance token, LG-3)")
    def xlsx_path(self) -> str:
        return f"/exports/settlements/{self.id}.xlsx"

    @classmethod
    async def resolve_nodes(cls, *, info: Info, node_ids: Iterable[str], required: bool = False):
        return await _resolve(info, "settlement", node_ids, lambda b, ctx: settlement_type(b),
                              lambda ctx, b: ctx.has_role("finance", "admin"))


def settlement_type(b) -> Settlement:
    return Settlement(id=b.settlement_id, local_from=b.local_from, local_to=b.local_to, currency=b.currency,
                      distributors=b.distributors, opening=b.opening, released=b.released, reversals=b.reversals,
                      bonuses=b.bonuses, payouts=b.payouts, fees=b.fees, closing=b.closing)


# ---------------------------------------------------------------- webhooks and events
def _admin(ctx, _row) -> bool:
    return ctx.has_role("admin")


@strawberry.type(description="A signed webhook endpoint and its health (docs/webhooks.md).")
class WebhookEndpoint(relay.Node):
    id: relay.NodeID[str]
    url: str
    event_types: list[str] = strawberry.field(description="Event types it receives; empty: all of them.")
    enabled: bool = strawberry.field(description="False once disabled after failing for 24 h: deliveries are "
                                                 "held (not lost) until enableWebhook.")
    secret: str = strawberry.field(description="Shown to admins to verify signatures (docs/webhooks.md).")
    consecutive_failures: int = strawberry.field(description="Failed attempts since the last success.")
    failing_since: Optional[datetime] = strawberry.field(description="First failed attempt since the last success.")
    disabled_at: Optional[datetime]
    created_at: datetime

    @strawberry.field(description="What it is owed and was sent, newest event first; filter by state "
                                  "(PENDING, HELD, DELIVERED, DEAD).")
    async def deliveries(self, info: Info, state: Optional[str] = None, first: Optional[int] = None,
                         after: Optional[str] = None) -> Connection["WebhookDelivery"]:
        from service import queries

        ctx = info.context
        return await paginate_keyset(lambda **p: queries.page_deliveries(
            ctx.svc, shop_id=ctx.shop_id, endpoint_id=self.id, state=state, **p), first, after, DELIVERIES_KEYSET,
            delivery_type)

    @strawberry.field(description="Every POST made to it, newest first, with the HTTP status or error.")
    async def attempts(self, info: Info, first: Optional[int] = None,
                       after: Optional[str] = None) -> Connection["WebhookAttempt"]:
        from service import queries

        ctx = info.context
        return await paginate_keyset(lambda **p: queries.page_attempts(
            ctx.svc, shop_id=ctx.shop_id, endpoint_id=self.id, **p), first, after, ATTEMPTS_KEYSET, attempt_type)

    @classmethod
    async def resolve_nodes(cls, *, info: Info, node_ids: Iterable[str], required: bool = False):
        return await _resolve(info, "webhook_endpoint", node_ids, lambda e, ctx: endpoint_type(e), _admin)


def endpoint_type(e) -> WebhookEndpoint:
    return WebhookEndpoint(id=e.endpoint_id, url=e.url, event_types=list(e.event_types or []), enabled=e.enabled,
                           secret=e.secret, consecutive_failures=e.consecutive_failures,
                           failing_since=e.failing_since, disabled_at=e.disabled_at, created_at=e.created_at)


def _event_field():
    async def event(self, info: Info) -> Optional["ShopEvent"]:
        e = await info.context.loaders.event.load(self._event)
        return event_type(e) if e else None

    return strawberry.field(resolver=event, description="The event (null if it no longer exists).")


@strawberry.type(description="One event owed to one endpoint: PENDING (due at nextAttemptAt), HELD (endpoint "
                             "disabled), DELIVERED or DEAD (gave up; redeliverEvents owes it again).")
class WebhookDelivery(relay.Node):
    id: relay.NodeID[str]
    endpoint_id: strawberry.ID
    seq: int
    state: str
    attempts: int
    next_attempt_at: datetime
    created_at: datetime
    delivered_at: Optional[datetime]
    last_status: Optional[int]
    last_error: Optional[str]
    _event: strawberry.Private[str]
    event: Optional["ShopEvent"] = _event_field()

    @classmethod
    async def resolve_nodes(cls, *, info: Info, node_ids: Iterable[str], required: bool = False):
        return await _resolve(info, "webhook_delivery", node_ids, lambda d, ctx: delivery_type(d), _admin)


def delivery_key(endpoint_id: str, event_id: str) -> str:
    return f"{endpoint_id}:{event_id}"


def delivery_type(d) -> WebhookDelivery:
    return WebhookDelivery(id=delivery_key(d.endpoint_id, d.event_id),
                           endpoint_id=strawberry.ID(global_id("WebhookEndpoint", d.endpoint_id)), seq=d.seq,
                           state=d.state, attempts=d.attempts, next_attempt_at=d.next_attempt_at,
                           created_at=d.created_at, delivered_at=d.delivered_at, last_status=d.last_status,
                           last_error=d.last_error, _event=d.event_id)


@strawberry.type(description="One POST to an endpoint: the HTTP status, or the error when there was no answer.")
class WebhookAttempt(relay.Node):
    id: relay.NodeID[str]
    at: datetime
    status_code: Optional[int]
    error: Optional[str]
    duration_ms: int
    _event: strawberry.Private[str]
    event: Optional["ShopEvent"] = _event_field()

    @classmethod
    async def resolve_nodes(cls, *, info: Info, node_ids: Iterable[str], required: bool = False):
        return await _resolve(info, "webhook_attempt", node_ids, lambda a, ctx: attempt_type(a), _admin)


def attempt_type(a) -> WebhookAttempt:
    return WebhookAttempt(id=a.attempt_id, at=a.at, status_code=a.status_code, error=a.error,
                          duration_ms=a.duration_ms, _event=a.event_id)


@strawberry.type(description="An event of the shop's outbox (docs/webhooks.md). `seq` numbers events (the ranges of "
                             "redeliverEvents; per aggregate it is their order); page `events` by cursor.")
class ShopEvent(relay.Node):
    id: relay.NodeID[str]
    seq: int
    type: str
    aggregate_type: str
    aggregate_id: str
    rule: Optional[str]
    occurred_at: datetime
    payload_json: str

    @classmethod
    async def resolve_nodes(cls, *, info: Info, node_ids: Iterable[str], required: bool = False):
        return await _resolve(info, "event", node_ids, lambda e, ctx: event_type(e), _admin)


def event_type(e) -> ShopEvent:
    return ShopEvent(id=e.event_id, seq=e.seq, type=e.type, aggregate_type=e.aggregate_type,
                     aggregate_id=e.aggregate_id, rule=e.rule, occurred_at=e.occurred_at,
                     payload_json=json.dumps(e.payload, sort_keys=True))
