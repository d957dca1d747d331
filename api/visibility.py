"""Who may see which object — decided here, once (SH-0, SH-1, issue 11 point 10).

`api.permissions` decides who may call an operation; this module decides what an admitted caller may
see of what the operation found: every Node fetched by id (`node`, and each type's `resolve_nodes`
through `api.relay.resolve_visible`) is shown only if `may_see(ctx, kind, row)`, else it reads as null
(as an id that does not exist would); the fields that name users (`Group.leaderUserId`, `Order.buyerId`)
are shown by `sees_user_ids` / `sees_buyer`, and a group's revealed lottery draw (`Group.draw`) by
`sees_draw`. Everything is already scoped to the caller's shop (SH-1): these rules are about roles and
ownership inside it.
"""

from __future__ import annotations

from typing import Any, Callable

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
        _ALIAS_KEY.append(
            hashlib.sha256(b"sharecart-alias:" + master.encode()).digest() if master else secrets.token_bytes(32)
        )
    return _ALIAS_KEY[0]


def sees_buyer(ctx, order) -> bool:
    """An order's buyer (and the order itself, by id): its buyer as a customer, and the shop's staff."""
    return (
        ctx.principal is not None and order.buyer_id == ctx.principal.user_id and "customer" in ctx.principal.roles
    ) or ctx.has_role("backend", "admin", "finance")


def sees_draw(ctx, group) -> bool:
    """GB-7 v2: a group's revealed draw is shown to its members (anyone who held a seat in it), admins and
    finance."""
    p = ctx.principal
    if p is None:
        return False
    return bool(p.roles & {"admin", "finance"}) or any(s.user_id == p.user_id for s in group.seats)


def _own_distributor_or(*staff: str) -> Callable[[Any, Any], bool]:
    """The distributor the row belongs to (`user_id` of the row's owner), and the given staff roles."""

    def sees(ctx, owner_id: str) -> bool:
        return (
            ctx.principal is not None and ctx.principal.user_id == owner_id and "distributor" in ctx.principal.roles
        ) or ctx.has_role(*staff)

    return sees


def _roles(*roles: str) -> Callable[[Any, Any], bool]:
    return lambda ctx, _row: ctx.has_role(*roles)


_own_line = _own_distributor_or("admin", "finance")
_own_payout = _own_distributor_or("finance", "admin")

VISIBLE: dict[str, Callable[[Any, Any], bool]] = {
    # kind (the DataLoader of api.loaders) -> may this caller see this row?
    "campaign": lambda ctx, _row: True,  # public campaign pages (DS-2)
    "group": lambda ctx, _row: True,  # public group pages; who leads is sees_user_ids' decision
    "order": sees_buyer,
    "refund": _roles("backend", "admin", "finance"),
    "product": _roles("backend", "admin"),
    "commission_line": lambda ctx, ln: _own_line(ctx, ln.beneficiary_id),
    "payout": lambda ctx, p: _own_payout(ctx, p.distributor_id),
    "distributor": _roles("admin"),
    "level": _roles("admin", "distributor"),
    "settlement": _roles("finance", "admin"),
    "webhook_endpoint": _roles("admin"),
    "webhook_delivery": _roles("admin"),
    "webhook_attempt": _roles("admin"),
    "event": _roles("admin"),
}


def may_see(ctx, kind: str, row) -> bool:
    """Whether the caller may see `row`, an object of `kind` of their shop (a key of VISIBLE)."""
    return VISIBLE[kind](ctx, row)
