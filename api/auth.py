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


def mint_token(shop, user_id: str, roles: list[str], ttl_seconds: int = 86400) -> str:
    bad = set(roles) - ROLES
    if bad:
        raise ValueError(f"unknown roles {sorted(bad)}")
    now = int(time.time())
    claims = {"shop": shop.shop_id, "sub": user_id, "roles": sorted(roles), "iat": now, "exp": now + ttl_seconds}
    return jwt.encode(claims, shop.jwt_secret, algorithm=ALGORITHM)


async def authenticate(token: str, load_shop) -> Principal:
    """Verify a bearer token; every failure is UNAUTHENTICATED with a clear message."""
    try:
        unverified = jwt.decode(token, options={"verify_signature": False})
    except jwt.PyJWTError:
        raise refuse(ErrorCode.UNAUTHENTICATED, "malformed token")
    shop = await load_shop(unverified.get("shop") or "")
    if shop is None:
        raise refuse(ErrorCode.UNAUTHENTICATED, "token names an unknown shop")
    try:
        claims = jwt.decode(token, shop.jwt_secret, algorithms=[ALGORITHM], options={"require": ["exp", "sub"]})
    except jwt.ExpiredSignatureError:
        raise refuse(ErrorCode.UNAUTHENTICATED, "token expired")
    except jwt.PyJWTError:
        raise refuse(ErrorCode.UNAUTHENTICATED, "token signature or claims invalid")
    roles = frozenset(claims.get("roles") or []) & ROLES
    return Principal(shop_id=shop.shop_id, user_id=str(claims["sub"]), roles=roles)
