"""Mutations of the shop's credentials (issue 11 point 9, issue 13 point 3), mixed into the Mutation root:

- `issueToken` (backend): a customer or distributor token for one of the shop's users, at most
  MAX_ISSUED_TTL_S — how a shop's backend signs its own customers in (docs/security.md, "Tokens for
  integrators"). Issuing changes nothing, so a retry simply issues another token; the key is accepted for
  uniformity (GB-10).
- `rotateJwtSecret` (admin): a new signing secret; the old one verifies for `overlapSeconds` more.
- `revokeTokens` (admin): every token issued before now is refused, in every process.
- `updateWebhook` (re-point: new URL and/or event types) and `deleteWebhook` (admin); `disableWebhook` is in
  api.mutations.
"""

from __future__ import annotations

from datetime import datetime, timezone
from enum import Enum
from typing import Optional

import jwt
import strawberry
from strawberry.types import Info

from api.auth import mint_token
from api.errors import UserError, refusal_of, user_error
from api.permissions import IsAdmin, IsBackend
from api.types import WebhookEndpoint, endpoint_type, raw_id
from engine.errors import ErrorCode, refuse
from service.usecases import shops as shops_svc
from service.usecases import webhooks as webhooks_svc

MAX_ISSUED_TTL_S = 86400
KEY_DESCRIPTION = ("GB-10: a retry with the same key and the same input returns the first result without a "
                   "second effect; the same key with another input is IDEMPOTENCY_CONFLICT.")


def _key() -> Optional[str]:
    return strawberry.field(default=None, description=KEY_DESCRIPTION)


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
        default=None, description="Accepted for uniformity (GB-10): issuing changes nothing, a retry issues "
                                  "another token.")


@strawberry.type
class IssueTokenPayload:
    token: Optional[str] = strawberry.field(default=None, description="Send as `Authorization: Bearer <token>`")
    expires_at: Optional[datetime] = None
    errors: list[UserError]


@strawberry.input
class RotateJwtSecretInput:
    overlap_seconds: int = strawberry.field(default=3600, description="How long tokens signed with the old "
                                            "secret stay valid (0 to 604800)")
    idempotency_key: Optional[str] = _key()


@strawberry.input
class RevokeTokensInput:
    idempotency_key: Optional[str] = _key()


@strawberry.type
class ShopCredentialsPayload:
    tokens_not_before: Optional[datetime] = strawberry.field(
        default=None, description="Tokens issued (iat) before this instant are refused")
    previous_secret_valid_until: Optional[datetime] = strawberry.field(
        default=None, description="Until when tokens signed with the replaced secret are accepted")
    errors: list[UserError]


@strawberry.input
class DeleteWebhookInput:
    endpoint_id: strawberry.ID
    idempotency_key: Optional[str] = _key()


@strawberry.input
class UpdateWebhookInput:
    endpoint_id: strawberry.ID
    url: Optional[str] = strawberry.field(default=None, description="Re-point the endpoint (checked as at "
                                          "registration); its secret and what it is owed stay")
    event_types: Optional[list[str]] = None
    idempotency_key: Optional[str] = _key()


@strawberry.type
class EndpointPayload:
    endpoint: Optional[WebhookEndpoint] = None
    errors: list[UserError]


@strawberry.type
class DeleteWebhookPayload:
    deleted: bool = False
    errors: list[UserError]


async def _run(payload_cls, go):
    """The use case's result as the payload; a refusal (also one the database makes) as its `errors`."""
    try:
        return payload_cls(**(await go()), errors=[])
    except Exception as e:
        refusal = refusal_of(e)
        if refusal is None:
            raise
        return payload_cls(errors=[user_error(refusal)])


def _endpoint_id(value) -> str:
    return raw_id(value, "WebhookEndpoint", "endpointId")


def _credentials(shop) -> dict:
    return dict(tokens_not_before=shop.tokens_not_before, previous_secret_valid_until=shop.previous_jwt_secret_until)


@strawberry.type
class SecurityMutations:
    @strawberry.mutation(permission_classes=[IsBackend], description="Issue a customer/distributor token for a "
                         f"user of the caller's shop, valid at most {MAX_ISSUED_TTL_S} s (docs/security.md).")
    async def issue_token(self, info: Info, input: IssueTokenInput) -> IssueTokenPayload:
        ctx = info.context

        async def go():
            if not input.user_id or len(input.user_id) > 64:
                raise refuse(ErrorCode.INVALID_INPUT, "user id must be 1-64 characters", field="userId")
            if not input.roles:
                raise refuse(ErrorCode.INVALID_INPUT, "at least one role", field="roles")
            if not 1 <= input.ttl_seconds <= MAX_ISSUED_TTL_S:
                raise refuse(ErrorCode.INVALID_INPUT, f"ttlSeconds is 1 to {MAX_ISSUED_TTL_S}", field="ttlSeconds",
                             rule="SH-0")
            shop = await (ctx.shop_cache.get(ctx.shop_id) if ctx.shop_cache else shops_svc.get_shop(ctx.svc,
                                                                                                  ctx.shop_id))
            token = mint_token(shop, input.user_id, [r.value for r in input.roles], input.ttl_seconds)
            exp = jwt.decode(token, options={"verify_signature": False})["exp"]
            return dict(token=token, expires_at=datetime.fromtimestamp(exp, timezone.utc))
        return await _run(IssueTokenPayload, go)

    @strawberry.mutation(permission_classes=[IsAdmin], description="A new token signing secret; tokens signed "
                         "with the old one stay valid for the overlap (docs/security.md).")
    async def rotate_jwt_secret(self, info: Info, input: RotateJwtSecretInput) -> ShopCredentialsPayload:
        ctx = info.context

        async def go():
            shop = await shops_svc.rotate_jwt_secret(ctx.svc, shop_id=ctx.shop_id, overlap_s=input.overlap_seconds,
                                                     idempotency_key=input.idempotency_key)
            if ctx.shop_cache:
                ctx.shop_cache.drop(ctx.shop_id)
            return _credentials(shop)
        return await _run(ShopCredentialsPayload, go)

    @strawberry.mutation(permission_classes=[IsAdmin], description="Refuse every token of the shop issued before "
                         "now (the caller's too: mint a new one).")
    async def revoke_tokens(self, info: Info, input: RevokeTokensInput) -> ShopCredentialsPayload:
        ctx = info.context

        async def go():
            shop = await shops_svc.revoke_tokens(ctx.svc, shop_id=ctx.shop_id, idempotency_key=input.idempotency_key)
            if ctx.shop_cache:
                ctx.shop_cache.drop(ctx.shop_id)
            return _credentials(shop)
        return await _run(ShopCredentialsPayload, go)

    @strawberry.mutation(permission_classes=[IsAdmin], description="Re-point an endpoint (new URL) and/or change "
                         "its event types.")
    async def update_webhook(self, info: Info, input: UpdateWebhookInput) -> EndpointPayload:
        ctx = info.context

        async def go():
            return dict(endpoint=endpoint_type(await webhooks_svc.update_endpoint(
                ctx.svc, shop_id=ctx.shop_id, endpoint_id=_endpoint_id(input.endpoint_id), url=input.url,
                event_types=input.event_types, idempotency_key=input.idempotency_key)))
        return await _run(EndpointPayload, go)

    @strawberry.mutation(permission_classes=[IsAdmin], description="Delete an endpoint and what it is still owed "
                         "(the events stay in the event pull API).")
    async def delete_webhook(self, info: Info, input: DeleteWebhookInput) -> DeleteWebhookPayload:
        ctx = info.context

        async def go():
            return dict(deleted=await webhooks_svc.delete_endpoint(
                ctx.svc, shop_id=ctx.shop_id, endpoint_id=_endpoint_id(input.endpoint_id),
                idempotency_key=input.idempotency_key))
        return await _run(DeleteWebhookPayload, go)
