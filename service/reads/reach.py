"""RP-5 downline pages and leaderboard, RP-6 funnel (visits are recorded by service.usecases.visits).

Reads are one statement each, filtered by shop_id and served by indexes that start with it; the engine
(`engine.leaderboard`, `engine.funnel`) decides how the figures are taken.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import text

from engine import funnel as fn
from engine import leaderboard as lb
from engine.errors import ErrorCode, refuse
from service.context import Services

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


async def downline_page(
    svc: Services,
    *,
    shop_id: str,
    user_id: str,
    level: int,
    period_from: datetime,
    period_to: datetime,
    limit: int,
    offset: int,
) -> tuple[list[DownlineMember], int]:
    """RP-5: the distributor's level-1 (their live bindings) or level-2 (their level-1's) downline, newest
    binding first, with each member's paid orders and the commission base they brought the distributor over
    [from, to) (`engine.leaderboard.member_figures`)."""
    if level not in MEMBERS:
        raise refuse(ErrorCode.INVALID_INPUT, "level is 1 or 2", field="level", rule="RP-5")
    _period(period_from, period_to, "RP-5")
    async with svc.reader() as s:
        rows = (
            await s.execute(
                text(DOWNLINE_SQL.format(members=MEMBERS[level])),
                {
                    "s": shop_id,
                    "u": user_id,
                    "now": svc.now(),
                    "f": period_from,
                    "t": period_to,
                    "lim": limit,
                    "off": offset,
                },
            )
        ).all()
    out = []
    for r in rows:
        orders = [
            lb.MemberOrder(paid_at=_ts(p), net_base=int(b), earns_viewer=bool(e), refunded_in_full=bool(full))
            for p, b, e, full in (_j(r.orders) or [])
        ]
        n, base = lb.member_figures(orders, period_from, period_to)
        out.append(
            DownlineMember(user_id=r.user_id, level=level, joined_at=r.bound_at, paid_orders=n, commission_base=base)
        )
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
ORDER = {
    lb.RankBy.COMMISSION_EARNED: "3 DESC, 4 DESC, 5 DESC, 1",
    lb.RankBy.TEAM_SALES: "4 DESC, 3 DESC, 5 DESC, 1",
    lb.RankBy.NEW_DIRECT_REFERRALS: "5 DESC, 3 DESC, 4 DESC, 1",
}


@dataclass(frozen=True)
class LeaderboardRow:
    rank: int
    invite_code: str
    standing: lb.Standing


async def leaderboard(
    svc: Services, *, shop_id: str, period_from: datetime, period_to: datetime, by: lb.RankBy, limit: int
) -> list[LeaderboardRow]:
    """RP-5: the shop's distributors over [from, to) by commission earned, team sales or new direct referrals
    (`engine.leaderboard.Standing` says what each is), best first, ranked by `engine.leaderboard.rank`; the
    statement returns the top `limit` in the same order, so their ranks are the shop-wide ones."""
    _period(period_from, period_to, "RP-5")
    if not 1 <= limit <= MAX_PAGE:
        raise refuse(ErrorCode.INVALID_INPUT, f"first is 1 to {MAX_PAGE}", field="first", rule="RP-5")
    async with svc.reader() as s:
        rows = (
            await s.execute(
                text(LEADERBOARD_SQL.format(order=ORDER[by])),
                {"s": shop_id, "f": period_from, "t": period_to, "lim": limit},
            )
        ).all()
    codes = {r.user_id: r.invite_code for r in rows}
    ranked = lb.rank(
        [
            lb.Standing(r.user_id, int(r.commission_earned), int(r.team_sales), int(r.new_direct_referrals))
            for r in rows
        ],
        by,
    )
    return [LeaderboardRow(rank=k, invite_code=codes[st.user_id], standing=st) for k, st in ranked]


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
    "distributor": (
        "distributor_id = :x",
        "referrer_id = :x",
        "(CASE WHEN o.level1_id = o.buyer_id THEN o.level2_id ELSE o.level1_id END) IS NOT DISTINCT "
        "FROM CAST(:x AS varchar)",
    ),
    "campaign": ("campaign_id = :x", "campaign_id = :x", "o.campaign_id IS NOT DISTINCT FROM CAST(:x AS varchar)"),
}


async def funnel(
    svc: Services, *, shop_id: str, subject: str, subject_id: str, period_from: datetime, period_to: datetime
) -> fn.Funnel:
    """RP-6 for a distributor (`subject` "distributor": visits of their code, users bound to them, first paid
    orders whose snapshot names them as the buyer's referrer) or a campaign ("campaign": visits naming it,
    users bound through its group links, first paid orders of it), over [from, to). One statement."""
    _period(period_from, period_to, "RP-6")
    vf, bf, of = SUBJECTS[subject]
    async with svc.reader() as s:
        r = (
            await s.execute(
                text(FUNNEL_SQL.format(visit_filter=vf, binding_filter=bf, order_filter=of)),
                {"s": shop_id, "x": subject_id, "f": period_from, "t": period_to},
            )
        ).one()
    buyers = {
        u: [fn.PaidOrder(paid_at=_ts(p), attributed=bool(a), refunded_in_full=bool(full)) for p, a, full in orders]
        for u, orders in (_j(r.buyers) or {}).items()
    }
    return fn.funnel(
        visits=int(r.visits or 0),
        visitors=int(r.visitors or 0),
        bindings=int(r.bindings or 0),
        orders_by_buyer=buyers,
        period_from=period_from,
        period_to=period_to,
    )
