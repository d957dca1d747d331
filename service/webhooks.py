"""Signed webhooks out of the transactional outbox.

- Every event row fans out to the shop's matching endpoints inside the event's own transaction
  (trigger `events_fan_out`), so an event is owed to an endpoint iff the change that made it committed
  — also while the endpoint is disabled: its deliveries are HELD and go out once it is enabled again.
- The delivery worker claims one due delivery per transaction with FOR UPDATE SKIP LOCKED and keeps
  that claim while it posts, so several service processes never send the same event at the same time,
  and a process killed mid-POST releases the claim (the delivery is still PENDING). The endpoint row is
  never locked across a POST: its failure counters are guarded UPDATEs after the POST.
- Per endpoint, the events of one aggregate (a group, an order, a distributor) go out in `seq` order: a
  delivery waits while an earlier one of the same aggregate is still owed (PENDING or HELD).
- Retries back off exponentially with jitter (10 s doubling, capped at 1 h). An endpoint is disabled
  only after failing without a single success for DISABLE_AFTER (24 h) and at least
  DISABLE_MIN_FAILURES attempts, with a `webhook.endpoint_disabled` event the admin sees; nothing it
  is owed is dropped. A single delivery that keeps failing while its endpoint accepts others is DEAD
  after RETRY_FOR (24 h) and MIN_ATTEMPTS_BEFORE_DEAD attempts, so it stops blocking its aggregate;
  `redeliver` owes it again. Delivery is at-least-once: receivers de-duplicate by `Sharecart-Event-Id`.

Signature: header `Sharecart-Signature: t=<unix seconds>,v1=<hex>[,v1=<hex>]` where each v1 is
HMAC-SHA256(secret, f"{t}.{raw body}") — one per live secret during a rotation overlap.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import logging
import random
import secrets
import time
from collections import Counter
from datetime import timedelta

import httpx
from sqlalchemy import func, select, text, update
from sqlalchemy.orm import with_expression

from engine.errors import ErrorCode, refuse
from service import events, metrics
from service.context import Services
from service.feed import sequence
from service.idempotency import once, once_row
from service.ids import new_id
from service.uow import unit_of_work
from store.models import Event, EventFeed, WebhookAttempt, WebhookDelivery, WebhookEndpoint

RETRY_FOR = timedelta(hours=24)
MIN_ATTEMPTS_BEFORE_DEAD = 48  # with the backoff below: about 40 h of retrying even if the worker was down
# An endpoint is disabled after failing for a real time window, not after a count that one burst of events
# can reach in a second. A wholly failing endpoint reaches this (24 h, 10 attempts) long before any of its
# deliveries could be DEAD (48 attempts take ~40 h), so an endpoint that is down loses nothing: it is held.
DISABLE_AFTER = timedelta(hours=24)
DISABLE_MIN_FAILURES = 10
BASE_DELAY_S, MAX_DELAY_S = 10, 3600
log = logging.getLogger("sharecart.webhooks")


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


async def register_endpoint(svc: Services, *, shop_id: str, url: str, event_types: list[str] | None = None,
                            idempotency_key: str | None = None) -> WebhookEndpoint:
    """A new endpoint with a fresh secret. With `idempotency_key` (GB-10) a retry of the same request returns
    the endpoint the first call created instead of registering a second one (which would get every event
    twice, under another secret)."""
    if not url.startswith(("http://", "https://")):
        raise refuse(ErrorCode.INVALID_INPUT, "the URL must be http(s)", field="url")
    now = svc.now()
    async with unit_of_work(svc) as s:
        async def run():
            ep = WebhookEndpoint(shop_id=shop_id, endpoint_id=new_id("wh_"), url=url, event_types=event_types or [],
                                 secret=f"whsec_{secrets.token_urlsafe(24)}", enabled=True, consecutive_failures=0,
                                 created_at=now)
            s.add(ep)
            return {"endpoint_id": ep.endpoint_id}

        r = await once(s, shop_id=shop_id, scope="register_webhook", key=idempotency_key,
                       request={"url": url, "event_types": sorted(event_types or [])}, now=now, run=run)
        return await _endpoint(s, shop_id, r["endpoint_id"])


async def rotate_secret(svc: Services, *, shop_id: str, endpoint_id: str, overlap: timedelta = timedelta(hours=24),
                        idempotency_key: str | None = None) -> WebhookEndpoint:
    """New secret now; the old one keeps signing (a second v1) until the overlap ends. With
    `idempotency_key` (GB-10) a retry does not rotate again: a second rotation would make the secret the
    caller just lost the answer about the "old" one and cut the overlap of the secret receivers still use."""
    now = svc.now()
    async with unit_of_work(svc) as s:
        async def run():
            ep = await s.get(WebhookEndpoint, (shop_id, endpoint_id), with_for_update=True)
            if ep is None:
                raise refuse(ErrorCode.NOT_FOUND, "endpoint not found", field="endpointId")
            ep.previous_secret, ep.previous_secret_until = ep.secret, now + overlap
            ep.secret = f"whsec_{secrets.token_urlsafe(24)}"
            return {"endpoint_id": endpoint_id}

        await once(s, shop_id=shop_id, scope="rotate_webhook_secret", key=idempotency_key,
                   request={"endpoint_id": endpoint_id, "overlap_s": overlap.total_seconds()}, now=now, run=run)
        return await _endpoint(s, shop_id, endpoint_id)


async def _endpoint(s, shop_id: str, endpoint_id: str) -> WebhookEndpoint:
    """The endpoint as it stands in this transaction (a replayed call returns it with its current secret)."""
    await s.flush()
    ep = await s.get(WebhookEndpoint, (shop_id, endpoint_id))
    if ep is None:
        raise refuse(ErrorCode.NOT_FOUND, "endpoint not found", field="endpointId")
    return ep


async def enable_endpoint(svc: Services, *, shop_id: str, endpoint_id: str,
                          idempotency_key: str | None = None) -> WebhookEndpoint:
    """Re-enable an endpoint: its held deliveries (and those waiting out a backoff) are due now, in order."""
    now = svc.now()
    async with unit_of_work(svc) as s:
        async def run() -> WebhookEndpoint:
            # The endpoint row first: a worker about to hold a delivery re-reads the endpoint under FOR SHARE
            # (_hold), so it waits for this commit and then sees the endpoint enabled.
            ep = await s.get(WebhookEndpoint, (shop_id, endpoint_id), with_for_update=True)
            if ep is None:
                raise refuse(ErrorCode.NOT_FOUND, "endpoint not found", field="endpointId")
            ep.enabled, ep.consecutive_failures, ep.failing_since, ep.disabled_at = True, 0, None, None
            await s.flush()
            # SKIP LOCKED: a delivery a worker holds is being attempted now (or will find the endpoint enabled);
            # waiting for it while holding the endpoint row would deadlock with that worker's counter update.
            await s.execute(RELEASE_SQL, {"s": shop_id, "ep": endpoint_id, "now": now})
            return ep

        return await once_row(s, WebhookEndpoint, shop_id=shop_id, scope="enable_webhook", key=idempotency_key,
                              now=now, run=run, request={"endpoint_id": endpoint_id})


RELEASE_SQL = text(
    """
    UPDATE webhook_deliveries SET state = 'PENDING', next_attempt_at = :now
    WHERE shop_id = :s AND (shop_id, endpoint_id, event_id) IN (  -- the shop outside too: one shard on Citus
        SELECT shop_id, endpoint_id, event_id FROM webhook_deliveries
        WHERE shop_id = :s AND endpoint_id = :ep AND state IN ('PENDING', 'HELD')
        FOR UPDATE SKIP LOCKED)
    """
)


async def list_endpoints(svc: Services, *, shop_id: str) -> list[WebhookEndpoint]:
    async with svc.sessionmaker() as s:
        return list((await s.execute(select(WebhookEndpoint).where(WebhookEndpoint.shop_id == shop_id)
                                     .order_by(WebhookEndpoint.created_at, WebhookEndpoint.endpoint_id))).scalars())


async def redeliver(svc: Services, *, shop_id: str, endpoint_id: str, from_seq: int, to_seq: int,
                    idempotency_key: str | None = None) -> int:
    """Replay: owe the endpoint again every event of the shop with from_seq <= seq <= to_seq that its
    event-type filter takes (the same filter as the fan-out). Returns how many deliveries are owed.
    With `idempotency_key` (GB-10) a retry answers the first count and owes nothing again."""
    if from_seq > to_seq:
        raise refuse(ErrorCode.INVALID_INPUT, "fromSeq must be <= toSeq", field="toSeq")
    now = svc.now()
    async with unit_of_work(svc) as s:
        async def run() -> dict:
            if await s.get(WebhookEndpoint, (shop_id, endpoint_id)) is None:  # else the worker would own an orphan
                raise refuse(ErrorCode.NOT_FOUND, "endpoint not found", field="endpointId")
            r = await s.execute(text(
                """
                INSERT INTO webhook_deliveries (shop_id, endpoint_id, event_id, seq, aggregate_id, state, attempts,
                                                next_attempt_at, created_at)
                SELECT v.shop_id, e.endpoint_id, v.event_id, v.seq, v.aggregate_id, 'PENDING', 0, :now, :now
                FROM events v JOIN webhook_endpoints e ON e.shop_id = v.shop_id AND e.endpoint_id = :ep
                WHERE v.shop_id = :s AND v.seq BETWEEN :a AND :b
                  AND (jsonb_array_length(e.event_types) = 0 OR e.event_types ? v.type)
                ON CONFLICT (shop_id, endpoint_id, event_id) DO UPDATE
                    SET state = 'PENDING', next_attempt_at = EXCLUDED.next_attempt_at, attempts = 0
                """), {"s": shop_id, "ep": endpoint_id, "a": from_seq, "b": to_seq, "now": now})
            return {"queued": r.rowcount}

        r = await once(s, shop_id=shop_id, scope="redeliver_events", key=idempotency_key, now=now, run=run,
                       request={"endpoint_id": endpoint_id, "from_seq": from_seq, "to_seq": to_seq})
        return r["queued"]


def feed(shop_id: str):
    """The shop's events in feed order, each with its `position` (service/feed.py)."""
    return (select(Event).join(EventFeed, (EventFeed.shop_id == Event.shop_id) & (EventFeed.event_id == Event.event_id))
            .where(EventFeed.shop_id == shop_id, Event.shop_id == shop_id)
            .options(with_expression(Event.position, EventFeed.position)))


def event_position(ev: Event) -> int:
    """Where an event sits in the shop's feed; the cursor of `events_since`."""
    return ev.position


async def events_since(svc: Services, *, shop_id: str, after: int | None = None, limit: int = 100,
                       types: list[str] | None = None) -> list[Event]:
    """Replay by pull: the shop's events after a cursor (`event_position` of the last one seen), in commit
    order. Every event committed before the call is in it (the pull positions them first), and an event
    that commits later gets a later position: no cursor ever skips one."""
    await sequence(svc, shop_id=shop_id)
    async with svc.sessionmaker() as s:
        q = feed(shop_id)
        if after is not None:
            q = q.where(EventFeed.position > after)
        if types:
            q = q.where(Event.type.in_(types))
        return list((await s.execute(q.order_by(EventFeed.position).limit(min(limit, 1000)))).scalars())


def event_body(ev: Event) -> bytes:
    return json.dumps({"id": ev.event_id, "seq": ev.seq, "type": ev.type, "shop_id": ev.shop_id,
                       "aggregate_type": ev.aggregate_type, "aggregate_id": ev.aggregate_id, "rule": ev.rule,
                       "occurred_at": ev.occurred_at.isoformat(), "data": ev.payload},
                      sort_keys=True, separators=(",", ":")).encode()


CLAIM_SQL = text(
    """
    SELECT d.shop_id, d.endpoint_id, d.event_id FROM webhook_deliveries d
    WHERE d.shop_id = :shop_id AND d.state = 'PENDING' AND d.next_attempt_at <= :now
      AND d.endpoint_id <> ALL(CAST(:busy AS text[]))
      AND NOT EXISTS (SELECT 1 FROM webhook_deliveries p
                      WHERE p.shop_id = d.shop_id AND p.endpoint_id = d.endpoint_id
                        AND p.aggregate_id = d.aggregate_id AND p.state IN ('PENDING', 'HELD') AND p.seq < d.seq)
    ORDER BY d.next_attempt_at, d.seq
    LIMIT 1
    FOR UPDATE OF d SKIP LOCKED
    """
)


# Claims are made shop by shop (docs/sharding.md): find the shops with due deliveries (a read that locks
# nothing), then claim inside one shop, so every locking statement routes to one shard on Citus.
SHOPS_WITH_DUE_DELIVERIES = text(
    "SELECT DISTINCT shop_id FROM webhook_deliveries WHERE state = 'PENDING' AND next_attempt_at <= :now")


async def deliver_due(svc: Services, *, client: httpx.AsyncClient | None = None, concurrency: int = 4,
                      timeout_s: float = 5.0, stop: asyncio.Event | None = None) -> int:
    """Attempt every due delivery once (a failure is rescheduled by backoff, so it is not due again in this
    pass); returns how many POSTs were made.

    `concurrency` lanes each claim and post one delivery per transaction. At most half of them post to one
    endpoint at a time: a receiver that hangs for the whole timeout cannot take every lane, the others go
    on with the other endpoints. A delivery that breaks the worker rolls back alone."""
    own = client is None
    client = client or httpx.AsyncClient(timeout=timeout_s)
    busy = _Busy(per_endpoint=max(1, concurrency // 2))
    attempted = 0
    async with svc.sessionmaker() as s:
        shops = sorted((await s.execute(SHOPS_WITH_DUE_DELIVERIES, {"now": svc.now()})).scalars())

    async def lane(offset: int) -> None:
        nonlocal attempted
        idle: set[str] = set()  # shops where this lane found nothing claimable (left to the lane posting there)
        turn = offset
        while len(idle) < len(shops) and (stop is None or not stop.is_set()):
            shop_id = shops[turn % len(shops)]  # shops take turns: one shop's backlog does not starve the others
            turn += 1
            if shop_id in idle:
                continue
            outcome = await _deliver_one(svc, client, busy, shop_id)
            if outcome is None:
                idle.add(shop_id)
                continue
            attempted += outcome

    try:
        async with asyncio.TaskGroup() as lanes:  # one lane failing (the database away) stops the others
            for n in range(concurrency):
                lanes.create_task(lane(n))
        return attempted
    finally:
        if own:
            await client.aclose()


class _Busy:
    """The endpoints this process is posting to, and how many lanes each holds."""

    def __init__(self, per_endpoint: int) -> None:
        self.per_endpoint, self.lanes = per_endpoint, Counter()
        self.claiming = asyncio.Lock()  # claim and count as one step, so the cap holds between lanes

    def full(self) -> list[str]:
        return sorted(e for e, n in self.lanes.items() if n >= self.per_endpoint)


async def _deliver_one(svc: Services, client: httpx.AsyncClient, busy: _Busy, shop_id: str) -> int | None:
    """Claim one due delivery of the shop and attempt it in its own transaction: None when nothing is due, else the
    number of POSTs made (0 or 1)."""
    key = None
    try:
        async with unit_of_work(svc) as s:
            now = svc.now()
            async with busy.claiming:
                key = (await s.execute(CLAIM_SQL, {"shop_id": shop_id, "now": now, "busy": busy.full()})).first()
                if key is None:
                    return None
                busy.lanes[key.endpoint_id] += 1
            try:
                return await _attempt(s, client, key.shop_id, key.endpoint_id, key.event_id, now)
            finally:
                busy.lanes[key.endpoint_id] -= 1
    except Exception:
        if key is None:
            raise  # the claim itself failed (the database is away): the caller's loop retries later
        # Only this delivery's transaction rolled back; the others keep their attempts. Push it back so the
        # lanes do not pick it again at once (if even that fails, the error ends this pass).
        log.exception("webhook delivery %s/%s broke the worker", key.endpoint_id, key.event_id)
        async with unit_of_work(svc) as s:
            d = await s.get(WebhookDelivery, tuple(key), with_for_update=True)
            if d is not None and d.state == "PENDING":
                d.next_attempt_at, d.last_error = svc.now() + backoff(d.attempts + 1), "internal error"
        return 0


async def _attempt(s, client: httpx.AsyncClient, shop_id: str, endpoint_id: str, event_id: str, now) -> int:
    d = await s.get(WebhookDelivery, (shop_id, endpoint_id, event_id))  # claimed (row-locked) by CLAIM_SQL
    # Read, not locked: a lock on the endpoint held across the POST made every other worker wait for it.
    ep = await s.get(WebhookEndpoint, (shop_id, endpoint_id))
    ev = await s.get(Event, (shop_id, event_id))
    if ep is None or ev is None:  # cannot be sent (data removed by hand): set aside, visible, not retried
        d.state, d.last_error = "DEAD", "endpoint not found" if ep is None else "event not found"
        return 0
    if not ep.enabled:
        await _hold(s, d)
        return 0
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
    metrics.webhook_attempt(ok)
    d.attempts += 1
    d.last_status, d.last_error = status, error
    s.add(WebhookAttempt(shop_id=shop_id, attempt_id=new_id("wa_"), endpoint_id=endpoint_id, event_id=event_id,
                         at=now, status_code=status, error=error,
                         duration_ms=int((time.perf_counter() - started) * 1000)))
    key = (WebhookEndpoint.shop_id == shop_id, WebhookEndpoint.endpoint_id == endpoint_id)
    if ok:
        d.state, d.delivered_at = "DELIVERED", now
        await s.execute(update(WebhookEndpoint).where(*key, (WebhookEndpoint.consecutive_failures > 0)
                                                      | WebhookEndpoint.failing_since.is_not(None))
                        .values(consecutive_failures=0, failing_since=None))
        return 1
    failures, since = (await s.execute(
        update(WebhookEndpoint).where(*key)
        .values(consecutive_failures=WebhookEndpoint.consecutive_failures + 1,
                failing_since=func.coalesce(WebhookEndpoint.failing_since, now))
        .returning(WebhookEndpoint.consecutive_failures, WebhookEndpoint.failing_since))).one()
    d.next_attempt_at = now + backoff(d.attempts)
    if failures >= DISABLE_MIN_FAILURES and now - since >= DISABLE_AFTER:
        # guarded, so concurrent workers disable (and tell the admin) once; this delivery stays owed (held)
        if (await s.execute(update(WebhookEndpoint).where(*key, WebhookEndpoint.enabled)
                            .values(enabled=False, disabled_at=now).returning(WebhookEndpoint.url))).first():
            events.emit(s, shop_id=shop_id, type="webhook.endpoint_disabled", aggregate_type="webhook",
                        aggregate_id=endpoint_id, now=now,
                        payload={"endpoint_id": endpoint_id, "url": ep.url, "failures": failures,
                                 "failing_since": since.isoformat()})
    elif now - d.created_at >= RETRY_FOR and d.attempts >= MIN_ATTEMPTS_BEFORE_DEAD:
        d.state = "DEAD"  # its endpoint accepts others (else it would be disabled): stop blocking the aggregate
    return 1


async def _hold(s, d: WebhookDelivery) -> None:
    """The endpoint is disabled: HELD until enable_endpoint releases it. Re-read under FOR SHARE first: an
    enable in progress locks the endpoint row and skips the deliveries workers have claimed (this one), so
    this waits for it and, seeing the endpoint enabled, leaves the delivery due instead of holding it
    forever. The lock lasts only until this transaction commits: no POST is made on this path."""
    enabled = (await s.execute(select(WebhookEndpoint.enabled).where(
        WebhookEndpoint.shop_id == d.shop_id, WebhookEndpoint.endpoint_id == d.endpoint_id)
        .with_for_update(read=True))).scalar()
    if not enabled:
        d.state = "HELD"


async def disable_endpoint(svc: Services, *, shop_id: str, endpoint_id: str,
                           idempotency_key: str | None = None) -> WebhookEndpoint:
    """An admin stops deliveries to an endpoint: what it is owed from now on is HELD, not lost, until
    `enable_endpoint` (the same state the worker leaves a failing endpoint in). Disabling it again
    changes nothing (its first `disabled_at` stays)."""
    now = svc.now()
    async with unit_of_work(svc) as s:
        async def run() -> WebhookEndpoint:
            ep = await s.get(WebhookEndpoint, (shop_id, endpoint_id), with_for_update=True)
            if ep is None:
                raise refuse(ErrorCode.NOT_FOUND, "endpoint not found", field="endpointId")
            if ep.enabled:
                ep.enabled, ep.disabled_at = False, now
            await s.flush()
            return ep

        return await once_row(s, WebhookEndpoint, shop_id=shop_id, scope="disable_webhook", key=idempotency_key,
                              now=now, run=run, request={"endpoint_id": endpoint_id})
