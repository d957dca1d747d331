"""The GraphQL schema (code-first). Resolvers are thin: they call `service/` and map refusals (ER-1)
to payload errors. Every resolver acts in the shop of the caller's token (SH-1).

Conventions: mutations take one `input` and return a payload with `errors: [UserError!]!`;
money is `MinorUnits` (integer minor units, 64-bit safe) with the shop `currency` alongside;
lists are cursor connections (`first` ≤ 100, `after`).
"""

from __future__ import annotations

import base64
import os
from datetime import datetime, timedelta
from typing import AsyncGenerator, Generic, NewType, Optional, TypeVar

import strawberry
from strawberry.types import Info

from api.permissions import HasShopKey, IsAdmin, IsBackend, IsCustomer, IsDistributor, IsFinance
from engine.distribution import DistributorStatus
from engine.errors import ErrorCode as _ErrorCode
from engine.errors import RuleViolation
from service import (
    campaigns as campaigns_svc,
    distribution as distribution_svc,
    groups as groups_svc,
    orders as orders_svc,
    payouts as payouts_svc,
    refunds as refunds_svc,
    reports as reports_svc,
    settlements as settlements_svc,
)

MinorUnits = strawberry.scalar(NewType("MinorUnits", int), serialize=int, parse_value=int,
                               description="An amount in integer minor units of the shop currency (fen, cents).")
ErrorCode = strawberry.enum(_ErrorCode, name="ErrorCode")
MAX_PAGE = 100
T = TypeVar("T")


@strawberry.type
class UserError:
    code: ErrorCode
    field: Optional[str]
    message: str
    rule: Optional[str]


def user_error(e: RuleViolation) -> UserError:
    return UserError(code=e.code, field=e.field, message=e.message, rule=e.rule)


# ---------------------------------------------------------------- connections
@strawberry.type
class PageInfo:
    has_next_page: bool
    end_cursor: Optional[str]


@strawberry.type
class Edge(Generic[T]):
    cursor: str
    node: T


@strawberry.type
class Connection(Generic[T]):
    edges: list[Edge[T]]
    page_info: PageInfo
    total_count: int


def _offset(after: Optional[str]) -> int:
    if not after:
        return 0
    try:
        return int(base64.b64decode(after).decode().split(":")[1])
    except Exception:
        raise RuleViolation(_ErrorCode.INVALID_INPUT, "bad cursor", field="after")


def connection(items: list, first: int, after: Optional[str], convert) -> Connection:
    first = max(1, min(first, MAX_PAGE))
    start = _offset(after)
    page = items[start:start + first]
    edges = [Edge(cursor=base64.b64encode(f"o:{start + i + 1}".encode()).decode(), node=convert(x))
             for i, x in enumerate(page)]
    return Connection(edges=edges, page_info=PageInfo(has_next_page=start + first < len(items),
                                                      end_cursor=edges[-1].cursor if edges else None),
                      total_count=len(items))


# ---------------------------------------------------------------- types
@strawberry.type
class Tier:
    members: int
    unit_price: MinorUnits


@strawberry.type
class Group:
    id: str
    campaign_id: str
    state: str
    variant: Optional[str]
    leader_user_id: str
    capacity: int
    seats_held: int
    seats_paid: int
    seats_left: int
    tier_members: Optional[int]
    expires_at: Optional[datetime]
    seconds_left: Optional[int]
    tiers: list[Tier]


def group_type(g, now) -> Group:
    left = int((g.expires_at - now).total_seconds()) if g.expires_at and g.state.value == "OPEN" else None
    return Group(id=g.id, campaign_id=g.campaign_id, state=g.state.value, variant=g.variant,
                 leader_user_id=g.leader_user_id, capacity=g.capacity, seats_held=g.held_seats,
                 seats_paid=g.paid_seats, seats_left=g.seats_left, tier_members=g.tier_members,
                 expires_at=g.expires_at, seconds_left=max(left, 0) if left is not None else None,
                 tiers=[Tier(members=t.members, unit_price=t.unit_price) for t in g.tiers])


@strawberry.type
class Campaign:
    id: str
    title: str
    product_ref: str
    currency: str
    list_price: MinorUnits
    tiers: list[Tier]
    leader_discount: MinorUnits
    starts_at: datetime
    ends_at: datetime
    stock_left: Optional[int]
    per_user_limit: Optional[int]
    new_members_only: bool
    fill_at_expiry: Optional[int]
    lottery_winners: int
    variants: list[str]

    @strawberry.field(description="Groups of this campaign still open for joining.")
    async def open_groups(self, info: Info, first: int = 20, after: Optional[str] = None) -> Connection[Group]:
        ctx = info.context
        found = await groups_svc.list_open_groups(ctx.svc, shop_id=ctx.extra["shop_id"], campaign_id=self.id)
        now = ctx.svc.now()
        return connection(found, first, after, lambda g: group_type(g, now))


def campaign_type(c, currency: str) -> Campaign:
    return Campaign(id=c.campaign_id, title=c.title, product_ref=c.product_ref, currency=currency,
                    list_price=c.list_price, tiers=[Tier(members=m, unit_price=p) for m, p in c.tiers],
                    leader_discount=c.leader_discount, starts_at=c.starts_at, ends_at=c.ends_at,
                    stock_left=c.stock_left, per_user_limit=c.per_user_limit, new_members_only=c.new_members_only,
                    fill_at_expiry=c.fill_at_expiry, lottery_winners=c.lottery_winners,
                    variants=[v["name"] for v in (c.variants or [])])


@strawberry.type
class Order:
    id: str
    external_id: str
    kind: str
    state: str
    buyer_id: str
    group_id: Optional[str]
    currency: str
    goods_amount: MinorUnits
    paid_amount: MinorUnits
    refunded_amount: MinorUnits
    paid_at: Optional[datetime]
    completed_at: Optional[datetime]


def order_type(o, currency: str) -> Order:
    return Order(id=o.order_id, external_id=o.external_id, kind=o.kind, state=o.state, buyer_id=o.buyer_id,
                 group_id=o.group_id, currency=currency, goods_amount=o.goods_amount, paid_amount=o.paid_amount,
                 refunded_amount=o.refunded_amount, paid_at=o.paid_at, completed_at=o.completed_at)


@strawberry.type
class Refund:
    id: str
    order_id: str
    amount: MinorUnits
    currency: str
    rule: str
    full: bool
    state: str
    provider_ref: Optional[str]
    created_at: datetime


def refund_type(r, currency: str) -> Refund:
    return Refund(id=r.refund_id, order_id=r.order_id, amount=r.amount, currency=currency, rule=r.rule,
                  full=r.full, state=r.state, provider_ref=r.provider_ref, created_at=r.created_at)


@strawberry.type
class Balances:
    currency: str
    pending: MinorUnits
    frozen: MinorUnits
    available: MinorUnits
    in_payout: MinorUnits
    paid: MinorUnits
    fees: MinorUnits


@strawberry.type
class DownlineLevel:
    count: int
    sales: MinorUnits


@strawberry.type
class Distributor:
    user_id: str
    status: str
    grade: int
    invite_code: str
    balances: Balances
    level1: DownlineLevel
    level2: DownlineLevel


@strawberry.type
class Payout:
    id: str
    distributor_id: str
    amount: MinorUnits
    fee: MinorUnits
    currency: str
    state: str
    requested_at: datetime
    external_ref: Optional[str]


def payout_type(p, currency: str) -> Payout:
    return Payout(id=p.payout_id, distributor_id=p.distributor_id, amount=p.amount, fee=p.fee, currency=currency,
                  state=p.state, requested_at=p.requested_at, external_ref=p.external_ref)


@strawberry.type
class InviteInfo:
    """DS-2: what a storefront may learn from an invite code — no personal data."""
    valid: bool
    code: str


@strawberry.type
class VariantStats:
    variant: Optional[str]
    opened: int
    formed: int
    failed: int
    formation_rate_bp: Optional[int]
    mean_seconds_to_form: int
    units: int
    net_sales: MinorUnits


@strawberry.type
class CampaignStats:
    currency: str
    total: VariantStats
    variants: list[VariantStats]
    difference_bp: Optional[int]
    difference_low_bp: Optional[int]
    difference_high_bp: Optional[int]
    has_winner: bool


@strawberry.type
class Settlement:
    id: str
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


# ---------------------------------------------------------------- helpers
def shop_of(info: Info) -> str:
    return info.context.principal.shop_id


def currency_of(info: Info) -> str:
    return info.context.currency


async def run(payload_cls, fn):
    try:
        return payload_cls(**(await fn()), errors=[])
    except RuleViolation as e:
        return payload_cls(errors=[user_error(e)])


# ---------------------------------------------------------------- query
@strawberry.type
class Query:
    @strawberry.field(permission_classes=[HasShopKey], description="A campaign page (public with X-Shop-Key).")
    async def campaign(self, info: Info, id: str) -> Optional[Campaign]:
        ctx = info.context
        shop_id = ctx.principal.shop_id if ctx.principal else ctx.public_shop_id
        ctx.extra["shop_id"] = shop_id
        c = await campaigns_svc.get_campaign(ctx.svc, shop_id=shop_id, campaign_id=id)
        return campaign_type(c, ctx.currency) if c else None

    @strawberry.field(permission_classes=[HasShopKey])
    async def group(self, info: Info, id: str) -> Optional[Group]:
        ctx = info.context
        shop_id = ctx.principal.shop_id if ctx.principal else ctx.public_shop_id
        found = await groups_svc.get_group(ctx.svc, shop_id=shop_id, group_id=id)
        return group_type(found[1], ctx.svc.now()) if found else None

    @strawberry.field(permission_classes=[HasShopKey], description="DS-2: resolve an invite code.")
    async def resolve_invite(self, info: Info, code: str) -> InviteInfo:
        ctx = info.context
        shop_id = ctx.principal.shop_id if ctx.principal else ctx.public_shop_id
        d = await distribution_svc.resolve_invite(ctx.svc, shop_id=shop_id, code=code)
        return InviteInfo(valid=d is not None and d.status == DistributorStatus.ACTIVE.value, code=code.upper())

    @strawberry.field(permission_classes=[IsCustomer])
    async def my_orders(self, info: Info, first: int = 20, after: Optional[str] = None) -> Connection[Order]:
        ctx = info.context
        found = await orders_svc.list_orders(ctx.svc, shop_id=shop_of(info), buyer_id=ctx.user_id)
        return connection(found, first, after, lambda o: order_type(o, ctx.currency))

    @strawberry.field(permission_classes=[IsCustomer], description="RP-3 lifecycle segment.")
    async def my_segment(self, info: Info) -> str:
        return (await reports_svc.segment(info.context.svc, shop_id=shop_of(info),
                                          user_id=info.context.user_id)).value

    @strawberry.field(permission_classes=[IsDistributor])
    async def me(self, info: Info) -> Optional[Distributor]:
        ctx = info.context
        d = await distribution_svc.my_distributor(ctx.svc, shop_id=shop_of(info), user_id=ctx.user_id)
        if d is None:
            return None
        d = await distribution_svc.get_distributor(ctx.svc, shop_id=shop_of(info), user_id=ctx.user_id)
        dl = await reports_svc.downline(ctx.svc, shop_id=shop_of(info), user_id=ctx.user_id)
        return Distributor(
            user_id=d.user_id, status=d.status, grade=d.grade, invite_code=d.invite_code,
            balances=Balances(currency=ctx.currency, pending=d.pending, frozen=d.frozen, available=d.available,
                              in_payout=d.in_payout, paid=d.paid, fees=d.fees),
            level1=DownlineLevel(**dl["level1"]), level2=DownlineLevel(**dl["level2"]))

    @strawberry.field(permission_classes=[IsBackend], description="Refunds owed and not yet confirmed (GB-10).")
    async def owed_refunds(self, info: Info, first: int = 20, after: Optional[str] = None,
                           rule: Optional[str] = None) -> Connection[Refund]:
        found = await refunds_svc.list_refunds(info.context.svc, shop_id=shop_of(info), state="OWED", rule=rule,
                                               limit=10_000)
        return connection(found, first, after, lambda r: refund_type(r, currency_of(info)))

    @strawberry.field(permission_classes=[IsFinance])
    async def pending_payouts(self, info: Info, first: int = 20, after: Optional[str] = None) -> Connection[Payout]:
        found = await payouts_svc.list_payouts(info.context.svc, shop_id=shop_of(info), state="REQUESTED",
                                               limit=10_000)
        return connection(found, first, after, lambda p: payout_type(p, currency_of(info)))

    @strawberry.field(permission_classes=[IsAdmin], description="Events after a cursor (`seq`), for replay by pull.")
    async def events(self, info: Info, after_seq: int = 0, first: int = 100,
                     types: Optional[list[str]] = None) -> list[ShopEvent]:
        import json

        from service import webhooks

        found = await webhooks.events_since(info.context.svc, shop_id=shop_of(info), after_seq=after_seq,
                                            limit=min(first, MAX_PAGE), types=types)
        return [ShopEvent(id=e.event_id, seq=e.seq, type=e.type, aggregate_type=e.aggregate_type,
                          aggregate_id=e.aggregate_id, rule=e.rule, occurred_at=e.occurred_at,
                          payload_json=json.dumps(e.payload, sort_keys=True)) for e in found]

    @strawberry.field(permission_classes=[IsAdmin], description="RP-2 per campaign and A/B variant.")
    async def campaign_stats(self, info: Info, campaign_id: str) -> CampaignStats:
        st = await reports_svc.campaign_stats(info.context.svc, shop_id=shop_of(info), campaign_id=campaign_id)

        def vs(x):
            return VariantStats(variant=x.variant, opened=x.opened, formed=x.formed, failed=x.failed,
                                formation_rate_bp=x.formation_rate_bp, mean_seconds_to_form=x.mean_seconds_to_form,
                                units=x.units, net_sales=x.net_sales)
        d = st.difference
        return CampaignStats(currency=currency_of(info), total=vs(st.total), variants=[vs(v) for v in st.variants],
                             difference_bp=d.difference_bp if d else None, difference_low_bp=d.low_bp if d else None,
                             difference_high_bp=d.high_bp if d else None, has_winner=bool(d and d.has_winner))


# ---------------------------------------------------------------- mutations: inputs and payloads
@strawberry.input
class OpenGroupInput:
    campaign_id: str
    quantity: int = 1
    idempotency_key: Optional[str] = None


@strawberry.input
class JoinGroupInput:
    group_id: str
    quantity: int = 1
    idempotency_key: Optional[str] = None


@strawberry.type
class SeatPayload:
    group_id: Optional[str] = None
    order_id: Optional[str] = None
    amount_to_pay: Optional[MinorUnits] = None
    currency: Optional[str] = None
    errors: list[UserError]


@strawberry.input
class LeaveGroupInput:
    group_id: str
    idempotency_key: Optional[str] = None


@strawberry.type
class LeaveGroupPayload:
    group_id: Optional[str] = None
    errors: list[UserError]


@strawberry.input
class BindReferrerInput:
    invite_code: str
    idempotency_key: Optional[str] = None


@strawberry.type
class BindReferrerPayload:
    changed: Optional[bool] = None
    errors: list[UserError]


@strawberry.input
class ConfirmPaymentInput:
    order_id: Optional[str] = None
    external_id: Optional[str] = None
    amount: MinorUnits
    provider_ref: str


@strawberry.type
class ConfirmPaymentPayload:
    order_id: Optional[str] = None
    accepted: Optional[bool] = strawberry.field(default=None, description="False: a late payment (GB-9), refund owed")
    replayed: Optional[bool] = None
    errors: list[UserError]


@strawberry.input
class ConfirmRefundInput:
    refund_id: str
    provider_ref: str


@strawberry.type
class ConfirmRefundPayload:
    refund: Optional[Refund] = None
    errors: list[UserError]


@strawberry.input
class OrderLineInput:
    product_ref: str
    quantity: int
    unit_price: MinorUnits
    discount: MinorUnits = 0
    category: Optional[str] = None


@strawberry.input
class ReportOrderInput:
    external_id: str
    buyer_id: str
    lines: list[OrderLineInput]
    shipping_amount: MinorUnits = 0
    tax_amount: MinorUnits = 0


@strawberry.type
class OrderPayload:
    order: Optional[Order] = None
    errors: list[UserError]


@strawberry.input
class RefundOrderInput:
    order_id: Optional[str] = None
    external_id: Optional[str] = None
    amount: MinorUnits
    provider_ref: str


@strawberry.type
class RefundOrderPayload:
    refund_id: Optional[str] = None
    errors: list[UserError]


@strawberry.input
class CompleteOrderInput:
    order_id: Optional[str] = None
    external_id: Optional[str] = None


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


@strawberry.type
class CampaignPayload:
    campaign: Optional[Campaign] = None
    errors: list[UserError]


@strawberry.input
class DistributorStatusInput:
    user_id: str
    reason: str = ""


@strawberry.input
class SetLevelInput:
    user_id: str
    grade: int
    reason: str


@strawberry.type
class DistributorPayload:
    user_id: Optional[str] = None
    status: Optional[str] = None
    grade: Optional[int] = None
    errors: list[UserError]


@strawberry.input
class RequestPayoutInput:
    amount: MinorUnits
    idempotency_key: Optional[str] = None


@strawberry.input
class ApprovePayoutInput:
    payout_id: str
    external_ref: str


@strawberry.input
class RejectPayoutInput:
    payout_id: str
    reason: str


@strawberry.type
class PayoutPayload:
    payout: Optional[Payout] = None
    errors: list[UserError]


@strawberry.input
class ClosePeriodInput:
    from_date: str = strawberry.field(description="first local day (YYYY-MM-DD) in the shop time zone")
    to_date: str = strawberry.field(description="the day after the last (half-open period)")


@strawberry.type
class ClosePeriodPayload:
    settlement: Optional[Settlement] = None
    errors: list[UserError]


@strawberry.type
class WebhookEndpoint:
    id: str
    url: str
    event_types: list[str]
    enabled: bool
    secret: str = strawberry.field(description="Shown to admins to verify signatures (docs/webhooks.md).")


def endpoint_type(e) -> WebhookEndpoint:
    return WebhookEndpoint(id=e.endpoint_id, url=e.url, event_types=list(e.event_types or []), enabled=e.enabled,
                           secret=e.secret)


@strawberry.input
class RegisterWebhookInput:
    url: str
    event_types: Optional[list[str]] = None


@strawberry.input
class RotateWebhookSecretInput:
    endpoint_id: str
    overlap_seconds: int = 86400


@strawberry.type
class WebhookPayload:
    endpoint: Optional[WebhookEndpoint] = None
    errors: list[UserError]


@strawberry.input
class RedeliverInput:
    endpoint_id: str
    from_seq: int
    to_seq: int


@strawberry.type
class RedeliverPayload:
    queued: Optional[int] = None
    errors: list[UserError]


@strawberry.type
class ShopEvent:
    id: str
    seq: int
    type: str
    aggregate_type: str
    aggregate_id: str
    rule: Optional[str]
    occurred_at: datetime
    payload_json: str


@strawberry.input
class AdvanceClockInput:
    seconds: int


@strawberry.type
class AdvanceClockPayload:
    now: Optional[datetime] = None
    errors: list[UserError]


def _settlement(b) -> Settlement:
    return Settlement(id=b.settlement_id, local_from=b.local_from, local_to=b.local_to, currency=b.currency,
                      distributors=b.distributors, opening=b.opening, released=b.released, reversals=b.reversals,
                      bonuses=b.bonuses, payouts=b.payouts, fees=b.fees, closing=b.closing)


# ---------------------------------------------------------------- mutation
@strawberry.type
class Mutation:
    @strawberry.mutation(permission_classes=[IsCustomer], description="GB-1: open a group as its leader.")
    async def open_group(self, info: Info, input: OpenGroupInput) -> SeatPayload:
        ctx = info.context

        async def go():
            r = await groups_svc.open_group(ctx.svc, shop_id=ctx.shop_id, campaign_id=input.campaign_id,
                                            user_id=ctx.user_id, quantity=input.quantity,
                                            idempotency_key=input.idempotency_key)
            return dict(group_id=r.group_id, order_id=r.order_id, amount_to_pay=r.amount, currency=ctx.currency)
        return await run(SeatPayload, go)

    @strawberry.mutation(permission_classes=[IsCustomer], description="GB-2: join an open group.")
    async def join_group(self, info: Info, input: JoinGroupInput) -> SeatPayload:
        ctx = info.context

        async def go():
            r = await groups_svc.join_group(ctx.svc, shop_id=ctx.shop_id, group_id=input.group_id,
                                            user_id=ctx.user_id, quantity=input.quantity,
                                            idempotency_key=input.idempotency_key)
            return dict(group_id=r.group_id, order_id=r.order_id, amount_to_pay=r.amount, currency=ctx.currency)
        return await run(SeatPayload, go)

    @strawberry.mutation(permission_classes=[IsCustomer], description="GB-8: leave before the group forms.")
    async def leave_group(self, info: Info, input: LeaveGroupInput) -> LeaveGroupPayload:
        ctx = info.context

        async def go():
            return await groups_svc.leave_group(ctx.svc, shop_id=ctx.shop_id, group_id=input.group_id,
                                                user_id=ctx.user_id, idempotency_key=input.idempotency_key)
        return await run(LeaveGroupPayload, go)

    @strawberry.mutation(permission_classes=[IsCustomer], description="RF-1: bind to a referrer by invite code.")
    async def bind_referrer(self, info: Info, input: BindReferrerInput) -> BindReferrerPayload:
        ctx = info.context

        async def go():
            r = await distribution_svc.bind_referrer(ctx.svc, shop_id=ctx.shop_id, user_id=ctx.user_id,
                                                     invite_code=input.invite_code,
                                                     idempotency_key=input.idempotency_key)
            return dict(changed=r.changed)
        return await run(BindReferrerPayload, go)

    @strawberry.mutation(permission_classes=[IsBackend], description="Money received (GB-10 by providerRef).")
    async def confirm_payment(self, info: Info, input: ConfirmPaymentInput) -> ConfirmPaymentPayload:
        ctx = info.context

        async def go():
            return await orders_svc.confirm_payment(ctx.svc, shop_id=ctx.shop_id, provider_ref=input.provider_ref,
                                                    amount=input.amount, order_id=input.order_id,
                                                    external_id=input.external_id)
        return await run(ConfirmPaymentPayload, go)

    @strawberry.mutation(permission_classes=[IsBackend], description="An owed refund was paid (GB-10).")
    async def confirm_refund(self, info: Info, input: ConfirmRefundInput) -> ConfirmRefundPayload:
        ctx = info.context

        async def go():
            r = await refunds_svc.confirm_refund(ctx.svc, shop_id=ctx.shop_id, refund_id=input.refund_id,
                                                 provider_ref=input.provider_ref)
            return dict(refund=refund_type(r, ctx.currency))
        return await run(ConfirmRefundPayload, go)

    @strawberry.mutation(permission_classes=[IsBackend], description="OR-1: report a shop order.")
    async def report_order(self, info: Info, input: ReportOrderInput) -> OrderPayload:
        ctx = info.context

        async def go():
            o = await orders_svc.report_order(
                ctx.svc, shop_id=ctx.shop_id, external_id=input.external_id, buyer_id=input.buyer_id,
                lines=[orders_svc.LineInput(ln.product_ref, ln.quantity, ln.unit_price, ln.discount, ln.category)
                       for ln in input.lines],
                shipping_amount=input.shipping_amount, tax_amount=input.tax_amount)
            return dict(order=order_type(o, ctx.currency))
        return await run(OrderPayload, go)

    @strawberry.mutation(permission_classes=[IsBackend], description="OR-2: the shop refunded (part of) an order.")
    async def refund_order(self, info: Info, input: RefundOrderInput) -> RefundOrderPayload:
        ctx = info.context

        async def go():
            r = await orders_svc.refund_order(ctx.svc, shop_id=ctx.shop_id, amount=input.amount,
                                              provider_ref=input.provider_ref, order_id=input.order_id,
                                              external_id=input.external_id)
            return dict(refund_id=r["refund_id"])
        return await run(RefundOrderPayload, go)

    @strawberry.mutation(permission_classes=[IsBackend], description="OR-4: delivered and not disputed.")
    async def complete_order(self, info: Info, input: CompleteOrderInput) -> OrderPayload:
        ctx = info.context

        async def go():
            o = await orders_svc.complete_order(ctx.svc, shop_id=ctx.shop_id, order_id=input.order_id,
                                                external_id=input.external_id)
            return dict(order=order_type(o, ctx.currency))
        return await run(OrderPayload, go)

    @strawberry.mutation(permission_classes=[IsAdmin])
    async def create_campaign(self, info: Info, input: CreateCampaignInput) -> CampaignPayload:
        ctx = info.context

        async def go():
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
                commission_enabled=input.commission_enabled)
            return dict(campaign=campaign_type(c, ctx.currency))
        return await run(CampaignPayload, go)

    async def _status(self, info: Info, input: DistributorStatusInput, status: DistributorStatus):
        ctx = info.context

        async def go():
            d = await distribution_svc.set_status(ctx.svc, shop_id=ctx.shop_id, user_id=input.user_id,
                                                  status=status, actor=ctx.user_id, reason=input.reason)
            return dict(user_id=d.user_id, status=d.status, grade=d.grade)
        return await run(DistributorPayload, go)

    @strawberry.mutation(permission_classes=[IsAdmin], description="DS-1: approve an applicant.")
    async def approve_distributor(self, info: Info, input: DistributorStatusInput) -> DistributorPayload:
        return await Mutation._status(self, info, input, DistributorStatus.ACTIVE)

    @strawberry.mutation(permission_classes=[IsAdmin], description="DS-1: suspend, with a reason.")
    async def suspend_distributor(self, info: Info, input: DistributorStatusInput) -> DistributorPayload:
        return await Mutation._status(self, info, input, DistributorStatus.SUSPENDED)

    @strawberry.mutation(permission_classes=[IsAdmin], description="LV-3: set a level, with a reason.")
    async def set_distributor_level(self, info: Info, input: SetLevelInput) -> DistributorPayload:
        ctx = info.context

        async def go():
            d = await distribution_svc.set_level(ctx.svc, shop_id=ctx.shop_id, user_id=input.user_id,
                                                 grade=input.grade, actor=ctx.user_id, reason=input.reason)
            return dict(user_id=d.user_id, status=d.status, grade=d.grade)
        return await run(DistributorPayload, go)

    @strawberry.mutation(permission_classes=[IsDistributor], description="LG-2: ask for a payout.")
    async def request_payout(self, info: Info, input: RequestPayoutInput) -> PayoutPayload:
        ctx = info.context

        async def go():
            p = await payouts_svc.request_payout(ctx.svc, shop_id=ctx.shop_id, user_id=ctx.user_id,
                                                 amount=input.amount, idempotency_key=input.idempotency_key)
            return dict(payout=payout_type(p, ctx.currency))
        return await run(PayoutPayload, go)

    @strawberry.mutation(permission_classes=[IsFinance], description="LG-2: approve with the transfer reference.")
    async def approve_payout(self, info: Info, input: ApprovePayoutInput) -> PayoutPayload:
        ctx = info.context

        async def go():
            p = await payouts_svc.decide_payout(ctx.svc, shop_id=ctx.shop_id, payout_id=input.payout_id,
                                                approve=True, actor=ctx.user_id, external_ref=input.external_ref)
            return dict(payout=payout_type(p, ctx.currency))
        return await run(PayoutPayload, go)

    @strawberry.mutation(permission_classes=[IsFinance], description="LG-2: reject; all of A back to available.")
    async def reject_payout(self, info: Info, input: RejectPayoutInput) -> PayoutPayload:
        ctx = info.context

        async def go():
            p = await payouts_svc.decide_payout(ctx.svc, shop_id=ctx.shop_id, payout_id=input.payout_id,
                                                approve=False, actor=ctx.user_id, reason=input.reason)
            return dict(payout=payout_type(p, ctx.currency))
        return await run(PayoutPayload, go)

    @strawberry.mutation(permission_classes=[IsFinance], description="LG-3: close a period into a batch.")
    async def close_period(self, info: Info, input: ClosePeriodInput) -> ClosePeriodPayload:
        ctx = info.context

        async def go():
            from datetime import date

            try:
                f, t = date.fromisoformat(input.from_date), date.fromisoformat(input.to_date)
            except ValueError:
                raise RuleViolation(_ErrorCode.INVALID_INPUT, "dates are YYYY-MM-DD", field="fromDate")
            b = await settlements_svc.close_period(ctx.svc, shop_id=ctx.shop_id, day_from=f, day_to=t,
                                                   actor=ctx.user_id)
            return dict(settlement=_settlement(b))
        return await run(ClosePeriodPayload, go)

    @strawberry.mutation(permission_classes=[IsAdmin], description="Register a signed webhook endpoint.")
    async def register_webhook(self, info: Info, input: RegisterWebhookInput) -> WebhookPayload:
        ctx = info.context

        async def go():
            from service import webhooks

            e = await webhooks.register_endpoint(ctx.svc, shop_id=ctx.shop_id, url=input.url,
                                                 event_types=input.event_types)
            return dict(endpoint=endpoint_type(e))
        return await run(WebhookPayload, go)

    @strawberry.mutation(permission_classes=[IsAdmin], description="New secret; the old one signs too for the overlap.")
    async def rotate_webhook_secret(self, info: Info, input: RotateWebhookSecretInput) -> WebhookPayload:
        ctx = info.context

        async def go():
            from service import webhooks

            e = await webhooks.rotate_secret(ctx.svc, shop_id=ctx.shop_id, endpoint_id=input.endpoint_id,
                                             overlap=timedelta(seconds=input.overlap_seconds))
            return dict(endpoint=endpoint_type(e))
        return await run(WebhookPayload, go)

    @strawberry.mutation(permission_classes=[IsAdmin], description="Replay: owe a range of events again.")
    async def redeliver_events(self, info: Info, input: RedeliverInput) -> RedeliverPayload:
        ctx = info.context

        async def go():
            from service import webhooks

            n = await webhooks.redeliver(ctx.svc, shop_id=ctx.shop_id, endpoint_id=input.endpoint_id,
                                         from_seq=input.from_seq, to_seq=input.to_seq)
            return dict(queued=n)
        return await run(RedeliverPayload, go)

    @strawberry.mutation(permission_classes=[IsAdmin],
                         description="Tests only (SHARECART_TEST_CLOCK=1): move the service clock (OR-5).")
    async def advance_clock(self, info: Info, input: AdvanceClockInput) -> AdvanceClockPayload:
        if os.environ.get("SHARECART_TEST_CLOCK") != "1":
            return AdvanceClockPayload(errors=[UserError(code=_ErrorCode.FORBIDDEN, field=None, rule="OR-5",
                                                         message="the clock can only be moved in test mode")])
        now = info.context.svc.clock.advance(timedelta(seconds=input.seconds))
        from service.worker import run_due

        await run_due(info.context.svc)
        return AdvanceClockPayload(now=now, errors=[])


@strawberry.type
class Subscription:
    @strawberry.subscription(permission_classes=[HasShopKey],
                             description="Seats, tier reached and state of a group as they change (GB-2..GB-6).")
    async def group_progress(self, info: Info, group_id: str) -> AsyncGenerator[Group, None]:
        ctx = info.context
        shop_id = ctx.principal.shop_id if ctx.principal else ctx.public_shop_id
        listener = ctx.extra["listener"]
        key = f"{shop_id}:{group_id}"
        queue = await listener.subscribe(key)
        try:
            while True:
                found = await groups_svc.get_group(ctx.svc, shop_id=shop_id, group_id=group_id)
                if found is None:
                    return
                g = found[1]
                yield group_type(g, ctx.svc.now())
                if g.state.value in ("FORMED", "FAILED", "CANCELLED"):
                    return
                await queue.get()
        finally:
            listener.unsubscribe(key, queue)


def make_schema() -> strawberry.Schema:
    from strawberry.extensions import MaskErrors, MaxTokensLimiter, ParserCache, QueryDepthLimiter, ValidationCache
    from graphql import GraphQLError

    def should_mask(error: GraphQLError) -> bool:
        # deliberate errors (permissions, validation) carry a code or have no Python exception behind them
        if error.original_error is None:
            return False
        return not (error.extensions or {}).get("code")

    return strawberry.Schema(
        query=Query, mutation=Mutation, subscription=Subscription,
        extensions=[lambda: QueryDepthLimiter(max_depth=10), lambda: MaxTokensLimiter(max_token_count=4000),
                    lambda: ParserCache(maxsize=512), lambda: ValidationCache(maxsize=512),
                    lambda: MaskErrors(should_mask_error=should_mask, error_message="internal error")],
    )


schema = make_schema()
