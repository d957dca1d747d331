"""Mutation root. Each mutation takes one `input` and returns a payload whose `errors` carry every rule
refusal (ER-1) — a refused mutation has changed nothing (the service rolled back). Every mutation but the
test-only `advanceClock` takes `idempotencyKey` (GB-10); payment and refund confirmations are also idempotent by
`providerRef`, reported orders by `externalId`.

Object ids in inputs are global ids (see api.types); a malformed or wrong-type id is INVALID_INPUT on
that field, an id of another shop is NOT_FOUND (SH-1)."""

from __future__ import annotations

from dataclasses import fields as dc_fields
from datetime import date, datetime, timedelta, timezone
from typing import Awaitable, Callable, Optional

import strawberry
from strawberry.types import Info

from api.errors import UserError, refusal_of, user_error
from api.groupbuy_v2_mutations import GroupBuyV2Mutations
from api.security_mutations import SecurityMutations
from api.permissions import IsAdmin, IsBackend, IsBackendOrAdmin, IsCustomer, IsDistributor, IsFinance
from api.types import (
    Campaign,
    DistributionSettings,
    DistributorSummary,
    Group,
    Level,
    MinorUnits,
    Order,
    Payout,
    Product,
    Refund,
    Settlement,
    MAX_MINOR,
    WebhookEndpoint,
    bounded_day,
    campaign_type,
    distributor_summary,
    endpoint_type,
    group_type,
    level_type,
    order_type,
    payout_type,
    product_type,
    raw_id,
    refund_type,
    settings_type,
    settlement_type,
)
from engine import levels as engine_levels
from engine.distribution import BindingMode as _BindingMode
from engine.distribution import DistributionMode as _DistributionMode
from engine.distribution import DistributorStatus
from engine.errors import ErrorCode, RuleViolation, refuse
from service import campaigns as campaigns_svc
from service import distribution as distribution_svc
from service import groups as groups_svc
from service import orders as orders_svc
from service import payouts as payouts_svc
from service import refunds as refunds_svc
from service import settlements as settlements_svc
from service import shops as shops_svc
from service import webhooks as webhooks_svc

DistributionMode = strawberry.enum(_DistributionMode, name="DistributionMode")
BindingMode = strawberry.enum(_BindingMode, name="BindingMode")


def idempotency_key_field(description: str = "GB-10: a retry with the same key and the same input returns the "
                          "first result without a second effect; the same key with another input is "
                          "IDEMPOTENCY_CONFLICT.") -> Optional[str]:
    """Every mutation input but advanceClock's has this field (tests/api/test_idempotency_keys.py)."""
    return strawberry.field(default=None, description=description)


def _representable_total(input) -> None:
    """OR-1 totals are carried as MinorUnits (±2^53): an order whose total is beyond that could be stored but
    never paid or refunded through the API, so it is refused up front."""
    total = input.shipping_amount + input.tax_amount
    for line in input.lines:
        gross = line.quantity * line.unit_price
        if abs(gross) > MAX_MINOR:
            raise refuse(ErrorCode.INVALID_INPUT, f"a line's quantity × unitPrice is over {MAX_MINOR}", field="lines")
        total += gross - line.discount
    if abs(total) > MAX_MINOR:
        raise refuse(ErrorCode.INVALID_INPUT, f"the order total is over {MAX_MINOR}", field="lines")


async def run(payload_cls, go: Callable[[], Awaitable[dict]]):
    """Call the use case; a refusal becomes the payload's `errors` (never a GraphQL error)."""
    try:
        return payload_cls(**(await go()), errors=[])
    except RuleViolation as e:
        return payload_cls(errors=[user_error(e)])
    except Exception as e:  # a value the database or a datetime cannot hold: coded too (api.errors.refusal_of)
        refusal = refusal_of(e)
        if refusal is None:
            raise
        return payload_cls(errors=[user_error(refusal)])


def _order_ref(order_id: Optional[str], external_id: Optional[str]) -> dict:
    if bool(order_id) == bool(external_id):
        raise refuse(ErrorCode.INVALID_INPUT, "give exactly one of orderId and externalId", field="orderId")
    return {"order_id": raw_id(order_id, "Order", "orderId") if order_id else None, "external_id": external_id}


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


# ---------------------------------------------------------------- customer
@strawberry.input
class OpenGroupInput:
    campaign_id: strawberry.ID
    quantity: int = 1
    idempotency_key: Optional[str] = idempotency_key_field()


@strawberry.input
class JoinGroupInput:
    group_id: strawberry.ID
    quantity: int = 1
    idempotency_key: Optional[str] = idempotency_key_field()


@strawberry.type(description="A reserved seat: pay `amountToPay` within the campaign's payment window (GB-2).")
class SeatPayload:
    group: Optional[Group] = None
    order: Optional[Order] = None
    amount_to_pay: Optional[MinorUnits] = None
    currency: Optional[str] = None
    errors: list[UserError]


@strawberry.input
class LeaveGroupInput:
    group_id: strawberry.ID
    idempotency_key: Optional[str] = idempotency_key_field()


@strawberry.type
class LeaveGroupPayload:
    group: Optional[Group] = None
    errors: list[UserError]


@strawberry.input
class BindReferrerInput:
    invite_code: str
    idempotency_key: Optional[str] = idempotency_key_field()


@strawberry.type
class BindReferrerPayload:
    changed: Optional[bool] = strawberry.field(default=None, description="False: already bound, nothing changed")
    bound_at: Optional[datetime] = None
    errors: list[UserError]


@strawberry.input
class ApplyAsDistributorInput:
    note: Optional[str] = None
    idempotency_key: Optional[str] = idempotency_key_field()


@strawberry.type
class ApplyAsDistributorPayload:
    status: Optional[str] = None
    errors: list[UserError]


# ---------------------------------------------------------------- backend
@strawberry.input
class ConfirmPaymentInput:
    order_id: Optional[strawberry.ID] = None
    external_id: Optional[str] = None
    amount: MinorUnits
    provider_ref: str
    idempotency_key: Optional[str] = idempotency_key_field()


@strawberry.type
class ConfirmPaymentPayload:
    order: Optional[Order] = None
    accepted: Optional[bool] = strawberry.field(default=None, description=(
        "False: the payment took no seat (late, GB-9; or the seat was already paid by another payment, GB-10): a full "
        "refund is owed"))
    replayed: Optional[bool] = strawberry.field(default=None, description="This providerRef (or idempotencyKey) "
                                                "was confirmed before: the first confirmation's answer")
    errors: list[UserError]


@strawberry.input
class ConfirmRefundInput:
    refund_id: strawberry.ID
    provider_ref: str
    idempotency_key: Optional[str] = idempotency_key_field()


@strawberry.type
class RefundPayload:
    refund: Optional[Refund] = None
    replayed: Optional[bool] = strawberry.field(default=None, description="refundOrder: this providerRef (or "
                                                "idempotencyKey) was recorded before: the first refund")
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
    idempotency_key: Optional[str] = idempotency_key_field()


@strawberry.type
class OrderPayload:
    order: Optional[Order] = None
    errors: list[UserError]


@strawberry.input
class RefundOrderInput:
    order_id: Optional[strawberry.ID] = None
    external_id: Optional[str] = None
    amount: MinorUnits
    provider_ref: str
    idempotency_key: Optional[str] = idempotency_key_field()


@strawberry.input
class CompleteOrderInput:
    order_id: Optional[strawberry.ID] = None
    external_id: Optional[str] = None
    idempotency_key: Optional[str] = idempotency_key_field()


@strawberry.input
class UpsertProductInput:
    product_ref: str
    title: str = ""
    category: str = ""
    earns_commission: bool = True
    level1_amount: Optional[MinorUnits] = None
    level2_amount: Optional[MinorUnits] = None
    idempotency_key: Optional[str] = idempotency_key_field()


@strawberry.type
class ProductPayload:
    product: Optional[Product] = None
    errors: list[UserError]


# ---------------------------------------------------------------- admin
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
    almost_full_at: int = strawberry.field(default=1, description=(
        "GB-15: `group.almost_full` is emitted once when the paid seats missing to capacity first reach this "
        "(0: never)"))
    expiring_soon_before_seconds: int = strawberry.field(default=3600, description=(
        "GB-15: `group.expiring_soon` is emitted once this long before an open group's expiresAt (0: never)"))


@strawberry.type
class CampaignPayload:
    campaign: Optional[Campaign] = None
    errors: list[UserError]


@strawberry.input
class EndCampaignInput:
    campaign_id: strawberry.ID
    idempotency_key: Optional[str] = idempotency_key_field()


@strawberry.input(description="Only the fields given change (section 3).")
class UpdateDistributionSettingsInput:
    mode: Optional[DistributionMode] = None
    binding: Optional[BindingMode] = None
    binding_days: Optional[int] = None
    bind_new_users_only: Optional[bool] = None
    level1_bp: Optional[int] = None
    level2_bp: Optional[int] = None
    self_purchase: Optional[bool] = None
    freeze_days: Optional[int] = None
    max_total_bp: Optional[int] = None
    min_payout: Optional[MinorUnits] = None
    payout_fee_bp: Optional[int] = None
    spend_threshold: Optional[MinorUnits] = None
    idempotency_key: Optional[str] = idempotency_key_field()


@strawberry.type
class DistributionSettingsPayload:
    settings: Optional[DistributionSettings] = None
    errors: list[UserError]


@strawberry.input
class LevelInput:
    grade: int
    name: str
    level1_bp: int
    level2_bp: int
    upgrade_bonus: MinorUnits = 0
    min_direct_referrals: int = 0
    min_team_size: int = 0
    min_own_spend: MinorUnits = 0
    min_own_orders: int = 0
    min_direct_sales: MinorUnits = 0
    min_team_sales: MinorUnits = 0


@strawberry.input(description="LV-1: the whole level table (grades 0, 1, 2, … in order).")
class SetLevelsInput:
    levels: list[LevelInput]
    idempotency_key: Optional[str] = idempotency_key_field()


@strawberry.type
class SetLevelsPayload:
    levels: Optional[list[Level]] = None
    errors: list[UserError]


@strawberry.input
class ApproveDistributorInput:
    user_id: str
    reason: str = ""
    idempotency_key: Optional[str] = idempotency_key_field()


@strawberry.input
class SuspendDistributorInput:
    user_id: str
    reason: str = strawberry.field(description="Required (DS-1)")
    idempotency_key: Optional[str] = idempotency_key_field()


@strawberry.input
class ReinstateDistributorInput:
    user_id: str
    reason: str = strawberry.field(description="Required (DS-1)")
    idempotency_key: Optional[str] = idempotency_key_field()


DistributorStatusInput = ApproveDistributorInput | SuspendDistributorInput | ReinstateDistributorInput


@strawberry.input
class SetDistributorLevelInput:
    user_id: str
    grade: int
    reason: str
    idempotency_key: Optional[str] = idempotency_key_field()


@strawberry.type
class DistributorPayload:
    distributor: Optional[DistributorSummary] = None
    errors: list[UserError]


@strawberry.input
class RegisterWebhookInput:
    url: str
    event_types: Optional[list[str]] = None
    idempotency_key: Optional[str] = idempotency_key_field(
        description="GB-10: a retry with the same key and input returns the endpoint of the first "
                                  "call; no second endpoint is registered.")


@strawberry.input
class RotateWebhookSecretInput:
    endpoint_id: strawberry.ID
    overlap_seconds: int = 86400
    idempotency_key: Optional[str] = idempotency_key_field(
        description="GB-10: a retry with the same key and input does not rotate again (which would "
                                  "cut the overlap of the secret receivers still verify with).")


@strawberry.input
class EnableWebhookInput:
    endpoint_id: strawberry.ID
    idempotency_key: Optional[str] = idempotency_key_field()


@strawberry.input
class DisableWebhookInput:
    endpoint_id: strawberry.ID
    idempotency_key: Optional[str] = idempotency_key_field()


async def _switch_endpoint(info: Info, input, use_case) -> "WebhookPayload":
    """enableWebhook / disableWebhook: one endpoint id in, the endpoint as it is now out."""
    ctx = info.context

    async def go():
        e = await use_case(ctx.svc, shop_id=ctx.shop_id,
                           endpoint_id=raw_id(input.endpoint_id, "WebhookEndpoint", "endpointId"),
                           idempotency_key=input.idempotency_key)
        return dict(endpoint=endpoint_type(e))
    return await run(WebhookPayload, go)


@strawberry.type
class WebhookPayload:
    endpoint: Optional[WebhookEndpoint] = None
    errors: list[UserError]


@strawberry.input
class RedeliverEventsInput:
    endpoint_id: strawberry.ID
    from_seq: int
    to_seq: int
    idempotency_key: Optional[str] = idempotency_key_field()


@strawberry.type
class RedeliverEventsPayload:
    queued: Optional[int] = None
    errors: list[UserError]


# ---------------------------------------------------------------- distributor, finance
@strawberry.input
class RequestPayoutInput:
    amount: MinorUnits
    idempotency_key: Optional[str] = idempotency_key_field()


@strawberry.input
class ApprovePayoutInput:
    payout_id: strawberry.ID
    external_ref: str
    idempotency_key: Optional[str] = idempotency_key_field()


@strawberry.input
class RejectPayoutInput:
    payout_id: strawberry.ID
    reason: str
    idempotency_key: Optional[str] = idempotency_key_field()


@strawberry.type
class PayoutPayload:
    payout: Optional[Payout] = None
    errors: list[UserError]


@strawberry.input
class ClosePeriodInput:
    from_date: str = strawberry.field(description="first local day (YYYY-MM-DD) in the shop time zone")
    to_date: str = strawberry.field(description="the day after the last (half-open period)")
    idempotency_key: Optional[str] = idempotency_key_field()


@strawberry.type
class ClosePeriodPayload:
    settlement: Optional[Settlement] = None
    errors: list[UserError]


@strawberry.input
class AdvanceClockInput:
    seconds: int


@strawberry.type
class AdvanceClockPayload:
    now: Optional[datetime] = None
    errors: list[UserError]


async def _change_status(info: Info, input: "DistributorStatusInput", change: str) -> DistributorPayload:
    """DS-1: one of service.distribution.STATUS_CHANGES (which statuses it starts from is decided there,
    under the distributor's row lock)."""
    ctx = info.context

    async def go():
        status, _ = distribution_svc.STATUS_CHANGES[change]
        if status != DistributorStatus.ACTIVE and not input.reason.strip():
            raise refuse(ErrorCode.INVALID_INPUT, "a reason is required", field="reason", rule="DS-1")
        d = await distribution_svc.change_status(ctx.svc, shop_id=ctx.shop_id, user_id=input.user_id, change=change,
                                                 actor=ctx.user_id, reason=input.reason,
                                                 idempotency_key=input.idempotency_key)
        return dict(distributor=distributor_summary(d))
    return await run(DistributorPayload, go)


# ---------------------------------------------------------------- mutation root
@strawberry.type
class Mutation(SecurityMutations, GroupBuyV2Mutations):
    # ------------------------------------------------------------ customer
    @strawberry.mutation(permission_classes=[IsCustomer], description="GB-1: open a group as its leader.")
    async def open_group(self, info: Info, input: OpenGroupInput) -> SeatPayload:
        ctx = info.context

        async def go():
            r = await groups_svc.open_group(ctx.svc, shop_id=ctx.shop_id,
                                            campaign_id=raw_id(input.campaign_id, "Campaign", "campaignId"),
                                            user_id=ctx.user_id, quantity=input.quantity,
                                            idempotency_key=input.idempotency_key)
            _prime(ctx, r)
            return dict(**await _group_and_order(ctx, r.group_id, r.order_id), amount_to_pay=r.amount,
                        currency=ctx.currency)
        return await run(SeatPayload, go)

    @strawberry.mutation(permission_classes=[IsCustomer], description="GB-2: reserve a seat in an open group.")
    async def join_group(self, info: Info, input: JoinGroupInput) -> SeatPayload:
        ctx = info.context

        async def go():
            r = await groups_svc.join_group(ctx.svc, shop_id=ctx.shop_id,
                                            group_id=raw_id(input.group_id, "Group", "groupId"),
                                            user_id=ctx.user_id, quantity=input.quantity,
                                            idempotency_key=input.idempotency_key)
            _prime(ctx, r)
            return dict(**await _group_and_order(ctx, r.group_id, r.order_id), amount_to_pay=r.amount,
                        currency=ctx.currency)
        return await run(SeatPayload, go)

    @strawberry.mutation(permission_classes=[IsCustomer], description="GB-8: leave before the group forms.")
    async def leave_group(self, info: Info, input: LeaveGroupInput) -> LeaveGroupPayload:
        ctx = info.context

        async def go():
            gid = raw_id(input.group_id, "Group", "groupId")
            r = await groups_svc.leave_group(ctx.svc, shop_id=ctx.shop_id, group_id=gid, user_id=ctx.user_id,
                                             idempotency_key=input.idempotency_key)
            if r.get("group") is not None:
                ctx.loaders.group.prime(gid, r["group"], force=True)
            g = await ctx.loaders.group.load(gid)
            return dict(group=group_type(g, ctx) if g else None)
        return await run(LeaveGroupPayload, go)

    @strawberry.mutation(permission_classes=[IsCustomer], description="RF-1: bind to a referrer by invite code.")
    async def bind_referrer(self, info: Info, input: BindReferrerInput) -> BindReferrerPayload:
        ctx = info.context

        async def go():
            r = await distribution_svc.bind_referrer(ctx.svc, shop_id=ctx.shop_id, user_id=ctx.user_id,
                                                     invite_code=input.invite_code,
                                                     idempotency_key=input.idempotency_key)
            return dict(changed=r.changed, bound_at=r.bound_at)
        return await run(BindReferrerPayload, go)

    @strawberry.mutation(permission_classes=[IsCustomer],
                         description="DS-1: apply to be a distributor (APPROVAL mode waits for an admin).")
    async def apply_as_distributor(self, info: Info, input: ApplyAsDistributorInput) -> ApplyAsDistributorPayload:
        ctx = info.context

        async def go():
            d = await distribution_svc.apply(ctx.svc, shop_id=ctx.shop_id, user_id=ctx.user_id,
                                             idempotency_key=input.idempotency_key)
            return dict(status=d.status)
        return await run(ApplyAsDistributorPayload, go)

    # ------------------------------------------------------------ backend
    @strawberry.mutation(permission_classes=[IsBackend], description="Money received (idempotent by providerRef, "
                         "GB-10; a late payment is accepted and refunded, GB-9).")
    async def confirm_payment(self, info: Info, input: ConfirmPaymentInput) -> ConfirmPaymentPayload:
        ctx = info.context

        async def go():
            r = await orders_svc.confirm_payment(ctx.svc, shop_id=ctx.shop_id, provider_ref=input.provider_ref,
                                                 amount=input.amount, idempotency_key=input.idempotency_key,
                                                 **_order_ref(input.order_id, input.external_id))
            o = await ctx.loaders.order.load(r["order_id"])
            return dict(order=order_type(o, ctx) if o else None, accepted=r["accepted"], replayed=r["replayed"])
        return await run(ConfirmPaymentPayload, go)

    @strawberry.mutation(permission_classes=[IsBackend], description="An owed refund was paid (GB-10).")
    async def confirm_refund(self, info: Info, input: ConfirmRefundInput) -> RefundPayload:
        ctx = info.context

        async def go():
            r = await refunds_svc.confirm_refund(ctx.svc, shop_id=ctx.shop_id,
                                                 refund_id=raw_id(input.refund_id, "Refund", "refundId"),
                                                 provider_ref=input.provider_ref, idempotency_key=input.idempotency_key)
            return dict(refund=refund_type(r, ctx))
        return await run(RefundPayload, go)

    @strawberry.mutation(permission_classes=[IsBackend], description="OR-1: report a shop order (idempotent by "
                         "externalId with the same content).")
    async def report_order(self, info: Info, input: ReportOrderInput) -> OrderPayload:
        ctx = info.context

        async def go():
            _representable_total(input)
            o = await orders_svc.report_order(
                ctx.svc, shop_id=ctx.shop_id, external_id=input.external_id, buyer_id=input.buyer_id,
                lines=[orders_svc.LineInput(ln.product_ref, ln.quantity, ln.unit_price, ln.discount, ln.category)
                       for ln in input.lines],
                shipping_amount=input.shipping_amount, tax_amount=input.tax_amount,
                idempotency_key=input.idempotency_key)
            return dict(order=order_type(o, ctx))
        return await run(OrderPayload, go)

    @strawberry.mutation(permission_classes=[IsBackend], description="OR-2: the shop refunded (part of) an order "
                         "(idempotent by providerRef).")
    async def refund_order(self, info: Info, input: RefundOrderInput) -> RefundPayload:
        ctx = info.context

        async def go():
            r = await orders_svc.refund_order(ctx.svc, shop_id=ctx.shop_id, amount=input.amount,
                                              provider_ref=input.provider_ref, idempotency_key=input.idempotency_key,
                                              **_order_ref(input.order_id, input.external_id))
            rf = r.get("refund") or await ctx.loaders.refund.load(r["refund_id"])  # as written, or a replay's
            return dict(refund=refund_type(rf, ctx) if rf else None, replayed=r["replayed"])
        return await run(RefundPayload, go)

    @strawberry.mutation(permission_classes=[IsBackend], description="OR-4: delivered and not disputed.")
    async def complete_order(self, info: Info, input: CompleteOrderInput) -> OrderPayload:
        ctx = info.context

        async def go():
            o = await orders_svc.complete_order(ctx.svc, shop_id=ctx.shop_id, idempotency_key=input.idempotency_key,
                                                **_order_ref(input.order_id, input.external_id))
            return dict(order=order_type(o, ctx))
        return await run(OrderPayload, go)

    @strawberry.mutation(permission_classes=[IsBackendOrAdmin], description="OR-3: a product's category and "
                         "commission terms (CM-3 fixed per-unit amounts).")
    async def upsert_product(self, info: Info, input: UpsertProductInput) -> ProductPayload:
        ctx = info.context

        async def go():
            p = await shops_svc.upsert_product(ctx.svc, shop_id=ctx.shop_id, product_ref=input.product_ref,
                                               title=input.title, category=input.category,
                                               earns_commission=input.earns_commission,
                                               level1_amount=input.level1_amount, level2_amount=input.level2_amount,
                                               idempotency_key=input.idempotency_key)
            return dict(product=product_type(p, ctx))
        return await run(ProductPayload, go)

    # ------------------------------------------------------------ distributor
    @strawberry.mutation(permission_classes=[IsDistributor], description="LG-2: ask for a payout.")
    async def request_payout(self, info: Info, input: RequestPayoutInput) -> PayoutPayload:
        ctx = info.context

        async def go():
            p = await payouts_svc.request_payout(ctx.svc, shop_id=ctx.shop_id, user_id=ctx.user_id,
                                                 amount=input.amount, idempotency_key=input.idempotency_key)
            return dict(payout=payout_type(p, ctx))
        return await run(PayoutPayload, go)

    # ------------------------------------------------------------ admin
    @strawberry.mutation(permission_classes=[IsAdmin], description="Section 2: a group-buy campaign.")
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
                commission_enabled=input.commission_enabled, category=input.category,
                idempotency_key=input.idempotency_key, almost_full_at=input.almost_full_at,
                expiring_soon_before=timedelta(seconds=input.expiring_soon_before_seconds))
            return dict(campaign=campaign_type(c, ctx))
        return await run(CampaignPayload, go)

    @strawberry.mutation(permission_classes=[IsAdmin],
                         description="Stop a campaign now: no group can be opened any more; open groups keep their "
                                     "expiry and form or fail then (GB-1). Ending it again changes nothing.")
    async def end_campaign(self, info: Info, input: EndCampaignInput) -> CampaignPayload:
        ctx = info.context

        async def go():
            c = await campaigns_svc.end_campaign(ctx.svc, shop_id=ctx.shop_id,
                                                 campaign_id=raw_id(input.campaign_id, "Campaign", "campaignId"),
                                                 idempotency_key=input.idempotency_key)
            return dict(campaign=campaign_type(c, ctx))
        return await run(CampaignPayload, go)

    @strawberry.mutation(permission_classes=[IsAdmin], description="Section 3: change distribution settings.")
    async def update_distribution_settings(self, info: Info,
                                           input: UpdateDistributionSettingsInput) -> DistributionSettingsPayload:
        ctx = info.context

        async def go():
            changes = {k: getattr(input, k) for k in (f.name for f in dc_fields(input)) if k != "idempotency_key"}
            changes = {k: (_DistributionMode(v.value) if k == "mode" else _BindingMode(v.value) if k == "binding"
                           else v) for k, v in changes.items() if v is not None}
            s = await shops_svc.update_settings(ctx.svc, shop_id=ctx.shop_id,
                                                idempotency_key=input.idempotency_key, **changes)
            return dict(settings=settings_type(s, ctx))
        return await run(DistributionSettingsPayload, go)

    @strawberry.mutation(permission_classes=[IsAdmin], description="LV-1: replace the level table.")
    async def set_levels(self, info: Info, input: SetLevelsInput) -> SetLevelsPayload:
        ctx = info.context

        async def go():
            levels = [engine_levels.Level(**{f.name: getattr(lv, f.name) for f in dc_fields(engine_levels.Level)})
                      for lv in input.levels]
            saved = await shops_svc.set_levels(ctx.svc, shop_id=ctx.shop_id, levels=levels,
                                               idempotency_key=input.idempotency_key)
            return dict(levels=[level_type(lv, ctx) for lv in saved])
        return await run(SetLevelsPayload, go)

    @strawberry.mutation(permission_classes=[IsAdmin], description="DS-1: approve an applicant.")
    async def approve_distributor(self, info: Info, input: ApproveDistributorInput) -> DistributorPayload:
        return await _change_status(info, input, "approve_distributor")

    @strawberry.mutation(permission_classes=[IsAdmin], description="DS-1: suspend, with a reason.")
    async def suspend_distributor(self, info: Info, input: SuspendDistributorInput) -> DistributorPayload:
        return await _change_status(info, input, "suspend_distributor")

    @strawberry.mutation(permission_classes=[IsAdmin], description="DS-1: reinstate a suspended distributor, "
                         "with a reason.")
    async def reinstate_distributor(self, info: Info, input: ReinstateDistributorInput) -> DistributorPayload:
        if not input.reason.strip():
            return DistributorPayload(errors=[UserError(code=ErrorCode.INVALID_INPUT, field="reason", rule="DS-1",
                                                        message="a reason is required")])
        return await _change_status(info, input, "reinstate_distributor")

    @strawberry.mutation(permission_classes=[IsAdmin], description="LV-3: set a level, with a reason.")
    async def set_distributor_level(self, info: Info, input: SetDistributorLevelInput) -> DistributorPayload:
        ctx = info.context

        async def go():
            d = await distribution_svc.set_level(ctx.svc, shop_id=ctx.shop_id, user_id=input.user_id,
                                                 grade=input.grade, actor=ctx.user_id, reason=input.reason,
                                                 idempotency_key=input.idempotency_key)
            return dict(distributor=distributor_summary(d))
        return await run(DistributorPayload, go)

    @strawberry.mutation(permission_classes=[IsAdmin], description="Register a signed webhook endpoint.")
    async def register_webhook(self, info: Info, input: RegisterWebhookInput) -> WebhookPayload:
        ctx = info.context

        async def go():
            e = await webhooks_svc.register_endpoint(ctx.svc, shop_id=ctx.shop_id, url=input.url,
                                                     event_types=input.event_types,
                                                     idempotency_key=input.idempotency_key)
            return dict(endpoint=endpoint_type(e))
        return await run(WebhookPayload, go)

    @strawberry.mutation(permission_classes=[IsAdmin], description="New secret; the old one signs too for the overlap.")
    async def rotate_webhook_secret(self, info: Info, input: RotateWebhookSecretInput) -> WebhookPayload:
        ctx = info.context

        async def go():
            e = await webhooks_svc.rotate_secret(ctx.svc, shop_id=ctx.shop_id,
                                                 endpoint_id=raw_id(input.endpoint_id, "WebhookEndpoint", "endpointId"),
                                                 overlap=timedelta(seconds=input.overlap_seconds),
                                                 idempotency_key=input.idempotency_key)
            return dict(endpoint=endpoint_type(e))
        return await run(WebhookPayload, go)

    @strawberry.mutation(permission_classes=[IsAdmin], description="Enable an endpoint (after it was disabled for "
                         "failing): what it was owed while disabled, and what waits out a backoff, is due now.")
    async def enable_webhook(self, info: Info, input: EnableWebhookInput) -> WebhookPayload:
        return await _switch_endpoint(info, input, webhooks_svc.enable_endpoint)

    @strawberry.mutation(permission_classes=[IsAdmin], description="Stop deliveries to an endpoint: what it is owed "
                         "is held (not lost) until enableWebhook.")
    async def disable_webhook(self, info: Info, input: DisableWebhookInput) -> WebhookPayload:
        return await _switch_endpoint(info, input, webhooks_svc.disable_endpoint)

    @strawberry.mutation(permission_classes=[IsAdmin], description="Replay: owe the endpoint again every event with "
                         "fromSeq <= seq <= toSeq that its event-type filter takes; returns how many.")
    async def redeliver_events(self, info: Info, input: RedeliverEventsInput) -> RedeliverEventsPayload:
        ctx = info.context

        async def go():
            n = await webhooks_svc.redeliver(ctx.svc, shop_id=ctx.shop_id,
                                             endpoint_id=raw_id(input.endpoint_id, "WebhookEndpoint", "endpointId"),
                                             from_seq=input.from_seq, to_seq=input.to_seq,
                                             idempotency_key=input.idempotency_key)
            return dict(queued=n)
        return await run(RedeliverEventsPayload, go)

    # ------------------------------------------------------------ finance
    @strawberry.mutation(permission_classes=[IsFinance], description="LG-2: approve with the transfer reference.")
    async def approve_payout(self, info: Info, input: ApprovePayoutInput) -> PayoutPayload:
        ctx = info.context

        async def go():
            p = await payouts_svc.decide_payout(ctx.svc, shop_id=ctx.shop_id,
                                                payout_id=raw_id(input.payout_id, "Payout", "payoutId"),
                                                approve=True, actor=ctx.user_id, external_ref=input.external_ref,
                                                idempotency_key=input.idempotency_key)
            return dict(payout=payout_type(p, ctx))
        return await run(PayoutPayload, go)

    @strawberry.mutation(permission_classes=[IsFinance], description="LG-2: reject; all of the amount back to "
                         "available, no fee.")
    async def reject_payout(self, info: Info, input: RejectPayoutInput) -> PayoutPayload:
        ctx = info.context

        async def go():
            if not input.reason.strip():
                raise refuse(ErrorCode.INVALID_INPUT, "a reason is required", field="reason", rule="LG-2")
            p = await payouts_svc.decide_payout(ctx.svc, shop_id=ctx.shop_id,
                                                payout_id=raw_id(input.payout_id, "Payout", "payoutId"),
                                                approve=False, actor=ctx.user_id, reason=input.reason,
                                                idempotency_key=input.idempotency_key)
            return dict(payout=payout_type(p, ctx))
        return await run(PayoutPayload, go)

    @strawberry.mutation(permission_classes=[IsFinance], description="LG-3: close a period into a batch.")
    async def close_period(self, info: Info, input: ClosePeriodInput) -> ClosePeriodPayload:
        ctx = info.context

        async def go():
            try:
                f, t = date.fromisoformat(input.from_date), date.fromisoformat(input.to_date)
            except ValueError:
                raise refuse(ErrorCode.INVALID_INPUT, "dates are YYYY-MM-DD", field="fromDate")
            bounded_day(f, "fromDate"), bounded_day(t, "toDate")
            b = await settlements_svc.close_period(ctx.svc, shop_id=ctx.shop_id, day_from=f, day_to=t,
                                                   actor=ctx.user_id, idempotency_key=input.idempotency_key)
            return dict(settlement=settlement_type(b))
        return await run(ClosePeriodPayload, go)


TEST_CLOCK_ENV = "SHARECART_TEST_CLOCK"
MAX_CLOCK_AHEAD_S = 100 * 365 * 86400  # the test clock is bounded (issue 11 point 11)


def test_clock_enabled() -> bool:
    from service.settings import settings

    return settings().test_clock


@strawberry.type(name="Mutation")
class MutationWithTestClock(Mutation):
    """The schema served when SHARECART_TEST_CLOCK=1: `advanceClock` exists only there."""

    @strawberry.mutation(permission_classes=[IsAdmin],
                         description="Tests only (SHARECART_TEST_CLOCK=1): move the service clock (OR-5) and run "
                                     "the work that became due (GB-11, CM-6).")
    async def advance_clock(self, info: Info, input: AdvanceClockInput) -> AdvanceClockPayload:
        from service.worker import run_due

        if not test_clock_enabled():  # belt and braces: the field is only in the test schema
            return AdvanceClockPayload(errors=[UserError(code=ErrorCode.FORBIDDEN, field=None, rule="OR-5",
                                                         message="the clock can only be moved in test mode")])
        if input.seconds < 0:
            return AdvanceClockPayload(errors=[UserError(code=ErrorCode.INVALID_INPUT, field="seconds", rule="OR-5",
                                                         message="the clock only moves forward")])
        ahead = info.context.svc.now() + timedelta(seconds=min(input.seconds, MAX_CLOCK_AHEAD_S + 1)) - \
            datetime.now(timezone.utc)
        if ahead.total_seconds() > MAX_CLOCK_AHEAD_S:  # past year 9999 every shop's `now + window` would overflow
            return AdvanceClockPayload(errors=[UserError(
                code=ErrorCode.INVALID_INPUT, field="seconds", rule="OR-5",
                message=f"the test clock stays within {MAX_CLOCK_AHEAD_S // (365 * 86400)} years of the real time")])
        now = info.context.svc.clock.advance(timedelta(seconds=input.seconds))
        await run_due(info.context.svc)
        return AdvanceClockPayload(now=now, errors=[])
