"""GB-11 / CM-6 due work, applied without anyone reading: unpaid reservations past their payment
window, groups past `expires_at`, commission lines past `available_at`.

Driven by indexed due times (`groups.due_at`, `commission_lines.available_at` where FROZEN), and
safe with several service processes: each item is claimed with FOR UPDATE SKIP LOCKED inside the
transaction that applies it, so two workers never apply the same item and never wait on each other.
"""

from __future__ import annotations

import asyncio
import logging

from sqlalchemy import select, text

from service.commissions import release_line
from service.context import Services
from service.groups import advance_group
from service.ledger import LedgerBatch
from service.uow import unit_of_work
from store.models import CommissionLineRow

log = logging.getLogger("sharecart.worker")

DUE_GROUP = text(
    "SELECT shop_id, group_id FROM groups WHERE due_at <= :now ORDER BY due_at LIMIT 1 FOR UPDATE SKIP LOCKED"
)


async def run_due_groups(svc: Services, *, limit: int = 500) -> int:
    now, done = svc.now(), 0
    while done < limit:
        async with unit_of_work(svc) as s:
            r = (await s.execute(DUE_GROUP, {"now": now})).first()
            if r is None:
                break
            await advance_group(s, shop_id=r.shop_id, group_id=r.group_id, now=now)
            done += 1
    return done


async def release_due_lines(svc: Services, *, shop_id: str | None = None, user_id: str | None = None,
                            batch: int = 200) -> int:
    """CM-6: FROZEN lines whose available_at has come become AVAILABLE."""
    now, done = svc.now(), 0
    while True:
        async with unit_of_work(svc) as s:
            q = select(CommissionLineRow).where(CommissionLineRow.state == "FROZEN",
                                                CommissionLineRow.available_at <= now)
            if shop_id:
                q = q.where(CommissionLineRow.shop_id == shop_id)
            if user_id:
                q = q.where(CommissionLineRow.beneficiary_id == user_id)
            lines = list((await s.execute(
                q.order_by(CommissionLineRow.available_at).limit(batch).with_for_update(skip_locked=True)
            )).scalars())
            if not lines:
                return done
            by_shop: dict[str, LedgerBatch] = {}
            for line in lines:
                ledger = by_shop.setdefault(line.shop_id, LedgerBatch(line.shop_id, now))
                await release_line(s, ledger, line, now)
            for ledger in by_shop.values():
                await ledger.flush(s)
            done += len(lines)
        if len(lines) < batch:
            return done


async def run_due(svc: Services) -> int:
    return await run_due_groups(svc) + await release_due_lines(svc)


async def worker_loop(svc: Services, stop: asyncio.Event, *, interval: float = 1.0) -> None:
    """Due work and webhook delivery run as two loops of their own: a POST may take its whole timeout, and a
    slow receiver must never delay group expiry (GB-11) or commission release (CM-6)."""
    from service.webhooks import deliver_due

    await asyncio.gather(_every(interval, stop, lambda: run_due(svc), "due work failed"),
                         _every(interval, stop, lambda: deliver_due(svc, stop=stop), "webhook delivery failed"))


async def _every(interval: float, stop: asyncio.Event, work, what: str) -> None:
    while not stop.is_set():
        try:
            await work()
        except Exception:  # keep the worker alive; the item stays due and is retried next round
            log.exception(what)
        try:
            await asyncio.wait_for(stop.wait(), timeout=interval)
        except asyncio.TimeoutError:
            pass
