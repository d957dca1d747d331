"""Per-request context: the services, the caller (from the bearer token) and the shop it acts in."""

from __future__ import annotations

from dataclasses import dataclass, field


from api.auth import Principal
from service.context import Services


@dataclass
class Context:
    svc: Services
    principal: Principal | None = None
    auth_error: str | None = None  # UNAUTHENTICATED message when a token was given but is bad
    public_shop_id: str | None = None  # X-Shop-Key: anonymous storefront access (DS-2)
    currency: str = ""
    request: object = None
    response: object = None
    extra: dict = field(default_factory=dict)

    @property
    def shop_id(self) -> str:
        assert self.principal is not None
        return self.principal.shop_id

    @property
    def user_id(self) -> str:
        assert self.principal is not None
        return self.principal.user_id
