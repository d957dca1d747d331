"""Signed webhooks out of the transactional outbox.

- Every event row fans out to the shop's matching endpoints inside the event's own transaction
  (trigger `events_fan_out`), so an event is delivered iff the change that made it committed.
- The delivery worker claims due deliveries with FOR UPDATE SKIP LOCKED and holds the claim while
  it posts, so several service processes never send the same event at the same time.
- Per endpoint, the events of one aggregate (a group, an order, a distributor) go out in order: a
  delivery waits while an earlier one of the same aggregate is still pending.
- Retries back off exponentially with jitter (10 s doubling, capped at 1 h) for at least 24 h, then
  the delivery is DEAD. An endpoint that fails MAX_CONSECUTIVE_FAILURES times in a row is disabled,
  with a `webhook.endpoint_disabled` event the admin can see. Delivery is at-least-once: receivers
  de-duplicate by `Sharecart-Event-Id`.

Signature: header `Sharecart-Signature: t=<unix seconds>,v1=<hex>[,v1=<hex>]` where each v1 is
HMAC-SHA256(secret, f"{t}.{raw body}") — one per live secret during a rotation overlap.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import random
import secrets
import time
from datetime import timedelta

import httpx
from sqlalchemy import select, text, update

from engine.errors import ErrorCode, refuse
from service import events
from service.context import Services
from service.ids import new_id
from service.uow import unit_of_work
from store.models import Event, WebhookAttempt, WebhookDelivery, WebhookEndpoint

RETRY_FOR = timedelta(hours=24)
MIN_ATTEMPTS_BEFORE_DEAD = 48  # with the backoff below: about a day of retrying even if the worker was down
MAX_CONSECUTIVE_FAILURES = 50
BASE_DELAY_S, MAX_DELAY_S = 10, 3600


def sign(secret: str, timestamp: int, body: bytes) -> str:
    return hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256).hexdigest()


def verify(header: str, body: bytes, secret: str, *, tolerance_s: int | None = None, now: int | None = None) -> bool:
    """What a receiver does: recompute the HMAC over t + body and compare in constant time."""
    parts = [p.split("=", 1) for p in header.split(",") if "=" in p]
    t = next((v for k, v in parts if k == "t"), None)
    if t is None:
        return False
    if tolerance_s is not None and abs((now or int(time.time())) - int(t)) > tolerance_s:
        return False
    expected = sign(secret, int(t), body)
    return any(k == "v1" and hmac.compare_digest(v, expected) for k, v in parts)


def backoff(attempts: int) -> timedelta:
    delay = min(BASE_DELAY_S * 2 ** max(attempts - 1, 0), MAX_DELAY_S)
    return timedelta(seconds=delay * random.uniform(0.5, 1.5))


async def register_endpoint(svc: Services, *, shop_id: str, url: str, event_types: list[str] | None = None
                            ) -> WebhookEndpoint:
    if not url.startswith(("http://", "https://")):
        raise refuse(ErrorCode.INVALID_INPUT, "the URL must be http(s)", field="url")
    async with unit_of_work(svc) as s:
        ep = WebhookEndpoint(shop_id=shop_id, endpoint_id=new_id("wh_"), url=url, event_types=event_types or [],
                             secret=f"whsec_{secrets.token_urlsafe(24)}", enabled=True, consecutive_failures=0,
                             created_at=svc.now())
        s.add(ep)
    return ep


async def rotate_secret(svc: Services, *, shop_id: str, endpoint_id: str, overlap: timedelta = timedelta(hours=24)
                        ) -> WebhookEndpoint:
    """New secret now; the old one keeps signing (a second v1) until the overlap ends."""
    async with unit_of_work(svc) as s:
        ep = await s.get(WebhookEndpoint, (shop_id, endpoint_id), with_for_update=True)
        if ep is None:
            raise refuse(ErrorCode.NOT_FOUND, "endpoint not found", field="endpointId")
        ep.previous_secret, ep.previous_secret_until = ep.secret, svc.now() + overlap
        ep.secret = f"whsec_{secrets.token_urlsafe(24)}"
        return ep


async def enable_endpoint(svc: Services, *, shop_id: str, endpoint_id: str) -> None:
    async with unit_of_work(svc) as s:
        await s.execute(update(WebhookEndpoint).where(WebhookEndpoint.shop_id == shop_id,
                                                      WebhookEndpoint.endpoint_id == endpoint_id)
                        .values(enabled=True, consecutive_failures=0, disabled_at=None))


async def redeliver(svc: Services, *, shop_id: str, endpoint_id: str, from_seq: int, to_seq: int) -> int:
    """Replay: owe the endpoint every event of the shop with from_seq <= seq <= to_seq again."""
    async with unit_of_work(svc) as s:
        if await s.get(WebhookEndpoint, (shop_id, endpoint_id)) is None:  # SH-1: only the shop's own endpoints
            raise refuse(ErrorCode.NOT_FOUND, "endpoint not found", field="endpointId")
        r = await s.execute(text(
            """
            INSERT INTO webhook_deliveries (shop_id, endpoint_id, event_id, seq, aggregate_id, state, attempts,
                                            next_attempt_at, created_at)
            SELECT shop_id, :ep, event_id, seq, aggregate_id, 'PENDING', 0, :now, :now FROM events
            WHERE shop_id = :s AND seq BETWEEN :a AND :b
            ON CONFLICT (shop_id, endpoint_id, event_id) DO UPDATE
                SET state = 'PENDING', next_attempt_at = EXCLUDED.next_attempt_at, attempts = 0
            """), {"s": shop_id, "ep": endpoint_id, "a": from_seq, "b": to_seq, "now": svc.now()})
        return r.rowcount


async def events_since(svc: Services, *, shop_id: str, after_seq: int = 0, limit: int = 100,
                       types: list[str] | None = None) -> list[Event]:
    """Replay by pull: the shop's events after a cursor (the `seq` of the last one seen)."""
    async with svc.sessionmaker() as s:
        q = select(Event).where(Event.shop_id == shop_id, Event.seq > after_seq)
        if types:
            q = q.where(Event.type.in_(types))
        return list((await s.execute(q.order_by(Event.seq).limit(min(limit, 1000)))).scalars())


def event_body(ev: Event) -> bytes:
    return json.dumps({"id": ev.event_id, "seq": ev.seq, "type": ev.type, "shop_id": ev.shop_id,
                       "aggregate_type": ev.aggregate_type, "aggregate_id": ev.aggregate_id, "rule": ev.rule,
                       "occurred_at": ev.occurred_at.isoformat(), "data": ev.payload},
                      sort_keys=True, separators=(",", ":")).encode()


DUE_SQL = text(
    """
    SELECT d.shop_id, d.endpoint_id, d.event_id FROM webhook_deliveries d
    WHERE d.state = 'PENDING' AND d.next_attempt_at <= :now
      AND NOT EXISTS (SELECT 1 FROM webhook_deliveries p
                      WHERE p.shop_id = d.shop_id AND p.endpoint_id = d.endpoint_id
                        AND p.aggregate_id = d.aggregate_id AND p.state = 'PENDING' AND p.seq < d.seq)
    ORDER BY d.next_attempt_at, d.seq
    LIMIT :n
    FOR UPDATE OF d SKIP LOCKED
    """
)


async def deliver_due(svc: Services, *, client: httpx.AsyncClient | None = None, batch: int = 20,
                      timeout_s: float = 5.0) -> int:
    """Post every due delivery once; returns how many were attempted."""
    own = client is None
    client = client or httpx.AsyncClient(timeout=timeout_s)
    attempted = 0
    try:
        while True:
            async with unit_of_work(svc) as s:
                now = svc.now()
                keys = (await s.execute(DUE_SQL, {"now": now, "n": batch})).all()
                if not keys:
                    return attempted
                for shop_id, endpoint_id, event_id in keys:
                    await _attempt(s, client, shop_id, endpoint_id, event_id, now)
                    attempted += 1
            if len(keys) < batch:
                return attempted
    finally:
        if own:
            await client.aclose()


async def _attempt(s, client: httpx.AsyncClient, shop_id: str, endpoint_id: str, event_id: str, now) -> None:
    d = await s.get(WebhookDelivery, (shop_id, endpoint_id, event_id))
    ep = await s.get(WebhookEndpoint, (shop_id, endpoint_id), with_for_update=True)
    ev = await s.get(Event, (shop_id, event_id))
    if not ep.enabled:
        d.next_attempt_at = now + timedelta(hours=1)  # parked until the admin re-enables the endpoint
        return
    body = event_body(ev)
    ts = int(now.timestamp())
    sigs = [ep.secret] + ([ep.previous_secret] if ep.previous_secret and ep.previous_secret_until
                          and now < ep.previous_secret_until else [])
    headers = {"Content-Type": "application/json", "Sharecart-Event-Id": ev.event_id,
               "Sharecart-Event-Type": ev.type,
               "Sharecart-Signature": ",".join([f"t={ts}"] + [f"v1={sign(k, ts, body)}" for k in sigs])}
    started = time.perf_counter()
    status, error = None, None
    try:
        r = await client.post(ep.url, content=body, headers=headers)
        status = r.status_code
        ok = 200 <= status < 300
    except httpx.HTTPError as e:
        ok, error = False, type(e).__name__
    d.attempts += 1
    d.last_status, d.last_error = status, error
    s.add(WebhookAttempt(shop_id=shop_id, attempt_id=new_id("wa_"), endpoint_id=endpoint_id, event_id=event_id,
                         at=now, status_code=status, error=error,
                         duration_ms=int((time.perf_counter() - started) * 1000)))
    if ok:
        d.state, d.delivered_at = "DELIVERED", now
        ep.consecutive_failures = 0
        return
    ep.consecutive_failures += 1
    if now - d.created_at >= RETRY_FOR and d.attempts >= MIN_ATTEMPTS_BEFORE_DEAD:
        d.state = "DEAD"
    else:
        d.next_attempt_at = now + backoff(d.attempts)
    if ep.consecutive_failures >= MAX_CONSECUTIVE_FAILURES and ep.enabled:
        ep.enabled, ep.disabled_at = False, now
        events.emit(s, shop_id=shop_id, type="webhook.endpoint_disabled", aggregate_type="webhook",
                    aggregate_id=endpoint_id, now=now,
                    payload={"endpoint_id": endpoint_id, "url": ep.url, "failures": ep.consecutive_failures})
