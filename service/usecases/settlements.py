"""LG-3: closing a period into an immutable settlement batch, computed in SQL over the ledger.

The settled balance of a distributor is what the shop owes them and has released: AVAILABLE plus
IN_PAYOUT. Over a period it moves only by commissions released, reversals of available
commission (clawbacks), upgrade bonuses, payouts sent and payout fees, and what failed payouts give
back (LG-4: the amount paid and its fee, `failed`); requests and rejections only move money between
the two buckets. So for every distributor, and for the totals,
closing = opening + released + reversals + bonuses − payouts − fees + failed, to the cent, and
closing equals the ledger's sum at the period end. A payout that fails after its period closed is
booked in a later one: a closed batch never changes.

`held` (FR-3) stands beside the identity: commission held for review at the period end, which has not
been released and is in no settled balance.
"""

from __future__ import annotations

from datetime import date, datetime, time, timedelta, timezone
from zoneinfo import ZoneInfo

from sqlalchemy import func, select, text

from engine.errors import ErrorCode, refuse
from engine.events import EventType
from service.tx import events
from service.context import Services
from service.tx.idempotency import once_row
from service.tx.ids import new_id
from service.uow import unit_of_work
from store.models import Settlement, SettlementLine, Shop

# The batch's columns as sums over the shop's ledger entries `e` before the period end.
SUMS = """
        COALESCE(SUM(e.amount) FILTER (WHERE e.created_at < :p_from AND e.bucket IN ('AVAILABLE', 'IN_PAYOUT')), 0),
        COALESCE(SUM(e.amount) FILTER (WHERE e.created_at >= :p_from AND e.bucket = 'AVAILABLE'
                                       AND e.kind = 'COMMISSION_RELEASED'), 0),
        COALESCE(SUM(e.amount) FILTER (WHERE e.created_at >= :p_from AND e.bucket = 'AVAILABLE'
                                       AND e.kind = 'COMMISSION_REVERSED'), 0),
        COALESCE(SUM(e.amount) FILTER (WHERE e.created_at >= :p_from AND e.kind = 'UPGRADE_BONUS'), 0),
        COALESCE(SUM(e.amount) FILTER (WHERE e.created_at >= :p_from AND e.bucket = 'PAID'
                                       AND e.kind = 'PAYOUT_APPROVED'), 0),
        COALESCE(SUM(e.amount) FILTER (WHERE e.created_at >= :p_from AND e.bucket = 'FEES'
                                       AND e.kind = 'PAYOUT_FEE'), 0),
        COALESCE(SUM(e.amount) FILTER (WHERE e.created_at >= :p_from AND e.bucket = 'AVAILABLE'
                                       AND e.kind IN ('PAYOUT_FAILED', 'PAYOUT_FEE_REVERSED')), 0),
        COALESCE(SUM(e.amount) FILTER (WHERE e.bucket IN ('AVAILABLE', 'IN_PAYOUT')), 0),
        COALESCE(SUM(e.amount) FILTER (WHERE e.ref_type = 'commission' AND e.bucket IN ('PENDING', 'FROZEN')
                                       AND e.ref_id = ANY(CAST(:held AS text[]))), 0)"""
AMOUNTS = "opening, released, reversals, bonuses, payouts, fees, failed, closing, held"

# FR-3: the lines held for review at the period end — under a line's own flag, or of an order of a flagged
# group, the flag raised before `p_to` and not resolved before it. A held line never reaches AVAILABLE, so
# what it stands at then is the sum of its PENDING and FROZEN entries before `p_to` (SUMS' last column).
HELD_AT_SQL = text(
    """
    SELECT f.line_id FROM fraud_flags f
    WHERE f.shop_id = :shop_id AND f.subject = 'LINE' AND f.flagged_at < :p_to
      AND (f.resolved_at IS NULL OR f.resolved_at >= :p_to)
    UNION
    SELECT c.line_id FROM fraud_flags f
    JOIN orders o ON o.shop_id = f.shop_id AND o.group_id = f.group_id
    JOIN commission_lines c ON c.shop_id = o.shop_id AND c.order_id = o.order_id
    WHERE f.shop_id = :shop_id AND f.subject = 'GROUP' AND f.flagged_at < :p_to
      AND (f.resolved_at IS NULL OR f.resolved_at >= :p_to)
    """
)

# Two INSERT … SELECTs over the ledger, each taking shop_id from the rows it reads and grouping by it: on
# Citus each runs as one task on the shop's node (a colocated INSERT … SELECT), where the former single
# statement (a writing CTE feeding a second INSERT) went through the coordinator with two-phase commit on
# every node. The header reads the shop row joined to its entries, so it exists for an empty ledger too.
CLOSE_HEADER_SQL = text(
    f"""
    INSERT INTO settlements (shop_id, settlement_id, period_from, period_to, local_from, local_to, currency,
                             closed_at, closed_by, distributors, {AMOUNTS})
    SELECT s.shop_id, :settlement_id, :p_from, :p_to, :local_from, :local_to, s.currency, :now, :actor,
           count(DISTINCT e.distributor_id), {SUMS}
    FROM shops s LEFT JOIN ledger_entries e ON e.shop_id = s.shop_id AND e.created_at < :p_to
    WHERE s.shop_id = :shop_id
    GROUP BY s.shop_id, s.currency
    """
)
CLOSE_LINES_SQL = text(
    f"""
    INSERT INTO settlement_lines (shop_id, settlement_id, distributor_id, {AMOUNTS})
    SELECT e.shop_id, :settlement_id, e.distributor_id, {SUMS}
    FROM ledger_entries e WHERE e.shop_id = :shop_id AND e.created_at < :p_to
    GROUP BY e.shop_id, e.distributor_id
    """
)


# A use case stamps its ledger entries with the clock reading taken when it starts (OR-5) and commits
# a moment later. An entry stamped just before `to` but committed after the close would be left out of
# the batch for good, so a period may be closed only once `to` is at least this far in the past: every
# transaction that could still stamp an entry before `to` has long committed or rolled back. Use cases
# run in milliseconds; the margin is deliberately generous (docs/api.md, "Settlements").
CLOSE_GRACE = timedelta(minutes=5)


def local_bounds(tz_name: str, day_from: date, day_to: date) -> tuple[datetime, datetime]:
    """[from, to) given as local calendar days in the shop's time zone, as UTC instants."""
    tz = ZoneInfo(tz_name)
    start = datetime.combine(day_from, time(0), tz).astimezone(timezone.utc)
    end = datetime.combine(day_to, time(0), tz).astimezone(timezone.utc)
    return start, end


async def close_period(
    svc: Services,
    *,
    shop_id: str,
    day_from: date,
    day_to: date,
    actor: str,
    settlement_id: str | None = None,
    idempotency_key: str | None = None,
) -> Settlement:
    """LG-3: close [day_from, day_to) (shop time zone). The same period again returns the first batch;
    a period that overlaps or leaves a gap after the last batch is refused, and so is one whose end is
    less than CLOSE_GRACE ago (PERIOD_NOT_ENDED). `settlement_id` may be given (tests, golden files);
    by default a fresh id is minted. The batch's `closed_at` is the service clock (OR-5). With
    `idempotency_key` (GB-10) another period under the same key is IDEMPOTENCY_CONFLICT."""
    if day_to <= day_from:
        raise refuse(ErrorCode.INVALID_INPUT, "the period must end after it starts", field="to", rule="LG-3")
    now = svc.now()
    async with unit_of_work(svc) as s:

        async def run() -> Settlement:
            shop = await s.get(Shop, shop_id, with_for_update=True)  # one closer per shop at a time
            if shop is None:
                raise refuse(ErrorCode.NOT_FOUND, "shop not found")
            p_from, p_to = local_bounds(shop.timezone, day_from, day_to)
            if p_to > now - CLOSE_GRACE:
                raise refuse(
                    ErrorCode.PERIOD_NOT_ENDED,
                    f"a period can be closed {int(CLOSE_GRACE.total_seconds()) // 60} minutes after it has "
                    f"ended (it ends {p_to.isoformat()})",
                    field="to",
                    rule="LG-3",
                )
            same = (
                await s.execute(
                    select(Settlement).where(Settlement.shop_id == shop_id, Settlement.period_from == p_from)
                )
            ).scalar_one_or_none()
            if same is not None:
                if same.period_to != p_to:
                    raise refuse(
                        ErrorCode.PERIOD_OVERLAP,
                        "a batch with this start and another end exists",
                        field="to",
                        rule="LG-3",
                    )
                return same
            last_to = (
                await s.execute(select(func.max(Settlement.period_to)).where(Settlement.shop_id == shop_id))
            ).scalar()
            if last_to is not None and p_from < last_to:
                raise refuse(ErrorCode.PERIOD_OVERLAP, "the period overlaps a closed batch", field="from", rule="LG-3")
            if last_to is not None and p_from > last_to:
                raise refuse(
                    ErrorCode.PERIOD_GAP,
                    "the period leaves a gap after the last closed batch",
                    field="from",
                    rule="LG-3",
                )
            sid = settlement_id or new_id("st_")
            close = {
                "shop_id": shop_id,
                "settlement_id": sid,
                "p_from": p_from,
                "p_to": p_to,
                "now": now,
                "local_from": day_from.isoformat(),
                "local_to": day_to.isoformat(),
                "actor": actor,
            }
            close["held"] = list((await s.execute(HELD_AT_SQL, {"shop_id": shop_id, "p_to": p_to})).scalars())
            await s.execute(CLOSE_HEADER_SQL, close)
            await s.execute(CLOSE_LINES_SQL, close)
            # PAID/FEES entries are positive in their own buckets; in the batch they reduce the balance.
            # closing = opening + released + reversals + bonuses − payouts − fees is a CHECK constraint on
            # both tables (migration 0006): a batch that does not reconcile fails here and writes nothing.
            batch = await s.get(Settlement, (shop_id, sid))
            events.emit(
                s,
                shop_id=shop_id,
                type=EventType.SETTLEMENT_CLOSED,
                aggregate_type="settlement",
                aggregate_id=sid,
                now=now,
                rule="LG-3",
                payload={
                    "settlement_id": sid,
                    "from": day_from.isoformat(),
                    "to": day_to.isoformat(),
                    "closing": batch.closing,
                    "currency": shop.currency,
                },
            )
            return batch

        return await once_row(
            s,
            Settlement,
            shop_id=shop_id,
            scope="close_period",
            key=idempotency_key,
            now=now,
            run=run,
            request={"from": day_from.isoformat(), "to": day_to.isoformat()},
        )


async def get_settlement(svc: Services, *, shop_id: str, settlement_id: str) -> Settlement | None:
    async with svc.sessionmaker() as s:
        return await s.get(Settlement, (shop_id, settlement_id))


async def list_settlements(svc: Services, *, shop_id: str) -> list[Settlement]:
    async with svc.sessionmaker() as s:
        return list(
            (
                await s.execute(
                    select(Settlement).where(Settlement.shop_id == shop_id).order_by(Settlement.period_from)
                )
            ).scalars()
        )


async def stream_lines(svc: Services, *, shop_id: str, settlement_id: str, chunk: int = 5000):
    """The batch's lines in distributor order, streamed with a server-side cursor (flat memory)."""
    async with svc.engine.connect() as conn:
        result = await conn.stream(
            select(SettlementLine)
            .where(SettlementLine.shop_id == shop_id, SettlementLine.settlement_id == settlement_id)
            .order_by(SettlementLine.distributor_id)
            .execution_options(yield_per=chunk)
        )
        async for part in result.partitions(chunk):
            yield part
