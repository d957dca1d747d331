"""Transactional outbox: events are rows written in the transaction of the change they report."""

from __future__ import annotations

from typing import Any

from sqlalchemy import func, literal, select
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.ext.asyncio import AsyncSession

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
    # Every payload carries the shop's currency beside its amounts (SH-2). It is filled in by the
    # INSERT itself (a sub-select of shops), so no call site has to remember it and emit stays a
    # plain synchronous add; a key the caller gave wins (it is the same one currency anyway).
    currency = select(Shop.currency).where(Shop.shop_id == shop_id).scalar_subquery()
    session.add(
        Event(
            shop_id=shop_id,
            event_id=new_id("evt_"),
            type=getattr(type, "value", type),  # an EventType of the catalog (engine/events.py)
            aggregate_type=aggregate_type,
            aggregate_id=aggregate_id,
            rule=rule,
            occurred_at=now,
            payload=func.jsonb_build_object("currency", currency).op("||", return_type=JSONB)(
                literal(data, JSONB)),
        )
    )
