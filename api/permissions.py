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
        raise refuse(
            ErrorCode.UNAUTHENTICATED, "authentication required: send Authorization: Bearer <token>", rule="SH-0"
        )


class _AnyRole(BasePermission):
    roles: frozenset[str] = frozenset()

    def has_permission(self, source: Any, info, **kwargs) -> bool:
        ctx = info.context
        _authenticated(ctx)
        if not ctx.principal.roles & self.roles:
            raise refuse(
                ErrorCode.FORBIDDEN, f"forbidden: needs the role {' or '.join(sorted(self.roles))}", rule="SH-0"
            )
        return True


def any_role(*names: str) -> type[BasePermission]:
    return type("Is" + "Or".join(n.title() for n in names), (_AnyRole,), {"roles": frozenset(names)})


IsCustomer, IsDistributor, IsAdmin, IsFinance, IsBackend = (
    any_role(r) for r in ("customer", "distributor", "admin", "finance", "backend")
)
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
