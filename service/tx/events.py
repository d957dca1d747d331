"""Transactional outbox: events are rows written in the transaction of the change they report.

Every payload carries the shop's currency beside its amounts (SH-2). A shop's currency never changes,
so each process keeps it once known (`remember_currency`: shops are created, authenticated and loaded
through service/usecases/shops.py, and the lean group paths load it with the rows they lock). The INSERT then
carries it as a plain value: no sub-select of `shops`, which Citus refuses inside an INSERT (issue 17).
An event of a shop this process has not met yet gets its currency read just before the flush that
writes it (one primary-key read of `shops`, in the same transaction).
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import event as sa_event
from sqlalchemy import select
from sqlalchemy.orm import Session

from engine.events import EventType
from service.tx.ids import new_id
from store.models import Event, Shop

_CURRENCY: dict[str, str] = {}  # shop_id -> currency; never changes once a shop exists (SH-2)


def remember_currency(shop_id: str, currency: str) -> None:
    if shop_id and currency:
        _CURRENCY[shop_id] = currency


def known_currency(shop_id: str) -> str | None:
    return _CURRENCY.get(shop_id)


def payload_of(shop_id: str, payload: dict[str, Any], rule: str | None, currency: str | None) -> dict[str, Any]:
    """The stored payload: the currency first, then the caller's keys (a key the caller gave wins: it is the
    same one currency anyway), then the rule."""
    return {"currency": currency or _CURRENCY.get(shop_id), **payload, **({"rule": rule} if rule else {})}


def emit(
    session,
    *,
    shop_id: str,
    type: EventType,  # mypy holds service/ to the catalog; tests/engine/test_event_catalog.py checks payload keys
    aggregate_type: str,
    aggregate_id: str,
    now,
    payload: dict[str, Any],
    rule: str | None = None,
    currency: str | None = None,
) -> None:
    session.add(
        Event(
            shop_id=shop_id,
            event_id=new_id("evt_"),
            type=getattr(type, "value", type),  # an EventType of the catalog (engine/events.py)
            aggregate_type=aggregate_type,
            aggregate_id=aggregate_id,
            rule=rule,
            occurred_at=now,
            payload=payload_of(shop_id, payload, rule, currency),
        )
    )


@sa_event.listens_for(Session, "before_flush")
def _fill_currency(session: Session, _ctx, _instances) -> None:
    """Events whose shop's currency this process did not know yet: read it once per shop (the flush runs in
    the session's greenlet, so this synchronous read is the async session's own connection)."""
    for obj in session.new:
        if isinstance(obj, Event) and obj.payload.get("currency") is None:
            cur = _CURRENCY.get(obj.shop_id)
            if cur is None:
                cur = session.execute(select(Shop.currency).where(Shop.shop_id == obj.shop_id)).scalar_one()
                remember_currency(obj.shop_id, cur)
            obj.payload = {**obj.payload, "currency": cur}
