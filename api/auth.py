"""SH-0 / SH-1: bearer JWTs signed with the shop's own secret, carrying shop, user and roles.

The shop claim is read first (unverified) only to pick the secret; the token is then verified
with that shop's secret, so a token can never act in another shop.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import jwt

from engine.errors import ErrorCode, refuse

ROLES = frozenset({"customer", "distributor", "admin", "finance", "backend"})
ALGORITHM = "HS256"


@dataclass(frozen=True)
class Principal:
    shop_id: str
    user_id: str
    roles: frozenset[str]


def mint_token(shop, user_id: str, roles, ttl_seconds: int = 86400) -> str:
    """A bearer token for `user_id` acting with `roles` in `shop` — a shop row (with `shop_id` and
    `jwt_secret`) or a `(shop_id, secret)` pair. `ttl_seconds` may be negative (tests of expiry)."""
    shop_id, secret = (shop.shop_id, shop.jwt_secret) if hasattr(shop, "jwt_secret") else tuple(shop)
    bad = set(roles) - ROLES
    if bad:
        raise ValueError(f"unknown roles {sorted(bad)}")
    if not user_id:
        raise ValueError("a token acts for a user: user_id is required")
    now = int(time.time())
    claims = {"shop": shop_id, "sub": user_id, "roles": sorted(set(roles)), "iat": now, "exp": now + ttl_seconds}
    return jwt.encode(claims, secret, algorithm=ALGORITHM)


async def authenticate(token: str, load_shop) -> Principal:
    """Verify a bearer token; every failure is UNAUTHENTICATED with a clear message."""
    if not token:
        raise refuse(ErrorCode.UNAUTHENTICATED, "empty bearer token", rule="SH-0")
    try:
        header = jwt.get_unverified_header(token)
        unverified = jwt.decode(token, options={"verify_signature": False})
    except jwt.PyJWTError:
        raise refuse(ErrorCode.UNAUTHENTICATED, "malformed token: not a JWT", rule="SH-0")
    if header.get("alg") != ALGORITHM:
        raise refuse(ErrorCode.UNAUTHENTICATED, f"token algorithm must be {ALGORITHM}", rule="SH-0")
    shop_claim = unverified.get("shop")
    if not isinstance(shop_claim, str) or not shop_claim:
        raise refuse(ErrorCode.UNAUTHENTICATED, "token has no shop claim", rule="SH-0")
    shop = await load_shop(shop_claim)
    if shop is None:
        raise refuse(ErrorCode.UNAUTHENTICATED, "token names an unknown shop", rule="SH-1")
    try:
        claims = jwt.decode(token, shop.jwt_secret, algorithms=[ALGORITHM],
                            options={"require": ["exp", "sub", "shop"]})
    except jwt.ExpiredSignatureError:
        raise refuse(ErrorCode.UNAUTHENTICATED, "token expired", rule="SH-0")
    except jwt.InvalidSignatureError:
        raise refuse(ErrorCode.UNAUTHENTICATED, "token signature does not match the shop's secret", rule="SH-1")
    except jwt.PyJWTError as e:
        raise refuse(ErrorCode.UNAUTHENTICATED, f"token claims invalid: {e}", rule="SH-0")
    raw_roles = claims.get("roles") or []
    if not isinstance(raw_roles, list) or not isinstance(claims["sub"], str) or not claims["sub"]:
        raise refuse(ErrorCode.UNAUTHENTICATED, "token claims invalid: sub is a string, roles a list", rule="SH-0")
    roles = frozenset(r for r in raw_roles if isinstance(r, str)) & ROLES
    return Principal(shop_id=shop.shop_id, user_id=str(claims["sub"]), roles=roles)
