"""Unit of work: one transaction per use case; rolls back unless the block finishes."""

from __future__ import annotations

from contextlib import asynccontextmanager
from typing import AsyncIterator

from sqlalchemy import event, text
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import Session

from service.context import Services
from store.models import Refund


@asynccontextmanager
async def unit_of_work(svc: Services) -> AsyncIterator[AsyncSession]:
    async with svc.sessionmaker() as session:
        async with session.begin():
            yield session


# ---------------------------------------------------------------- deferred checks before COMMIT
# A transaction that wrote refunds has the refunds-within-paid check (OR-2, a deferred trigger) pending.
# It is run as the transaction's last statement instead of inside COMMIT (migration 0013): on Citus an
# error inside the shard's COMMIT reaches the client as XX000, as a statement it keeps its code and text.
CHECK_DEFERRED = text("SELECT sharecart_check_deferred(:shop_id)")


@event.listens_for(Session, "before_flush")
def _note_deferred_checks(session: Session, flush_context, instances) -> None:
    shops = {o.shop_id for o in session.new if isinstance(o, Refund)}
    if shops:
        session.info.setdefault("check_deferred", set()).update(shops)


@event.listens_for(Session, "before_commit")
def _run_deferred_checks(session: Session) -> None:
    # before_commit comes before the commit's own flush: refunds not flushed yet count too
    shops = session.info.pop("check_deferred", set()) | {o.shop_id for o in session.new if isinstance(o, Refund)}
    if not shops:
        return
    session.flush()
    for shop_id in sorted(shops):
        session.execute(CHECK_DEFERRED, {"shop_id": shop_id})


@event.listens_for(Session, "after_rollback")
def _forget_deferred_checks(session: Session) -> None:
    session.info.pop("check_deferred", None)
