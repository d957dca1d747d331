"""Transactional outbox: events are rows written in the transaction of the change they report."""

from __future__ import annotations

from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from service.ids import new_id
from store.models import Event


def emit(
    session: AsyncSession,
    *,
    shop_id: str,
    type: str,
    aggregate_type: str,
    aggregate_id: str,
    now,
    payload: dict[str, Any],
    rule: str | None = None,
) -> None:
    session.add(
        Event(
            shop_id=shop_id,
            event_id=new_id("evt_"),
            type=type,
            aggregate_type=aggregate_type,
            aggregate_id=aggregate_id,
            rule=rule,
            occurred_at=now,
            payload={**payload, **({"rule": rule} if rule else {})},
        )
    )
