"""Transactional outbox: events are rows written in the transaction of the change they report."""

from __future__ import annotations

from typing import Any

from sqlalchemy import event
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import Session

from engine.events import EventType
from service.ids import new_id
from store.models import Event, Shop


def emit(
    session: AsyncSession,
    *,
    shop_id: str,
    type: EventType,  # mypy holds service/ to the catalog; tests/engine/test_event_catalog.py checks payload keys
    aggregate_type: str,
    aggregate_id: str,
    now,
    payload: dict[str, Any],
    rule: str | None = None,
) -> None:
    data = {**payload, **({"rule": rule} if rule else {})}
    session.add(
        Event(
            shop_id=shop_id,
            event_id=new_id("evt_"),
            type=getattr(type, "value", type),  # an EventType of the catalog (engine/events.py)
            aggregate_type=aggregate_type,
            aggregate_id=aggregate_id,
            rule=rule,
            occurred_at=now,
            payload=data,  # + the shop's currency, at flush (_add_currency)
        )
    )


@event.listens_for(Session, "before_flush")
def _add_currency(session: Session, flush_context, instances) -> None:
    """Every payload carries the shop's currency beside its amounts (SH-2), filled in here so no call site has
    to remember it and emit stays a plain synchronous add; a key the caller gave wins. The currency is the
    shop row the transaction already loaded, else one primary-key read of it: a plain value in the INSERT
    (Citus refuses an INSERT with a sub-select in it, docs/sharding.md)."""
    pending = [o for o in session.new if isinstance(o, Event) and "currency" not in o.payload]
    if not pending:
        return
    with session.no_autoflush:
        currency = {sid: getattr(session.get(Shop, sid), "currency", None) for sid in {o.shop_id for o in pending}}
    for o in pending:
        o.payload = {"currency": currency[o.shop_id], **o.payload}
