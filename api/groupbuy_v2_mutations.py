"""Group-buy v2 mutations (issue 15): GB-13 `quickJoin` and GB-14's shop setting. A mixin of the mutation
root (api/mutations.py), kept apart while the api/ cut (issue 12) is under way."""

from __future__ import annotations

from typing import Optional

import strawberry
from strawberry.types import Info

from api.errors import UserError, refusal_of, user_error
from api.permissions import IsAdmin, IsCustomer
from api.types import Group, MinorUnits, Order, group_type, order_type, raw_id
from service import groups as groups_svc

IDEMPOTENCY = ("GB-10: a retry with the same key and the same input returns the first result without a second "
               "effect; the same key with another input is IDEMPOTENCY_CONFLICT.")


async def _run(payload_cls, go):
    try:
        return payload_cls(**(await go()), errors=[])
    except Exception as e:
        refusal = refusal_of(e)
        if refusal is None:
            raise
        return payload_cls(errors=[user_error(refusal)])


@strawberry.input
class QuickJoinInput:
    campaign_id: strawberry.ID
    quantity: int = 1
    open_if_none: bool = strawberry.field(default=False, description=(
        "GB-13: when no open group can take the customer, open a new group as its leader (GB-1)"))
    idempotency_key: Optional[str] = strawberry.field(default=None, description=IDEMPOTENCY)


@strawberry.type(description="GB-13: the seat quickJoin found (or the group it opened): pay `amountToPay` within "
                             "the payment window.")
class QuickJoinPayload:
    group: Optional[Group] = None
    order: Optional[Order] = None
    amount_to_pay: Optional[MinorUnits] = None
    currency: Optional[str] = None
    opened: Optional[bool] = strawberry.field(default=None, description="True when no open group could take the "
                                                                        "customer and they opened one as leader")
    errors: list[UserError]


@strawberry.input
class UpdateGroupBuySettingsInput:
    overflow_reseat: bool = strawberry.field(description=(
        "GB-14: a payment that GB-9 would refund takes a seat in another open group of its campaign at the same "
        "role and unit price when one can take the buyer (off by default)"))
    idempotency_key: Optional[str] = strawberry.field(default=None, description=IDEMPOTENCY)


@strawberry.type(description="The shop's group-buy options (v2).")
class GroupBuySettings:
    overflow_reseat: bool = strawberry.field(description="GB-14 overflow re-seat (off by default)")


@strawberry.type
class GroupBuySettingsPayload:
    settings: Optional[GroupBuySettings] = None
    errors: list[UserError]


@strawberry.type
class GroupBuyV2Queries:
    @strawberry.field(permission_classes=[IsAdmin], description="The shop's group-buy options (GB-14).")
    async def group_buy_settings(self, info: Info) -> GroupBuySettings:
        from service import groupbuy_settings

        ctx = info.context
        return GroupBuySettings(overflow_reseat=await groupbuy_settings.get_overflow_reseat(ctx.svc,
                                                                                             shop_id=ctx.shop_id))


@strawberry.type
class GroupBuyV2Mutations:
    @strawberry.mutation(permission_classes=[IsAdmin], description="GB-14: the shop's group-buy options.")
    async def update_group_buy_settings(self, info: Info,
                                        input: UpdateGroupBuySettingsInput) -> GroupBuySettingsPayload:
        from service import groupbuy_settings

        ctx = info.context

        async def go():
            v = await groupbuy_settings.set_overflow_reseat(ctx.svc, shop_id=ctx.shop_id,
                                                            enabled=input.overflow_reseat,
                                                            idempotency_key=input.idempotency_key)
            return dict(settings=GroupBuySettings(overflow_reseat=v))
        return await _run(GroupBuySettingsPayload, go)

    @strawberry.mutation(permission_classes=[IsCustomer], description=(
        "GB-13 (凑团): a seat in the open group of a campaign closest to forming (fewest seats to its next "
        "threshold, then earliest expiry, then earliest opened); the next group is tried if one fills first; "
        "with openIfNone a new group is opened when none can take the customer, else NO_GROUP_AVAILABLE."))
    async def quick_join(self, info: Info, input: QuickJoinInput) -> QuickJoinPayload:
        ctx = info.context

        async def go():
            r = await groups_svc.quick_join(ctx.svc, shop_id=ctx.shop_id,
                                            campaign_id=raw_id(input.campaign_id, "Campaign", "campaignId"),
                                            user_id=ctx.user_id, quantity=input.quantity,
                                            open_if_none=input.open_if_none, idempotency_key=input.idempotency_key)
            if r.group is not None:
                ctx.loaders.group.prime(r.group.id, r.group, force=True)
            if r.order is not None:
                ctx.loaders.order.prime(r.order.order_id, r.order, force=True)
            g = await ctx.loaders.group.load(r.group_id)
            o = await ctx.loaders.order.load(r.order_id)
            return dict(group=group_type(g, ctx) if g else None, order=order_type(o, ctx) if o else None,
                        amount_to_pay=r.amount, currency=ctx.currency, opened=r.opened)
        return await _run(QuickJoinPayload, go)


__all__ = ["GroupBuyV2Mutations", "GroupBuyV2Queries"]
