"""LG-1: ledger entries and the stored balances they move, written together.

Postings are collected during a unit of work and flushed once, distributor by distributor in
sorted order, so two transactions that touch the same distributors lock their rows in the same
order. Balances move by relative UPDATEs (x = x + delta) in the same transaction as the entries.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field

from sqlalchemy import text, update
from sqlalchemy.ext.asyncio import AsyncSession

from engine.ledger import Bucket, Posting
from service.ids import new_id
from store.models import Distributor, LedgerEntry

BALANCE_COLUMN = {
    Bucket.PENDING: "pending",
    Bucket.FROZEN: "frozen",
    Bucket.AVAILABLE: "available",
    Bucket.IN_PAYOUT: "in_payout",
    Bucket.PAID: "paid",
    Bucket.FEES: "fees",
}


@dataclass
class LedgerBatch:
    shop_id: str
    now: object
    _entries: dict[str, list[tuple[Posting, str, str]]] = field(default_factory=lambda: defaultdict(list))

    def add(self, distributor_id: str, postings, *, ref_type: str, ref_id: str) -> None:
        for p in postings:
            if p.amount:
                self._entries[distributor_id].append((p, ref_type, ref_id))

    async def flush(self, session: AsyncSession) -> None:
        for distributor_id in sorted(self._entries):
            items = self._entries[distributor_id]
            if not items:
                continue
            deltas: dict[str, int] = defaultdict(int)
            for p, _, _ in items:
                deltas[BALANCE_COLUMN[p.bucket]] += p.amount
            changes = {col: getattr(Distributor, col) + d for col, d in deltas.items() if d}
            if changes:
                await session.execute(
                    update(Distributor)
                    .where(Distributor.shop_id == self.shop_id, Distributor.user_id == distributor_id)
                    .values(changes)
                )
            session.add_all(
                LedgerEntry(
                    shop_id=self.shop_id,
                    entry_id=new_id("le_"),
                    distributor_id=distributor_id,
                    bucket=p.bucket.value,
                    amount=p.amount,
                    kind=p.kind.value,
                    ref_type=ref_type,
                    ref_id=ref_id,
                    created_at=self.now,
                )
                for p, ref_type, ref_id in items
            )
        self._entries.clear()
        await session.flush()


MISMATCH_SQL = text(
    """
    SELECT d.user_id, b.col, b.stored, COALESCE(s.total, 0) AS summed
    FROM distributors d
    CROSS JOIN LATERAL (VALUES ('PENDING', d.pending), ('FROZEN', d.frozen), ('AVAILABLE', d.available),
                               ('IN_PAYOUT', d.in_payout), ('PAID', d.paid), ('FEES', d.fees)) AS b(col, stored)
    LEFT JOIN (
        SELECT distributor_id, bucket, SUM(amount) AS total
        FROM ledger_entries WHERE shop_id = :shop_id GROUP BY distributor_id, bucket
    ) s ON s.distributor_id = d.user_id AND s.bucket = b.col
    WHERE d.shop_id = :shop_id AND b.stored <> COALESCE(s.total, 0)
    """
)


async def balance_mismatches(session: AsyncSession, shop_id: str) -> list[tuple]:
    """LG-1 check: every stored balance equals the sum of its entries. Empty list = consistent."""
    return [tuple(r) for r in (await session.execute(MISMATCH_SQL, {"shop_id": shop_id})).all()]
