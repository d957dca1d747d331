"""GB-11 / CM-6 due work, applied without anyone reading: unpaid reservations past their payment
window, groups past `expires_at`, commission lines past `available_at`.

Driven by indexed due times (`groups.due_at`, `commission_lines.available_at` where FROZEN), and
safe with several service processes: each item is claimed with FOR UPDATE SKIP LOCKED inside the
transaction that applies it, so two workers never apply the same item and never wait on each other.
Claims are made shop by shop (the shops with due work first, then claims with `shop_id` in the
WHERE), so on Citus each locking query routes to one shard (docs/sharding.md). One item that fails
is logged and postponed; it never blocks the items due after it.
"""

from __future__ import annotations

import asyncio
import logging
from datetime import timedelta
from typing import Iterable

from sqlalchemy import select, text

from service.tx.commissions import release_line
from service.context import Services
from service.tx import group_batch
from service.usecases.groups import advance_group
from service.tx.ledger import LedgerBatch
from service.uow import unit_of_work
from store.models import CommissionLineRow

log = logging.getLogger("sharecart.worker")

# Discovery reads every shop but locks nothing (on Citus: one read fanned out to the shards);
# every claim names its shop, so it routes to the one shard holding it (docs/sharding.md).
SHOPS_WITH_DUE_GROUPS = text("SELECT DISTINCT shop_id FROM groups WHERE due_at <= :now")
SHOPS_WITH_DUE_LINES = text(
    "SELECT DISTINCT shop_id FROM commission_lines WHERE state = 'FROZEN' AND available_at <= :now AND NOT held"
)
# A group whose advance raises is looked at again after this long (by the service clock), so it
# cannot stand first in the queue on every pass and stall the groups due after it.
FAILED_GROUP_RETRY = timedelta(minutes=1)
POSTPONE_GROUP = text(
    "UPDATE groups SET due_at = :later WHERE shop_id = :shop_id AND group_id = :group_id AND due_at <= :now"
)


async def _shops_with_due(svc: Services, query, now) -> list[str]:
    async with svc.sessionmaker() as s:
        return sorted((await s.execute(query, {"now": now})).scalars())


PASS_LIMIT = 1000  # groups a pass advances before it beats and yields; a full pass starts the next one at once
BATCH = 250  # groups claimed, decided and written by one transaction (service/group_batch.py)


async def run_due_groups(
    svc: Services, *, shop_id: str | None = None, limit: int = PASS_LIMIT, batch: int = BATCH
) -> int:
    """GB-11: advance due groups, `batch` groups of one shop a transaction (claimed with FOR UPDATE SKIP
    LOCKED, so any number of workers share the work), taking the shops with due work in turn (or only
    `shop_id`'s). Returns how many were advanced. A batch that fails is retried one group a transaction; a
    group that fails alone is logged and postponed, never retried in the same pass."""
    now, done = svc.now(), 0
    shops = [shop_id] if shop_id else await _shops_with_due(svc, SHOPS_WITH_DUE_GROUPS, now)
    while shops and done < limit:
        for sid in list(shops):
            advanced = await _advance_due_batch(svc, sid, now, min(batch, limit - done))
            if advanced is None:  # nothing (unlocked) left due in this shop
                shops.remove(sid)
            else:
                done += advanced
                if done >= limit:
                    break
    return done


async def _advance_due_batch(svc: Services, shop_id: str, now, batch: int) -> int | None:
    """Claim up to `batch` of the shop's most overdue groups and advance them in one transaction. None: none
    left; else how many groups went through."""
    ids: list[str] = []
    try:
        async with unit_of_work(svc) as s:
            claimed = await group_batch.claim_due(s, shop_id, now, batch)
            if not claimed:
                return None
            ids = [ld.group.id for ld in claimed]
            await group_batch.advance_all(s, shop_id, now, claimed)
        return len(ids)
    except Exception:
        if not ids:  # the claim itself failed (database gone?): the caller's loop logs it
            raise
        if len(ids) == 1:
            return 1 if await _advance_one(svc, shop_id, ids[0], now) else 0
        log.warning(
            "a batch of %d due groups of shop %s failed; advancing them one at a time", len(ids), shop_id, exc_info=True
        )
        done = 0
        for gid in ids:
            done += bool(await _advance_one(svc, shop_id, gid, now))
        return done


async def _advance_one(svc: Services, shop_id: str, group_id: str, now) -> bool:
    """One group in a transaction of its own (skipped if another worker holds it now); a failure is logged and
    the group postponed by FAILED_GROUP_RETRY."""
    try:
        async with unit_of_work(svc) as s:
            return await advance_group(s, shop_id=shop_id, group_id=group_id, now=now, skip_locked=True)
    except Exception:
        log.exception(
            "advancing group %s of shop %s failed; it is due again in %s", group_id, shop_id, FAILED_GROUP_RETRY
        )
        async with unit_of_work(svc) as s:  # the failed transaction rolled back; this one only postpones
            await s.execute(
                POSTPONE_GROUP,
                {"later": now + FAILED_GROUP_RETRY, "shop_id": shop_id, "group_id": group_id, "now": now},
            )
        return False


async def release_due_lines(
    svc: Services,
    *,
    shop_id: str | None = None,
    user_ids: Iterable[str] | None = None,
    line_ids: Iterable[str] | None = None,
    wait: bool = False,
    batch: int = 200,
) -> int:
    """CM-6: FROZEN lines whose available_at has come become AVAILABLE; per shop, `batch` lines a
    transaction. The worker skips lines another transaction holds (SKIP LOCKED); a read that must
    not show a past-due state passes `wait=True` and waits for them instead, locking in line_id
    order like every other writer of lines."""
    now = svc.now()
    user_ids = None if user_ids is None else sorted(set(user_ids))
    line_ids = None if line_ids is None else sorted(set(line_ids))
    if user_ids == [] or line_ids == []:
        return 0
    shops = [shop_id] if shop_id else await _shops_with_due(svc, SHOPS_WITH_DUE_LINES, now)
    done = 0
    for sid in shops:
        done += await _release_in_shop(svc, sid, now, user_ids=user_ids, line_ids=line_ids, wait=wait, batch=batch)
    return done


async def _release_in_shop(svc: Services, shop_id: str, now, *, user_ids, line_ids, wait: bool, batch: int) -> int:
    done = 0
    while True:
        async with unit_of_work(svc) as s:
            q = select(CommissionLineRow).where(
                CommissionLineRow.shop_id == shop_id,
                CommissionLineRow.state == "FROZEN",
                CommissionLineRow.available_at <= now,
                CommissionLineRow.held.is_(False),
            )  # FR-3: held lines wait
            if user_ids is not None:
                q = q.where(CommissionLineRow.beneficiary_id.in_(user_ids))
            if line_ids is not None:
                q = q.where(CommissionLineRow.line_id.in_(line_ids))
            if wait:
                q = q.order_by(CommissionLineRow.line_id).with_for_update()
            else:
                q = q.order_by(CommissionLineRow.available_at).with_for_update(skip_locked=True)
            lines = list((await s.execute(q.limit(batch).execution_options(populate_existing=True))).scalars())
            if not lines:
                return done
            ledger = LedgerBatch(shop_id, now)
            for line in lines:
                await release_line(s, ledger, line, now)
            await ledger.flush(s)
            done += len(lines)
        if len(lines) < batch:
            return done


async def run_due(svc: Services, *, shop_id: str | None = None) -> int:
    """All due work, of every shop or of one."""
    return await run_due_groups(svc, shop_id=shop_id) + await release_due_lines(svc, shop_id=shop_id)


async def worker_loop(
    svc: Services, stop: asyncio.Event, *, interval: float = 1.0, backoff_max: float | None = None
) -> None:
    """Due work and webhook delivery run as two loops of their own: a POST may take its whole timeout, and a
    slow receiver must never delay group expiry (GB-11) or commission release (CM-6). A pass of due work that
    went through writes the worker's heartbeat (service.jobs.heartbeat: what /ready reads)."""
    from service.jobs.feed import sequence_all
    from service.jobs.heartbeat import Heartbeat
    from service.settings import settings
    from service.usecases.webhooks import delivery_loop

    conf = settings()
    heartbeat = Heartbeat(svc, interval=conf.heartbeat_interval)
    backoff_max = conf.worker_backoff_max if backoff_max is None else backoff_max

    async def due() -> int:
        done = await run_due(svc)
        await heartbeat.beat()
        return done

    try:
        await asyncio.gather(
            _every(interval, stop, due, "due work", max_delay=backoff_max, busy=PASS_LIMIT),
            delivery_loop(svc, stop, interval=interval, backoff_max=backoff_max),
            _every(interval, stop, lambda: sequence_all(svc), "event feed sequencing", max_delay=backoff_max),
        )
    finally:
        await heartbeat.forget()


async def _every(
    interval: float, stop: asyncio.Event, work, what: str, *, max_delay: float = 30.0, busy: int | None = None
) -> None:
    """Run `work` every `interval` seconds until `stop`. After a failure the pause doubles (up to
    `max_delay`) until a pass goes through again: with the database away the worker waits 1, 2, 4 … s and
    logs one line per try (no traceback for "database unavailable"), instead of a traceback every second.
    With `busy`, a pass that did `busy` items or more is followed by the next at once (a backlog — 100,000
    groups due at once — is worked off without a pause between passes)."""
    from service.availability import Backoff

    backoff = Backoff(what, log, interval=interval, max_delay=max_delay)
    while not stop.is_set():
        try:
            done = await work()
        except Exception as e:  # keep the worker alive; the item stays due and is retried next round
            delay = backoff.failed(e)  # inside the except: a bug's traceback is logged
        else:
            delay = backoff.succeeded()
            if busy is not None and isinstance(done, int) and done >= busy:
                continue
        try:
            await asyncio.wait_for(stop.wait(), timeout=delay)
        except asyncio.TimeoutError:
            pass
