"""RP-6: a storefront records a visit of a shared link — one lookup of the invite code, one INSERT, behind a
bounded per-visitor and per-shop rate limit (`engine.funnel.take`). The funnel is read by
service.reads.reach."""

from __future__ import annotations

import hashlib
import re
import threading
from collections import OrderedDict
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import text

from engine import funnel as fn
from engine.errors import ErrorCode, refuse
from service.context import Services
from service.tx.ids import new_id


VISITOR_ID = re.compile(r"^[A-Za-z0-9_.:-]{8,64}$")
PER_VISITOR = (30, 10)  # per minute, burst: one browser
PER_SHOP = (6000, 600)  # per minute, burst: all storefronts of a shop together
MAX_BUCKETS = 50_000  # remembered visitors per process (least recently seen forgotten first)


class VisitLimiter:
    """The RP-6 rate bound of this process: one token bucket per (shop, visitor) and one per shop
    (`engine.funnel.take`), in a bounded LRU map."""

    def __init__(self, max_buckets: int = MAX_BUCKETS) -> None:
        self.buckets: OrderedDict[tuple[str, str], fn.Bucket] = OrderedDict()
        self.max_buckets = max_buckets
        self.lock = threading.Lock()

    def _take(self, key: tuple[str, str], now: datetime, per_minute: int, burst: int) -> bool:
        ok, bucket = fn.take(self.buckets.get(key), now, per_minute=per_minute, burst=burst)
        self.buckets[key] = bucket
        self.buckets.move_to_end(key)
        while len(self.buckets) > self.max_buckets:
            self.buckets.popitem(last=False)
        return ok

    def allow(self, shop_id: str, visitor_id: str, now: datetime) -> bool:
        with self.lock:
            return self._take((shop_id, visitor_id), now, *PER_VISITOR) and self._take((shop_id, "*"), now, *PER_SHOP)


LIMITER = VisitLimiter()


@dataclass(frozen=True)
class VisitResult:
    visit_id: str
    recorded_at: datetime
    replayed: bool = False


async def record_visit(
    svc: Services,
    *,
    shop_id: str,
    invite_code: str,
    visitor_id: str,
    campaign_id: str | None = None,
    product_ref: str | None = None,
    idempotency_key: str | None = None,
    limiter: VisitLimiter = LIMITER,
) -> VisitResult:
    """RP-6: a storefront saw a shared link opened. Bounded input (the visitor id is the storefront's anonymous
    id: 8-64 characters of [A-Za-z0-9_.:-]); RATE_LIMITED over the per-visitor or per-shop bound (nothing
    recorded); an unknown code is INVALID_INVITE_CODE. `idempotency_key` (GB-10): the visit's id is derived
    from it, so a retry is the same visit (`replayed`), and the same key with another visit is
    IDEMPOTENCY_CONFLICT; without one, a retry is one more visit of the same visitor (distinct visitors are
    unaffected)."""
    if not VISITOR_ID.match(visitor_id or ""):
        raise refuse(
            ErrorCode.INVALID_INPUT,
            "visitorId: 8-64 characters of letters, digits and _.:-",
            field="visitorId",
            rule="RP-6",
        )
    if not 1 <= len((invite_code or "").strip()) <= 32:
        raise refuse(ErrorCode.INVALID_INVITE_CODE, "unknown invite code", field="inviteCode", rule="DS-2")
    if product_ref is not None and not 1 <= len(product_ref) <= 128:
        raise refuse(ErrorCode.INVALID_INPUT, "productRef: 1-128 characters", field="productRef", rule="RP-6")
    now = svc.now()
    if not limiter.allow(shop_id, visitor_id, now):
        raise refuse(ErrorCode.RATE_LIMITED, "too many visits recorded: slow down", field="visitorId", rule="RP-6")
    if idempotency_key is not None and not 1 <= len(idempotency_key) <= 200:
        raise refuse(ErrorCode.INVALID_INPUT, "idempotencyKey: 1-200 characters", field="idempotencyKey", rule="GB-10")
    visit_id = (
        "vis_" + hashlib.sha256(f"{shop_id}\n{idempotency_key}".encode()).hexdigest()[:40]
        if idempotency_key is not None
        else new_id("vis_")
    )
    async with svc.sessionmaker() as s, s.begin():
        d = (
            await s.execute(
                text("SELECT user_id FROM distributors WHERE shop_id = :s AND invite_code = :c"),
                {"s": shop_id, "c": invite_code.strip().upper()},
            )
        ).scalar()
        if d is None:
            raise refuse(ErrorCode.INVALID_INVITE_CODE, "unknown invite code", field="inviteCode", rule="DS-2")
        params = {
            "s": shop_id,
            "v": visit_id,
            "d": d,
            "c": campaign_id,
            "p": product_ref,
            "vis": visitor_id,
            "now": now,
        }
        made = (
            await s.execute(
                text(
                    "INSERT INTO visits (shop_id, visit_id, distributor_id, campaign_id, product_ref, visitor_id, at) "
                    "VALUES (:s, :v, :d, :c, :p, :vis, :now) ON CONFLICT DO NOTHING RETURNING visit_id"
                ),
                params,
            )
        ).first()
        if made is None:  # the key's visit exists: the same visit replays, another is a conflict
            prior = (
                await s.execute(
                    text(
                        "SELECT distributor_id, campaign_id, product_ref, visitor_id, at FROM visits "
                        "WHERE shop_id = :s AND visit_id = :v"
                    ),
                    params,
                )
            ).one()
            if (prior.distributor_id, prior.campaign_id, prior.product_ref, prior.visitor_id) != (
                d,
                campaign_id,
                product_ref,
                visitor_id,
            ):
                raise refuse(
                    ErrorCode.IDEMPOTENCY_CONFLICT,
                    "this idempotency key recorded another visit",
                    field="idempotencyKey",
                    rule="GB-10",
                )
            return VisitResult(visit_id=visit_id, recorded_at=prior.at, replayed=True)
    return VisitResult(visit_id=visit_id, recorded_at=now)
