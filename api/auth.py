"""SH-0 / SH-1: bearer JWTs signed with the shop's own secret, carrying shop, user and roles.

The shop claim is read first (unverified) only to pick the secret; the token is then verified
with that shop's secret, so a token can never act in another shop.

Issue 11 point 9 — what a token must be to be accepted:
- HS256, with `shop`, `sub`, `iat` and `exp`; `iat` not in the future (CLOCK_SKEW_S allowed) and a
  lifetime `exp - iat` of at most MAX_TTL_S (a token minted elsewhere with the recipe of docs/security.md
  is held to the same cap);
- issued at or after the shop's `tokens_not_before` (`revokeTokens` moves it to now: every token of the
  shop issued before is refused from then on, in every process);
- signed with the shop's current secret, or with its previous one while the rotation overlap
  (`rotateJwtSecret`) lasts.

Shops are cached per process (ShopCache): a token or a public key costs no query while the shop is in the
cache; a change of a shop's secrets or revocation sends NOTIFY `sharecart_shops` in its transaction, and
every process drops that shop from its cache on receipt (issue 10 point 4). The cache also forgets every
shop when the LISTEN connection is lost and after CACHE_TTL_S at the latest.
"""

from __future__ import annotations

import secrets
import time
from dataclasses import dataclass

import jwt

from engine.errors import ErrorCode, refuse

ROLES = frozenset({"customer", "distributor", "admin", "finance", "backend"})
ALGORITHM = "HS256"
MAX_TTL_S = 7 * 86400
CLOCK_SKEW_S = 60
SHOPS_CHANNEL = "sharecart_shops"
CACHE_TTL_S = 300.0


@dataclass(frozen=True)
class Principal:
    shop_id: str
    user_id: str
    roles: frozenset[str]
    expires_at: int = 0  # unix seconds (`exp`): a subscription ends then


def mint_token(shop, user_id: str, roles, ttl_seconds: int = 3600) -> str:
    """A bearer token for `user_id` acting with `roles` in `shop` — a shop row (with `shop_id` and
    `jwt_secret`) or a `(shop_id, secret)` pair. `ttl_seconds` is at most MAX_TTL_S; it may be negative
    (tests of expiry)."""
    shop_id, secret = (shop.shop_id, shop.jwt_secret) if hasattr(shop, "jwt_secret") else tuple(shop)
    bad = set(roles) - ROLES
    if bad:
        raise ValueError(f"unknown roles {sorted(bad)}")
    if not user_id:
        raise ValueError("a token acts for a user: user_id is required")
    if ttl_seconds > MAX_TTL_S:
        raise ValueError(f"a token lives at most {MAX_TTL_S} s ({MAX_TTL_S // 86400} days)")
    now = int(time.time())
    claims = {
        "shop": shop_id,
        "sub": user_id,
        "roles": sorted(set(roles)),
        "iat": now,
        "exp": now + ttl_seconds,
        "jti": secrets.token_urlsafe(9),
    }
    return jwt.encode(claims, secret, algorithm=ALGORITHM)


def _decode(token: str, shop) -> dict:
    """Verify with the current secret, then with the previous one while its overlap lasts."""
    keys = [shop.jwt_secret]
    until = getattr(shop, "previous_jwt_secret_until", None)
    if getattr(shop, "previous_jwt_secret", None) and until is not None and until.timestamp() > time.time():
        keys.append(shop.previous_jwt_secret)
    for i, key in enumerate(keys):
        try:
            return jwt.decode(
                token, key, algorithms=[ALGORITHM], leeway=0, options={"require": ["exp", "iat", "sub", "shop"]}
            )
        except jwt.InvalidSignatureError:
            if i == len(keys) - 1:
                raise
    raise AssertionError("unreachable")


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
    if not isinstance(shop_claim, str) or not shop_claim or "\x00" in shop_claim or len(shop_claim) > 64:
        raise refuse(ErrorCode.UNAUTHENTICATED, "token has no shop claim", rule="SH-0")
    shop = await load_shop(shop_claim)
    if shop is None:
        raise refuse(ErrorCode.UNAUTHENTICATED, "token names an unknown shop", rule="SH-1")
    try:
        claims = _decode(token, shop)
    except jwt.ExpiredSignatureError:
        raise refuse(ErrorCode.UNAUTHENTICATED, "token expired", rule="SH-0")
    except jwt.InvalidSignatureError:
        raise refuse(ErrorCode.UNAUTHENTICATED, "token signature does not match the shop's secret", rule="SH-1")
    except jwt.ImmatureSignatureError:
        raise refuse(ErrorCode.UNAUTHENTICATED, "token issued in the future (iat)", rule="SH-0")
    except jwt.PyJWTError as e:
        raise refuse(ErrorCode.UNAUTHENTICATED, f"token claims invalid: {e}", rule="SH-0")
    iat, exp = claims["iat"], claims["exp"]
    if not all(isinstance(v, int) and not isinstance(v, bool) for v in (iat, exp)):
        raise refuse(ErrorCode.UNAUTHENTICATED, "token claims invalid: iat and exp are integers", rule="SH-0")
    if iat > time.time() + CLOCK_SKEW_S:
        raise refuse(ErrorCode.UNAUTHENTICATED, "token issued in the future (iat)", rule="SH-0")
    if exp - iat > MAX_TTL_S:
        raise refuse(ErrorCode.UNAUTHENTICATED, f"token lifetime over {MAX_TTL_S} s: mint a shorter one", rule="SH-0")
    not_before = getattr(shop, "tokens_not_before", None)
    if not_before is not None and iat < not_before.timestamp():
        raise refuse(
            ErrorCode.UNAUTHENTICATED,
            f"token revoked: the shop revoked tokens issued before {not_before.isoformat()}",
            rule="SH-0",
        )
    raw_roles = claims.get("roles") or []
    sub = claims["sub"]
    if not isinstance(raw_roles, list) or not isinstance(sub, str) or not sub or "\x00" in sub or len(sub) > 64:
        raise refuse(
            ErrorCode.UNAUTHENTICATED,
            "token claims invalid: sub is a string of 1-64 characters, roles a list",
            rule="SH-0",
        )
    roles = frozenset(r for r in raw_roles if isinstance(r, str)) & ROLES
    return Principal(shop_id=shop.shop_id, user_id=sub, roles=roles, expires_at=exp)


class ShopCache:
    """Shops by id, per process, dropped on NOTIFY `sharecart_shops` (see the module docstring). `listen`
    registers the drop with the process's LISTEN connection (api.live.GroupListener)."""

    def __init__(self, load, ttl_s: float = CACHE_TTL_S) -> None:
        self.load, self.ttl_s = load, ttl_s
        self.shops: dict[str, tuple[float, object]] = {}
        self.loads = 0  # how many times a shop was read from the database (tests)

    async def get(self, shop_id: str):
        hit = self.shops.get(shop_id)
        if hit is not None and time.monotonic() - hit[0] < self.ttl_s:
            return hit[1]
        self.loads += 1
        shop = await self.load(shop_id)
        if shop is not None:
            if len(self.shops) > 10_000:
                self.shops.clear()
            self.shops[shop_id] = (time.monotonic(), shop)
        return shop

    def drop(self, shop_id: str | None = None) -> None:
        if shop_id is None:
            self.shops.clear()
        else:
            self.shops.pop(shop_id, None)
