"""RP-5 downline pages and leaderboard, RP-6 visits of shared links and the funnel.

Reads are one statement each, filtered by shop_id and served by indexes that start with it; the engine
(`engine.leaderboard`, `engine.funnel`) decides how the figures are taken. `record_visit` is the only
writer: one lookup of the invite code, one INSERT, behind a bounded per-visitor and per-shop rate limit.
"""

from __future__ import annotations

import hashlib
import json
import re
import threading
from collections import OrderedDict
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import text

from engine import funnel as fn
from engine import leaderboard as lb
from engine.errors import ErrorCode, refuse
from service.context import Services
from service.ids import new_id

_LIVE = "(b.expires_at IS NULL OR b.expires_at > :now)"
MAX_PAGE = 100


def _j(v):
    return json.loads(v) if isinstance(v, str) else v


def _ts(v) -> datetime:
    return v if isinstance(v, datetime) else datetime.fromisoformat(v)


def _period(period_from: datetime, period_to: datetime, rule: str) -> None:
    if period_to <= period_from:
        raise refuse(ErrorCode.INVALID_INPUT, "the period must end after it starts", field="periodTo", rule=rule)


# ---------------------------------------------------------------- RP-5 downline
@dataclass(frozen=True)
class DownlineMember:
    user_id: str  # for the alias only: never shown to the distributor (RP-5)
    level: int
    joined_at: datetime
    paid_orders: int
    commission_base: int


DOWNLINE_SQL = f"""
WITH l1 AS (SELECT b.user_id, b.bound_at FROM bindings b WHERE b.shop_id = :s AND b.referrer_id = :u AND {_LIVE}),
m AS ({{members}})
SELECT m.user_id, m.bound_at, count(*) OVER () AS total,
  (SELECT json_agg(json_build_array(o.paid_at, o.goods_amount - o.refunded_amount,
                                    (o.level1_id = :u OR o.level2_id = :u), o.refunded_amount >= o.paid_amount))
     FROM orders o WHERE o.shop_id = :s AND o.buyer_id = m.user_id AND o.paid_at >= :f AND o.paid_at < :t) AS orders
FROM m ORDER BY m.bound_at DESC, m.user_id LIMIT :lim OFFSET :off
"""
MEMBERS = {
    1: "SELECT user_id, bound_at FROM l1",
    2: f"SELECT b.user_id, b.bound_at FROM bindings b JOIN l1 ON b.referrer_id = l1.user_id "
       f"WHERE b.shop_id = :s AND {_LIVE}",
}


async def downline_page(svc: Services, *, shop_id: str, user_id: str, level: int, period_from: datetime,
                        period_to: datetime, limit: int, offset: int) -> tuple[list[DownlineMember], int]:
    """RP-5: the distributor's level-1 (their live bindings) or level-2 (their level-1's) downline, newest
    binding first, with each member's paid orders and the commission base they brought the distributor over
    [from, to) (`engine.leaderboard.member_figures`)."""
    if level not in MEMBERS:
        raise refuse(ErrorCode.INVALID_INPUT, "level is 1 or 2", field="level", rule="RP-5")
    _period(period_from, period_to, "RP-5")
    async with svc.sessionmaker() as s:
        rows = (await s.execute(text(DOWNLINE_SQL.format(members=MEMBERS[level])), {
            "s": shop_id, "u": user_id, "now": svc.now(), "f": period_from, "t": period_to, "lim": limit,
            "off": offset})).all()
    out = []
    for r in rows:
        orders = [lb.MemberOrder(paid_at=_ts(p), net_base=int(b), earns_viewer=bool(e), refunded_in_full=bool(full))
                  for p, b, e, full in (_j(r.orders) or [])]
        n, base = lb.member_figures(orders, period_from, period_to)
        out.append(DownlineMember(user_id=r.user_id, level=level, joined_at=r.bound_at, paid_orders=n,
                                  commission_base=base))
    return out, (int(rows[0].total) if rows else 0)


# ---------------------------------------------------------------- RP-5 leaderboard
LEADERBOARD_SQL = """
WITH c AS (SELECT distributor_id AS user_id, sum(amount) AS v FROM ledger_entries
           WHERE shop_id = :s AND created_at >= :f AND created_at < :t
             AND kind IN ('COMMISSION_POSTED', 'COMMISSION_REVERSED', 'COMMISSION_VOIDED') GROUP BY 1),
ts AS (SELECT x.user_id, sum(x.v) AS v FROM (
         SELECT level1_id AS user_id, goods_amount - refunded_amount AS v FROM orders
          WHERE shop_id = :s AND paid_at >= :f AND paid_at < :t AND level1_id IS NOT NULL
         UNION ALL
         SELECT level2_id, goods_amount - refunded_amount FROM orders
          WHERE shop_id = :s AND paid_at >= :f AND paid_at < :t AND level2_id IS NOT NULL) x GROUP BY 1),
nr AS (SELECT referrer_id AS user_id, count(DISTINCT user_id) AS v FROM binding_history
        WHERE shop_id = :s AND bound_at >= :f AND bound_at < :t GROUP BY 1),
allu AS (SELECT user_id FROM c UNION SELECT user_id FROM ts UNION SELECT user_id FROM nr)
SELECT a.user_id, d.invite_code, COALESCE(c.v, 0) AS commission_earned, COALESCE(ts.v, 0) AS team_sales,
       COALESCE(nr.v, 0) AS new_direct_referrals
FROM allu a JOIN distributors d ON d.shop_id = :s AND d.user_id = a.user_id
LEFT JOIN c ON c.user_id = a.user_id LEFT JOIN ts ON ts.user_id = a.user_id LEFT JOIN nr ON nr.user_id = a.user_id
ORDER BY {order} LIMIT :lim
"""
ORDER = {lb.RankBy.COMMISSION_EARNED: "3 DESC, 4 DESC, 5 DESC, 1", lb.RankBy.TEAM_SALES: "4 DESC, 3 DESC, 5 DESC, 1",
         lb.RankBy.NEW_DIRECT_REFERRALS: "5 DESC, 3 DESC, 4 DESC, 1"}


@dataclass(frozen=True)
class LeaderboardRow:
    rank: int
    invite_code: str
    standing: lb.Standing


async def leaderboard(svc: Services, *, shop_id: str, period_from: datetime, period_to: datetime, by: lb.RankBy,
                      limit: int) -> list[LeaderboardRow]:
    """RP-5: the shop's distributors over [from, to) by commission earned, team sales or new direct referrals
    (`engine.leaderboard.Standing` says what each is), best first, ranked by `engine.leaderboard.rank`; the
    statement returns the top `limit` in the same order, so their ranks are the shop-wide ones."""
    _period(period_from, period_to, "RP-5")
    if not 1 <= limit <= MAX_PAGE:
        raise refuse(ErrorCode.INVALID_INPUT, f"first is 1 to {MAX_PAGE}", field="first", rule="RP-5")
    async with svc.sessionmaker() as s:
        rows = (await s.execute(text(LEADERBOARD_SQL.format(order=ORDER[by])),
                                {"s": shop_id, "f": period_from, "t": period_to, "lim": limit})).all()
    codes = {r.user_id: r.invite_code for r in rows}
    ranked = lb.rank([lb.Standing(r.user_id, int(r.commission_earned), int(r.team_sales), int(r.new_direct_referrals))
                      for r in rows], by)
    return [LeaderboardRow(rank=k, invite_code=codes[st.user_id], standing=st) for k, st in ranked]


# ---------------------------------------------------------------- RP-6 visits
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


async def record_visit(svc: Services, *, shop_id: str, invite_code: str, visitor_id: str,
                       campaign_id: str | None = None, product_ref: str | None = None,
                       idempotency_key: str | None = None, limiter: VisitLimiter = LIMITER) -> VisitResult:
    """RP-6: a storefront saw a shared link opened. Bounded input (the visitor id is the storefront's anonymous
    id: 8-64 characters of [A-Za-z0-9_.:-]); RATE_LIMITED over the per-visitor or per-shop bound (nothing
    recorded); an unknown code is INVALID_INVITE_CODE. `idempotency_key` (GB-10): the visit's id is derived
    from it, so a retry is the same visit (`replayed`), and the same key with another visit is
    IDEMPOTENCY_CONFLICT; without one, a retry is one more visit of the same visitor (distinct visitors are
    unaffected)."""
    if not VISITOR_ID.match(visitor_id or ""):
        raise refuse(ErrorCode.INVALID_INPUT, "visitorId: 8-64 characters of letters, digits and _.:-",
                     field="visitorId", rule="RP-6")
    if not 1 <= len((invite_code or "").strip()) <= 32:
        raise refuse(ErrorCode.INVALID_INVITE_CODE, "unknown invite code", field="inviteCode", rule="DS-2")
    if product_ref is not None and not 1 <= len(product_ref) <= 128:
        raise refuse(ErrorCode.INVALID_INPUT, "productRef: 1-128 characters", field="productRef", rule="RP-6")
    now = svc.now()
    if not limiter.allow(shop_id, visitor_id, now):
        raise refuse(ErrorCode.RATE_LIMITED, "too many visits recorded: slow down", field="visitorId", rule="RP-6")
    if idempotency_key is not None and not 1 <= len(idempotency_key) <= 200:
        raise refuse(ErrorCode.INVALID_INPUT, "idempotencyKey: 1-200 characters", field="idempotencyKey",
                     rule="GB-10")
    visit_id = ("vis_" + hashlib.sha256(f"{shop_id}\n{idempotency_key}".encode()).hexdigest()[:40]
                if idempotency_key is not None else new_id("vis_"))
    async with svc.sessionmaker() as s, s.begin():
        d = (await s.execute(text("SELECT user_id FROM distributors WHERE shop_id = :s AND invite_code = :c"),
                             {"s": shop_id, "c": invite_code.strip().upper()})).scalar()
        if d is None:
            raise refuse(ErrorCode.INVALID_INVITE_CODE, "unknown invite code", field="inviteCode", rule="DS-2")
        params = {"s": shop_id, "v": visit_id, "d": d, "c": campaign_id, "p": product_ref, "vis": visitor_id,
                  "now": now}
        made = (await s.execute(text(
            "INSERT INTO visits (shop_id, visit_id, distributor_id, campaign_id, product_ref, visitor_id, at) "
            "VALUES (:s, :v, :d, :c, :p, :vis, :now) ON CONFLICT DO NOTHING RETURNING visit_id"), params)).first()
        if made is None:  # the key's visit exists: the same visit replays, another is a conflict
            prior = (await s.execute(text(
                "SELECT distributor_id, campaign_id, product_ref, visitor_id, at FROM visits "
                "WHERE shop_id = :s AND visit_id = :v"), params)).one()
            if (prior.distributor_id, prior.campaign_id, prior.product_ref, prior.visitor_id) != (
                    d, campaign_id, product_ref, visitor_id):
                raise refuse(ErrorCode.IDEMPOTENCY_CONFLICT, "this idempotency key recorded another visit",
                             field="idempotencyKey", rule="GB-10")
            return VisitResult(visit_id=visit_id, recorded_at=prior.at, replayed=True)
    return VisitResult(visit_id=visit_id, recorded_at=now)


# ---------------------------------------------------------------- RP-6 funnel
FUNNEL_SQL = """
WITH v AS (SELECT count(*) AS visits, count(DISTINCT visitor_id) AS visitors FROM visits
           WHERE shop_id = :s AND {visit_filter} AND at >= :f AND at < :t),
bd AS (SELECT count(DISTINCT user_id) AS n FROM binding_history
       WHERE shop_id = :s AND {binding_filter} AND bound_at >= :f AND bound_at < :t),
cand AS (SELECT DISTINCT buyer_id FROM orders o
         WHERE o.shop_id = :s AND o.paid_at >= :f AND o.paid_at < :t AND {order_filter})
SELECT (SELECT visits FROM v) AS visits, (SELECT visitors FROM v) AS visitors, (SELECT n FROM bd) AS bindings,
  (SELECT json_object_agg(x.buyer_id, x.orders) FROM (
     SELECT o.buyer_id, json_agg(json_build_array(o.paid_at, {order_filter}, o.refunded_amount >= o.paid_amount))
            AS orders
       FROM orders o JOIN cand ON cand.buyer_id = o.buyer_id
      WHERE o.shop_id = :s AND o.paid_at IS NOT NULL AND o.paid_at < :t GROUP BY o.buyer_id) x) AS buyers
"""
# the subject of a distributor's funnel is the buyer's referrer in the order's RF-2 snapshot: level 1, or level 2
# when level 1 is the buyer themselves (self-purchase, CM-2)
SUBJECTS = {
    "distributor": ("distributor_id = :x", "referrer_id = :x",
                    "(CASE WHEN o.level1_id = o.buyer_id THEN o.level2_id ELSE o.level1_id END) IS NOT DISTINCT "
                    "FROM CAST(:x AS varchar)"),
    "campaign": ("campaign_id = :x", "campaign_id = :x", "o.campaign_id IS NOT DISTINCT FROM CAST(:x AS varchar)"),
}


async def funnel(svc: Services, *, shop_id: str, subject: str, subject_id: str, period_from: datetime,
                 period_to: datetime) -> fn.Funnel:
    """RP-6 for a distributor (`subject` "distributor": visits of their code, users bound to them, first paid
    orders whose snapshot names them as the buyer's referrer) or a campaign ("campaign": visits naming it,
    users bound through its group links, first paid orders of it), over [from, to). One statement."""
    _period(period_from, period_to, "RP-6")
    vf, bf, of = SUBJECTS[subject]
    async with svc.sessionmaker() as s:
        r = (await s.execute(text(FUNNEL_SQL.format(visit_filter=vf, binding_filter=bf, order_filter=of)),
                             {"s": shop_id, "x": subject_id, "f": period_from, "t": period_to})).one()
    buyers = {u: [fn.PaidOrder(paid_at=_ts(p), attributed=bool(a), refunded_in_full=bool(full))
                  for p, a, full in orders] for u, orders in (_j(r.buyers) or {}).items()}
    return fn.funnel(visits=int(r.visits or 0), visitors=int(r.visitors or 0), bindings=int(r.bindings or 0),
                     orders_by_buyer=buyers, period_from=period_from, period_to=period_to)
