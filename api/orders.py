"""Orders, payments and refunds (OR-1..OR-4, GB-9, GB-10): a group seat's order or one the shop's backend
reports; money in (`confirmPayment`), refunds owed and paid. Types, queries, mutations."""

from __future__ import annotations

from datetime import datetime
from enum import Enum
from typing import TYPE_CHECKING, Annotated, Iterable, Optional

import strawberry
from strawberry import relay
from strawberry.types import Info

from api.distribution import ORDER_CODE_FIELD, PaymentFingerprintsInput, ReferralAttribution, attribution_type
from api.errors import UserError
from api.payload import idempotency_key_field, payload_mutation
from api.permissions import IsBackend, IsBackendOrFinance, IsCustomer
from api.relay import MAX_MINOR, Connection, Keyset, MinorUnits, paginate, paginate_keyset, raw_id, resolve_visible
from api.visibility import sees_buyer
from engine.errors import ErrorCode, refuse
from service.reads import queries
from service.usecases import orders as orders_svc
from service.usecases import refunds as refunds_svc

if TYPE_CHECKING:  # api.groupbuy imports this module: Order.group names its type lazily
    from api.groupbuy import Group


# ---------------------------------------------------------------- types
@strawberry.enum(
    name="OrderKind",
    description="GROUP: a group seat's order (GB-1/GB-2); PLAIN: reported by the shop's backend (OR-1)",
)
class OrderKind(Enum):
    GROUP = "GROUP"
    PLAIN = "PLAIN"


@strawberry.enum(
    name="OrderState",
    description="CREATED (awaiting payment), PAID, COMPLETED (delivered, OR-4) or "
    "CANCELLED (a seat released or given up, GB-2/GB-8)",
)
class OrderState(Enum):
    CREATED = "CREATED"
    PAID = "PAID"
    COMPLETED = "COMPLETED"
    CANCELLED = "CANCELLED"


@strawberry.enum(
    name="RefundState",
    description="OWED (decided, not yet paid: GB-5..GB-9) or CONFIRMED (paid, "
    "with the provider's reference: GB-10, OR-2)",
)
class RefundState(Enum):
    OWED = "OWED"
    CONFIRMED = "CONFIRMED"


@strawberry.type(description="An order: a group seat's order (GB-1/GB-2) or one reported by the backend (OR-1).")
class Order(relay.Node):
    id: relay.NodeID[str]
    external_id: str
    kind: OrderKind
    state: OrderState
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

    @strawberry.field(
        description="The buyer; null unless you are the buyer or shop staff (a distributor "
        "sees the orders of their commission lines, not who placed them)."
    )
    def buyer_id(self) -> Optional[str]:
        return self._buyer if self._buyer_visible else None

    @strawberry.field
    async def group(self, info: Info) -> Optional[Annotated["Group", strawberry.lazy("api.groupbuy")]]:
        if not self._group:
            return None
        from api.groupbuy import group_type

        g = await info.context.loaders.group.load(self._group)
        return group_type(g, info.context) if g else None

    @classmethod
    async def resolve_nodes(cls, *, info: Info, node_ids: Iterable[str], required: bool = False):
        return await resolve_visible(info, "order", node_ids, order_type)


def order_type(o, ctx) -> Order:
    return Order(
        id=o.order_id,
        external_id=o.external_id,
        kind=OrderKind(o.kind),
        state=OrderState(o.state),
        currency=ctx.currency,
        goods_amount=o.goods_amount,
        shipping_amount=o.shipping_amount,
        tax_amount=o.tax_amount,
        paid_amount=o.paid_amount,
        refunded_amount=o.refunded_amount,
        created_at=o.created_at,
        paid_at=o.paid_at,
        completed_at=o.completed_at,
        _buyer=o.buyer_id,
        _group=o.group_id,
        _buyer_visible=sees_buyer(ctx, o),
    )


@strawberry.type(description="A refund decided by the rules (OWED: GB-5..GB-9) or reported by the backend (OR-2).")
class Refund(relay.Node):
    id: relay.NodeID[str]
    amount: MinorUnits
    currency: str
    rule: str
    full: bool
    state: RefundState
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
        return await resolve_visible(info, "refund", node_ids, refund_type)


def refund_type(r, ctx) -> Refund:
    return Refund(
        id=r.refund_id,
        amount=r.amount,
        currency=ctx.currency,
        rule=r.rule,
        full=r.full,
        state=RefundState(r.state),
        provider_ref=r.provider_ref,
        created_at=r.created_at,
        confirmed_at=r.confirmed_at,
        _order=r.order_id,
    )


# ---------------------------------------------------------------- queries

REFUNDS_KEYSET = Keyset(
    "refunds",
    key=lambda r: [r.created_at.isoformat(), r.refund_id],
    parse=lambda v: (datetime.fromisoformat(v[0]), str(v[1])),
)


@strawberry.field(permission_classes=[IsCustomer], description="The caller's orders, newest first.")
async def my_orders(info: Info, first: Optional[int] = None, after: Optional[str] = None) -> Connection[Order]:
    ctx = info.context
    return await paginate(
        lambda **p: queries.page_orders_caught_up(ctx.svc, shop_id=ctx.shop_id, buyer_id=ctx.user_id, **p),
        first,
        after,
        lambda o: order_type(o, ctx),
    )


@strawberry.field(
    permission_classes=[IsBackendOrFinance],
    description="Refunds owed and not yet confirmed (GB-5..GB-9), oldest first (backend, and "
    "finance to watch what the shop owes); pay them, then "
    "confirmRefund (GB-10). The cursor is a keyset: confirming refunds while paging "
    "with `after: endCursor` skips none.",
)
async def owed_refunds(
    info: Info, first: Optional[int] = None, after: Optional[str] = None, rule: Optional[str] = None
) -> Connection[Refund]:
    ctx = info.context
    return await paginate_keyset(
        lambda **p: queries.page_refunds(ctx.svc, shop_id=ctx.shop_id, state=RefundState.OWED.value, rule=rule, **p),
        first,
        after,
        REFUNDS_KEYSET,
        lambda r: refund_type(r, ctx),
    )


# ---------------------------------------------------------------- mutations


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


def _order_ref(order_id: Optional[str], external_id: Optional[str]) -> dict:
    if bool(order_id) == bool(external_id):
        raise refuse(ErrorCode.INVALID_INPUT, "give exactly one of orderId and externalId", field="orderId")
    return {"order_id": raw_id(order_id, "Order", "orderId") if order_id else None, "external_id": external_id}


@strawberry.input
class ConfirmPaymentInput:
    order_id: Optional[strawberry.ID] = None
    external_id: Optional[str] = None
    amount: MinorUnits
    provider_ref: str
    idempotency_key: Optional[str] = idempotency_key_field()
    fingerprints: Optional[PaymentFingerprintsInput] = None  # FR-1


@strawberry.type
class ConfirmPaymentPayload:
    order: Optional[Order] = None
    accepted: Optional[bool] = strawberry.field(
        default=None,
        description=(
            "False: the payment took no seat (late, GB-9; or the seat was already paid by another payment, GB-10): a full "
            "refund is owed"
        ),
    )
    replayed: Optional[bool] = strawberry.field(
        default=None,
        description="This providerRef (or idempotencyKey) was confirmed before: the first confirmation's answer",
    )
    errors: list[UserError]


@strawberry.input
class ConfirmRefundInput:
    refund_id: strawberry.ID
    provider_ref: str
    idempotency_key: Optional[str] = idempotency_key_field()


@strawberry.type
class RefundPayload:
    refund: Optional[Refund] = None
    replayed: Optional[bool] = strawberry.field(
        default=None,
        description="refundOrder: this providerRef (or idempotencyKey) was recorded before: the first refund",
    )
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
    invite_code: Optional[str] = ORDER_CODE_FIELD
    idempotency_key: Optional[str] = idempotency_key_field()


@strawberry.type
class OrderPayload:
    order: Optional[Order] = None
    attribution: Optional[ReferralAttribution] = None
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


@payload_mutation(
    ConfirmPaymentPayload,
    permission_classes=[IsBackend],
    description="Money received (idempotent by providerRef, GB-10; a late payment is accepted and refunded, GB-9).",
)
async def confirm_payment(info: Info, input: ConfirmPaymentInput) -> dict:
    ctx = info.context
    r = await orders_svc.confirm_payment(
        ctx.svc,
        shop_id=ctx.shop_id,
        provider_ref=input.provider_ref,
        amount=input.amount,
        idempotency_key=input.idempotency_key,
        fingerprints=input.fingerprints.as_kinds() if input.fingerprints else None,
        **_order_ref(input.order_id, input.external_id),
    )
    o = await ctx.loaders.order.load(r["order_id"])
    return dict(order=order_type(o, ctx) if o else None, accepted=r["accepted"], replayed=r["replayed"])


@payload_mutation(RefundPayload, permission_classes=[IsBackend], description="An owed refund was paid (GB-10).")
async def confirm_refund(info: Info, input: ConfirmRefundInput) -> dict:
    ctx = info.context
    r = await refunds_svc.confirm_refund(
        ctx.svc,
        shop_id=ctx.shop_id,
        refund_id=raw_id(input.refund_id, "Refund", "refundId"),
        provider_ref=input.provider_ref,
        idempotency_key=input.idempotency_key,
    )
    return dict(refund=refund_type(r, ctx))


@payload_mutation(
    OrderPayload,
    permission_classes=[IsBackend],
    description="OR-1: report a shop order (idempotent by externalId with the same content).",
    fields={"userId": "buyerId"},
)
async def report_order(info: Info, input: ReportOrderInput) -> dict:
    ctx = info.context
    _representable_total(input)
    attributed: list = []
    o = await orders_svc.report_order(
        ctx.svc,
        shop_id=ctx.shop_id,
        external_id=input.external_id,
        buyer_id=input.buyer_id,
        lines=[
            orders_svc.LineInput(ln.product_ref, ln.quantity, ln.unit_price, ln.discount, ln.category)
            for ln in input.lines
        ],
        shipping_amount=input.shipping_amount,
        tax_amount=input.tax_amount,
        idempotency_key=input.idempotency_key,
        invite_code=input.invite_code,
        attribution_out=attributed,
    )
    return dict(order=order_type(o, ctx), attribution=attribution_type(attributed[0] if attributed else None))


@payload_mutation(
    RefundPayload,
    permission_classes=[IsBackend],
    description="OR-2: the shop refunded (part of) an order (idempotent by providerRef).",
)
async def refund_order(info: Info, input: RefundOrderInput) -> dict:
    ctx = info.context
    r = await orders_svc.refund_order(
        ctx.svc,
        shop_id=ctx.shop_id,
        amount=input.amount,
        provider_ref=input.provider_ref,
        idempotency_key=input.idempotency_key,
        **_order_ref(input.order_id, input.external_id),
    )
    rf = r.get("refund") or await ctx.loaders.refund.load(r["refund_id"])  # as written, or a replay's
    return dict(refund=refund_type(rf, ctx) if rf else None, replayed=r["replayed"])


@payload_mutation(OrderPayload, permission_classes=[IsBackend], description="OR-4: delivered and not disputed.")
async def complete_order(info: Info, input: CompleteOrderInput) -> dict:
    ctx = info.context
    o = await orders_svc.complete_order(
        ctx.svc,
        shop_id=ctx.shop_id,
        idempotency_key=input.idempotency_key,
        **_order_ref(input.order_id, input.external_id),
    )
    return dict(order=order_type(o, ctx))
