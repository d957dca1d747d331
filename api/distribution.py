"""Distribution (分销, rules sections 3-5 and 5a: DS, RF, CM, LV, FR): distributors, referral binding and
attribution (RF-3), commission lines and their preview (CM-7), levels, the shop's distribution settings,
the caller's downline (RP-5), visits of shared links (RP-6), fraud review (FR-1..FR-4) — types, queries,
mutations, one section each. Payouts and settlements are in api.payouts; the reports (RP-1..RP-6:
earnings series, leaderboard, funnel) in api.reports.

Fraud review sits here, not in a module of its own: what it holds and voids are commission lines, its
rules are distribution settings of the shop, and a reader looks for it with the lines (rules 5a)."""

from __future__ import annotations

from dataclasses import fields as dc_fields
from datetime import date, datetime
from enum import Enum
from typing import TYPE_CHECKING, Annotated, Iterable, Optional, cast

import strawberry
from strawberry import relay
from strawberry.scalars import JSON
from strawberry.types import Info

from api.errors import UserError
from api.payload import idempotency_key_field, payload_mutation
from api.payouts import Payout, payout_type
from api.permissions import HasShopKey, IsAdmin, IsCustomer, IsDistributor, any_role
from api.relay import Connection, MinorUnits, bounded_day, paginate, raw_id, resolve_visible
from api.reports import EarningsGranularity, EarningsPeriod, earnings_period
from api.visibility import STAFF, may_see, user_alias
from engine import fraud as fr
from engine import levels as engine_levels
from engine.commission import CommissionState
from engine.distribution import BindingMode, DistributionMode, DistributorStatus
from engine.errors import ErrorCode, refuse
from service.reads import fraud as fraud_reads
from service.reads import listings, queries
from service.reads import preview as preview_svc
from service.reads import reach as reach_svc
from service.reads import reports as reports_svc
from service.tx.fraud import RULE_FIELDS
from service.usecases import distribution as distribution_svc
from service.usecases import fraud as fraud_svc
from service.usecases import shops as shops_svc
from service.usecases import visits as visits_svc

if TYPE_CHECKING:
    from api.orders import Order

# api.orders carries this module's RF-3 and FR-1 inputs, so a line's order is a lazy type here
LazyOrder = Annotated["Order", strawberry.lazy("api.orders")]
IsCustomerOrDistributor = any_role("customer", "distributor")


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
    async def order(self, info: Info) -> Optional[LazyOrder]:
        from api.orders import order_type

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


# ---------------------------------------------------------------- RF-3: attribution, binding, rebinding
# what a code carried by a seat or an order did; a user's binding and its history; an admin's rebinding
INVITE_CODE_FIELD = strawberry.field(
    default=None,
    description=(
        "RF-3 (a): the invite code the group's share link carried (a member's, or the campaign sharer's): the caller "
        "is bound to its distributor (source GROUP_INVITE) under RF-1; a refusal does not refuse the seat (see "
        "`attribution`)"
    ),
)
ORDER_CODE_FIELD = strawberry.field(
    default=None,
    description=(
        "RF-3 (b): a promo/invite code the order carried (part of the order's content, OR-1): binds a buyer without a "
        "live referrer (source ORDER_CODE); with one, `orderCodeOverrides` decides whether this order's level 1 is "
        "the code's distributor. A refusal does not refuse the order (see `attribution`)"
    ),
)


@strawberry.enum(description="RF-3: what a code carried by a group link or a reported order did.")
class AttributionOutcome(Enum):
    BOUND = "BOUND"
    OVERRIDE = "OVERRIDE"
    UNCHANGED = "UNCHANGED"
    REFUSED = "REFUSED"


@strawberry.type(
    description="RF-3: BOUND (a binding was made), OVERRIDE (this order's snapshot takes the code's "
    "distributor), UNCHANGED (already that referrer, or codes do not override), REFUSED "
    "(`refusal`: the RF-1 rule; the seat or order went ahead without it)."
)
class ReferralAttribution:
    outcome: AttributionOutcome
    refusal: Optional[ErrorCode] = None


def attribution_type(a) -> Optional[ReferralAttribution]:
    if a is None:
        return None
    return ReferralAttribution(outcome=AttributionOutcome(a.outcome), refusal=a.refusal)


@strawberry.enum(description="RF-1/RF-3: how a binding was made (INVITE_CODE is RF-3's CODE).")
class BindingSource(Enum):
    INVITE_CODE = "INVITE_CODE"
    GROUP_INVITE = "GROUP_INVITE"
    ORDER_CODE = "ORDER_CODE"
    ADMIN = "ADMIN"
    LINK = "LINK"


@strawberry.type(description="RF-3: one binding of the user, as it was made.")
class BindingEntry:
    referrer_alias: str
    referrer_id: Optional[str] = strawberry.field(description="Staff only")
    previous_referrer_id: Optional[str] = strawberry.field(description="Staff only: the live referrer it replaced")
    source: BindingSource
    bound_at: datetime
    expires_at: Optional[datetime]
    reason: Optional[str] = strawberry.field(description="An admin's binding: why")
    bound_by: Optional[str] = strawberry.field(description="Staff only: the admin")
    campaign_id: Optional[str] = strawberry.field(description="A group link's campaign (raw id)")


@strawberry.type(
    description="RF-3: a user's current referrer and its source (null fields: no live referrer). "
    "The user sees their referrer by alias and invite code; staff also by id."
)
class ReferralBinding:
    user_id: str
    referrer_alias: Optional[str]
    referrer_code: Optional[str]
    referrer_id: Optional[str] = strawberry.field(description="Staff only")
    source: Optional[BindingSource]
    bound_at: Optional[datetime]
    expires_at: Optional[datetime]
    reason: Optional[str]
    bound_by: Optional[str] = strawberry.field(description="Staff only")
    history: list[BindingEntry] = strawberry.field(description="Newest first (at most 50)")


def binding_type(b, ctx) -> ReferralBinding:
    staff = ctx.has_role(*STAFF)  # ids of the referrer, the admin: staff only (api.visibility)
    shop = ctx.shop_id
    return ReferralBinding(
        user_id=b.user_id,
        referrer_alias=user_alias(shop, b.referrer_id) if b.referrer_id else None,
        referrer_code=b.referrer_code,
        referrer_id=b.referrer_id if staff else None,
        source=BindingSource(b.source) if b.source else None,
        bound_at=b.bound_at,
        expires_at=b.expires_at,
        reason=b.reason,
        bound_by=b.bound_by if staff else None,
        history=[
            BindingEntry(
                referrer_alias=user_alias(shop, h.referrer_id),
                referrer_id=h.referrer_id if staff else None,
                previous_referrer_id=h.previous_referrer_id if staff else None,
                source=BindingSource(h.source),
                bound_at=h.bound_at,
                expires_at=h.expires_at,
                reason=h.reason,
                bound_by=h.bound_by if staff else None,
                campaign_id=h.campaign_id,
            )
            for h in b.history
        ],
    )


@strawberry.input(description="RF-3 (c): give `inviteCode` or `referrerId` of the new referrer, and a reason.")
class RebindReferrerInput:
    user_id: str
    invite_code: Optional[str] = None
    referrer_id: Optional[str] = None
    reason: str = ""
    idempotency_key: Optional[str] = strawberry.field(
        default=None,
        description=(
            "GB-10: a retry with the same key and the same input returns the first result without a second effect; "
            "the same key with another input is IDEMPOTENCY_CONFLICT."
        ),
    )


@strawberry.type
class RebindReferrerPayload:
    binding: Optional[ReferralBinding] = None
    changed: Optional[bool] = strawberry.field(default=None, description="False: already bound to that referrer")
    errors: list[UserError]


@strawberry.field(
    permission_classes=[IsCustomer],
    description=("RF-3: the caller's current referrer (alias and invite code) and how they were bound."),
)
async def my_referral(info: Info) -> ReferralBinding:
    ctx = info.context
    return binding_type(await distribution_svc.binding_of(ctx.svc, shop_id=ctx.shop_id, user_id=ctx.user_id), ctx)


@strawberry.field(
    permission_classes=[IsAdmin],
    description=("RF-3: a user's current referrer, its source (who and why for an admin's) and the binding history."),
)
async def referral_binding(info: Info, user_id: str) -> ReferralBinding:
    ctx = info.context
    return binding_type(await distribution_svc.binding_of(ctx.svc, shop_id=ctx.shop_id, user_id=user_id), ctx)


@payload_mutation(
    RebindReferrerPayload,
    permission_classes=[IsAdmin],
    description=(
        "RF-3 (c): bind a user to another referrer with a reason — replaces in every binding mode, RF-1 otherwise "
        "(SELF_REFERRAL, NOT_A_DISTRIBUTOR, REFERRAL_CYCLE); past orders keep their snapshot (RF-2). Events "
        "`referral.bound` and `referral.rebound`."
    ),
)
async def rebind_referrer(info: Info, input: RebindReferrerInput) -> dict:
    ctx = info.context
    r = await distribution_svc.rebind_referrer(
        ctx.svc,
        shop_id=ctx.shop_id,
        user_id=input.user_id,
        actor=ctx.user_id,
        reason=input.reason,
        invite_code=input.invite_code,
        referrer_id=input.referrer_id,
        idempotency_key=input.idempotency_key,
    )
    b = await distribution_svc.binding_of(ctx.svc, shop_id=ctx.shop_id, user_id=input.user_id)
    return dict(binding=binding_type(b, ctx), changed=r.changed)


# ---------------------------------------------------------------- RP-5 downline, RP-6 visits
# the caller's downline; a storefront records a visit of a shared link (the funnel: api.reports)
@strawberry.type(
    description="RP-5: a member of the caller's downline, by the alias the shop gives it (no contact "
    "data), with their figures over the period asked."
)
class DownlineMember:
    alias: str
    level: int = strawberry.field(description="1: bound to the caller; 2: bound to one of the caller's level 1")
    joined_at: datetime = strawberry.field(description="When their current binding was made")
    paid_orders: int = strawberry.field(description="Orders paid in the period (refunded in full: not counted)")
    commission_base: MinorUnits = strawberry.field(
        description="Net base of those orders on which the caller is level 1 or 2 (RF-2 snapshot)"
    )
    currency: str


@strawberry.field(
    permission_classes=[IsDistributor],
    description=(
        "RP-5: the caller's level-1 or level-2 downline, newest binding first, with each member's paid orders and "
        "the commission base they brought over [periodFrom, periodTo)."
    ),
)
async def my_downline(
    info: Info,
    period_from: datetime,
    period_to: datetime,
    level: int = 1,
    first: Optional[int] = None,
    after: Optional[str] = None,
) -> Connection[DownlineMember]:  # type: ignore[type-var]
    ctx = info.context
    return await paginate(
        lambda **p: reach_svc.downline_page(
            ctx.svc,
            shop_id=ctx.shop_id,
            user_id=ctx.user_id,
            level=level,
            period_from=period_from,
            period_to=period_to,
            **p,
        ),
        first,
        after,
        lambda m: DownlineMember(
            alias=user_alias(ctx.shop_id, m.user_id),
            level=m.level,
            joined_at=m.joined_at,
            paid_orders=m.paid_orders,
            commission_base=m.commission_base,
            currency=ctx.currency,
        ),
    )


@strawberry.input(
    description="RP-6: a shared link was opened. `visitorId` is the storefront's anonymous id of the "
    "browser (8-64 characters of letters, digits and _.:-), never personal data."
)
class RecordVisitInput:
    invite_code: str
    visitor_id: str
    campaign_id: Optional[strawberry.ID] = None
    product_ref: Optional[str] = None
    idempotency_key: Optional[str] = strawberry.field(
        default=None,
        description=(
            "GB-10: a retry with the same key is the same visit (`replayed`); the same key with another visit is "
            "IDEMPOTENCY_CONFLICT. Without a key every call is one more visit."
        ),
    )


@strawberry.type
class RecordVisitPayload:
    recorded: Optional[bool] = None
    replayed: Optional[bool] = None
    errors: list[UserError]


@payload_mutation(
    RecordVisitPayload,
    permission_classes=[HasShopKey],
    description=(
        "RP-6: record a visit of a shared link (public with X-Shop-Key). Bounded per visitor and per shop: over "
        "the bound RATE_LIMITED, nothing recorded."
    ),
)
async def record_visit(info: Info, input: RecordVisitInput) -> dict:
    ctx = info.context
    r = await visits_svc.record_visit(
        ctx.svc,
        shop_id=ctx.shop_id,
        invite_code=input.invite_code,
        visitor_id=input.visitor_id,
        campaign_id=raw_id(input.campaign_id, "Campaign", "campaignId") if input.campaign_id else None,
        product_ref=input.product_ref,
        idempotency_key=input.idempotency_key,
    )
    return dict(recorded=True, replayed=r.replayed)


# ---------------------------------------------------------------- CM-7: commission preview
@strawberry.input(description="CM-7: one line of a cart (OR-2); a product is a cart of one line.")
class PreviewLineInput:
    product_ref: str
    quantity: int = 1
    unit_price: MinorUnits = MinorUnits(0)
    discount: MinorUnits = MinorUnits(0)


@strawberry.input(
    description="CM-7: give `lines` (a cart or one product) or `campaignId` (a group-buy campaign, with `quantity`)."
)
class CommissionPreviewInput:
    lines: Optional[list[PreviewLineInput]] = None
    campaign_id: Optional[strawberry.ID] = None
    quantity: int = strawberry.field(default=1, description="Units of the campaign's product (campaign only)")
    invite_code: Optional[str] = strawberry.field(
        default=None,
        description=(
            "Preview for a buyer bound to this code's distributor (as if bound), instead of the buyer's own referrer"
        ),
    )
    sharing: Optional[bool] = strawberry.field(
        default=None,
        description=(
            "A distributor asking what they would earn sharing it: the buyer is a new customer bound to the caller "
            "(the default for a caller without the customer role)"
        ),
    )


@strawberry.type(description="CM-7: what one beneficiary would earn, by level; no user is named.")
class PreviewShare:
    level: int = strawberry.field(description="1 or 2 (CM-2)")
    least: MinorUnits
    most: MinorUnits = strawberry.field(
        description="Equal to `least` for a cart; for a campaign the most over its tiers, variants and roles"
    )
    yours: bool = strawberry.field(description="The caller is this beneficiary")
    currency: str = strawberry.field(description="The shop's currency of `least` and `most` (SH-2)")


@strawberry.type(description="CM-7: what the order would earn if it were paid now (CM-1..CM-4). Writes nothing.")
class CommissionPreview:
    currency: str
    base_least: MinorUnits = strawberry.field(
        description="CM-1 commission base (for a campaign after the GB-5 refund to its lowest tier)"
    )
    base_most: MinorUnits
    shares: list[PreviewShare]
    yours_least: MinorUnits = strawberry.field(description="What the caller would earn at least (0: nothing)")
    yours_most: MinorUnits


def preview_type(p, ctx) -> CommissionPreview:
    mine = [s for s in p.shares if s.beneficiary_id == ctx.user_id]
    return CommissionPreview(
        currency=ctx.currency,
        base_least=p.base_least,
        base_most=p.base_most,
        shares=[
            PreviewShare(
                level=s.level, least=s.least, most=s.most, yours=s.beneficiary_id == ctx.user_id, currency=ctx.currency
            )
            for s in p.shares
        ],
        yours_least=sum(s.least for s in mine),
        yours_most=sum(s.most for s in mine),
    )


@strawberry.field(
    permission_classes=[IsCustomerOrDistributor],
    description=(
        "CM-7: what a cart, a product or a group-buy campaign would earn each beneficiary if paid now — for the "
        "signed-in customer as buyer, a buyer bound to `inviteCode`, or (`sharing`) a new customer of the "
        "calling distributor. Computed by the payment's own commission function; writes nothing."
    ),
)
async def commission_preview(info: Info, input: CommissionPreviewInput) -> CommissionPreview:
    ctx = info.context
    sharing = input.sharing if input.sharing is not None else not ctx.has_role("customer")
    if sharing and not ctx.has_role("distributor"):
        raise refuse(ErrorCode.FORBIDDEN, "sharing previews are for distributors", field="sharing", rule="CM-7")
    p = await preview_svc.commission_preview(
        ctx.svc,
        shop_id=ctx.shop_id,
        buyer_id=None if sharing else ctx.user_id,
        bound_to=ctx.user_id if sharing and not input.invite_code else None,
        invite_code=input.invite_code,
        lines=None
        if input.lines is None
        else [preview_svc.CartLine(ln.product_ref, ln.quantity, ln.unit_price, ln.discount) for ln in input.lines],
        campaign_id=raw_id(input.campaign_id, "Campaign", "campaignId") if input.campaign_id else None,
        quantity=input.quantity,
    )
    return preview_type(p, ctx)


# ---------------------------------------------------------------- FR-1..FR-4: fraud review (rules 5a)
# inputs carried by other mutations
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


# the shop's rules and the review queue
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


_NEW_SHOP_RULES = fr.FraudRules()


@strawberry.input
class SetFraudRulesInput:
    """FR-2: a field left out takes the engine's default (`fr.FraudRules`), the one a new shop has."""

    self_dealing: bool = _NEW_SHOP_RULES.self_dealing
    velocity: bool = _NEW_SHOP_RULES.velocity
    velocity_max_orders: int = _NEW_SHOP_RULES.velocity_max_orders
    velocity_window: int = _NEW_SHOP_RULES.velocity_window
    scalper_group: bool = _NEW_SHOP_RULES.scalper_group
    scalper_min_seats: int = _NEW_SHOP_RULES.scalper_min_seats
    refund_rate: bool = _NEW_SHOP_RULES.refund_rate
    refund_rate_window: int = _NEW_SHOP_RULES.refund_rate_window
    refund_rate_max_bp: int = _NEW_SHOP_RULES.refund_rate_max_bp
    refund_rate_min_orders: int = _NEW_SHOP_RULES.refund_rate_min_orders
    idempotency_key: Optional[str] = idempotency_key_field(
        "GB-10: accepted for uniformity; setting the same rules twice is already one change"
    )


def _rules_type(r: fr.FraudRules) -> FraudRules:
    return FraudRules(**{f: getattr(r, f) for f in RULE_FIELDS})


@strawberry.type
class FraudRulesPayload:
    rules: Optional[FraudRules] = None
    errors: list[UserError]


class FlagState(Enum):
    OPEN = "OPEN"
    CLEARED = "CLEARED"
    VOIDED = "VOIDED"
    DISSOLVED = "DISSOLVED"


FraudFlagState = strawberry.enum(FlagState, name="FraudFlagState")


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


# queries
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


# mutations
@payload_mutation(
    FraudRulesPayload, permission_classes=[IsAdmin], description="FR-2: set the shop's fraud rules (whole)."
)
async def set_fraud_rules(info: Info, input: SetFraudRulesInput) -> dict:
    ctx = info.context
    rules = fr.FraudRules(**{f: getattr(input, f) for f in RULE_FIELDS})
    r = await fraud_svc.set_rules(ctx.svc, shop_id=ctx.shop_id, rules=rules, actor=ctx.user_id)
    return dict(rules=_rules_type(r))


async def _decide_flag(info: Info, input, decide, reason) -> dict:
    """FR-3: one admin decision on a flag (`decide`: a use case of service.usecases.fraud)."""
    ctx = info.context
    f = await decide(
        ctx.svc,
        shop_id=ctx.shop_id,
        flag_id=str(input.flag_id),
        actor=ctx.user_id,
        reason=reason,
        idempotency_key=input.idempotency_key,
    )
    return dict(flag=_flag_type(f, ctx.currency))


@payload_mutation(
    FraudFlagPayload,
    permission_classes=[IsAdmin],
    description="FR-3: clear a flag; its lines resume "
    "their life cycle (available at once when due). Amounts never change.",
)
async def clear_fraud_flag(info: Info, input: ClearFraudFlagInput) -> dict:
    return await _decide_flag(info, input, fraud_svc.clear_flag, input.reason)


@payload_mutation(
    FraudFlagPayload,
    permission_classes=[IsAdmin],
    description="FR-3: void a flag's lines with a reason (reversed by new entries).",
)
async def void_fraud_flag(info: Info, input: VoidFraudFlagInput) -> dict:
    return await _decide_flag(info, input, fraud_svc.void_flag, input.reason or "")


@payload_mutation(
    FraudFlagPayload,
    permission_classes=[IsAdmin],
    description="FR-3: dissolve a flagged group before it forms (GB-6 refunds), with a reason.",
)
async def dissolve_flagged_group(info: Info, input: DissolveFlaggedGroupInput) -> dict:
    return await _decide_flag(info, input, fraud_svc.dissolve_group, input.reason or "")
