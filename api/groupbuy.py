"""Group-buy (拼团, rules section 2, GB-1..GB-11): campaigns, groups and seats — types, queries, mutations.

The live `groupProgress` subscription is in api.subscriptions; campaign statistics (RP-2) in api.reports."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Iterable, Optional

import strawberry
from strawberry import relay
from strawberry.types import Info

from api.distribution_v2 import INVITE_CODE_FIELD, ReferralAttribution, attribution_type
from api.errors import UserError
from api.orders import Order, order_type
from api.payload import idempotency_key_field, payload_mutation
from api.permissions import HasShopKey, IsAdmin, IsCustomer
from api.relay import Connection, MinorUnits, global_id, make_connection, page_args, paginate, raw_id, resolve_visible
from api.visibility import sees_user_ids, user_alias
from engine import groupbuy as gb
from service.reads import queries
from service.usecases import campaigns as campaigns_svc
from service.usecases import groups as groups_svc


# ---------------------------------------------------------------- types

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

    @classmethod
    async def resolve_nodes(cls, *, info: Info, node_ids: Iterable[str], required: bool = False):
        return await resolve_visible(info, "group", node_ids, group_type)


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
                 _campaign=g.campaign_id)


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

    @strawberry.field(description="Groups of this campaign open for joining, soonest to expire first.")
    async def open_groups(self, info: Info, first: Optional[int] = None,
                          after: Optional[str] = None) -> Connection[Group]:
        from service.reads import queries

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
        from service.reads import queries

        ctx = info.context
        limit, offset = page_args(first, after)
        ids, total = await queries.page_campaign_group_ids(ctx.svc, shop_id=ctx.shop_id, campaign_id=self.id,
                                                           states=states, limit=limit, offset=offset)
        groups = await ctx.loaders.group.load_many(ids)
        return make_connection([group_type(g, ctx) for g in groups if g is not None], total, offset)

    @classmethod
    async def resolve_nodes(cls, *, info: Info, node_ids: Iterable[str], required: bool = False):
        return await resolve_visible(info, "campaign", node_ids, campaign_type)


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
        commission_enabled=c.commission_enabled,
        variants=[VariantInfo(name=v.name, tiers=[_tier(t, ctx.currency) for t in v.tiers], weight=v.weight)
                  for v in mapping.variants_from_json(c.variants or [])])


# ---------------------------------------------------------------- queries

def _campaign_id(id: str) -> str:
    return raw_id(id, "Campaign", "id")


@strawberry.field(permission_classes=[HasShopKey], description="A campaign page (public with X-Shop-Key).")
async def campaign(info: Info, id: strawberry.ID) -> Optional[Campaign]:
    ctx = info.context
    c = await ctx.loaders.campaign.load(_campaign_id(id))
    return campaign_type(c, ctx) if c else None


@strawberry.field(permission_classes=[HasShopKey], description="Campaigns open now (public with X-Shop-Key).")
async def campaigns(info: Info, first: Optional[int] = None, after: Optional[str] = None,
                    active_only: bool = True) -> Connection[Campaign]:
    ctx = info.context
    return await paginate(lambda **p: queries.page_campaigns(ctx.svc, shop_id=ctx.shop_id,
                                                             active_only=active_only, **p),
                          first, after, lambda c: campaign_type(c, ctx))


@strawberry.field(permission_classes=[HasShopKey], description="A group page (public with X-Shop-Key).")
async def group(info: Info, id: strawberry.ID) -> Optional[Group]:
    ctx = info.context
    g = await ctx.loaders.group.load(raw_id(id, "Group", "id"))
    return group_type(g, ctx) if g else None


@strawberry.field(permission_classes=[IsCustomer], description="Groups the caller holds or held a seat in.")
async def my_groups(info: Info, first: Optional[int] = None,
                    after: Optional[str] = None) -> Connection[Group]:
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


@payload_mutation(SeatPayload, permission_classes=[IsCustomer], description="GB-1: open a group as its leader.")
async def open_group(info: Info, input: OpenGroupInput) -> dict:
    ctx = info.context
    r = await groups_svc.open_group(ctx.svc, shop_id=ctx.shop_id,
                                    campaign_id=raw_id(input.campaign_id, "Campaign", "campaignId"),
                                    user_id=ctx.user_id, quantity=input.quantity,
                                    idempotency_key=input.idempotency_key, invite_code=input.invite_code)
    _prime(ctx, r)
    return dict(**await _group_and_order(ctx, r.group_id, r.order_id), amount_to_pay=r.amount,
                currency=ctx.currency, attribution=attribution_type(r.attribution))


@payload_mutation(SeatPayload, permission_classes=[IsCustomer], description="GB-2: reserve a seat in an open group.")
async def join_group(info: Info, input: JoinGroupInput) -> dict:
    ctx = info.context
    r = await groups_svc.join_group(ctx.svc, shop_id=ctx.shop_id,
                                    group_id=raw_id(input.group_id, "Group", "groupId"),
                                    user_id=ctx.user_id, quantity=input.quantity,
                                    idempotency_key=input.idempotency_key, invite_code=input.invite_code)
    _prime(ctx, r)
    return dict(**await _group_and_order(ctx, r.group_id, r.order_id), amount_to_pay=r.amount,
                currency=ctx.currency, attribution=attribution_type(r.attribution))


@payload_mutation(LeaveGroupPayload, permission_classes=[IsCustomer], description="GB-8: leave before the group forms.")
async def leave_group(info: Info, input: LeaveGroupInput) -> dict:
    ctx = info.context
    gid = raw_id(input.group_id, "Group", "groupId")
    r = await groups_svc.leave_group(ctx.svc, shop_id=ctx.shop_id, group_id=gid, user_id=ctx.user_id,
                                     idempotency_key=input.idempotency_key)
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


@strawberry.type
class CampaignPayload:
    campaign: Optional[Campaign] = None
    errors: list[UserError]


@strawberry.input
class EndCampaignInput:
    campaign_id: strawberry.ID
    idempotency_key: Optional[str] = idempotency_key_field()


@payload_mutation(CampaignPayload, permission_classes=[IsAdmin], description="Section 2: a group-buy campaign.")
async def create_campaign(info: Info, input: CreateCampaignInput) -> dict:
    ctx = info.context
    c = await campaigns_svc.create_campaign(
        ctx.svc, shop_id=ctx.shop_id, product_ref=input.product_ref, title=input.title,
        list_price=input.list_price, tiers=[(t.members, t.unit_price) for t in input.tiers],
        duration=timedelta(seconds=input.duration_seconds),
        payment_window=timedelta(seconds=input.payment_window_seconds), starts_at=input.starts_at,
        ends_at=input.ends_at, leader_discount=input.leader_discount,
        leader_commission_bp=input.leader_commission_bp, stock=input.stock,
        per_user_limit=input.per_user_limit, max_quantity_per_order=input.max_quantity_per_order,
        new_members_only=input.new_members_only, fill_at_expiry=input.fill_at_expiry,
        lottery_winners=input.lottery_winners,
        variants=[(v.name, [(t.members, t.unit_price) for t in v.tiers], v.weight)
                  for v in (input.variants or [])],
        commission_enabled=input.commission_enabled, category=input.category,
        idempotency_key=input.idempotency_key)
    return dict(campaign=campaign_type(c, ctx))


@payload_mutation(CampaignPayload, permission_classes=[IsAdmin],
                     description="Stop a campaign now: no group can be opened any more; open groups keep their "
                                 "expiry and form or fail then (GB-1). Ending it again changes nothing.")
async def end_campaign(info: Info, input: EndCampaignInput) -> dict:
    ctx = info.context
    c = await campaigns_svc.end_campaign(ctx.svc, shop_id=ctx.shop_id,
                                         campaign_id=raw_id(input.campaign_id, "Campaign", "campaignId"),
                                         idempotency_key=input.idempotency_key)
    return dict(campaign=campaign_type(c, ctx))
