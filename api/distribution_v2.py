"""Distribution v2 in GraphQL (issue 16): CM-7 `commissionPreview`; RF-3 attribution (`rebindReferrer`,
`myReferral`, `referralBinding`); RP-5 downline pages and the leaderboard; RP-6 `recordVisit` and the
funnel. Mixed into the Query and Mutation roots (`DistributionQueries`, `DistributionMutations`).
"""

from __future__ import annotations

from typing import Optional

import strawberry
from strawberry.types import Info

from api.permissions import any_role
from api.types import MinorUnits, raw_id
from service import preview as preview_svc

IsCustomerOrDistributor = any_role("customer", "distributor")


# ---------------------------------------------------------------- CM-7
@strawberry.input(description="CM-7: one line of a cart (OR-2); a product is a cart of one line.")
class PreviewLineInput:
    product_ref: str
    quantity: int = 1
    unit_price: MinorUnits = MinorUnits(0)
    discount: MinorUnits = MinorUnits(0)


@strawberry.input(description="CM-7: give `lines` (a cart or one product) or `campaignId` (a group-buy campaign, "
                               "with `quantity`).")
class CommissionPreviewInput:
    lines: Optional[list[PreviewLineInput]] = None
    campaign_id: Optional[strawberry.ID] = None
    quantity: int = strawberry.field(default=1, description="Units of the campaign's product (campaign only)")
    invite_code: Optional[str] = strawberry.field(default=None, description=(
        "Preview for a buyer bound to this code's distributor (as if bound), instead of the buyer's own referrer"))
    sharing: Optional[bool] = strawberry.field(default=None, description=(
        "A distributor asking what they would earn sharing it: the buyer is a new customer bound to the caller "
        "(the default for a caller without the customer role)"))


@strawberry.type(description="CM-7: what one beneficiary would earn, by level; no user is named.")
class PreviewShare:
    level: int = strawberry.field(description="1 or 2 (CM-2)")
    least: MinorUnits
    most: MinorUnits = strawberry.field(description="Equal to `least` for a cart; for a campaign the most over its "
                                                    "tiers, variants and roles")
    yours: bool = strawberry.field(description="The caller is this beneficiary")


@strawberry.type(description="CM-7: what the order would earn if it were paid now (CM-1..CM-4). Writes nothing.")
class CommissionPreview:
    currency: str
    base_least: MinorUnits = strawberry.field(description="CM-1 commission base (for a campaign after the GB-5 "
                                                          "refund to its lowest tier)")
    base_most: MinorUnits
    shares: list[PreviewShare]
    yours_least: MinorUnits = strawberry.field(description="What the caller would earn at least (0: nothing)")
    yours_most: MinorUnits


def preview_type(p, ctx) -> CommissionPreview:
    mine = [s for s in p.shares if s.beneficiary_id == ctx.user_id]
    return CommissionPreview(
        currency=ctx.currency, base_least=p.base_least, base_most=p.base_most,
        shares=[PreviewShare(level=s.level, least=s.least, most=s.most, yours=s.beneficiary_id == ctx.user_id)
                for s in p.shares],
        yours_least=sum(s.least for s in mine), yours_most=sum(s.most for s in mine))


@strawberry.type
class DistributionQueries:
    @strawberry.field(permission_classes=[IsCustomerOrDistributor], description=(
        "CM-7: what a cart, a product or a group-buy campaign would earn each beneficiary if paid now — for the "
        "signed-in customer as buyer, a buyer bound to `inviteCode`, or (`sharing`) a new customer of the "
        "calling distributor. Computed by the payment's own commission function; writes nothing."))
    async def commission_preview(self, info: Info, input: CommissionPreviewInput) -> CommissionPreview:
        ctx = info.context
        sharing = input.sharing if input.sharing is not None else not ctx.has_role("customer")
        if sharing and not ctx.has_role("distributor"):
            from engine.errors import ErrorCode, refuse

            raise refuse(ErrorCode.FORBIDDEN, "sharing previews are for distributors", field="sharing", rule="CM-7")
        p = await preview_svc.commission_preview(
            ctx.svc, shop_id=ctx.shop_id, buyer_id=None if sharing else ctx.user_id,
            bound_to=ctx.user_id if sharing and not input.invite_code else None, invite_code=input.invite_code,
            lines=None if input.lines is None else [
                preview_svc.CartLine(ln.product_ref, ln.quantity, ln.unit_price, ln.discount) for ln in input.lines],
            campaign_id=raw_id(input.campaign_id, "Campaign", "campaignId") if input.campaign_id else None,
            quantity=input.quantity)
        return preview_type(p, ctx)

