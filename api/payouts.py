"""Payouts and settlements (LG-2, LG-3): a distributor asks, finance approves or rejects; finance closes a
period into an immutable settlement batch (exported as CSV/XLSX by api.app). Types, queries, mutations."""

from __future__ import annotations

from datetime import date, datetime
from enum import Enum
from typing import Iterable, Optional

import strawberry
from strawberry import relay
from strawberry.types import Info

from api.errors import UserError
from api.payload import idempotency_key_field, payload_mutation
from api.permissions import IsAdminOrFinance, IsBackendOrFinance, IsDistributor, IsFinance
from api.relay import Connection, MinorUnits, bounded_day, paginate, raw_id, resolve_visible
from engine import ledger as lg
from engine.errors import ErrorCode, refuse
from service.reads import listings, queries
from service.usecases import payouts as payouts_svc
from service.usecases import settlements as settlements_svc


# ---------------------------------------------------------------- types
@strawberry.enum(
    name="PayoutState",
    description="LG-2: REQUESTED (the amount is IN_PAYOUT), APPROVED (paid: "
    "amount − fee sent), REJECTED (all of it back to available) or "
    "FAILED (the transfer bounced after approval, LG-4)",
)
class PayoutState(Enum):
    REQUESTED = "REQUESTED"
    APPROVED = "APPROVED"
    REJECTED = "REJECTED"
    FAILED = "FAILED"


@strawberry.type(description="A payout request (LG-2): the distributor receives amount − fee.")
class Payout(relay.Node):
    id: relay.NodeID[str]
    distributor_id: str
    amount: MinorUnits
    fee: MinorUnits
    net: MinorUnits
    currency: str
    state: PayoutState
    requested_at: datetime
    decided_at: Optional[datetime]
    external_ref: Optional[str]
    reason: Optional[str]
    payee_kind: Optional[str] = strawberry.field(default=None, description="LG-4: the payee method chosen at request")
    payee_reference: Optional[str] = strawberry.field(default=None, description="LG-4: its account reference, masked")
    failed_at: Optional[datetime] = strawberry.field(
        default=None, description="LG-4: when the transfer was marked failed"
    )
    failure_ref: Optional[str] = strawberry.field(default=None, description="LG-4: the failed transfer's reference")
    failure_reason: Optional[str] = None

    @classmethod
    async def resolve_nodes(cls, *, info: Info, node_ids: Iterable[str], required: bool = False):
        return await resolve_visible(info, "payout", node_ids, payout_type)


def payout_type(p, ctx) -> Payout:
    return Payout(
        id=p.payout_id,
        distributor_id=p.distributor_id,
        amount=p.amount,
        fee=p.fee,
        net=p.amount - p.fee,
        currency=ctx.currency,
        state=PayoutState(p.state),
        requested_at=p.requested_at,
        decided_at=p.decided_at,
        external_ref=p.external_ref,
        reason=p.reason,
        payee_kind=getattr(p, "payee_kind", None),
        payee_reference=getattr(p, "payee_reference", None),
        failed_at=getattr(p, "failed_at", None),
        failure_ref=getattr(p, "failure_ref", None),
        failure_reason=getattr(p, "failure_reason", None),
    )


@strawberry.type(description="An immutable settlement batch (LG-3).")
class Settlement(relay.Node):
    id: relay.NodeID[str]
    local_from: date = strawberry.field(description="First local day of the period (shop time zone)")
    local_to: date = strawberry.field(description="The local day after the last (half-open period)")
    currency: str
    distributors: int
    opening: MinorUnits
    released: MinorUnits
    reversals: MinorUnits
    bonuses: MinorUnits
    payouts: MinorUnits
    fees: MinorUnits
    failed: MinorUnits = strawberry.field(
        description="LG-4: what payouts that failed in the period gave back "
        "(amount and fee); closing = opening + released + reversals + "
        "bonuses − payouts − fees + failed"
    )
    closing: MinorUnits
    held: MinorUnits = strawberry.field(
        description="FR-3: commission held for review at the period end (beside the identity: in no settled balance)"
    )

    @strawberry.field(description="Path of the CSV export (GET with a finance token, LG-3)")
    def csv_path(self) -> str:
        return f"/exports/settlements/{self.id}.csv"

    @strawberry.field(description="Path of the XLSX export (GET with a finance token, LG-3)")
    def xlsx_path(self) -> str:
        return f"/exports/settlements/{self.id}.xlsx"

    @classmethod
    async def resolve_nodes(cls, *, info: Info, node_ids: Iterable[str], required: bool = False):
        return await resolve_visible(info, "settlement", node_ids, lambda b, ctx: settlement_type(b))


def settlement_type(b) -> Settlement:
    return Settlement(
        id=b.settlement_id,
        local_from=date.fromisoformat(b.local_from),
        local_to=date.fromisoformat(b.local_to),
        currency=b.currency,
        distributors=b.distributors,
        opening=b.opening,
        released=b.released,
        reversals=b.reversals,
        bonuses=b.bonuses,
        payouts=b.payouts,
        fees=b.fees,
        failed=b.failed,
        closing=b.closing,
        held=b.held,
    )


# ---------------------------------------------------------------- queries


@strawberry.field(permission_classes=[IsFinance], description="Payouts waiting for a decision (LG-2).")
async def pending_payouts(info: Info, first: Optional[int] = None, after: Optional[str] = None) -> Connection[Payout]:
    ctx = info.context
    return await paginate(
        lambda **p: queries.page_payouts(
            ctx.svc, shop_id=ctx.shop_id, state=PayoutState.REQUESTED.value, user_id=None, **p
        ),
        first,
        after,
        lambda x: payout_type(x, ctx),
    )


@strawberry.field(permission_classes=[IsAdminOrFinance], description="Settlement batches (LG-3), oldest first.")
async def settlements(info: Info, first: Optional[int] = None, after: Optional[str] = None) -> Connection[Settlement]:
    ctx = info.context
    return await paginate(
        lambda **p: listings.page_settlements(ctx.svc, shop_id=ctx.shop_id, **p), first, after, settlement_type
    )


# ---------------------------------------------------------------- mutations

PayeeKind = strawberry.enum(lg.PayeeKind, name="PayeeKind")


@strawberry.input(description="LG-4: where the payout goes. Only the kind and a masked reference are stored.")
class PayeeMethodInput:
    kind: PayeeKind  # type: ignore[valid-type]
    account_reference: str

    def method(self) -> lg.PayeeMethod:
        return lg.payee_method(getattr(self.kind, "value", self.kind), self.account_reference)


@strawberry.input
class RequestPayoutInput:
    amount: MinorUnits
    idempotency_key: Optional[str] = idempotency_key_field()
    payee_method: Optional[PayeeMethodInput] = None  # LG-4


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
class FailPayoutInput:
    payout_id: strawberry.ID
    transfer_ref: str
    reason: str
    idempotency_key: Optional[str] = idempotency_key_field()


@strawberry.input
class ClosePeriodInput:
    from_date: date = strawberry.field(description="First local day of the period in the shop time zone")
    to_date: date = strawberry.field(description="The local day after the last (half-open period)")
    idempotency_key: Optional[str] = idempotency_key_field()


@strawberry.type
class ClosePeriodPayload:
    settlement: Optional[Settlement] = None
    errors: list[UserError]


@payload_mutation(
    PayoutPayload, permission_classes=[IsDistributor], description="LG-2: ask for a payout.", fields={"userId": None}
)  # "no balance to pay out": the caller's standing, not an input
async def request_payout(info: Info, input: RequestPayoutInput) -> dict:
    ctx = info.context
    p = await payouts_svc.request_payout(
        ctx.svc,
        shop_id=ctx.shop_id,
        user_id=ctx.user_id,
        amount=input.amount,
        idempotency_key=input.idempotency_key,
        payee=input.payee_method.method() if input.payee_method else None,
    )
    return dict(payout=payout_type(p, ctx))


@payload_mutation(
    PayoutPayload,
    permission_classes=[IsFinance],
    description="LG-2: approve with the transfer reference.",
    fields={"amount": "payoutId"},
)
async def approve_payout(info: Info, input: ApprovePayoutInput) -> dict:
    ctx = info.context
    p = await payouts_svc.decide_payout(
        ctx.svc,
        shop_id=ctx.shop_id,
        payout_id=raw_id(input.payout_id, "Payout", "payoutId"),
        approve=True,
        actor=ctx.user_id,
        external_ref=input.external_ref,
        idempotency_key=input.idempotency_key,
    )
    return dict(payout=payout_type(p, ctx))


@payload_mutation(
    PayoutPayload,
    permission_classes=[IsFinance],
    description="LG-2: reject; all of the amount back to available, no fee.",
)
async def reject_payout(info: Info, input: RejectPayoutInput) -> dict:
    ctx = info.context
    if not input.reason.strip():
        raise refuse(ErrorCode.INVALID_INPUT, "a reason is required", field="reason", rule="LG-2")
    p = await payouts_svc.decide_payout(
        ctx.svc,
        shop_id=ctx.shop_id,
        payout_id=raw_id(input.payout_id, "Payout", "payoutId"),
        approve=False,
        actor=ctx.user_id,
        reason=input.reason,
        idempotency_key=input.idempotency_key,
    )
    return dict(payout=payout_type(p, ctx))


@payload_mutation(
    ClosePeriodPayload,
    permission_classes=[IsFinance],
    description="LG-3: close a period into a batch.",
    fields={"from": "fromDate", "to": "toDate"},
)
async def close_period(info: Info, input: ClosePeriodInput) -> dict:
    ctx = info.context
    f, t = bounded_day(input.from_date, "fromDate"), bounded_day(input.to_date, "toDate")
    b = await settlements_svc.close_period(
        ctx.svc, shop_id=ctx.shop_id, day_from=f, day_to=t, actor=ctx.user_id, idempotency_key=input.idempotency_key
    )
    return dict(settlement=settlement_type(b))


@payload_mutation(
    PayoutPayload,
    permission_classes=[IsBackendOrFinance],
    description="LG-4: an approved payout's "
    "transfer failed — FAILED with the transfer reference and a reason; the amount is back in available "
    "and the fee reversed, by new entries (idempotent).",
)
async def fail_payout(info: Info, input: FailPayoutInput) -> dict:
    ctx = info.context
    p = await payouts_svc.fail_payout(
        ctx.svc,
        shop_id=ctx.shop_id,
        payout_id=raw_id(input.payout_id, "Payout", "payoutId"),
        actor=ctx.user_id,
        transfer_ref=input.transfer_ref,
        reason=input.reason,
        idempotency_key=input.idempotency_key,
    )
    return dict(payout=payout_type(p, ctx))
