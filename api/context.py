"""Per-request context: the services, the caller (from the bearer token, or the shop's public key)
and the one shop every resolver acts in (SH-1), with that shop's DataLoaders."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Optional

from api.auth import Principal
from api.loaders import Loaders
from service.context import Services


@dataclass
class Context:
    svc: Services
    principal: Optional[Principal] = None
    auth_error: Optional[Any] = None  # the RuleViolation (UNAUTHENTICATED) when a token was given but is bad
    public_shop_id: Optional[str] = None  # X-Shop-Key: anonymous storefront access (DS-2)
    currency: str = ""
    request: object = None
    response: object = None
    connection_params: Optional[dict] = None  # websocket connection_init payload
    listener: object = None  # api.live.GroupListener of this process
    shop_cache: object = None  # api.auth.ShopCache of this process
    live_subscriptions: int = 0  # groupProgress subscriptions open on this websocket (api.subscriptions)
    dev: bool = False  # SHARECART_DEV: introspection for every caller (api.limits)
    _loaders: Optional[Loaders] = field(default=None, repr=False)

    @property
    def shop_id(self) -> str:
        """The shop the caller acts in: the token's, else the public key's (SH-1)."""
        if self.principal is not None:
            return self.principal.shop_id
        assert self.public_shop_id is not None, "permission classes admit no caller without a shop"
        return self.public_shop_id

    @property
    def user_id(self) -> str:
        assert self.principal is not None, "permission classes admit no anonymous caller here"
        return self.principal.user_id

    def has_role(self, *roles: str) -> bool:
        return self.principal is not None and bool(self.principal.roles & set(roles))

    @property
    def loaders(self) -> Loaders:
        if self._loaders is None:
            self._loaders = Loaders(self.svc, self.shop_id)
        return self._loaders
