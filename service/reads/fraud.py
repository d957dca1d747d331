"""Fraud review reads (FR-2, FR-3): the shop's rules, the review queue with what each flag holds now, and the
held figure of a distributor's balances."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import text

from engine import fraud as fr
from service.context import Services
from service.tx.fraud import _j, rules_from_json


async def get_rules(svc: Services, *, shop_id: str) -> fr.FraudRules:
    async with svc.reader() as s:
        row = (
            await s.execute(text("SELECT row_to_json(f) FROM fraud_rules f WHERE shop_id = :s"), {"s": shop_id})
        ).scalar()
    return rules_from_json(_j(row))


FLAG_COLUMNS = (
    "flag_id, subject, line_id, group_id, order_id, beneficiary_id, rules, evidence, amount, state, "
    "flagged_at, flagged_by, resolved_at, resolved_by, reason"
)


@dataclass(frozen=True)
class FlagView:
    flag_id: str
    subject: str
    line_id: str | None
    group_id: str | None
    order_id: str | None
    beneficiary_id: str | None
    rules: list
    evidence: dict
    amount: int
    state: str
    flagged_at: datetime
    flagged_by: str
    resolved_at: datetime | None
    resolved_by: str | None
    reason: str | None
    held: int = 0  # what its lines hold now


# a flag's lines: its own line, or every line of its group's orders
HELD_BY_FLAG = """
    COALESCE((SELECT sum(c.standing) FROM commission_lines c WHERE c.shop_id = f.shop_id AND c.held
                AND c.state IN ('PENDING', 'FROZEN')
                AND ((f.subject = 'LINE' AND c.line_id = f.line_id)
                  OR (f.subject = 'GROUP' AND c.order_id IN (SELECT order_id FROM orders o
                                                              WHERE o.shop_id = f.shop_id AND o.group_id = f.group_id)))
             ), 0) AS held"""


def _flag_view(r) -> FlagView:
    return FlagView(
        **{k: getattr(r, k) for k in FlagView.__dataclass_fields__ if k != "held"}, held=int(getattr(r, "held", 0) or 0)
    )


async def review_queue(
    svc: Services, *, shop_id: str, state: str | None = "OPEN", limit: int = 50, flag_id: str | None = None
) -> list[FlagView]:
    """FR-3: the shop's flags, oldest first (OPEN by default), each with what it holds now."""
    return (await review_queue_page(svc, shop_id=shop_id, state=state, limit=limit, flag_id=flag_id))[0]


async def review_queue_page(
    svc: Services,
    *,
    shop_id: str,
    state: str | None = "OPEN",
    limit: int = 50,
    offset: int = 0,
    flag_id: str | None = None,
) -> tuple[list[FlagView], int]:
    """FR-3: a page of the shop's flags, oldest first (OPEN by default), each with what it holds now,
    and how many flags the whole list has."""
    limit = max(0, min(limit, 200))
    where = (
        "f.shop_id = :s AND (CAST(:state AS text) IS NULL OR f.state = :state) "
        "AND (CAST(:fid AS text) IS NULL OR f.flag_id = :fid)"
    )
    args = {"s": shop_id, "state": state, "fid": flag_id, "n": limit, "o": offset}
    async with svc.reader() as s:
        rows = (
            await s.execute(
                text(
                    f"SELECT {FLAG_COLUMNS}, {HELD_BY_FLAG}, count(*) OVER () AS total FROM fraud_flags f WHERE {where} "
                    "ORDER BY f.flagged_at, f.flag_id LIMIT :n OFFSET :o"
                ),
                args,
            )
        ).all()
        if rows:
            total = int(rows[0].total)
        else:  # an empty page (past the end, or first: 0) still says how long the list is
            total = int(
                (await s.execute(text(f"SELECT count(*) FROM fraud_flags f WHERE {where}"), args)).scalar() or 0
            )
    return [_flag_view(r) for r in rows], total


async def held_amount(svc: Services, *, shop_id: str, user_id: str) -> int:
    """FR-3: what of the distributor's pending and frozen commission is held for review."""
    async with svc.reader() as s:
        total = (
            await s.execute(
                text(
                    "SELECT COALESCE(sum(standing), 0) FROM commission_lines WHERE shop_id = :s AND beneficiary_id = :u "
                    "AND held AND state IN ('PENDING', 'FROZEN')"
                ),
                {"s": shop_id, "u": user_id},
            )
        ).scalar()
        return int(total or 0)
