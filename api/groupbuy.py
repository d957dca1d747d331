"""Group-buy (拼团, rules section 2, GB-1..GB-15): campaigns, groups and seats — types, queries, mutations.

The live `groupProgress` subscription is in api.subscriptions; campaign statistics (RP-2) in api.reports."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any, Iterable, Optional

import strawberry
from strawberry import relay
from strawberry.types import Info

from api.distribution import INVITE_CODE_FIELD, ReferralAttribution, attribution_type
from api.errors import UserError
from api.orders import Order, order_type
from api.payload import idempotency_key_field, payload_mutation
from api.permissions import HasShopKey, IsAdmin, IsCustomer
from api.relay import Connection, MinorUnits, global_id, make_connection, page_args, paginate, raw_id, resolve_visible
from api.visibility import sees_draw, sees_user_ids, user_alias
from engine import groupbuy as gb
from store import mapping
from service.reads import queries
from service.usecases import campaigns as campaigns_svc
from service.usecases import groupbuy_settings as groupbuy_settings_svc
from service.usecases import groups as groups_svc


# ---------------------------------------------------------------- types
# The engine's enums are the GraphQL enums (the wire values are their names, as the strings were).
strawberry.enum(
    gb.GroupState,
    name="GroupState",
    description="GB-1..GB-8: PENDING (the leader has not paid yet), OPEN (members may join until "
    "expiresAt), FORMED (GB-4), FAILED (GB-6), CANCELLED (GB-1, GB-8)",
)
strawberry.enum(
    gb.SeatState,
    name="SeatState",
    description="RESERVED (waiting for payment, GB-2), PAID, RELEASED (an unpaid reservation "
    "cancelled), LEFT (a paid seat given up before forming, GB-8)",
)
strawberry.enum(gb.PriceRole, name="PriceRole", description="The price a seat pays: the leader's or a member's (GB-3)")


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
    role: gb.PriceRole
    state: gb.SeatState
    quantity: int
    unit_price: MinorUnits
    currency: str
    reserved_at: datetime
    pay_by: datetime
    paid_at: Optional[datetime]
    order_id: strawberry.ID


# ---------------------------------------------------------------- Group's v2 fields (GB-12, GB-7 v2, GB-15)
# resolved from the engine group the Group type keeps (`_g`)
async def group_grace_until(root: Any, info: Info) -> Optional[datetime]:
    """GB-12: while the group waits past `expires_at` for reservations still inside their payment window,
    the last of their `pay_by` (the latest the group can decide); null otherwise."""
    g: gb.Group = root._g
    now = info.context.svc.now()
    if g.state is not gb.GroupState.OPEN or g.expires_at is None or now < g.expires_at:
        return None
    row = await info.context.loaders.campaign.load(g.campaign_id)
    return gb.grace_until(mapping.campaign_from_row(row), g) if row is not None else None


@strawberry.type(description="GB-7 v2: one candidate of a group's draw (a paid seat at forming).")
class LotteryCandidate:
    order_id: strawberry.ID = strawberry.field(description="The candidate's order (global id, as elsewhere)")
    order_key: str = strawberry.field(description="The order's own id: the HMAC message of its score")
    score: str = strawberry.field(description="HMAC-SHA256(key = seed bytes, msg = orderKey), 64 hex digits")


@strawberry.type(description="GB-7 v2: a group's revealed draw — re-run it with docs/lottery.md.")
class LotteryDraw:
    commitment: str = strawberry.field(description="SHA-256 of the seed's 32 bytes, public since opening")
    seed: str = strawberry.field(description="The group's seed, 64 hex digits (32 bytes), revealed at the draw")
    candidates: list[LotteryCandidate] = strawberry.field(
        description="Every candidate, in draw order (score, then orderKey)"
    )
    winners: list[strawberry.ID] = strawberry.field(description="The first K candidates' orders (global ids)")
    winner_keys: list[str] = strawberry.field(description="The winners' own order ids, in draw order")


def group_lottery_commitment(root: Any, info: Info) -> Optional[str]:
    """GB-7 v2: SHA-256(seed), public from the moment the group opens (null: no lottery, or opened before v2)."""
    return root._g.lottery_commitment


def group_draw(root: Any, info: Info) -> Optional[LotteryDraw]:
    """GB-7 v2: after the draw, for the group's members, admins and finance; null before or for others."""
    g: gb.Group = root._g
    d = g.draw()
    if d is None or not sees_draw(info.context, g):
        return None
    return LotteryDraw(
        commitment=d.commitment,
        seed=d.seed,
        candidates=[
            LotteryCandidate(order_id=strawberry.ID(global_id("Order", o)), order_key=o, score=sc)
            for o, sc in d.candidates
        ],
        winners=[strawberry.ID(global_id("Order", o)) for o in d.winners],
        winner_keys=list(d.winners),
    )


def group_nudges(root: Any, info: Info) -> list[str]:
    """GB-15: the nudges this group has emitted (`almost_full`, `expiring_soon`), each at most once."""
    g: gb.Group = root._g
    out = []
    if g.nudged_almost_full_at is not None:
        out.append("almost_full")
    # a grace that began before the worker could nudge marks `expiring_soon` as skipped, at expires_at
    if g.nudged_expiring_soon_at is not None and (g.expires_at is None or g.nudged_expiring_soon_at < g.expires_at):
        out.append("expiring_soon")
    return out


@strawberry.type(description="A group (拼团): seats, the tier reached, time left (GB-1..GB-8).")
class Group(relay.Node):
    id: relay.NodeID[str]
    campaign_id: strawberry.ID
    state: gb.GroupState
    variant: Optional[str]
    currency: str = strawberry.field(description="The shop currency of every amount in this group (tiers, seats)")
    capacity: int
    min_size: int
    seats_held: int = strawberry.field(description="Reserved plus paid seats (GB-2)")
    seats_paid: int
    seats_left: int
    tier_reached: Optional[Tier] = strawberry.field(
        description="The tier the paid seats reach now (the final tier once FORMED, GB-5); null below the first"
    )
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

    @strawberry.field(
        description="The leader's user id: for shop staff and the leader only; null for other "
        "customers, distributors and public-key callers (they see leaderAlias)."
    )
    def leader_user_id(self) -> Optional[str]:
        return self._leader if self._leader_visible else None

    @strawberry.field(
        description="The name the shop shows for the leader to other customers (`member-…`, the "
        "same for one user across the shop's groups); null for public-key callers."
    )
    def leader_alias(self) -> Optional[str]:
        return self._leader_alias

    @strawberry.field
    async def campaign(self, info: Info) -> Optional["Campaign"]:
        row = await info.context.loaders.campaign.load(self._campaign)
        return campaign_type(row, info.context) if row else None

    _campaign: strawberry.Private[str]
    _g: strawberry.Private[Any] = None  # the engine group, for the v2 fields above
    grace_until: Optional[datetime] = strawberry.field(
        resolver=group_grace_until,
        description=(
            "GB-12: while the group waits past expiresAt for reservations still inside their payment window, the "
            "latest instant it can decide (their last payBy); null otherwise"
        ),
    )
    lottery_commitment: Optional[str] = strawberry.field(
        resolver=group_lottery_commitment,
        description=(
            "GB-7 v2: SHA-256 of the group's lottery seed, public from opening; null without a lottery or for groups "
            "opened before v2 (they draw with the v1 procedure, docs/lottery.md)"
        ),
    )
    nudges: list[str] = strawberry.field(
        resolver=group_nudges,
        description=("GB-15: the nudges this group has emitted — `almost_full`, `expiring_soon` — each at most once"),
    )
    draw: Optional[LotteryDraw] = strawberry.field(
        resolver=group_draw,
        description=("GB-7 v2: the revealed draw once the group has formed — for its members, admins and finance"),
    )

    @classmethod
    async def resolve_nodes(cls, *, info: Info, node_ids: Iterable[str], required: bool = False):
        return await resolve_visible(info, "group", node_ids, group_type)


def _tier(t, currency: str) -> Tier:
    return Tier(members=t.members, unit_price=t.unit_price, currency=currency)


def _seat(s: gb.Seat, currency: str) -> Seat:
    return Seat(
        role=s.role,
        state=s.state,
        quantity=s.quantity,
        unit_price=s.unit_price,
        currency=currency,
        reserved_at=s.reserved_at,
        pay_by=s.pay_by,
        paid_at=s.paid_at,
        order_id=strawberry.ID(global_id("Order", s.order_id)),
    )


def group_type(g: gb.Group, ctx) -> Group:
    now = ctx.svc.now()
    left = int((g.expires_at - now).total_seconds()) if g.expires_at and g.state == gb.GroupState.OPEN else None
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
    return Group(
        id=g.id,
        campaign_id=strawberry.ID(global_id("Campaign", g.campaign_id)),
        state=g.state,
        variant=g.variant,
        currency=cur,
        capacity=g.capacity,
        min_size=g.min_size,
        seats_held=g.held_seats,
        seats_paid=g.paid_seats,
        seats_left=g.seats_left,
        tier_reached=_tier(reached, cur) if reached else None,
        next_tier=_tier(nxt, cur) if nxt else None,
        tiers=[_tier(t, cur) for t in g.tiers],
        opened_at=g.opened_at,
        expires_at=g.expires_at,
        seconds_left=max(left, 0) if left is not None else None,
        formed_at=g.formed_at,
        my_seat=mine,
        _leader=g.leader_user_id,
        _leader_visible=sees_user_ids(ctx, g.leader_user_id),
        _leader_alias=user_alias(ctx.shop_id, g.leader_user_id) if ctx.principal is not None else None,
        _campaign=g.campaign_id,
        _g=g,
    )


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
    almost_full_at: int = strawberry.field(
        description="GB-15: paid seats missing to capacity at which `group.almost_full` is emitted (0: never)"
    )
    expiring_soon_before_seconds: int = strawberry.field(
        description="GB-15: `group.expiring_soon` this long before expiresAt (0: never)"
    )

    @strawberry.field(description="Groups of this campaign open for joining, soonest to expire first.")
    async def open_groups(
        self, info: Info, first: Optional[int] = None, after: Optional[str] = None
    ) -> Connection[Group]:
        from service.reads import queries

        ctx = info.context
        limit, offset = page_args(first, after)
        ids, total = await queries.page_open_group_ids(
            ctx.svc, shop_id=ctx.shop_id, campaign_id=self.id, limit=limit, offset=offset
        )
        groups = await ctx.loaders.group.load_many(ids)
        return make_connection([group_type(g, ctx) for g in groups if g is not None], total, offset)

    @strawberry.field(
        permission_classes=[IsAdmin],
        description="Admin: every group of this campaign (or those in `states`), most recently opened first.",
    )
    async def groups(
        self,
        info: Info,
        states: Optional[list[gb.GroupState]] = None,
        first: Optional[int] = None,
        after: Optional[str] = None,
    ) -> Connection[Group]:
        from service.reads import queries

        ctx = info.context
        limit, offset = page_args(first, after)
        ids, total = await queries.page_campaign_group_ids(
            ctx.svc,
            shop_id=ctx.shop_id,
            campaign_id=self.id,
            states=[s.value for s in states] if states is not None else None,
            limit=limit,
            offset=offset,
        )
        groups = await ctx.loaders.group.load_many(ids)
        return make_connection([group_type(g, ctx) for g in groups if g is not None], total, offset)

    @classmethod
    async def resolve_nodes(cls, *, info: Info, node_ids: Iterable[str], required: bool = False):
        return await resolve_visible(info, "campaign", node_ids, campaign_type)


def campaign_type(c, ctx) -> Campaign:
    from store import mapping

    now = ctx.svc.now()
    return Campaign(
        id=c.campaign_id,
        title=c.title,
        product_ref=c.product_ref,
        currency=ctx.currency,
        list_price=c.list_price,
        tiers=[_tier(t, ctx.currency) for t in mapping.tiers_from_json(c.tiers)],
        leader_discount=c.leader_discount,
        leader_commission_bp=c.leader_commission_bp,
        duration_seconds=c.duration_s,
        payment_window_seconds=c.payment_window_s,
        starts_at=c.starts_at,
        ends_at=c.ends_at,
        active=c.starts_at <= now < c.ends_at,
        stock=c.stock,
        stock_left=c.stock_left,
        per_user_limit=c.per_user_limit,
        max_quantity_per_order=c.max_quantity_per_order,
        new_members_only=c.new_members_only,
        fill_at_expiry=c.fill_at_expiry,
        lottery_winners=c.lottery_winners,
        commission_enabled=c.commission_enabled,
        almost_full_at=c.almost_full_at,
        expiring_soon_before_seconds=c.expiring_soon_before_s,
        variants=[
            VariantInfo(name=v.name, tiers=[_tier(t, ctx.currency) for t in v.tiers], weight=v.weight)
            for v in mapping.variants_from_json(c.variants or [])
        ],
    )


# ---------------------------------------------------------------- queries


def _campaign_id(id: str) -> str:
    return raw_id(id, "Campaign", "id")


@strawberry.field(permission_classes=[HasShopKey], description="A campaign page (public with X-Shop-Key).")
async def campaign(info: Info, id: strawberry.ID) -> Optional[Campaign]:
    ctx = info.context
    c = await ctx.loaders.campaign.load(_campaign_id(id))
    return campaign_type(c, ctx) if c else None


@strawberry.field(permission_classes=[HasShopKey], description="Campaigns open now (public with X-Shop-Key).")
async def campaigns(
    info: Info, first: Optional[int] = None, after: Optional[str] = None, active_only: bool = True
) -> Connection[Campaign]:
    ctx = info.context
    return await paginate(
        lambda **p: queries.page_campaigns(ctx.svc, shop_id=ctx.shop_id, active_only=active_only, **p),
        first,
        after,
        lambda c: campaign_type(c, ctx),
    )


@strawberry.field(permission_classes=[HasShopKey], description="A group page (public with X-Shop-Key).")
async def group(info: Info, id: strawberry.ID) -> Optional[Group]:
    ctx = info.context
    g = await ctx.loaders.group.load(raw_id(id, "Group", "id"))
    return group_type(g, ctx) if g else None


@strawberry.field(permission_classes=[IsCustomer], description="Groups the caller holds or held a seat in.")
async def my_groups(info: Info, first: Optional[int] = None, after: Optional[str] = None) -> Connection[Group]:
    ctx = info.context

    async def fetch(**p):
        ids, total = await queries.page_user_group_ids(ctx.svc, shop_id=ctx.shop_id, user_id=ctx.user_id, **p)
        return [g for g in await ctx.loaders.group.load_many(ids) if g is not None], total

    return await paginate(fetch, first, after, lambda g: group_type(g, ctx))


# ---------------------------------------------------------------- mutations


def _prime(ctx, r) -> None:
    """A use case's result carries the group and order as it committed them: the loaders start from those,
    so rendering the payload reads nothing back (a replayed answer has none and is read)."""
    if getattr(r, "group", None) is not None:
        ctx.loaders.group.prime(r.group.id, r.group, force=True)
    if getattr(r, "order", None) is not None:
        ctx.loaders.order.prime(r.order.order_id, r.order, force=True)


async def _seat_payload(ctx, r, **extra) -> dict:
    """SeatPayload of a seat taken (open, join, quick join): the group and order the use case returned, primed
    into the request's loaders, with the amount to pay."""
    _prime(ctx, r)
    return dict(
        **await _group_and_order(ctx, r.group_id, r.order_id), amount_to_pay=r.amount, currency=ctx.currency, **extra
    )


async def _group_and_order(ctx, group_id: str, order_id: str) -> dict:
    g = await ctx.loaders.group.load(group_id)
    o = await ctx.loaders.order.load(order_id)
    return {"group": group_type(g, ctx) if g else None, "order": order_type(o, ctx) if o else None}


@strawberry.input
class OpenGroupInput:
    campaign_id: strawberry.ID
    quantity: int = 1
    invite_code: Optional[str] = INVITE_CODE_FIELD
    idempotency_key: Optional[str] = idempotency_key_field()


@strawberry.input
class JoinGroupInput:
    group_id: strawberry.ID
    quantity: int = 1
    invite_code: Optional[str] = INVITE_CODE_FIELD
    idempotency_key: Optional[str] = idempotency_key_field()


@strawberry.type(description="A reserved seat: pay `amountToPay` within the campaign's payment window (GB-2).")
class SeatPayload:
    group: Optional[Group] = None
    order: Optional[Order] = None
    amount_to_pay: Optional[MinorUnits] = None
    currency: Optional[str] = None
    attribution: Optional[ReferralAttribution] = None
    errors: list[UserError]


@strawberry.input
class LeaveGroupInput:
    group_id: strawberry.ID
    idempotency_key: Optional[str] = idempotency_key_field()


@strawberry.type
class LeaveGroupPayload:
    group: Optional[Group] = None
    errors: list[UserError]


@payload_mutation(
    SeatPayload,
    permission_classes=[IsCustomer],
    description="GB-1: open a group as its leader.",
    fields={"userId": None},
)
async def open_group(info: Info, input: OpenGroupInput) -> dict:
    ctx = info.context
    r = await groups_svc.open_group(
        ctx.svc,
        shop_id=ctx.shop_id,
        campaign_id=raw_id(input.campaign_id, "Campaign", "campaignId"),
        user_id=ctx.user_id,
        quantity=input.quantity,
        idempotency_key=input.idempotency_key,
        invite_code=input.invite_code,
    )
    return await _seat_payload(ctx, r, attribution=attribution_type(r.attribution))


@payload_mutation(
    SeatPayload,
    permission_classes=[IsCustomer],
    description="GB-2: reserve a seat in an open group.",
    fields={"userId": None},
)
async def join_group(info: Info, input: JoinGroupInput) -> dict:
    ctx = info.context
    r = await groups_svc.join_group(
        ctx.svc,
        shop_id=ctx.shop_id,
        group_id=raw_id(input.group_id, "Group", "groupId"),
        user_id=ctx.user_id,
        quantity=input.quantity,
        idempotency_key=input.idempotency_key,
        invite_code=input.invite_code,
    )
    return await _seat_payload(ctx, r, attribution=attribution_type(r.attribution))


@payload_mutation(
    LeaveGroupPayload,
    permission_classes=[IsCustomer],
    description="GB-8: leave before the group forms.",
    fields={"userId": None},
)
async def leave_group(info: Info, input: LeaveGroupInput) -> dict:
    ctx = info.context
    gid = raw_id(input.group_id, "Group", "groupId")
    r = await groups_svc.leave_group(
        ctx.svc, shop_id=ctx.shop_id, group_id=gid, user_id=ctx.user_id, idempotency_key=input.idempotency_key
    )
    if r.get("group") is not None:
        ctx.loaders.group.prime(gid, r["group"], force=True)
    g = await ctx.loaders.group.load(gid)
    return dict(group=group_type(g, ctx) if g else None)


@strawberry.input
class TierInput:
    members: int
    unit_price: MinorUnits


@strawberry.input
class VariantInput:
    name: str
    tiers: list[TierInput]
    weight: int


@strawberry.input
class CreateCampaignInput:
    product_ref: str
    title: str
    list_price: MinorUnits
    tiers: list[TierInput]
    duration_seconds: int
    payment_window_seconds: int
    starts_at: datetime
    ends_at: datetime
    category: str = ""
    leader_discount: MinorUnits = 0
    leader_commission_bp: Optional[int] = None
    stock: Optional[int] = None
    per_user_limit: Optional[int] = None
    max_quantity_per_order: int = 1
    new_members_only: bool = False
    fill_at_expiry: Optional[int] = None
    lottery_winners: int = 0
    variants: Optional[list[VariantInput]] = None
    commission_enabled: bool = True
    idempotency_key: Optional[str] = idempotency_key_field()
    almost_full_at: int = strawberry.field(
        default=1,
        description=(
            "GB-15: `group.almost_full` is emitted once when the paid seats missing to capacity first reach this "
            "(0: never)"
        ),
    )
    expiring_soon_before_seconds: int = strawberry.field(
        default=3600,
        description=(
            "GB-15: `group.expiring_soon` is emitted once this long before an open group's expiresAt (0: never)"
        ),
    )


@strawberry.type
class CampaignPayload:
    campaign: Optional[Campaign] = None
    errors: list[UserError]


@strawberry.input
class EndCampaignInput:
    campaign_id: strawberry.ID
    idempotency_key: Optional[str] = idempotency_key_field()


@payload_mutation(
    CampaignPayload,
    permission_classes=[IsAdmin],
    description="Section 2: a group-buy campaign.",
    fields={"duration": "durationSeconds", "paymentWindow": "paymentWindowSeconds", "lotterySeed": "lotteryWinners"},
)
async def create_campaign(info: Info, input: CreateCampaignInput) -> dict:
    ctx = info.context
    c = await campaigns_svc.create_campaign(
        ctx.svc,
        shop_id=ctx.shop_id,
        product_ref=input.product_ref,
        title=input.title,
        list_price=input.list_price,
        tiers=[(t.members, t.unit_price) for t in input.tiers],
        duration=timedelta(seconds=input.duration_seconds),
        payment_window=timedelta(seconds=input.payment_window_seconds),
        starts_at=input.starts_at,
        ends_at=input.ends_at,
        leader_discount=input.leader_discount,
        leader_commission_bp=input.leader_commission_bp,
        stock=input.stock,
        per_user_limit=input.per_user_limit,
        max_quantity_per_order=input.max_quantity_per_order,
        new_members_only=input.new_members_only,
        fill_at_expiry=input.fill_at_expiry,
        lottery_winners=input.lottery_winners,
        variants=[(v.name, [(t.members, t.unit_price) for t in v.tiers], v.weight) for v in (input.variants or [])],
        commission_enabled=input.commission_enabled,
        category=input.category,
        idempotency_key=input.idempotency_key,
        almost_full_at=input.almost_full_at,
        expiring_soon_before=timedelta(seconds=input.expiring_soon_before_seconds),
    )
    return dict(campaign=campaign_type(c, ctx))


@payload_mutation(
    CampaignPayload,
    permission_classes=[IsAdmin],
    description="Stop a campaign now: no group can be opened any more; open groups keep their "
    "expiry and form or fail then (GB-1). Ending it again changes nothing.",
)
async def end_campaign(info: Info, input: EndCampaignInput) -> dict:
    ctx = info.context
    c = await campaigns_svc.end_campaign(
        ctx.svc,
        shop_id=ctx.shop_id,
        campaign_id=raw_id(input.campaign_id, "Campaign", "campaignId"),
        idempotency_key=input.idempotency_key,
    )
    return dict(campaign=campaign_type(c, ctx))


# ---------------------------------------------------------------- v2: quick join (GB-13), overflow re-seat (GB-14)
@strawberry.input
class QuickJoinInput:
    campaign_id: strawberry.ID
    quantity: int = 1
    open_if_none: bool = strawberry.field(
        default=False,
        description=("GB-13: when no open group can take the customer, open a new group as its leader (GB-1)"),
    )
    idempotency_key: Optional[str] = idempotency_key_field()


@strawberry.type(
    description="GB-13: the seat quickJoin found (or the group it opened): pay `amountToPay` within the payment window."
)
class QuickJoinPayload:
    group: Optional[Group] = None
    order: Optional[Order] = None
    amount_to_pay: Optional[MinorUnits] = None
    currency: Optional[str] = None
    opened: Optional[bool] = strawberry.field(
        default=None, description="True when no open group could take the customer and they opened one as leader"
    )
    errors: list[UserError]


@payload_mutation(
    QuickJoinPayload,
    permission_classes=[IsCustomer],
    description=(
        "GB-13 (凑团): a seat in the open group of a campaign closest to forming (fewest seats to its next "
        "threshold, then earliest expiry, then earliest opened); the next group is tried if one fills first; "
        "with openIfNone a new group is opened when none can take the customer, else NO_GROUP_AVAILABLE."
    ),
)
async def quick_join(info: Info, input: QuickJoinInput) -> dict:
    ctx = info.context
    r = await groups_svc.quick_join(
        ctx.svc,
        shop_id=ctx.shop_id,
        campaign_id=raw_id(input.campaign_id, "Campaign", "campaignId"),
        user_id=ctx.user_id,
        quantity=input.quantity,
        open_if_none=input.open_if_none,
        idempotency_key=input.idempotency_key,
    )
    return await _seat_payload(ctx, r, opened=r.opened)


@strawberry.input
class UpdateGroupBuySettingsInput:
    overflow_reseat: bool = strawberry.field(
        description=(
            "GB-14: a payment that GB-9 would refund takes a seat in another open group of its campaign at the same "
            "role and unit price when one can take the buyer (off by default)"
        )
    )
    idempotency_key: Optional[str] = idempotency_key_field()


@strawberry.type(description="The shop's group-buy options (v2).")
class GroupBuySettings:
    overflow_reseat: bool = strawberry.field(description="GB-14 overflow re-seat (off by default)")


@strawberry.type
class GroupBuySettingsPayload:
    settings: Optional[GroupBuySettings] = None
    errors: list[UserError]


@strawberry.field(permission_classes=[IsAdmin], description="The shop's group-buy options (GB-14).")
async def group_buy_settings(info: Info) -> GroupBuySettings:
    ctx = info.context
    return GroupBuySettings(
        overflow_reseat=await groupbuy_settings_svc.get_overflow_reseat(ctx.svc, shop_id=ctx.shop_id)
    )


@payload_mutation(
    GroupBuySettingsPayload, permission_classes=[IsAdmin], description="GB-14: the shop's group-buy options."
)
async def update_group_buy_settings(info: Info, input: UpdateGroupBuySettingsInput) -> dict:
    ctx = info.context
    v = await groupbuy_settings_svc.set_overflow_reseat(
        ctx.svc, shop_id=ctx.shop_id, enabled=input.overflow_reseat, idempotency_key=input.idempotency_key
    )
    return dict(settings=GroupBuySettings(overflow_reseat=v))
