"""Distribution v2 in GraphQL (issue 16): CM-7 `commissionPreview`; RF-3 attribution (`rebindReferrer`,
`myReferral`, `referralBinding`); RP-5 downline pages and the leaderboard; RP-6 `recordVisit` and the
funnel. Mixed into the Query and Mutation roots (`DistributionQueries`, `DistributionMutations`).
"""

from __future__ import annotations

from typing import Optional

import strawberry
from strawberry.types import Info

from datetime import datetime
from enum import Enum

from api.errors import UserError
from api.payload import payload_mutation
from api.permissions import HasShopKey, IsAdmin, IsCustomer, IsDistributor, any_role
from api.relay import Connection, MinorUnits, paginate, raw_id
from api.visibility import user_alias
from engine.errors import ErrorCode  # the GraphQL enum ErrorCode (api.errors registers it)
from engine.leaderboard import RankBy as _RankBy
from service.reads import preview as preview_svc
from service.reads import reach as reach_svc
from service.usecases import distribution as distribution_svc
from service.usecases import visits as visits_svc

IsCustomerOrDistributor = any_role("customer", "distributor")


# ---------------------------------------------------------------- RF-3
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
    staff = ctx.has_role("admin", "finance", "backend")
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


# ---------------------------------------------------------------- RP-5 / RP-6
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


def funnel_type(f) -> Funnel:
    return Funnel(
        visits=f.visits,
        visitors=f.visitors,
        bindings=f.bindings,
        first_orders=f.first_orders,
        repeat_buyers=f.repeat_buyers,
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


# ---------------------------------------------------------------- CM-7
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
    from engine.errors import refuse

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
        from engine.errors import ErrorCode, refuse

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
