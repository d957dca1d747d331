"""Query root: thin resolvers over `service/` (reads in `service.queries`), scoped to the caller's shop."""

from __future__ import annotations

from datetime import date, datetime
from typing import Optional

import strawberry
from strawberry import relay
from strawberry.types import Info

from api.groupbuy_v2_mutations import GroupBuyV2Queries
from api.permissions import (
    HasShopKey,
    IsAdmin,
    IsAdminOrFinance,
    IsBackendOrAdmin,
    IsBackendOrFinance,
    IsCustomer,
    IsDistributor,
    IsFinance,
)
from api.types import (
    ENDPOINTS_KEYSET,
    bounded_day,
    EVENTS_KEYSET,
    REFUNDS_KEYSET,
    Balances,
    Campaign,
    CampaignStats,
    CommissionLine,
    Connection,
    Downline,
    DownlineLevel,
    DistributionSettings,
    DistributorStatusEnum,
    DistributorSummary,
    Group,
    InviteInfo,
    Level,
    LevelCondition,
    LevelProgress,
    Order,
    Payout,
    Product,
    Refund,
    Settlement,
    ShopEvent,
    WebhookEndpoint,
    campaign_type,
    endpoint_type,
    distributor_summary,
    event_type,
    group_type,
    level_type,
    line_type,
    order_type,
    paginate,
    paginate_keyset,
    payout_type,
    product_type,
    raw_id,
    refund_type,
    settings_type,
    settlement_type,
    EarningsGranularity,
    EarningsPeriod,
    RetentionRow,
    SegmentCount,
    UserSegment,
    earnings_period,
    retention_row,
    variant_comparison,
    variant_stats,
)
from engine.distribution import DistributorStatus
from engine.segments import Segment
from engine.stats import MIN_DECIDED
from engine.errors import ErrorCode, refuse
from api.viewer import Viewer, resolve_viewer
from service import distribution as distribution_svc
from service import listings
from service import queries
from service import reports as reports_svc
from service import shops as shops_svc

LEVEL_METRICS = (("directReferrals", "min_direct_referrals", "direct_referrals", False),
                 ("teamSize", "min_team_size", "team_size", False),
                 ("ownSpend", "min_own_spend", "own_spend", True),
                 ("ownOrders", "min_own_orders", "own_orders", False),
                 ("directSales", "min_direct_sales", "direct_sales", True),
                 ("teamSales", "min_team_sales", "team_sales", True))  # (name, level field, metric, is money)


def _condition(name: str, required: int, actual: int, money: bool, currency: str) -> LevelCondition:
    counts = (None, None) if money else (required, actual)
    amounts = (required, actual) if money else (None, None)
    return LevelCondition(name=name, required_count=counts[0], actual_count=counts[1], required_amount=amounts[0],
                          actual_amount=amounts[1], currency=currency, met=actual >= required)


@strawberry.type(description="The calling distributor (RP-1): balances, level, invite code, lines, downline.")
class DistributorProfile:
    user_id: str
    status: str = strawberry.field(description="NONE, APPLIED, ACTIVE or SUSPENDED (DS-1)")
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
        conds = [_condition(name, getattr(nxt, req), getattr(m, act), money, ctx.currency)
                 for name, req, act, money in LEVEL_METRICS]
        return LevelProgress(next_level=level_type(nxt, ctx), conditions=conds, met_count=sum(c.met for c in conds))

    @strawberry.field(description="Commission lines, newest first, each with its order (RP-1).")
    async def commission_lines(self, info: Info, first: Optional[int] = None,
                               after: Optional[str] = None) -> Connection[CommissionLine]:
        ctx = info.context
        return await paginate(lambda **p: queries.page_commission_lines(
            ctx.svc, shop_id=ctx.shop_id, beneficiary_id=self.user_id, **p), first, after,
            lambda ln: line_type(ln, ctx))

    @strawberry.field(description="Payout requests, oldest first (LG-2).")
    async def payouts(self, info: Info, first: Optional[int] = None,
                      after: Optional[str] = None) -> Connection[Payout]:
        ctx = info.context
        return await paginate(lambda **p: queries.page_payouts(
            ctx.svc, shop_id=ctx.shop_id, state=None, user_id=self.user_id, **p), first, after,
            lambda x: payout_type(x, ctx))

    @strawberry.field(description="RP-1: how each balance moved over [from, to) (instants; see earningsSeries for "
                                  "the shop's calendar).")
    async def earnings(self, info: Info, period_from: datetime, period_to: datetime) -> Balances:
        ctx = info.context
        e = await reports_svc.earnings(ctx.svc, shop_id=ctx.shop_id, user_id=self.user_id, period_from=period_from,
                                       period_to=period_to)
        return Balances(currency=ctx.currency, pending=e["PENDING"], frozen=e["FROZEN"], available=e["AVAILABLE"],
                        in_payout=e["IN_PAYOUT"], paid=e["PAID"], fees=e["FEES"])

    @strawberry.field(description="RP-1 per local day or month of the shop's time zone over [periodFrom, periodTo), "
                                  "oldest first, periods without movement included: at most 366 days or 120 months; "
                                  "months run from a 1st to a 1st.")
    async def earnings_series(self, info: Info, granularity: EarningsGranularity, period_from: date,
                              period_to: date) -> list[EarningsPeriod]:
        ctx = info.context
        series = await reports_svc.earnings_series(ctx.svc, shop_id=ctx.shop_id, user_id=self.user_id,
                                                   granularity=granularity,
                                                   day_from=bounded_day(period_from, "periodFrom"),
                                                   day_to=bounded_day(period_to, "periodTo"))
        return [earnings_period(p, ctx.currency) for p in series]


def _campaign_id(id: str) -> str:
    return raw_id(id, "Campaign", "id")


@strawberry.type
class Query(GroupBuyV2Queries):
    @strawberry.field(permission_classes=[HasShopKey], description="Refetch any object by its global id "
                      "(null when it is not yours to see).")
    async def node(self, info: Info, id: strawberry.ID) -> Optional[relay.Node]:
        try:
            gid = relay.GlobalID.from_id(id)
            gid.resolve_type(info)
        except ValueError:
            raise refuse(ErrorCode.INVALID_INPUT, "not a global id of this API: use the `id` of an object it "
                                                  "returned", field="id")
        return await gid.resolve_node(info, required=False)

    @strawberry.field(permission_classes=[HasShopKey], description="The caller (user and roles) and the shop's "
                      "name, currency and time zone (public with X-Shop-Key).")
    async def viewer(self, info: Info) -> Viewer:
        return await resolve_viewer(info)

    # ------------------------------------------------------------ public campaign pages (DS-2)
    @strawberry.field(permission_classes=[HasShopKey], description="A campaign page (public with X-Shop-Key).")
    async def campaign(self, info: Info, id: strawberry.ID) -> Optional[Campaign]:
        ctx = info.context
        c = await ctx.loaders.campaign.load(_campaign_id(id))
        return campaign_type(c, ctx) if c else None

    @strawberry.field(permission_classes=[HasShopKey], description="Campaigns open now (public with X-Shop-Key).")
    async def campaigns(self, info: Info, first: Optional[int] = None, after: Optional[str] = None,
                        active_only: bool = True) -> Connection[Campaign]:
        ctx = info.context
        return await paginate(lambda **p: queries.page_campaigns(ctx.svc, shop_id=ctx.shop_id,
                                                                 active_only=active_only, **p),
                              first, after, lambda c: campaign_type(c, ctx))

    @strawberry.field(permission_classes=[HasShopKey], description="A group page (public with X-Shop-Key).")
    async def group(self, info: Info, id: strawberry.ID) -> Optional[Group]:
        ctx = info.context
        g = await ctx.loaders.group.load(raw_id(id, "Group", "id"))
        return group_type(g, ctx) if g else None

    @strawberry.field(permission_classes=[HasShopKey], description="DS-2: resolve an invite code.")
    async def resolve_invite(self, info: Info, code: str) -> InviteInfo:
        ctx = info.context
        d = await distribution_svc.resolve_invite(ctx.svc, shop_id=ctx.shop_id, code=code)
        return InviteInfo(valid=d is not None and d.status == DistributorStatus.ACTIVE.value, code=code.strip().upper())

    # ------------------------------------------------------------ customer
    @strawberry.field(permission_classes=[IsCustomer], description="The caller's orders, newest first.")
    async def my_orders(self, info: Info, first: Optional[int] = None,
                        after: Optional[str] = None) -> Connection[Order]:
        ctx = info.context
        return await paginate(lambda **p: queries.page_orders(ctx.svc, shop_id=ctx.shop_id, buyer_id=ctx.user_id, **p),
                              first, after, lambda o: order_type(o, ctx))

    @strawberry.field(permission_classes=[IsCustomer], description="Groups the caller holds or held a seat in.")
    async def my_groups(self, info: Info, first: Optional[int] = None,
                        after: Optional[str] = None) -> Connection[Group]:
        ctx = info.context

        async def fetch(**p):
            ids, total = await queries.page_user_group_ids(ctx.svc, shop_id=ctx.shop_id, user_id=ctx.user_id, **p)
            return [g for g in await ctx.loaders.group.load_many(ids) if g is not None], total

        return await paginate(fetch, first, after, lambda g: group_type(g, ctx))

    @strawberry.field(permission_classes=[IsCustomer], description="The caller's RP-3 lifecycle segment.")
    async def my_segment(self, info: Info) -> UserSegment:
        return await reports_svc.segment(info.context.svc, shop_id=info.context.shop_id, user_id=info.context.user_id)

    # ------------------------------------------------------------ distributor
    @strawberry.field(permission_classes=[IsDistributor],
                      description="The caller as a distributor; null if the shop's mode has not admitted them (DS-1).")
    async def me(self, info: Info) -> Optional[DistributorProfile]:
        ctx = info.context
        if await distribution_svc.my_distributor(ctx.svc, shop_id=ctx.shop_id, user_id=ctx.user_id) is None:
            return None
        d = await distribution_svc.get_distributor(ctx.svc, shop_id=ctx.shop_id, user_id=ctx.user_id)
        dl = await reports_svc.downline(ctx.svc, shop_id=ctx.shop_id, user_id=ctx.user_id)
        levels = await shops_svc.get_levels(ctx.svc, ctx.shop_id)
        level = next((lv for lv in levels if lv.grade == d.grade), None)
        return DistributorProfile(
            user_id=d.user_id, status=d.status, invite_code=d.invite_code, grade=d.grade,
            level=level_type(level, ctx) if level else None,
            balances=Balances(currency=ctx.currency, pending=d.pending, frozen=d.frozen, available=d.available,
                              in_payout=d.in_payout, paid=d.paid, fees=d.fees),
            downline=Downline(level1=DownlineLevel(**dl["level1"], currency=ctx.currency),
                              level2=DownlineLevel(**dl["level2"], currency=ctx.currency)))

    # ------------------------------------------------------------ backend
    @strawberry.field(permission_classes=[IsBackendOrFinance],
                      description="Refunds owed and not yet confirmed (GB-5..GB-9), oldest first (backend, and "
                                  "finance to watch what the shop owes); pay them, then "
                                  "confirmRefund (GB-10). The cursor is a keyset: confirming refunds while paging "
                                  "with `after: endCursor` skips none.")
    async def owed_refunds(self, info: Info, first: Optional[int] = None, after: Optional[str] = None,
                           rule: Optional[str] = None) -> Connection[Refund]:
        ctx = info.context
        return await paginate_keyset(lambda **p: queries.page_refunds(ctx.svc, shop_id=ctx.shop_id, state="OWED",
                                                                      rule=rule, **p),
                                     first, after, REFUNDS_KEYSET, lambda r: refund_type(r, ctx))

    @strawberry.field(permission_classes=[IsBackendOrAdmin], description="A product's terms (OR-3).")
    async def product(self, info: Info, product_ref: str) -> Optional[Product]:
        p = await info.context.loaders.product.load(product_ref)
        return product_type(p, info.context) if p else None

    @strawberry.field(permission_classes=[IsBackendOrAdmin],
                      description="The shop's products with their category and commission terms (OR-3), by reference.")
    async def products(self, info: Info, first: Optional[int] = None,
                       after: Optional[str] = None) -> Connection[Product]:
        ctx = info.context
        return await paginate(lambda **p: listings.page_products(ctx.svc, shop_id=ctx.shop_id, **p), first, after,
                              lambda x: product_type(x, ctx))

    # ------------------------------------------------------------ finance
    @strawberry.field(permission_classes=[IsFinance], description="Payouts waiting for a decision (LG-2).")
    async def pending_payouts(self, info: Info, first: Optional[int] = None,
                              after: Optional[str] = None) -> Connection[Payout]:
        ctx = info.context
        return await paginate(lambda **p: queries.page_payouts(ctx.svc, shop_id=ctx.shop_id, state="REQUESTED",
                                                               user_id=None, **p), first, after,
                              lambda x: payout_type(x, ctx))

    @strawberry.field(permission_classes=[IsAdminOrFinance], description="Settlement batches (LG-3), oldest first.")
    async def settlements(self, info: Info, first: Optional[int] = None,
                          after: Optional[str] = None) -> Connection[Settlement]:
        ctx = info.context
        return await paginate(lambda **p: listings.page_settlements(ctx.svc, shop_id=ctx.shop_id, **p), first, after,
                              settlement_type)

    @strawberry.field(permission_classes=[IsAdminOrFinance],
                      description="RP-1 for the whole shop: the distributor ledger per local day or month of the "
                                  "shop's time zone over [periodFrom, periodTo), as `me.earningsSeries` is for one "
                                  "distributor (same limits): what finance charts.")
    async def shop_earnings_series(self, info: Info, granularity: EarningsGranularity, period_from: date,
                                   period_to: date) -> list[EarningsPeriod]:
        ctx = info.context
        series = await reports_svc.earnings_series(ctx.svc, shop_id=ctx.shop_id, user_id=None,
                                                   granularity=granularity, day_from=period_from, day_to=period_to)
        return [earnings_period(p, ctx.currency) for p in series]

    # ------------------------------------------------------------ admin
    @strawberry.field(permission_classes=[IsAdmin], description="RP-2 per campaign and A/B variant.")
    async def campaign_stats(self, info: Info, campaign_id: strawberry.ID) -> CampaignStats:
        ctx = info.context
        st = await reports_svc.campaign_stats(ctx.svc, shop_id=ctx.shop_id,
                                              campaign_id=raw_id(campaign_id, "Campaign", "campaignId"))
        comparisons = [variant_comparison(c) for c in st.comparisons]
        return CampaignStats(currency=ctx.currency, total=variant_stats(st.total, ctx.currency),
                             variants=[variant_stats(v, ctx.currency) for v in st.variants], comparisons=comparisons,
                             min_decided_per_variant=MIN_DECIDED, has_winner=any(c.has_winner for c in comparisons))

    @strawberry.field(permission_classes=[IsAdmin],
                      description="RP-3: how many of the shop's users are in each segment now, in lifecycle order.")
    async def segment_counts(self, info: Info) -> list[SegmentCount]:
        counts = await reports_svc.segment_counts(info.context.svc, shop_id=info.context.shop_id)
        return [SegmentCount(segment=seg, count=counts[seg.value]) for seg in Segment]

    @strawberry.field(permission_classes=[IsAdmin], description="RP-3: a user's segment now (NEW if unknown).")
    async def user_segment(self, info: Info, user_id: str) -> UserSegment:
        return await reports_svc.segment(info.context.svc, shop_id=info.context.shop_id, user_id=user_id)

    @strawberry.field(permission_classes=[IsAdmin],
                      description="RP-4 over the local days [periodFrom, periodTo) of the shop's time zone: one row "
                                  "per acquisition source (REFERRAL, GROUP_INVITE, NONE), always all three.")
    async def retention(self, info: Info, period_from: date, period_to: date) -> list[RetentionRow]:
        ctx = info.context
        start, end = await reports_svc.shop_period(ctx.svc, shop_id=ctx.shop_id,
                                                   day_from=bounded_day(period_from, "periodFrom"),
                                                   day_to=bounded_day(period_to, "periodTo"))
        rows = await reports_svc.retention(ctx.svc, shop_id=ctx.shop_id, period_from=start, period_to=end)
        return [retention_row(r, ctx.currency) for r in rows]

    @strawberry.field(permission_classes=[IsAdmin], description="The shop's distribution settings (section 3).")
    async def distribution_settings(self, info: Info) -> DistributionSettings:
        return settings_type(await shops_svc.get_settings(info.context.svc, info.context.shop_id), info.context)

    @strawberry.field(permission_classes=[IsAdmin], description="The shop's distributor levels by grade (LV-1).")
    async def levels(self, info: Info, first: Optional[int] = None,
                     after: Optional[str] = None) -> Connection[Level]:
        ctx = info.context
        return await paginate(lambda **p: listings.page_levels(ctx.svc, shop_id=ctx.shop_id, **p), first, after,
                              lambda lv: level_type(lv, ctx))

    @strawberry.field(permission_classes=[IsAdmin],
                      description="Distributors and applicants by user id, optionally only some statuses (DS-1): "
                                  "`statuses: [APPLIED]` lists the applications waiting for approveDistributor.")
    async def distributors(self, info: Info, statuses: Optional[list[DistributorStatusEnum]] = None,
                           first: Optional[int] = None, after: Optional[str] = None) -> Connection[DistributorSummary]:
        ctx = info.context
        wanted = [st.value for st in statuses] if statuses else None
        return await paginate(lambda **p: listings.page_distributors(ctx.svc, shop_id=ctx.shop_id, statuses=wanted,
                                                                     **p), first, after,
                              lambda d: distributor_summary(d, ctx))

    @strawberry.field(permission_classes=[IsAdminOrFinance],  # finance audits draws (GB-7) and refunds
                      description="Replay by pull: the shop's events, oldest first, paged with `after: endCursor` "
                                  "(a keyset: an event never commits behind a cursor already read; see "
                                  "docs/webhooks.md). Keep the last endCursor to resume.")
    async def events(self, info: Info, types: Optional[list[str]] = None, first: Optional[int] = None,
                     after: Optional[str] = None) -> Connection[ShopEvent]:
        ctx = info.context
        return await paginate_keyset(lambda **p: queries.page_events(ctx.svc, shop_id=ctx.shop_id, types=types, **p),
                                     first, after, EVENTS_KEYSET, event_type)

    @strawberry.field(permission_classes=[IsAdmin],
                      description="The shop's webhook endpoints with their state, deliveries and attempts, oldest "
                                  "first (docs/webhooks.md).")
    async def webhook_endpoints(self, info: Info, first: Optional[int] = None,
                                after: Optional[str] = None) -> Connection[WebhookEndpoint]:
        ctx = info.context
        return await paginate_keyset(lambda **p: queries.page_endpoints(ctx.svc, shop_id=ctx.shop_id, **p),
                                     first, after, ENDPOINTS_KEYSET, endpoint_type)
