"""Reporting (RP-1..RP-4), computed in SQL; only the rule arithmetic (segments, statistics) comes
from the engine."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import text

from engine.segments import DORMANT_AFTER, Segment, segment_of
from engine.stats import RateDifference, formation_rate_difference, rate_bp
from service.context import Services

# ------------------------------------------------------------------ RP-2
CAMPAIGN_STATS_SQL = text(
    """
    WITH g AS (
        SELECT group_id, COALESCE(variant, '') AS variant, state, opened_at, formed_at
        FROM groups WHERE shop_id = :s AND campaign_id = :c
    ), units AS (
        SELECT s.group_id, sum(s.quantity) AS units FROM seats s JOIN g USING (group_id)
        WHERE s.shop_id = :s AND s.state = 'PAID' AND g.state = 'FORMED' GROUP BY s.group_id
    ), sales AS (
        SELECT o.group_id, sum(o.paid_amount - o.refunded_amount) AS net FROM orders o JOIN g USING (group_id)
        WHERE o.shop_id = :s AND o.paid_at IS NOT NULL GROUP BY o.group_id
    )
    SELECT g.variant,
        count(*) FILTER (WHERE g.state IN ('OPEN', 'FORMED', 'FAILED')) AS opened,
        count(*) FILTER (WHERE g.state = 'FORMED') AS formed,
        count(*) FILTER (WHERE g.state = 'FAILED') AS failed,
        COALESCE(avg(EXTRACT(EPOCH FROM (g.formed_at - g.opened_at))) FILTER (WHERE g.state = 'FORMED'), 0)::bigint
            AS mean_seconds_to_form,
        COALESCE(sum(units.units), 0) AS units,
        COALESCE(sum(sales.net), 0) AS net_sales
    FROM g LEFT JOIN units USING (group_id) LEFT JOIN sales USING (group_id)
    GROUP BY g.variant ORDER BY g.variant
    """
)


@dataclass(frozen=True)
class GroupStats:
    variant: str | None
    opened: int
    formed: int
    failed: int
    formation_rate_bp: int | None  # formed / (formed + failed)
    mean_seconds_to_form: int
    units: int
    net_sales: int


@dataclass(frozen=True)
class VariantComparison:
    variant: str
    control: str
    difference: RateDifference | None  # rate(variant) − rate(control), 95 % interval; None until both decided


@dataclass(frozen=True)
class CampaignStats:
    total: GroupStats
    variants: list[GroupStats]  # in the campaign's order; the first is the control
    comparisons: list[VariantComparison]  # each later variant against the control


def _empty(variant: str) -> GroupStats:
    return GroupStats(variant=variant, opened=0, formed=0, failed=0, formation_rate_bp=None, mean_seconds_to_form=0,
                      units=0, net_sales=0)


async def campaign_stats(svc: Services, *, shop_id: str, campaign_id: str) -> CampaignStats:
    """RP-2. Variants come in the order the campaign defines them (a variant without groups yet shows
    zeros); the first is the control and every other variant is compared with it, pairwise."""
    async with svc.sessionmaker() as s:
        rows = (await s.execute(CAMPAIGN_STATS_SQL, {"s": shop_id, "c": campaign_id})).mappings().all()
        defined = (await s.execute(text("SELECT variants FROM campaigns WHERE shop_id = :s AND campaign_id = :c"),
                                   {"s": shop_id, "c": campaign_id})).scalar() or []
    per = [GroupStats(variant=r["variant"] or None, opened=r["opened"], formed=r["formed"], failed=r["failed"],
                      formation_rate_bp=rate_bp(r["formed"], r["formed"] + r["failed"]),
                      mean_seconds_to_form=int(r["mean_seconds_to_form"]), units=int(r["units"]),
                      net_sales=int(r["net_sales"])) for r in rows]
    formed, failed = sum(p.formed for p in per), sum(p.failed for p in per)
    weighted = sum(p.mean_seconds_to_form * p.formed for p in per)
    total = GroupStats(variant=None, opened=sum(p.opened for p in per), formed=formed, failed=failed,
                       formation_rate_bp=rate_bp(formed, formed + failed),
                       mean_seconds_to_form=weighted // formed if formed else 0,
                       units=sum(p.units for p in per), net_sales=sum(p.net_sales for p in per))
    by_name = {p.variant: p for p in per if p.variant}
    order = [v["name"] for v in defined] + sorted(set(by_name) - {v["name"] for v in defined})
    named = [by_name.get(n) or _empty(n) for n in order]
    comparisons = []
    if named:
        c = named[0]
        comparisons = [VariantComparison(variant=v.variant, control=c.variant, difference=formation_rate_difference(
            v.formed, v.formed + v.failed, c.formed, c.formed + c.failed)) for v in named[1:]]
    return CampaignStats(total=total, variants=named, comparisons=comparisons)


# ------------------------------------------------------------------ RP-3
PAID_COUNTS_SQL = """
    SELECT u.user_id,
           count(o.order_id) FILTER (WHERE o.paid_at IS NOT NULL AND o.refunded_amount < o.paid_amount) AS n,
           max(o.paid_at) FILTER (WHERE o.paid_at IS NOT NULL AND o.refunded_amount < o.paid_amount) AS last_paid
    FROM users u LEFT JOIN orders o ON o.shop_id = u.shop_id AND o.buyer_id = u.user_id
    WHERE u.shop_id = :s {user_filter}
    GROUP BY u.user_id
"""


async def segment(svc: Services, *, shop_id: str, user_id: str) -> Segment:
    """RP-3 for one user: orders refunded in full do not count as paid."""
    async with svc.sessionmaker() as s:
        times = (await s.execute(text(
            "SELECT paid_at FROM orders WHERE shop_id = :s AND buyer_id = :u AND paid_at IS NOT NULL "
            "AND refunded_amount < paid_amount"), {"s": shop_id, "u": user_id})).scalars().all()
    return segment_of(list(times), svc.now())


async def segment_counts(svc: Services, *, shop_id: str) -> dict[str, int]:
    """RP-3 counts per segment, the same rule as `segment_of`, evaluated in SQL."""
    sql = text(f"""
        SELECT CASE WHEN n = 0 THEN 'NEW' WHEN last_paid <= :dormant_before THEN 'DORMANT'
                    WHEN n >= 4 THEN 'LOYAL' WHEN n >= 2 THEN 'REPEAT' ELSE 'FIRST_ORDER' END AS seg, count(*)
        FROM ({PAID_COUNTS_SQL.format(user_filter='')}) x GROUP BY 1""")
    async with svc.sessionmaker() as s:
        rows = (await s.execute(sql, {"s": shop_id, "dormant_before": svc.now() - DORMANT_AFTER})).all()
    counts = {seg.value: 0 for seg in Segment}
    counts.update({k: int(v) for k, v in rows})
    return counts


# ------------------------------------------------------------------ RP-4
RETENTION_SQL = text(
    """
    WITH paid AS (
        SELECT o.buyer_id, o.order_id, o.paid_at, o.paid_amount - o.refunded_amount AS net, o.source
        FROM orders o WHERE o.shop_id = :s AND o.paid_at IS NOT NULL AND o.refunded_amount < o.paid_amount
    ), acquisition AS (
        SELECT DISTINCT ON (buyer_id) buyer_id, source FROM paid ORDER BY buyer_id, paid_at, order_id
    ), in_period AS (
        SELECT p.*, a.source AS acquired_by FROM paid p JOIN acquisition a USING (buyer_id)
        WHERE p.paid_at >= :f AND p.paid_at < :t
    ), buyers AS (
        SELECT i.buyer_id, i.acquired_by, count(DISTINCT i.order_id) AS orders, sum(i.net) AS net,
               count(DISTINCT l.category) FILTER (WHERE l.category <> '') AS categories
        FROM in_period i LEFT JOIN order_lines l ON l.shop_id = :s AND l.order_id = i.order_id
        GROUP BY i.buyer_id, i.acquired_by
    )
    SELECT acquired_by, count(*) AS buyers, count(*) FILTER (WHERE orders >= 2) AS repeaters,
           count(*) FILTER (WHERE categories >= 2) AS multi_category, COALESCE(sum(net), 0) AS net_sales
    FROM buyers GROUP BY acquired_by ORDER BY acquired_by
    """
)


@dataclass(frozen=True)
class RetentionRow:
    source: str  # REFERRAL | GROUP_INVITE | NONE: how the buyer was acquired (their first paid order)
    buyers: int
    repurchase_rate_bp: int | None
    multi_category_rate_bp: int | None
    net_sales: int
    net_sales_per_buyer: int | None


async def retention(svc: Services, *, shop_id: str, period_from: datetime, period_to: datetime) -> list[RetentionRow]:
    """RP-4 for [period_from, period_to), per acquisition source."""
    async with svc.sessionmaker() as s:
        rows = (await s.execute(RETENTION_SQL, {"s": shop_id, "f": period_from, "t": period_to})).mappings().all()
    return [RetentionRow(source=r["acquired_by"], buyers=r["buyers"],
                         repurchase_rate_bp=rate_bp(r["repeaters"], r["buyers"]),
                         multi_category_rate_bp=rate_bp(r["multi_category"], r["buyers"]),
                         net_sales=int(r["net_sales"]),
                         net_sales_per_buyer=int(r["net_sales"]) // r["buyers"] if r["buyers"] else None)
            for r in rows]


# ------------------------------------------------------------------ RP-1
async def earnings(svc: Services, *, shop_id: str, user_id: str, period_from: datetime, period_to: datetime
                   ) -> dict[str, int]:
    """RP-1: what moved in each balance of a distributor over [from, to) (sum of ledger entries)."""
    async with svc.sessionmaker() as s:
        rows = (await s.execute(text(
            "SELECT bucket, sum(amount) FROM ledger_entries WHERE shop_id = :s AND distributor_id = :u "
            "AND created_at >= :f AND created_at < :t GROUP BY bucket"),
            {"s": shop_id, "u": user_id, "f": period_from, "t": period_to})).all()
    out = {b: 0 for b in ("PENDING", "FROZEN", "AVAILABLE", "IN_PAYOUT", "PAID", "FEES")}
    out.update({b: int(v) for b, v in rows})
    return out


async def downline(svc: Services, *, shop_id: str, user_id: str) -> dict[str, dict[str, int]]:
    """RP-1: level-1 and level-2 downline with counts and net sales (current bindings)."""
    sql = text(
        """
        WITH l1 AS (SELECT user_id FROM bindings WHERE shop_id = :s AND referrer_id = :u
                    AND (expires_at IS NULL OR expires_at > :now)),
             l2 AS (SELECT b.user_id FROM bindings b JOIN l1 ON b.referrer_id = l1.user_id
                    WHERE b.shop_id = :s AND (b.expires_at IS NULL OR b.expires_at > :now))
        SELECT 'level1', count(*), COALESCE((SELECT sum(net_spend) FROM users WHERE shop_id = :s
               AND user_id IN (SELECT user_id FROM l1)), 0) FROM l1
        UNION ALL
        SELECT 'level2', count(*), COALESCE((SELECT sum(net_spend) FROM users WHERE shop_id = :s
               AND user_id IN (SELECT user_id FROM l2)), 0) FROM l2
        """)
    async with svc.sessionmaker() as s:
        rows = (await s.execute(sql, {"s": shop_id, "u": user_id, "now": svc.now()})).all()
    return {k: {"count": int(n), "sales": int(v)} for k, n, v in rows}
