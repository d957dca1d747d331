"""Reporting (RP-1..RP-4), computed in SQL; only the rule arithmetic (segments, statistics) comes
from the engine."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, timedelta
from enum import Enum

from sqlalchemy import text

from engine.errors import ErrorCode, refuse
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
        COALESCE(sum((EXTRACT(EPOCH FROM (g.formed_at - g.opened_at)) * 1000000)::bigint)
                 FILTER (WHERE g.state = 'FORMED'), 0) AS micros_to_form,
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
    mean_seconds_to_form: int  # over the formed groups, opening to forming, whole seconds rounded down; 0 if none
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
    return GroupStats(
        variant=variant,
        opened=0,
        formed=0,
        failed=0,
        formation_rate_bp=None,
        mean_seconds_to_form=0,
        units=0,
        net_sales=0,
    )


def _mean_seconds(micros: int, formed: int) -> int:
    return micros // (formed * 1_000_000) if formed else 0


async def campaign_stats(svc: Services, *, shop_id: str, campaign_id: str) -> CampaignStats:
    """RP-2. Variants come in the order the campaign defines them (a variant without groups yet shows
    zeros); the first is the control and every other variant is compared with it, pairwise."""
    async with svc.reader() as s:
        rows = (await s.execute(CAMPAIGN_STATS_SQL, {"s": shop_id, "c": campaign_id})).mappings().all()
        defined = (
            await s.execute(
                text("SELECT variants FROM campaigns WHERE shop_id = :s AND campaign_id = :c"),
                {"s": shop_id, "c": campaign_id},
            )
        ).scalar() or []
    # The means come from exact sums of microseconds, per variant and for the total alike: a total
    # averaged from the variants' already-rounded means could be off by a second.
    per = [
        GroupStats(
            variant=r["variant"] or None,
            opened=r["opened"],
            formed=r["formed"],
            failed=r["failed"],
            formation_rate_bp=rate_bp(r["formed"], r["formed"] + r["failed"]),
            mean_seconds_to_form=_mean_seconds(int(r["micros_to_form"]), r["formed"]),
            units=int(r["units"]),
            net_sales=int(r["net_sales"]),
        )
        for r in rows
    ]
    formed, failed = sum(p.formed for p in per), sum(p.failed for p in per)
    total = GroupStats(
        variant=None,
        opened=sum(p.opened for p in per),
        formed=formed,
        failed=failed,
        formation_rate_bp=rate_bp(formed, formed + failed),
        mean_seconds_to_form=_mean_seconds(sum(int(r["micros_to_form"]) for r in rows), formed),
        units=sum(p.units for p in per),
        net_sales=sum(p.net_sales for p in per),
    )
    by_name = {p.variant: p for p in per if p.variant}
    order = [v["name"] for v in defined] + sorted(set(by_name) - {v["name"] for v in defined})
    named = [by_name.get(n) or _empty(n) for n in order]
    comparisons = []
    if named:
        c = named[0]
        comparisons = [
            VariantComparison(
                variant=v.variant,
                control=c.variant,
                difference=formation_rate_difference(v.formed, v.formed + v.failed, c.formed, c.formed + c.failed),
            )
            for v in named[1:]
        ]
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
    async with svc.reader() as s:
        times = (
            (
                await s.execute(
                    text(
                        "SELECT paid_at FROM orders WHERE shop_id = :s AND buyer_id = :u AND paid_at IS NOT NULL "
                        "AND refunded_amount < paid_amount"
                    ),
                    {"s": shop_id, "u": user_id},
                )
            )
            .scalars()
            .all()
        )
    return segment_of(list(times), svc.now())


async def segment_counts(svc: Services, *, shop_id: str) -> dict[str, int]:
    """RP-3 counts per segment, the same rule as `segment_of`, evaluated in SQL."""
    sql = text(f"""
        SELECT CASE WHEN n = 0 THEN 'NEW' WHEN last_paid <= :dormant_before THEN 'DORMANT'
                    WHEN n >= 4 THEN 'LOYAL' WHEN n >= 2 THEN 'REPEAT' ELSE 'FIRST_ORDER' END AS seg, count(*)
        FROM ({PAID_COUNTS_SQL.format(user_filter="")}) x GROUP BY 1""")
    async with svc.reader() as s:
        rows = (await s.execute(sql, {"s": shop_id, "dormant_before": svc.now() - DORMANT_AFTER})).all()
    counts = {seg.value: 0 for seg in Segment}
    counts.update({k: int(v) for k, v in rows})
    return counts


# ------------------------------------------------------------------ RP-4
# A buyer counts in a period with at least one counting paid order paid in it (RP-3: an order refunded in
# full does not count). Their acquisition source is that of their first counting paid order ever.
# Categories are counted per buyer in their own CTE: joining order lines to orders would repeat an order's
# net once per line.
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
        SELECT buyer_id, acquired_by, count(*) AS orders, sum(net) AS net
        FROM in_period GROUP BY buyer_id, acquired_by
    ), categories AS (
        SELECT i.buyer_id, count(DISTINCT l.category) AS categories
        FROM in_period i JOIN order_lines l ON l.shop_id = :s AND l.order_id = i.order_id
        WHERE l.category <> '' GROUP BY i.buyer_id
    )
    SELECT b.acquired_by, count(*) AS buyers, count(*) FILTER (WHERE b.orders >= 2) AS repeaters,
           count(*) FILTER (WHERE c.categories >= 2) AS multi_category, COALESCE(sum(b.net), 0) AS net_sales
    FROM buyers b LEFT JOIN categories c USING (buyer_id) GROUP BY b.acquired_by
    """
)

SOURCES = ("REFERRAL", "GROUP_INVITE", "NONE")  # RP-4: a distributor's referral, a group-buy invite, none


@dataclass(frozen=True)
class RetentionRow:
    source: str  # REFERRAL | GROUP_INVITE | NONE: how the buyer was acquired (their first paid order)
    buyers: int
    repeat_buyers: int  # ≥ 2 counting orders paid in the period
    multi_category_buyers: int  # lines in ≥ 2 product categories over the period's orders
    repurchase_rate_bp: int | None  # repeat_buyers / buyers, floored; None without buyers
    multi_category_rate_bp: int | None
    net_sales: int  # paid − refunded of the period's counting orders
    net_sales_per_buyer: int | None  # floor(net_sales / buyers)


async def retention(svc: Services, *, shop_id: str, period_from: datetime, period_to: datetime) -> list[RetentionRow]:
    """RP-4 for [period_from, period_to): one row per acquisition source, always all three, in SOURCES order."""
    async with svc.reader() as s:
        rows = {
            r["acquired_by"]: r
            for r in (await s.execute(RETENTION_SQL, {"s": shop_id, "f": period_from, "t": period_to})).mappings().all()
        }
    out = []
    for source in SOURCES:
        r = rows.get(source) or {"buyers": 0, "repeaters": 0, "multi_category": 0, "net_sales": 0}
        n, net = int(r["buyers"]), int(r["net_sales"])
        out.append(
            RetentionRow(
                source=source,
                buyers=n,
                repeat_buyers=int(r["repeaters"]),
                multi_category_buyers=int(r["multi_category"]),
                repurchase_rate_bp=rate_bp(int(r["repeaters"]), n),
                multi_category_rate_bp=rate_bp(int(r["multi_category"]), n),
                net_sales=net,
                net_sales_per_buyer=net // n if n else None,
            )
        )
    return out


async def shop_period(svc: Services, *, shop_id: str, day_from: date, day_to: date) -> tuple[datetime, datetime]:
    """Local calendar days [day_from, day_to) of the shop's time zone as UTC instants (as LG-3 closes them)."""
    from service.usecases.settlements import local_bounds

    if day_to <= day_from:
        raise refuse(ErrorCode.INVALID_INPUT, "the period must end after it starts", field="periodTo")
    async with svc.reader() as s:
        tz = await shop_timezone(s, shop_id)
    return local_bounds(tz, day_from, day_to)


async def shop_timezone(session, shop_id: str) -> str:
    return (
        await session.execute(text("SELECT timezone FROM shops WHERE shop_id = :s"), {"s": shop_id})
    ).scalar() or "UTC"


# ------------------------------------------------------------------ RP-1
BUCKETS = ("PENDING", "FROZEN", "AVAILABLE", "IN_PAYOUT", "PAID", "FEES")


async def earnings(
    svc: Services, *, shop_id: str, user_id: str, period_from: datetime, period_to: datetime
) -> dict[str, int]:
    """RP-1: what moved in each balance of a distributor over [from, to) (sum of ledger entries)."""
    async with svc.reader() as s:
        rows = (
            await s.execute(
                text(
                    "SELECT bucket, sum(amount) FROM ledger_entries WHERE shop_id = :s AND distributor_id = :u "
                    "AND created_at >= :f AND created_at < :t GROUP BY bucket"
                ),
                {"s": shop_id, "u": user_id, "f": period_from, "t": period_to},
            )
        ).all()
    out = {b: 0 for b in BUCKETS}
    out.update({b: int(v) for b, v in rows})
    return out


class Granularity(str, Enum):
    DAY = "DAY"
    MONTH = "MONTH"


MAX_PERIODS = {Granularity.DAY: 366, Granularity.MONTH: 120}


@dataclass(frozen=True)
class EarningsPeriod:
    day_from: date  # local calendar days of the shop, [day_from, day_to)
    day_to: date
    starts_at: datetime  # the same bounds as UTC instants
    ends_at: datetime
    moved: dict[str, int]  # per balance (BUCKETS): the sum of the period's ledger entries

    @property
    def earned(self) -> int:
        """Commission posted less its reversals and voids, plus upgrade bonuses: moves between balances
        (freezing, release, payouts and their fees) add up to zero across the six balances."""
        return sum(self.moved.values())


def _next_month(d: date) -> date:
    return date(d.year + d.month // 12, d.month % 12 + 1, 1)


def local_periods(granularity: Granularity, day_from: date, day_to: date) -> list[tuple[date, date]]:
    """[day_from, day_to) cut into calendar days or months (months must start on the 1st)."""
    if day_to <= day_from:
        raise refuse(ErrorCode.INVALID_INPUT, "the period must end after it starts", field="periodTo", rule="RP-1")
    if granularity == Granularity.MONTH and (day_from.day != 1 or day_to.day != 1):
        raise refuse(
            ErrorCode.INVALID_INPUT,
            "monthly periods run from the 1st of a month to the 1st of a month",
            field="periodFrom",
            rule="RP-1",
        )
    step = (lambda d: d + timedelta(days=1)) if granularity == Granularity.DAY else _next_month
    out, d = [], day_from
    while d < day_to:
        out.append((d, step(d)))
        d = out[-1][1]
        if len(out) > MAX_PERIODS[granularity]:
            raise refuse(
                ErrorCode.INVALID_INPUT,
                f"at most {MAX_PERIODS[granularity]} periods of a {granularity.value.lower()} per request",
                field="periodTo",
                rule="RP-1",
            )
    return out


async def earnings_series(
    svc: Services, *, shop_id: str, user_id: str | None, granularity: Granularity, day_from: date, day_to: date
) -> list[EarningsPeriod]:
    """RP-1 per period in the shop's time zone: each local day or month of [day_from, day_to), oldest first,
    including periods where nothing moved. One query, grouped by the local start of each entry's period.
    `user_id` None: the whole shop's distributor ledger (what finance charts)."""
    from service.usecases.settlements import local_bounds

    periods = local_periods(granularity, day_from, day_to)
    async with svc.reader() as s:
        tz = await shop_timezone(s, shop_id)
        start, end = local_bounds(tz, day_from, day_to)
        rows = (
            await s.execute(
                text(
                    "SELECT date_trunc(:unit, created_at AT TIME ZONE :tz)::date AS local_start, bucket, sum(amount) "
                    "FROM ledger_entries WHERE shop_id = :s AND created_at >= :f AND created_at < :t "
                    + ("AND distributor_id = :u " if user_id is not None else "")
                    + "GROUP BY 1, 2"
                ),
                {
                    "unit": granularity.value.lower(),
                    "tz": tz,
                    "s": shop_id,
                    "f": start,
                    "t": end,
                    **({"u": user_id} if user_id is not None else {}),
                },
            )
        ).all()
    moved: dict[date, dict[str, int]] = {}
    for local_start, bucket, amount in rows:
        moved.setdefault(local_start, {})[bucket] = int(amount)
    out = []
    for a, b in periods:
        starts_at, ends_at = local_bounds(tz, a, b)
        out.append(
            EarningsPeriod(
                day_from=a,
                day_to=b,
                starts_at=starts_at,
                ends_at=ends_at,
                moved={k: moved.get(a, {}).get(k, 0) for k in BUCKETS},
            )
        )
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
        """
    )
    async with svc.reader() as s:
        rows = (await s.execute(sql, {"s": shop_id, "u": user_id, "now": svc.now()})).all()
    return {k: {"count": int(n), "sales": int(v)} for k, n, v in rows}
