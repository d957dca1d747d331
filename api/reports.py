"""Reports (RP-1..RP-6): earnings per period, campaign statistics per A/B variant, lifecycle segments,
retention by acquisition source, the distributors' leaderboard (RP-5), the funnel of shared links (RP-6).
Read only: types and queries (a storefront records the funnel's visits with `recordVisit`, api.distribution;
a distributor pages their own downline with `myDownline`, there too). A distributor's own earnings are fields of
`me` (api.distribution); the shop-wide series and the staff reports are here."""

from __future__ import annotations

import dataclasses
from datetime import date, datetime
from enum import Enum
from typing import Optional

import strawberry
from strawberry.types import Info

from api.permissions import IsAdmin, IsAdminOrFinance, IsCustomer, IsDistributor
from api.relay import MinorUnits, bounded_day, raw_id
from engine import funnel as fn
from engine.errors import ErrorCode, refuse
from engine.leaderboard import RankBy as _RankBy
from engine.segments import Segment
from engine.stats import MIN_DECIDED
from service.reads import reach as reach_svc
from service.reads import reports as reports_svc
from service.reads.reports import Granularity


# ---------------------------------------------------------------- types


@strawberry.type
class VariantStats:
    variant: Optional[str]
    opened: int
    formed: int
    failed: int
    formation_rate_bp: Optional[int] = strawberry.field(description="formed / (formed + failed), basis points")
    mean_seconds_to_form: int = strawberry.field(
        description="Mean time from opening to forming over the formed groups, in whole seconds rounded down; "
        "0 when none formed"
    )
    units: int
    net_sales: MinorUnits
    currency: str


@strawberry.type(
    description="RP-2: one A/B variant against the control (the campaign's first variant): the "
    "difference in formation rate with its 95 % interval (Newcombe's hybrid score interval)."
)
class VariantComparison:
    variant: str
    control: str
    difference_bp: Optional[int] = strawberry.field(
        description="formationRateBp(variant) − formationRateBp(control); null until both have decided groups"
    )
    difference_low_bp: Optional[int] = strawberry.field(description="95 % lower limit, rounded down")
    difference_high_bp: Optional[int] = strawberry.field(description="95 % upper limit, rounded up")
    enough_data: bool = strawberry.field(
        description="Both variants have at least `minDecidedPerVariant` decided (formed or failed) groups"
    )
    has_winner: bool = strawberry.field(description="enoughData and the 95 % interval excludes 0")


def variant_comparison(c) -> VariantComparison:
    d = c.difference
    return VariantComparison(
        variant=c.variant,
        control=c.control,
        difference_bp=d.difference_bp if d else None,
        difference_low_bp=d.low_bp if d else None,
        difference_high_bp=d.high_bp if d else None,
        enough_data=bool(d and d.enough_data),
        has_winner=bool(d and d.has_winner),
    )


@strawberry.type(description="RP-2 for one campaign: totals and per A/B variant.")
class CampaignStats:
    currency: str
    total: VariantStats
    variants: list[VariantStats] = strawberry.field(description="In the campaign's order; the first is the control")
    comparisons: list[VariantComparison] = strawberry.field(
        description="Each variant after the first against the control, pairwise"
    )
    min_decided_per_variant: int = strawberry.field(
        description="Decided groups each variant needs before a comparison can call a winner"
    )
    has_winner: bool = strawberry.field(description="Some comparison has a winner")


def variant_stats(x, currency: str) -> VariantStats:
    return VariantStats(
        variant=x.variant,
        opened=x.opened,
        formed=x.formed,
        failed=x.failed,
        formation_rate_bp=x.formation_rate_bp,
        mean_seconds_to_form=x.mean_seconds_to_form,
        units=x.units,
        net_sales=x.net_sales,
        currency=currency,
    )


strawberry.enum(
    Segment,
    name="UserSegment",
    description="RP-3 lifecycle segment: NEW (no paid order), FIRST_ORDER, REPEAT (2-3), "
    "LOYAL (>= 4 paid orders), DORMANT (paid orders, none in the last 90 days; "
    "takes precedence). Orders refunded in full do not count as paid.",
)
UserSegment = Segment  # the engine's enum is the GraphQL enum


@strawberry.enum(
    name="AcquisitionSource", description="RP-4: how a buyer was acquired — the source of their first paid order"
)
class AcquisitionSource(Enum):
    REFERRAL = "REFERRAL"
    GROUP_INVITE = "GROUP_INVITE"
    NONE = "NONE"


strawberry.enum(Granularity, name="EarningsGranularity", description="Calendar days or months of the shop's time zone")
EarningsGranularity = Granularity


@strawberry.type(description="RP-3: how many of the shop's users are in a segment now.")
class SegmentCount:
    segment: UserSegment
    count: int


@strawberry.type(
    description="RP-4 for one period and one acquisition source: buyers with a paid order in the "
    "period (refunded in full does not count), grouped by how they were acquired."
)
class RetentionRow:
    source: AcquisitionSource
    currency: str
    buyers: int
    repeat_buyers: int = strawberry.field(description="Buyers with 2 or more paid orders in the period")
    multi_category_buyers: int = strawberry.field(description="Buyers whose period orders span 2 or more categories")
    repurchase_rate_bp: Optional[int] = strawberry.field(
        description="repeatBuyers / buyers in basis points, floored; null without buyers"
    )
    multi_category_rate_bp: Optional[int] = strawberry.field(
        description="multiCategoryBuyers / buyers in basis points, floored; null without buyers"
    )
    net_sales: MinorUnits = strawberry.field(description="Paid less refunded of the buyers' period orders")
    net_sales_per_buyer: Optional[MinorUnits] = strawberry.field(
        description="floor(netSales / buyers); null without buyers"
    )


def retention_row(r, currency: str) -> RetentionRow:
    return RetentionRow(
        source=AcquisitionSource(r.source),
        currency=currency,
        buyers=r.buyers,
        repeat_buyers=r.repeat_buyers,
        multi_category_buyers=r.multi_category_buyers,
        repurchase_rate_bp=r.repurchase_rate_bp,
        multi_category_rate_bp=r.multi_category_rate_bp,
        net_sales=r.net_sales,
        net_sales_per_buyer=r.net_sales_per_buyer,
    )


@strawberry.type(description="RP-1: one local day or month of a distributor's ledger.")
class EarningsPeriod:
    period_from: date = strawberry.field(description="First local day of the period (shop time zone)")
    period_to: date = strawberry.field(description="Local day after the period (half-open)")
    starts_at: datetime = strawberry.field(description="periodFrom 00:00 in the shop's time zone, as an instant")
    ends_at: datetime
    currency: str
    earned: MinorUnits = strawberry.field(
        description="Commission posted less reversals and voids, plus upgrade bonuses, in the period"
    )
    pending: MinorUnits = strawberry.field(description="How much each balance moved in the period (sums of entries)")
    frozen: MinorUnits
    available: MinorUnits
    in_payout: MinorUnits
    paid: MinorUnits
    fees: MinorUnits


def earnings_period(p, currency: str) -> EarningsPeriod:
    m = p.moved
    return EarningsPeriod(
        period_from=p.day_from,
        period_to=p.day_to,
        starts_at=p.starts_at,
        ends_at=p.ends_at,
        currency=currency,
        earned=p.earned,
        pending=m["PENDING"],
        frozen=m["FROZEN"],
        available=m["AVAILABLE"],
        in_payout=m["IN_PAYOUT"],
        paid=m["PAID"],
        fees=m["FEES"],
    )


LeaderboardOrder = strawberry.enum(_RankBy, name="LeaderboardOrder", description="RP-5: what the leaderboard ranks by.")


@strawberry.type(
    description="RP-5: one distributor's standing over the period; `rank` is competition ranking "
    "(1, 1, 3) on the figure ordered by."
)
class LeaderboardEntry:
    rank: int
    user_id: str
    invite_code: str
    commission_earned: MinorUnits = strawberry.field(
        description="Posted less reversed and voided (leader rewards included, upgrade bonuses not)"
    )
    team_sales: MinorUnits = strawberry.field(
        description="Net base of orders paid in the period where they are level 1 or 2"
    )
    new_direct_referrals: int = strawberry.field(description="Users bound to them in the period (any source)")
    currency: str


@strawberry.type(
    description="RP-6: visits → distinct visitors → bindings → first paid orders → repeat buyers "
    "over [periodFrom, periodTo) (docs/rules-readings-distribution.md says how each is "
    "counted)."
)
class Funnel:
    visits: int
    visitors: int
    bindings: int
    first_orders: int
    repeat_buyers: int


def funnel_type(f: fn.Funnel) -> Funnel:
    """The engine's counts as they are (the GraphQL type has the same fields)."""
    return Funnel(**dataclasses.asdict(f))


# ---------------------------------------------------------------- queries


@strawberry.field(permission_classes=[IsCustomer], description="The caller's RP-3 lifecycle segment.")
async def my_segment(info: Info) -> UserSegment:
    return await reports_svc.segment(info.context.svc, shop_id=info.context.shop_id, user_id=info.context.user_id)


@strawberry.field(
    permission_classes=[IsAdminOrFinance],
    description="RP-1 for the whole shop: the distributor ledger per local day or month of the "
    "shop's time zone over [periodFrom, periodTo), as `me.earningsSeries` is for one "
    "distributor (same limits): what finance charts.",
)
async def shop_earnings_series(
    info: Info, granularity: EarningsGranularity, period_from: date, period_to: date
) -> list[EarningsPeriod]:
    ctx = info.context
    series = await reports_svc.earnings_series(
        ctx.svc, shop_id=ctx.shop_id, user_id=None, granularity=granularity, day_from=period_from, day_to=period_to
    )
    return [earnings_period(p, ctx.currency) for p in series]


@strawberry.field(permission_classes=[IsAdmin], description="RP-2 per campaign and A/B variant.")
async def campaign_stats(info: Info, campaign_id: strawberry.ID) -> CampaignStats:
    ctx = info.context
    st = await reports_svc.campaign_stats(
        ctx.svc, shop_id=ctx.shop_id, campaign_id=raw_id(campaign_id, "Campaign", "campaignId")
    )
    comparisons = [variant_comparison(c) for c in st.comparisons]
    return CampaignStats(
        currency=ctx.currency,
        total=variant_stats(st.total, ctx.currency),
        variants=[variant_stats(v, ctx.currency) for v in st.variants],
        comparisons=comparisons,
        min_decided_per_variant=MIN_DECIDED,
        has_winner=any(c.has_winner for c in comparisons),
    )


@strawberry.field(
    permission_classes=[IsAdmin],
    description="RP-3: how many of the shop's users are in each segment now, in lifecycle order.",
)
async def segment_counts(info: Info) -> list[SegmentCount]:
    counts = await reports_svc.segment_counts(info.context.svc, shop_id=info.context.shop_id)
    return [SegmentCount(segment=seg, count=counts[seg.value]) for seg in Segment]


@strawberry.field(permission_classes=[IsAdmin], description="RP-3: a user's segment now (NEW if unknown).")
async def user_segment(info: Info, user_id: str) -> UserSegment:
    return await reports_svc.segment(info.context.svc, shop_id=info.context.shop_id, user_id=user_id)


@strawberry.field(
    permission_classes=[IsAdmin],
    description="RP-4 over the local days [periodFrom, periodTo) of the shop's time zone: one row "
    "per acquisition source (REFERRAL, GROUP_INVITE, NONE), always all three.",
)
async def retention(info: Info, period_from: date, period_to: date) -> list[RetentionRow]:
    ctx = info.context
    start, end = await reports_svc.shop_period(
        ctx.svc,
        shop_id=ctx.shop_id,
        day_from=bounded_day(period_from, "periodFrom"),
        day_to=bounded_day(period_to, "periodTo"),
    )
    rows = await reports_svc.retention(ctx.svc, shop_id=ctx.shop_id, period_from=start, period_to=end)
    return [retention_row(r, ctx.currency) for r in rows]


@strawberry.field(
    permission_classes=[IsAdmin],
    description=("RP-5: the shop's distributors over [periodFrom, periodTo), best first by `orderBy` (at most 100)."),
)
async def leaderboard(
    info: Info,
    period_from: datetime,
    period_to: datetime,
    order_by: _RankBy = _RankBy.COMMISSION_EARNED,  # the GraphQL enum LeaderboardOrder
    first: int = 20,
) -> list[LeaderboardEntry]:
    ctx = info.context
    rows = await reach_svc.leaderboard(
        ctx.svc, shop_id=ctx.shop_id, period_from=period_from, period_to=period_to, by=order_by, limit=first
    )
    return [
        LeaderboardEntry(
            rank=r.rank,
            user_id=r.standing.user_id,
            invite_code=r.invite_code,
            commission_earned=MinorUnits(r.standing.commission_earned),
            team_sales=MinorUnits(r.standing.team_sales),
            new_direct_referrals=r.standing.new_direct_referrals,
            currency=ctx.currency,
        )
        for r in rows
    ]


@strawberry.field(
    permission_classes=[IsAdmin],
    description=(
        "RP-6: the funnel of one distributor (`distributorId`) or one campaign (`campaignId`) over the period."
    ),
)
async def funnel(
    info: Info,
    period_from: datetime,
    period_to: datetime,
    distributor_id: Optional[str] = None,
    campaign_id: Optional[strawberry.ID] = None,
) -> Funnel:
    ctx = info.context
    if (distributor_id is None) == (campaign_id is None):
        raise refuse(ErrorCode.INVALID_INPUT, "give distributorId or campaignId", field="distributorId", rule="RP-6")
    subject, sid = (
        ("distributor", distributor_id)
        if distributor_id is not None
        else ("campaign", raw_id(campaign_id or "", "Campaign", "campaignId"))
    )
    return funnel_type(
        await reach_svc.funnel(
            ctx.svc, shop_id=ctx.shop_id, subject=subject, subject_id=sid, period_from=period_from, period_to=period_to
        )
    )


@strawberry.field(permission_classes=[IsDistributor], description="RP-6: the caller's own funnel over the period.")
async def my_funnel(info: Info, period_from: datetime, period_to: datetime) -> Funnel:
    ctx = info.context
    return funnel_type(
        await reach_svc.funnel(
            ctx.svc,
            shop_id=ctx.shop_id,
            subject="distributor",
            subject_id=ctx.user_id,
            period_from=period_from,
            period_to=period_to,
        )
    )
