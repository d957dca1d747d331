"""Who may call what (SH-0), as strawberry permission classes on fields.

A refused caller gets a GraphQL error with `extensions.code` UNAUTHENTICATED (no valid token, or a
bad one: the message says which) or FORBIDDEN (valid token, wrong role). Which shop a resolver acts
in is never an argument: it is the token's shop (or the public key's), see `Context.shop_id` (SH-1).
"""

from __future__ import annotations

from typing import Any

from strawberry.permission import BasePermission

from engine.errors import ErrorCode, refuse


def _authenticated(ctx) -> None:
    if ctx.auth_error is not None:  # a token (or shop key) was sent and is bad: say why
        e = ctx.auth_error
        raise refuse(e.code, e.message, rule=e.rule)
    if ctx.principal is None:
        raise refuse(ErrorCode.UNAUTHENTICATED, "authentication required: send Authorization: Bearer <token>",
                     rule="SH-0")


class _AnyRole(BasePermission):
    roles: frozenset[str] = frozenset()

    def has_permission(self, source: Any, info, **kwargs) -> bool:
        ctx = info.context
        _authenticated(ctx)
        if not ctx.principal.roles & self.roles:
            raise refuse(ErrorCode.FORBIDDEN, f"forbidden: needs the role {' or '.join(sorted(self.roles))}",
                         rule="SH-0")
        return True


def any_role(*names: str) -> type[BasePermission]:
    return type("Is" + "Or".join(n.title() for n in names), (_AnyRole,), {"roles": frozenset(names)})


IsCustomer, IsDistributor, IsAdmin, IsFinance, IsBackend = (
    any_role(r) for r in ("customer", "distributor", "admin", "finance", "backend"))
IsBackendOrAdmin = any_role("backend", "admin")
IsAdminOrFinance = any_role("admin", "finance")
IsBackendOrFinance = any_role("backend", "finance")


class HasShopKey(BasePermission):
    """DS-2: the storefront's public campaign pages — a bearer token of the shop, or its public key
    (`X-Shop-Key`). Only `campaign`, `campaigns`, `group`, `resolveInvite` and `groupProgress` carry it."""

    def has_permission(self, source, info, **kwargs) -> bool:
        ctx = info.context
        if ctx.auth_error is None and ctx.public_shop_id is not None:
            return True
        _authenticated(ctx)
        return True


# ---------------------------------------------------------------- who sees whom (issue 11 point 10)
STAFF = ("admin", "finance", "backend")


def sees_user_ids(ctx, user_id: str) -> bool:
    """A user id is shown to the shop's staff and to that user; customers and distributors see other users
    only by their alias (`user_alias`), public-key callers not at all."""
    p = ctx.principal
    return p is not None and (p.user_id == user_id or bool(p.roles & set(STAFF)))


def user_alias(shop_id: str, user_id: str) -> str:
    """The name the shop gives a user where other customers see them: `member-` and 8 hex digits of an HMAC
    of (shop, user) under a key derived from SHARECART_SECRET_KEY — stable, the same in every process, and
    not reversible by guessing user ids (without the key set, the key is per process: development only)."""
    import hashlib
    import hmac

    digest = hmac.new(_alias_key(), f"{shop_id}:{user_id}".encode(), hashlib.sha256).hexdigest()
    return f"member-{digest[:8]}"


_ALIAS_KEY: list[bytes] = []


def _alias_key() -> bytes:
    import hashlib
    import secrets

    from service.settings import settings

    if not _ALIAS_KEY:
        master = (settings().secret_key or "").split(",")[0].strip()
        _ALIAS_KEY.append(hashlib.sha256(b"sharecart-alias:" + master.encode()).digest() if master
                          else secrets.token_bytes(32))
    return _ALIAS_KEY[0]
