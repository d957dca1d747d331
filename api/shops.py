"""Shops and admin: who is calling and the shop (`viewer`), the shop's products (OR-3), its credentials,
and the test clock. Types, queries, mutations.

`viewer`: who is calling and the shop's name, currency and time zone — what a client (the console,
a storefront) needs to label, format money (ISO 4217 minor units) and show dates in the shop's calendar
without introspection or a second source of configuration.

Credentials (issue 11 point 9, issue 13 point 3):

- `issueToken` (backend): a customer or distributor token for one of the shop's users, at most
  MAX_ISSUED_TTL_S — how a shop's backend signs its own customers in (docs/security.md, "Tokens for
  integrators"). Issuing changes nothing, so a retry simply issues another token; the key is accepted for
  uniformity (GB-10).
- `rotateJwtSecret` (admin): a new signing secret; the old one verifies for `overlapSeconds` more.
- `revokeTokens` (admin): every token issued before now is refused, in every process.

`advanceClock` (admin) exists only in the schema served with SHARECART_TEST_CLOCK=1 (api.schema).
"""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from enum import Enum
from typing import Iterable, Optional

import jwt
import strawberry
from strawberry import relay
from strawberry.types import Info

from api.auth import mint_token
from api.errors import UserError
from api.payload import idempotency_key_field, payload_mutation
from api.permissions import HasShopKey, IsAdmin, IsBackend, IsBackendOrAdmin
from api.relay import Connection, MinorUnits, paginate, resolve_visible
from engine.errors import ErrorCode, refuse
from service.reads import listings
from service.usecases import shops as shops_svc
from service.usecases.shops import get_shop


# ---------------------------------------------------------------- types


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
    return Viewer(
        user_id=p.user_id if p else None,
        roles=sorted(p.roles) if p else [],
        shop=ShopInfo(shop_id=shop.shop_id, name=shop.name, currency=shop.currency, timezone=shop.timezone),
    )


@strawberry.type(description="A product's category and commission terms (OR-3, CM-3).")
class Product(relay.Node):
    id: relay.NodeID[str]
    product_ref: str
    title: str
    category: str
    earns_commission: bool
    level1_amount: Optional[MinorUnits] = strawberry.field(description="CM-3: fixed per unit, replaces the rate")
    level2_amount: Optional[MinorUnits]
    currency: str

    @classmethod
    async def resolve_nodes(cls, *, info: Info, node_ids: Iterable[str], required: bool = False):
        return await resolve_visible(info, "product", node_ids, product_type)


def product_type(p, ctx) -> Product:
    return Product(
        id=p.product_ref,
        product_ref=p.product_ref,
        title=p.title,
        category=p.category,
        earns_commission=p.earns_commission,
        level1_amount=p.level1_amount,
        level2_amount=p.level2_amount,
        currency=ctx.currency,
    )


# ---------------------------------------------------------------- queries


@strawberry.field(
    permission_classes=[HasShopKey],
    description="The caller (user and roles) and the shop's name, currency and time zone (public with X-Shop-Key).",
)
async def viewer(info: Info) -> Viewer:
    return await resolve_viewer(info)


@strawberry.field(permission_classes=[IsBackendOrAdmin], description="A product's terms (OR-3).")
async def product(info: Info, product_ref: str) -> Optional[Product]:
    p = await info.context.loaders.product.load(product_ref)
    return product_type(p, info.context) if p else None


@strawberry.field(
    permission_classes=[IsBackendOrAdmin],
    description="The shop's products with their category and commission terms (OR-3), by reference.",
)
async def products(info: Info, first: Optional[int] = None, after: Optional[str] = None) -> Connection[Product]:
    ctx = info.context
    return await paginate(
        lambda **p: listings.page_products(ctx.svc, shop_id=ctx.shop_id, **p),
        first,
        after,
        lambda x: product_type(x, ctx),
    )


# ---------------------------------------------------------------- mutations: products


@strawberry.input
class UpsertProductInput:
    product_ref: str
    title: str = ""
    category: str = ""
    earns_commission: bool = True
    level1_amount: Optional[MinorUnits] = None
    level2_amount: Optional[MinorUnits] = None
    idempotency_key: Optional[str] = idempotency_key_field()


@strawberry.type
class ProductPayload:
    product: Optional[Product] = None
    errors: list[UserError]


@payload_mutation(
    ProductPayload,
    permission_classes=[IsBackendOrAdmin],
    description="OR-3: a product's category and commission terms (CM-3 fixed per-unit amounts).",
)
async def upsert_product(info: Info, input: UpsertProductInput) -> dict:
    ctx = info.context
    p = await shops_svc.upsert_product(
        ctx.svc,
        shop_id=ctx.shop_id,
        product_ref=input.product_ref,
        title=input.title,
        category=input.category,
        earns_commission=input.earns_commission,
        level1_amount=input.level1_amount,
        level2_amount=input.level2_amount,
        idempotency_key=input.idempotency_key,
    )
    return dict(product=product_type(p, ctx))


# ---------------------------------------------------------------- mutations: credentials

MAX_ISSUED_TTL_S = 86400


@strawberry.enum(description="The roles a backend may issue tokens for (staff tokens come from the CLI only).")
class IssuableRole(Enum):
    CUSTOMER = "customer"
    DISTRIBUTOR = "distributor"


@strawberry.input
class IssueTokenInput:
    user_id: str = strawberry.field(description="The shop's own id of the user (1-64 characters)")
    roles: list[IssuableRole]
    ttl_seconds: int = strawberry.field(default=3600, description=f"At most {MAX_ISSUED_TTL_S} (24 h)")
    idempotency_key: Optional[str] = strawberry.field(
        default=None,
        description="Accepted for uniformity (GB-10): issuing changes nothing, a retry issues another token.",
    )


@strawberry.type
class IssueTokenPayload:
    token: Optional[str] = strawberry.field(default=None, description="Send as `Authorization: Bearer <token>`")
    expires_at: Optional[datetime] = None
    errors: list[UserError]


@strawberry.input
class RotateJwtSecretInput:
    overlap_seconds: int = strawberry.field(
        default=3600, description="How long tokens signed with the old secret stay valid (0 to 604800)"
    )
    idempotency_key: Optional[str] = idempotency_key_field()


@strawberry.input
class RevokeTokensInput:
    idempotency_key: Optional[str] = idempotency_key_field()


@strawberry.type
class ShopCredentialsPayload:
    tokens_not_before: Optional[datetime] = strawberry.field(
        default=None, description="Tokens issued (iat) before this instant are refused"
    )
    previous_secret_valid_until: Optional[datetime] = strawberry.field(
        default=None, description="Until when tokens signed with the replaced secret are accepted"
    )
    errors: list[UserError]


def _credentials(shop) -> dict:
    return dict(tokens_not_before=shop.tokens_not_before, previous_secret_valid_until=shop.previous_jwt_secret_until)


@payload_mutation(
    IssueTokenPayload,
    permission_classes=[IsBackend],
    description="Issue a customer/distributor token for a "
    f"user of the caller's shop, valid at most {MAX_ISSUED_TTL_S} s (docs/security.md).",
)
async def issue_token(info: Info, input: IssueTokenInput) -> dict:
    ctx = info.context
    if not input.user_id or len(input.user_id) > 64:
        raise refuse(ErrorCode.INVALID_INPUT, "user id must be 1-64 characters", field="userId")
    if not input.roles:
        raise refuse(ErrorCode.INVALID_INPUT, "at least one role", field="roles")
    if not 1 <= input.ttl_seconds <= MAX_ISSUED_TTL_S:
        raise refuse(ErrorCode.INVALID_INPUT, f"ttlSeconds is 1 to {MAX_ISSUED_TTL_S}", field="ttlSeconds", rule="SH-0")
    shop = await (ctx.shop_cache.get(ctx.shop_id) if ctx.shop_cache else shops_svc.get_shop(ctx.svc, ctx.shop_id))
    token = mint_token(shop, input.user_id, [r.value for r in input.roles], input.ttl_seconds)
    exp = jwt.decode(token, options={"verify_signature": False})["exp"]
    return dict(token=token, expires_at=datetime.fromtimestamp(exp, timezone.utc))


@payload_mutation(
    ShopCredentialsPayload,
    permission_classes=[IsAdmin],
    description="A new token signing secret; tokens signed "
    "with the old one stay valid for the overlap (docs/security.md).",
)
async def rotate_jwt_secret(info: Info, input: RotateJwtSecretInput) -> dict:
    ctx = info.context
    shop = await shops_svc.rotate_jwt_secret(
        ctx.svc, shop_id=ctx.shop_id, overlap_s=input.overlap_seconds, idempotency_key=input.idempotency_key
    )
    if ctx.shop_cache:
        ctx.shop_cache.drop(ctx.shop_id)
    return _credentials(shop)


@payload_mutation(
    ShopCredentialsPayload,
    permission_classes=[IsAdmin],
    description="Refuse every token of the shop issued before now (the caller's too: mint a new one).",
)
async def revoke_tokens(info: Info, input: RevokeTokensInput) -> dict:
    ctx = info.context
    shop = await shops_svc.revoke_tokens(ctx.svc, shop_id=ctx.shop_id, idempotency_key=input.idempotency_key)
    if ctx.shop_cache:
        ctx.shop_cache.drop(ctx.shop_id)
    return _credentials(shop)


# ---------------------------------------------------------------- test clock (SHARECART_TEST_CLOCK=1 only)

TEST_CLOCK_ENV = "SHARECART_TEST_CLOCK"
MAX_CLOCK_AHEAD_S = 100 * 365 * 86400  # the test clock is bounded (issue 11 point 11)


def test_clock_enabled() -> bool:
    from service.settings import settings

    return settings().test_clock


@strawberry.input
class AdvanceClockInput:
    seconds: int


@strawberry.type
class AdvanceClockPayload:
    now: Optional[datetime] = None
    errors: list[UserError]


@payload_mutation(
    AdvanceClockPayload,
    permission_classes=[IsAdmin],
    description="Tests only (SHARECART_TEST_CLOCK=1): move the service clock (OR-5) and run "
    "the work that became due (GB-11, CM-6).",
)
async def advance_clock(info: Info, input: AdvanceClockInput) -> dict:
    from service.jobs.worker import run_due

    if not test_clock_enabled():  # belt and braces: the field is only in the test schema
        raise refuse(ErrorCode.FORBIDDEN, "the clock can only be moved in test mode", rule="OR-5")
    if input.seconds < 0:
        raise refuse(ErrorCode.INVALID_INPUT, "the clock only moves forward", field="seconds", rule="OR-5")
    ahead = (
        info.context.svc.now()
        + timedelta(seconds=min(input.seconds, MAX_CLOCK_AHEAD_S + 1))
        - datetime.now(timezone.utc)
    )
    if ahead.total_seconds() > MAX_CLOCK_AHEAD_S:  # past year 9999 every shop's `now + window` would overflow
        raise refuse(
            ErrorCode.INVALID_INPUT,
            field="seconds",
            rule="OR-5",
            message=f"the test clock stays within {MAX_CLOCK_AHEAD_S // (365 * 86400)} years of the real time",
        )
    now = info.context.svc.clock.advance(timedelta(seconds=input.seconds))
    await run_due(info.context.svc)
    return dict(now=now)
