"""Distribution (分销, rules sections 3-5: DS, RF, CM, LV): distributors, referral binding, commission lines,
levels, the shop's distribution settings — types, queries, mutations. Payouts and settlements are in
api.payouts; the earnings reports (RP-1) in api.reports."""

from __future__ import annotations

from dataclasses import fields as dc_fields
from datetime import date, datetime
from typing import Iterable, Optional

import strawberry
from strawberry import relay
from strawberry.types import Info

from api.errors import UserError
from api.orders import Order, order_type
from api.payload import idempotency_key_field, payload_mutation
from api.payouts import Payout, payout_type
from api.permissions import HasShopKey, IsAdmin, IsCustomer, IsDistributor
from api.relay import Connection, MinorUnits, bounded_day, paginate, resolve_visible
from api.reports import EarningsGranularity, EarningsPeriod, earnings_period
from api.visibility import may_see
from engine import levels as engine_levels
from engine.commission import CommissionState
from engine.distribution import BindingMode, DistributionMode, DistributorStatus
from engine.errors import ErrorCode, refuse
from service.reads import fraud as fraud_reads
from service.reads import listings, queries
from service.reads import reports as reports_svc
from service.usecases import distribution as distribution_svc
from service.usecases import shops as shops_svc


# ---------------------------------------------------------------- types
# The engine's enums are the GraphQL enums (the wire values are their names, as the strings were).
strawberry.enum(
    CommissionState,
    name="CommissionLineState",
    description="CM-6: PENDING (order paid), FROZEN (order completed, in the freeze window), AVAILABLE "
    "(released to the balance), VOID (the order was refunded or cancelled in full)",
)
strawberry.enum(
    DistributorStatus,
    name="DistributorStatus",
    description="DS-1: APPLIED waits for an admin's approval (APPROVAL mode).",
)
strawberry.enum(DistributionMode, name="DistributionMode")
strawberry.enum(BindingMode, name="BindingMode")


@strawberry.type(description="A commission line (CM-4..CM-6) with the order it came from (RP-1).")
class CommissionLine(relay.Node):
    id: relay.NodeID[str]
    level: int = strawberry.field(description="1 or 2, or 0 for a group leader's reward (团长佣金)")
    state: CommissionState
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
        return await resolve_visible(info, "commission_line", node_ids, line_type)


def line_type(ln, ctx) -> CommissionLine:
    return CommissionLine(
        id=ln.line_id,
        level=ln.level,
        state=CommissionState(ln.state),
        currency=ctx.currency,
        base=ln.base,
        original=ln.original,
        standing=ln.standing,
        created_at=ln.created_at,
        available_at=ln.available_at,
        _order=ln.order_id,
    )


@strawberry.type
class Balances:
    currency: str
    pending: MinorUnits
    frozen: MinorUnits
    available: MinorUnits = strawberry.field(description="May be negative after a clawback (CM-6)")
    in_payout: MinorUnits
    paid: MinorUnits
    fees: MinorUnits
    held: MinorUnits = strawberry.field(
        default=MinorUnits(0),
        description=(
            "FR-3: the part of pending and frozen held for fraud review (not released until an admin clears it); "
            "in `earnings`, always 0"
        ),
    )


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
        from service.usecases.shops import get_levels

        ctx = info.context
        if not may_see(ctx, "level", None):
            return [None for _ in node_ids]
        levels = {str(lv.grade): lv for lv in await get_levels(ctx.svc, ctx.shop_id)}
        return [level_type(levels[i], ctx) if i in levels else None for i in node_ids]


def level_type(lv, ctx) -> Level:
    return Level(
        id=str(lv.grade),
        grade=lv.grade,
        name=lv.name,
        level1_bp=lv.level1_bp,
        level2_bp=lv.level2_bp,
        currency=ctx.currency,
        upgrade_bonus=lv.upgrade_bonus,
        min_direct_referrals=lv.min_direct_referrals,
        min_team_size=lv.min_team_size,
        min_own_spend=lv.min_own_spend,
        min_own_orders=lv.min_own_orders,
        min_direct_sales=lv.min_direct_sales,
        min_team_sales=lv.min_team_sales,
    )


@strawberry.type(
    description="One upgrade condition of the next level: required vs. where you stand (LV-1). A "
    "count condition fills `requiredCount`/`actualCount`, an amount condition "
    "`requiredAmount`/`actualAmount` (in `currency`); the other pair is null."
)
class LevelCondition:
    name: str = strawberry.field(
        description="directReferrals, teamSize, ownOrders (counts); ownSpend, directSales, teamSales (amounts)"
    )
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


@strawberry.type(name="Distributor", description="A distributor or applicant, for admins (DS-1, LV-3).")
class DistributorSummary(relay.Node):
    id: relay.NodeID[str]
    user_id: str
    status: DistributorStatus
    grade: int
    invite_code: str
    applied_at: Optional[datetime]
    approved_at: Optional[datetime]
    approved_by: Optional[str]
    status_reason: Optional[str] = strawberry.field(description="Why it was last suspended or reinstated (DS-1)")

    @classmethod
    async def resolve_nodes(cls, *, info: Info, node_ids: Iterable[str], required: bool = False):
        return await resolve_visible(info, "distributor", node_ids, distributor_summary)


def distributor_summary(d, ctx=None) -> DistributorSummary:
    return DistributorSummary(
        id=d.user_id,
        user_id=d.user_id,
        status=DistributorStatus(d.status),
        grade=d.grade,
        invite_code=d.invite_code,
        applied_at=d.applied_at,
        approved_at=d.approved_at,
        approved_by=d.approved_by,
        status_reason=d.status_reason,
    )


@strawberry.type(description="Distribution settings of the shop (section 3).")
class DistributionSettings:
    mode: DistributionMode
    binding: BindingMode
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
    order_code_overrides: bool = strawberry.field(
        description="RF-3 (b): a code on a reported order names that "
        "order's level 1 even when the buyer has a live referrer"
    )


def settings_type(s, ctx) -> DistributionSettings:
    return DistributionSettings(
        mode=DistributionMode(s.mode),
        binding=BindingMode(s.binding),
        binding_days=s.binding_days,
        bind_new_users_only=s.bind_new_users_only,
        level1_bp=s.level1_bp,
        level2_bp=s.level2_bp,
        self_purchase=s.self_purchase,
        freeze_days=s.freeze_days,
        max_total_bp=s.max_total_bp,
        currency=ctx.currency,
        min_payout=s.min_payout,
        payout_fee_bp=s.payout_fee_bp,
        spend_threshold=s.spend_threshold,
        order_code_overrides=s.order_code_overrides,
    )


@strawberry.type(description="DS-2: what a storefront may learn from an invite code — no personal data.")
class InviteInfo:
    valid: bool
    code: str


LEVEL_METRICS = (
    ("directReferrals", "min_direct_referrals", "direct_referrals", False),
    ("teamSize", "min_team_size", "team_size", False),
    ("ownSpend", "min_own_spend", "own_spend", True),
    ("ownOrders", "min_own_orders", "own_orders", False),
    ("directSales", "min_direct_sales", "direct_sales", True),
    ("teamSales", "min_team_sales", "team_sales", True),
)  # (name, level field, metric, is money)


def _condition(name: str, required: int, actual: int, money: bool, currency: str) -> LevelCondition:
    counts = (None, None) if money else (required, actual)
    amounts = (required, actual) if money else (None, None)
    return LevelCondition(
        name=name,
        required_count=counts[0],
        actual_count=counts[1],
        required_amount=amounts[0],
        actual_amount=amounts[1],
        currency=currency,
        met=actual >= required,
    )


@strawberry.type(description="The calling distributor (RP-1): balances, level, invite code, lines, downline.")
class DistributorProfile:
    user_id: str
    status: DistributorStatus
    invite_code: str = strawberry.field(description="DS-2: unique in the shop, stable")
    grade: int
    level: Optional[Level] = strawberry.field(description="The level of `grade`, null when the shop has no levels")
    balances: Balances
    downline: Downline

    @strawberry.field(description="Progress to the next level (LV-1); null at the top or without levels.")
    async def level_progress(self, info: Info) -> Optional[LevelProgress]:
        ctx = info.context
        levels = await shops_svc.get_levels(ctx.svc, ctx.shop_id)
        nxt = next((lv for lv in levels if lv.grade > self.grade), None)
        if nxt is None:
            return None
        m = await queries.distributor_metrics(ctx.svc, shop_id=ctx.shop_id, user_id=self.user_id)
        conds = [
            _condition(name, getattr(nxt, req), getattr(m, act), money, ctx.currency)
            for name, req, act, money in LEVEL_METRICS
        ]
        return LevelProgress(next_level=level_type(nxt, ctx), conditions=conds, met_count=sum(c.met for c in conds))

    @strawberry.field(description="Commission lines, newest first, each with its order (RP-1).")
    async def commission_lines(
        self, info: Info, first: Optional[int] = None, after: Optional[str] = None
    ) -> Connection[CommissionLine]:
        ctx = info.context
        return await paginate(
            lambda **p: queries.page_commission_lines(ctx.svc, shop_id=ctx.shop_id, beneficiary_id=self.user_id, **p),
            first,
            after,
            lambda ln: line_type(ln, ctx),
        )

    @strawberry.field(description="Payout requests, oldest first (LG-2).")
    async def payouts(self, info: Info, first: Optional[int] = None, after: Optional[str] = None) -> Connection[Payout]:
        ctx = info.context
        return await paginate(
            lambda **p: queries.page_payouts(ctx.svc, shop_id=ctx.shop_id, state=None, user_id=self.user_id, **p),
            first,
            after,
            lambda x: payout_type(x, ctx),
        )

    @strawberry.field(
        description="RP-1: how each balance moved over [from, to) (instants; see earningsSeries for "
        "the shop's calendar)."
    )
    async def earnings(self, info: Info, period_from: datetime, period_to: datetime) -> Balances:
        ctx = info.context
        e = await reports_svc.earnings(
            ctx.svc, shop_id=ctx.shop_id, user_id=self.user_id, period_from=period_from, period_to=period_to
        )
        return Balances(
            currency=ctx.currency,
            pending=e["PENDING"],
            frozen=e["FROZEN"],
            available=e["AVAILABLE"],
            in_payout=e["IN_PAYOUT"],
            paid=e["PAID"],
            fees=e["FEES"],
        )

    @strawberry.field(
        description="RP-1 per local day or month of the shop's time zone over [periodFrom, periodTo), "
        "oldest first, periods without movement included: at most 366 days or 120 months; "
        "months run from a 1st to a 1st."
    )
    async def earnings_series(
        self, info: Info, granularity: EarningsGranularity, period_from: date, period_to: date
    ) -> list[EarningsPeriod]:
        ctx = info.context
        series = await reports_svc.earnings_series(
            ctx.svc,
            shop_id=ctx.shop_id,
            user_id=self.user_id,
            granularity=granularity,
            day_from=bounded_day(period_from, "periodFrom"),
            day_to=bounded_day(period_to, "periodTo"),
        )
        return [earnings_period(p, ctx.currency) for p in series]


# ---------------------------------------------------------------- queries


@strawberry.field(permission_classes=[HasShopKey], description="DS-2: resolve an invite code.")
async def resolve_invite(info: Info, code: str) -> InviteInfo:
    ctx = info.context
    d = await distribution_svc.resolve_invite(ctx.svc, shop_id=ctx.shop_id, code=code)
    return InviteInfo(valid=d is not None and d.status == DistributorStatus.ACTIVE.value, code=code.strip().upper())


@strawberry.field(
    permission_classes=[IsDistributor],
    description="The caller as a distributor; null if the shop's mode has not admitted them (DS-1).",
)
async def me(info: Info) -> Optional[DistributorProfile]:
    ctx = info.context
    if await distribution_svc.my_distributor(ctx.svc, shop_id=ctx.shop_id, user_id=ctx.user_id) is None:
        return None
    d = await distribution_svc.get_distributor(ctx.svc, shop_id=ctx.shop_id, user_id=ctx.user_id)
    dl = await reports_svc.downline(ctx.svc, shop_id=ctx.shop_id, user_id=ctx.user_id)
    levels = await shops_svc.get_levels(ctx.svc, ctx.shop_id)
    level = next((lv for lv in levels if lv.grade == d.grade), None)
    return DistributorProfile(
        user_id=d.user_id,
        status=DistributorStatus(d.status),
        invite_code=d.invite_code,
        grade=d.grade,
        level=level_type(level, ctx) if level else None,
        balances=Balances(
            currency=ctx.currency,
            pending=d.pending,
            frozen=d.frozen,
            available=d.available,
            in_payout=d.in_payout,
            paid=d.paid,
            fees=d.fees,
            held=MinorUnits(await fraud_reads.held_amount(ctx.svc, shop_id=ctx.shop_id, user_id=ctx.user_id)),
        ),
        downline=Downline(
            level1=DownlineLevel(**dl["level1"], currency=ctx.currency),
            level2=DownlineLevel(**dl["level2"], currency=ctx.currency),
        ),
    )


@strawberry.field(permission_classes=[IsAdmin], description="The shop's distribution settings (section 3).")
async def distribution_settings(info: Info) -> DistributionSettings:
    return settings_type(await shops_svc.get_settings(info.context.svc, info.context.shop_id), info.context)


@strawberry.field(permission_classes=[IsAdmin], description="The shop's distributor levels by grade (LV-1).")
async def levels(info: Info, first: Optional[int] = None, after: Optional[str] = None) -> Connection[Level]:
    ctx = info.context
    return await paginate(
        lambda **p: listings.page_levels(ctx.svc, shop_id=ctx.shop_id, **p),
        first,
        after,
        lambda lv: level_type(lv, ctx),
    )


@strawberry.field(
    permission_classes=[IsAdmin],
    description="Distributors and applicants by user id, optionally only some statuses (DS-1): "
    "`statuses: [APPLIED]` lists the applications waiting for approveDistributor.",
)
async def distributors(
    info: Info,
    statuses: Optional[list[DistributorStatus]] = None,
    first: Optional[int] = None,
    after: Optional[str] = None,
) -> Connection[DistributorSummary]:
    ctx = info.context
    wanted = [st.value for st in statuses] if statuses else None
    return await paginate(
        lambda **p: listings.page_distributors(ctx.svc, shop_id=ctx.shop_id, statuses=wanted, **p),
        first,
        after,
        lambda d: distributor_summary(d, ctx),
    )


# ---------------------------------------------------------------- mutations


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
    status: Optional[DistributorStatus] = None
    errors: list[UserError]


@payload_mutation(
    BindReferrerPayload,
    permission_classes=[IsCustomer],
    description="RF-1: bind to a referrer by invite code.",
    fields={"userId": None},
)  # the caller's own id (the token's) is no input
async def bind_referrer(info: Info, input: BindReferrerInput) -> dict:
    ctx = info.context
    r = await distribution_svc.bind_referrer(
        ctx.svc,
        shop_id=ctx.shop_id,
        user_id=ctx.user_id,
        invite_code=input.invite_code,
        idempotency_key=input.idempotency_key,
    )
    return dict(changed=r.changed, bound_at=r.bound_at)


@payload_mutation(
    ApplyAsDistributorPayload,
    permission_classes=[IsCustomer],
    fields={"userId": None, "status": None},
    description="DS-1: apply to be a distributor (APPROVAL mode waits for an admin).",
)
async def apply_as_distributor(info: Info, input: ApplyAsDistributorInput) -> dict:
    ctx = info.context
    d = await distribution_svc.apply(
        ctx.svc, shop_id=ctx.shop_id, user_id=ctx.user_id, idempotency_key=input.idempotency_key
    )
    return dict(status=DistributorStatus(d.status))


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
    order_code_overrides: Optional[bool] = None
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


async def _change_status(info: Info, input: "DistributorStatusInput", change: str) -> dict:
    """DS-1: one of service.usecases.distribution.STATUS_CHANGES (which statuses it starts from is decided there,
    under the distributor's row lock)."""
    ctx = info.context
    status, _ = distribution_svc.STATUS_CHANGES[change]
    if status != DistributorStatus.ACTIVE and not input.reason.strip():
        raise refuse(ErrorCode.INVALID_INPUT, "a reason is required", field="reason", rule="DS-1")
    d = await distribution_svc.change_status(
        ctx.svc,
        shop_id=ctx.shop_id,
        user_id=input.user_id,
        change=change,
        actor=ctx.user_id,
        reason=input.reason,
        idempotency_key=input.idempotency_key,
    )
    return dict(distributor=distributor_summary(d))


@payload_mutation(
    DistributionSettingsPayload, permission_classes=[IsAdmin], description="Section 3: change distribution settings."
)
async def update_distribution_settings(info: Info, input: UpdateDistributionSettingsInput) -> dict:
    ctx = info.context
    changes = {k: getattr(input, k) for k in (f.name for f in dc_fields(input)) if k != "idempotency_key"}
    changes = {k: v for k, v in changes.items() if v is not None}  # mode and binding are the engine's enums
    s = await shops_svc.update_settings(ctx.svc, shop_id=ctx.shop_id, idempotency_key=input.idempotency_key, **changes)
    return dict(settings=settings_type(s, ctx))


@payload_mutation(SetLevelsPayload, permission_classes=[IsAdmin], description="LV-1: replace the level table.")
async def set_levels(info: Info, input: SetLevelsInput) -> dict:
    ctx = info.context
    levels = [
        engine_levels.Level(**{f.name: getattr(lv, f.name) for f in dc_fields(engine_levels.Level)})
        for lv in input.levels
    ]
    saved = await shops_svc.set_levels(
        ctx.svc, shop_id=ctx.shop_id, levels=levels, idempotency_key=input.idempotency_key
    )
    return dict(levels=[level_type(lv, ctx) for lv in saved])


@payload_mutation(
    DistributorPayload,
    permission_classes=[IsAdmin],
    description="DS-1: approve an applicant.",
    fields={"status": "userId"},
)  # INVALID_STATE: the distributor named is not in a status it starts from
async def approve_distributor(info: Info, input: ApproveDistributorInput) -> dict:
    return await _change_status(info, input, "approve_distributor")


@payload_mutation(
    DistributorPayload,
    permission_classes=[IsAdmin],
    description="DS-1: suspend, with a reason.",
    fields={"status": "userId"},
)
async def suspend_distributor(info: Info, input: SuspendDistributorInput) -> dict:
    return await _change_status(info, input, "suspend_distributor")


@payload_mutation(
    DistributorPayload,
    permission_classes=[IsAdmin],
    fields={"status": "userId"},
    description="DS-1: reinstate a suspended distributor, with a reason.",
)
async def reinstate_distributor(info: Info, input: ReinstateDistributorInput) -> dict:
    if not input.reason.strip():
        raise refuse(ErrorCode.INVALID_INPUT, "a reason is required", field="reason", rule="DS-1")
    return await _change_status(info, input, "reinstate_distributor")


@payload_mutation(DistributorPayload, permission_classes=[IsAdmin], description="LV-3: set a level, with a reason.")
async def set_distributor_level(info: Info, input: SetDistributorLevelInput) -> dict:
    ctx = info.context
    d = await distribution_svc.set_level(
        ctx.svc,
        shop_id=ctx.shop_id,
        user_id=input.user_id,
        grade=input.grade,
        actor=ctx.user_id,
        reason=input.reason,
        idempotency_key=input.idempotency_key,
    )
    return dict(distributor=distributor_summary(d))
