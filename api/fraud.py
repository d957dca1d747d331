"""Fraud review (FR-1..FR-4): the fingerprints `confirmPayment` may carry, the shop's rules, the admin's review
queue and decisions. Types, queries, mutations (registered in api.schema)."""

from __future__ import annotations

from datetime import datetime
from enum import Enum
from typing import Optional, cast

import strawberry
from strawberry.scalars import JSON
from strawberry.types import Info

from api.errors import UserError
from api.payload import idempotency_key_field, payload_mutation
from api.permissions import IsAdmin
from api.relay import Connection, MinorUnits, paginate
from engine import fraud as fr
from service.reads import fraud as fraud_reads
from service.tx.fraud import RULE_FIELDS
from service.usecases import fraud as fraud_svc


# ---------------------------------------------------------------- inputs carried by other mutations
@strawberry.input(
    description="FR-1: the payer's fingerprints, all optional. Sharecart keeps only keyed hashes "
    "(HMAC under the shop's key), never these values."
)
class PaymentFingerprintsInput:
    payer_account: Optional[str] = None
    device_id: Optional[str] = None
    ip_address: Optional[str] = None
    shipping_address: Optional[str] = None

    def as_kinds(self) -> dict[str, str | None]:
        return {
            "PAYER": self.payer_account,
            "DEVICE": self.device_id,
            "IP": self.ip_address,
            "ADDRESS": self.shipping_address,
        }


# ---------------------------------------------------------------- fraud review
@strawberry.type(description="FR-2: the shop's fraud rules, each on or off with its thresholds.")
class FraudRules:
    self_dealing: bool = strawberry.field(description="(a) a buyer sharing a fingerprint with a beneficiary")
    velocity: bool = strawberry.field(
        description="(b) more than velocityMaxOrders orders within velocityWindow "
        "seconds earning one beneficiary and sharing a device, IP or payer"
    )
    velocity_max_orders: int
    velocity_window: int
    scalper_group: bool = strawberry.field(
        description="(c) scalperMinSeats paid seats of a group sharing a fingerprint"
    )
    scalper_min_seats: int
    refund_rate: bool = strawberry.field(
        description="(d) a downline refunding more than refundRateMaxBp of what it "
        "paid within refundRateWindow seconds (refundRateMinOrders "
        "orders at least)"
    )
    refund_rate_window: int
    refund_rate_max_bp: int
    refund_rate_min_orders: int


@strawberry.input
class SetFraudRulesInput:
    self_dealing: bool = False
    velocity: bool = False
    velocity_max_orders: int = 5
    velocity_window: int = 86_400
    scalper_group: bool = False
    scalper_min_seats: int = 2
    refund_rate: bool = False
    refund_rate_window: int = 30 * 86_400
    refund_rate_max_bp: int = 3000
    refund_rate_min_orders: int = 5
    idempotency_key: Optional[str] = idempotency_key_field(
        "GB-10: accepted for uniformity; setting the same rules twice is already one change"
    )


def _rules_type(r: fr.FraudRules) -> FraudRules:
    return FraudRules(**{f: getattr(r, f) for f in RULE_FIELDS})


@strawberry.type
class FraudRulesPayload:
    rules: Optional[FraudRules] = None
    errors: list[UserError]


@strawberry.type(
    description="FR-3/FR-4: an item of the review queue — a held commission line (subject LINE) or a "
    "flagged group (GROUP) — with the rules that fired, their evidence, and who decided what, "
    "when and why."
)
class FraudFlag:
    id: strawberry.ID
    subject: str
    rules: list[str]
    evidence: JSON
    line_id: Optional[str]
    group_id: Optional[str]
    order_id: Optional[str]
    beneficiary_id: Optional[str]
    amount: MinorUnits = strawberry.field(description="What the flag held when it was raised")
    held: MinorUnits = strawberry.field(description="What its lines hold now")
    currency: str = strawberry.field(description="The shop's currency of `amount` and `held` (SH-2)")
    state: FlagState = strawberry.field(description="OPEN, CLEARED, VOIDED or DISSOLVED")
    flagged_at: datetime
    flagged_by: str
    resolved_at: Optional[datetime]
    resolved_by: Optional[str]
    reason: Optional[str]


def _flag_type(f: fraud_reads.FlagView, currency: str) -> FraudFlag:
    return FraudFlag(
        id=strawberry.ID(f.flag_id),
        subject=f.subject,
        rules=list(f.rules),
        evidence=cast(JSON, f.evidence),
        line_id=f.line_id,
        group_id=f.group_id,
        order_id=f.order_id,
        beneficiary_id=f.beneficiary_id,
        amount=MinorUnits(f.amount),
        held=MinorUnits(f.held),
        currency=currency,
        state=FlagState(f.state),
        flagged_at=f.flagged_at,
        flagged_by=f.flagged_by,
        resolved_at=f.resolved_at,
        resolved_by=f.resolved_by,
        reason=f.reason,
    )


@strawberry.input(description="FR-3: clear a flag (the reason is optional).")
class ClearFraudFlagInput:
    flag_id: strawberry.ID
    reason: Optional[str] = None
    idempotency_key: Optional[str] = idempotency_key_field()


@strawberry.input(description="FR-3: void a flag's lines (a reason is required).")
class VoidFraudFlagInput:
    flag_id: strawberry.ID
    reason: Optional[str] = None
    idempotency_key: Optional[str] = idempotency_key_field()


@strawberry.input(description="FR-3: dissolve a flagged group before it forms (a reason is required).")
class DissolveFlaggedGroupInput:
    flag_id: strawberry.ID
    reason: Optional[str] = None
    idempotency_key: Optional[str] = idempotency_key_field()


@strawberry.type
class FraudFlagPayload:
    flag: Optional[FraudFlag] = None
    errors: list[UserError]


class FlagState(Enum):
    OPEN = "OPEN"
    CLEARED = "CLEARED"
    VOIDED = "VOIDED"
    DISSOLVED = "DISSOLVED"


FraudFlagState = strawberry.enum(FlagState, name="FraudFlagState")


# ---------------------------------------------------------------- queries


@strawberry.field(
    permission_classes=[IsAdmin],
    description="FR-3: the review queue, oldest first (OPEN flags unless "
    "`state` says otherwise; null = every state), a page at a time.",
)
async def fraud_review_queue(
    info: Info,
    state: Optional[FraudFlagState] = FlagState.OPEN,  # type: ignore[valid-type]
    first: Optional[int] = None,
    after: Optional[str] = None,
) -> Connection[FraudFlag]:  # type: ignore[type-var]
    ctx = info.context

    async def fetch(limit: int, offset: int):
        return await fraud_reads.review_queue_page(
            ctx.svc, shop_id=ctx.shop_id, limit=limit, offset=offset, state=getattr(state, "value", state)
        )

    return await paginate(fetch, first, after, lambda f: _flag_type(f, ctx.currency))


@strawberry.field(permission_classes=[IsAdmin], description="FR-2: the shop's fraud rules.")
async def fraud_rules(info: Info) -> FraudRules:
    ctx = info.context
    return _rules_type(await fraud_reads.get_rules(ctx.svc, shop_id=ctx.shop_id))


# ---------------------------------------------------------------- mutations


@payload_mutation(
    FraudRulesPayload, permission_classes=[IsAdmin], description="FR-2: set the shop's fraud rules (whole)."
)
async def set_fraud_rules(info: Info, input: SetFraudRulesInput) -> dict:
    ctx = info.context
    rules = fr.FraudRules(**{f: getattr(input, f) for f in RULE_FIELDS})
    r = await fraud_svc.set_rules(ctx.svc, shop_id=ctx.shop_id, rules=rules, actor=ctx.user_id)
    return dict(rules=_rules_type(r))


@payload_mutation(
    FraudFlagPayload,
    permission_classes=[IsAdmin],
    description="FR-3: clear a flag; its lines resume "
    "their life cycle (available at once when due). Amounts never change.",
)
async def clear_fraud_flag(info: Info, input: ClearFraudFlagInput) -> dict:
    ctx = info.context
    f = await fraud_svc.clear_flag(
        ctx.svc,
        shop_id=ctx.shop_id,
        flag_id=str(input.flag_id),
        actor=ctx.user_id,
        reason=input.reason,
        idempotency_key=input.idempotency_key,
    )
    return dict(flag=_flag_type(f, ctx.currency))


@payload_mutation(
    FraudFlagPayload,
    permission_classes=[IsAdmin],
    description="FR-3: void a flag's lines with a reason (reversed by new entries).",
)
async def void_fraud_flag(info: Info, input: VoidFraudFlagInput) -> dict:
    ctx = info.context
    f = await fraud_svc.void_flag(
        ctx.svc,
        shop_id=ctx.shop_id,
        flag_id=str(input.flag_id),
        actor=ctx.user_id,
        reason=input.reason or "",
        idempotency_key=input.idempotency_key,
    )
    return dict(flag=_flag_type(f, ctx.currency))


@payload_mutation(
    FraudFlagPayload,
    permission_classes=[IsAdmin],
    description="FR-3: dissolve a flagged group before it forms (GB-6 refunds), with a reason.",
)
async def dissolve_flagged_group(info: Info, input: DissolveFlaggedGroupInput) -> dict:
    ctx = info.context
    f = await fraud_svc.dissolve_group(
        ctx.svc,
        shop_id=ctx.shop_id,
        flag_id=str(input.flag_id),
        actor=ctx.user_id,
        reason=input.reason or "",
        idempotency_key=input.idempotency_key,
    )
    return dict(flag=_flag_type(f, ctx.currency))
