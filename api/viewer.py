"""`viewer`: who is calling and the shop's name, currency and time zone — what a client (the console,
a storefront) needs to label, format money (ISO 4217 minor units) and show dates in the shop's calendar
without introspection or a second source of configuration."""

from __future__ import annotations

from typing import Optional

import strawberry
from strawberry.types import Info

from service.usecases.shops import get_shop


@strawberry.type(description="The shop a caller acts in (SH-1): its name, ISO 4217 currency and IANA time zone.")
class ShopInfo:
    shop_id: str
    name: str
    currency: str
    timezone: str = strawberry.field(description="IANA zone of the shop's calendar (Date fields, periods, LG-3)")


@strawberry.type(description="The caller: a token's user and roles, or an anonymous storefront (public key).")
class Viewer:
    user_id: Optional[str] = strawberry.field(description="The token's user; null for the public key")
    roles: list[str] = strawberry.field(description="The token's roles; empty for the public key")
    shop: ShopInfo


async def resolve_viewer(info: Info) -> Viewer:
    ctx = info.context
    shop = await get_shop(ctx.svc, ctx.shop_id)
    p = ctx.principal
    return Viewer(user_id=p.user_id if p else None, roles=sorted(p.roles) if p else [],
                  shop=ShopInfo(shop_id=shop.shop_id, name=shop.name, currency=shop.currency, timezone=shop.timezone))
