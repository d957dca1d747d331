"""Role checks as strawberry permission classes on fields (SH-0)."""

from __future__ import annotations

from typing import Any

from strawberry.permission import BasePermission


class _Role(BasePermission):
    role: str = ""
    message = "this operation needs another role"

    def has_permission(self, source: Any, info, **kwargs) -> bool:
        ctx = info.context
        if ctx.principal is None:
            self.message = ctx.auth_error or "authentication required: send Authorization: Bearer <token>"
            self.error_extensions = {"code": "UNAUTHENTICATED"}
            return False
        if self.role not in ctx.principal.roles:
            self.message = f"forbidden: needs the {self.role} role"
            self.error_extensions = {"code": "FORBIDDEN"}
            return False
        return True


def role(name: str) -> type[BasePermission]:
    return type(f"Is{name.title()}", (_Role,), {"role": name})


IsCustomer, IsDistributor, IsAdmin, IsFinance, IsBackend = (
    role(r) for r in ("customer", "distributor", "admin", "finance", "backend"))


class IsAuthenticated(_Role):
    def has_permission(self, source, info, **kwargs) -> bool:
        ctx = info.context
        if ctx.principal is None:
            self.message = ctx.auth_error or "authentication required"
            self.error_extensions = {"code": "UNAUTHENTICATED"}
            return False
        return True


class HasShopKey(BasePermission):
    message = "send X-Shop-Key (the shop's public key) or a bearer token"
    error_extensions = {"code": "UNAUTHENTICATED"}

    def has_permission(self, source, info, **kwargs) -> bool:
        ctx = info.context
        return ctx.public_shop_id is not None or ctx.principal is not None
