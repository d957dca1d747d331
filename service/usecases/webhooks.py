"""Signed webhooks out of the transactional outbox.

- Every event row fans out to the shop's matching endpoints inside the event's own transaction
  (trigger `events_fan_out`), so an event is owed to an endpoint iff the change that made it committed
  — also while the endpoint is disabled: its deliveries are HELD and go out once it is enabled again.
- Delivery never holds a transaction across a POST (issue 11, point 2): claim, commit, post, record. The claim
  is a lease (`lease_until`, by the database's clock, and a `lease_token`) taken in a short transaction with
  FOR UPDATE SKIP LOCKED, so several service processes never send the same event at the same time; the POST
  runs with no transaction open and one overall deadline (DNS, connect, TLS, request, response headers and at
  most RESPONSE_READ_LIMIT bytes of body); the outcome is recorded in a second short transaction, guarded by
  the lease token. A process killed mid-POST leaves a lease that expires after the deadline plus LEASE_SLACK_S;
  the delivery is then sent again (at-least-once).
- Lanes: at most `concurrency` POSTs in flight per process, at most `per_endpoint` to one endpoint; the
  delivery loop starts a new POST as soon as a lane frees, so no pass waits for its slowest receiver.
- Per endpoint, the events of one aggregate (a group, an order, a distributor) go out in `seq` order: a
  delivery waits while an earlier one of the same aggregate is still owed (PENDING or HELD).
- Retries back off exponentially with jitter (10 s doubling, capped at 1 h). An endpoint is disabled
  only after failing without a single success for DISABLE_AFTER (24 h) and at least
  DISABLE_MIN_FAILURES attempts, with a `webhook.endpoint_disabled` event the admin sees; nothing it
  is owed is dropped. A single delivery that keeps failing while its endpoint accepts others is DEAD
  after RETRY_FOR (24 h) and MIN_ATTEMPTS_BEFORE_DEAD attempts, so it stops blocking its aggregate;
  `redeliver` owes it again. Delivery is at-least-once: receivers de-duplicate by `webhook-id`.
- Targets are checked against SSRF at registration and again, pinned, at every attempt
  (service/webhook_targets.py); attempt records show the admin only a status code or a generic failure.

Signature: Standard Webhooks (https://www.standardwebhooks.com, issue 13 point 1): headers `webhook-id` (the
event id), `webhook-timestamp` (unix seconds of the wall clock when the POST is sent, never the service's test
clock) and `webhook-signature: v1,<base64>[ v1,<base64>]`, each the HMAC-SHA256 of `{id}.{timestamp}.{body}`
under the base64-decoded part of a `whsec_` secret — one per live secret during a rotation overlap.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
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
from sqlalchemy import delete, func, select, text, update
from sqlalchemy.orm import with_expression

from engine.errors import ErrorCode, refuse
from engine.events import EventType, is_event_type
from service.tx import events
from service import metrics, webhook_targets
from service.context import Services
from service.jobs.feed import sequence
from service.tx.idempotency import once, once_row
from service.tx.ids import new_id
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


SECRET_BYTES = 32  # the spec asks for 24 to 64 random bytes


def new_secret() -> str:
    """A Standard Webhooks secret: `whsec_` + standard base64 of SECRET_BYTES random bytes."""
    return "whsec_" + base64.b64encode(secrets.token_bytes(SECRET_BYTES)).decode()


def signing_key(secret: str) -> bytes:
    """The HMAC key of a `whsec_` secret: its base64 part, decoded (as the `standardwebhooks` package does).
    Secrets made before Standard Webhooks (`whsec_` + URL-safe text) may not decode; they sign with their raw
    bytes, which no standard verifier accepts: rotate them (docs/webhooks.md)."""
    raw = secret.removeprefix("whsec_")
    try:
        key = base64.b64decode(raw + "==")
    except binascii.Error:
        key = b""
    return key or raw.encode()


def sign(secret: str, msg_id: str, timestamp: int, body: bytes) -> str:
    """One `v1,<base64>` signature of `{msg_id}.{timestamp}.{body}`."""
    mac = hmac.new(signing_key(secret), f"{msg_id}.{timestamp}.".encode() + body, hashlib.sha256).digest()
    return "v1," + base64.b64encode(mac).decode()


def signed_headers(secrets_: list[str], msg_id: str, body: bytes, *, timestamp: int | None = None) -> dict[str, str]:
    """The Standard Webhooks headers for one POST, signed with every live secret (space-separated)."""
    ts = int(time.time()) if timestamp is None else timestamp  # the wall clock: receivers compare with theirs
    return {
        "content-type": "application/json",
        "webhook-id": msg_id,
        "webhook-timestamp": str(ts),
        "webhook-signature": " ".join(sign(k, msg_id, ts, body) for k in secrets_),
    }


def backoff(attempts: int) -> timedelta:
    delay = min(BASE_DELAY_S * 2 ** max(attempts - 1, 0), MAX_DELAY_S)
    return timedelta(seconds=delay * random.uniform(0.5, 1.5))


async def register_endpoint(
    svc: Services, *, shop_id: str, url: str, event_types: list[str] | None = None, idempotency_key: str | None = None
) -> WebhookEndpoint:
    """A new endpoint with a fresh secret. With `idempotency_key` (GB-10) a retry of the same request returns
    the endpoint the first call created instead of registering a second one (which would get every event
    twice, under another secret)."""
    await _refuse_unsafe_url(url)
    unknown = sorted({t for t in event_types or [] if not is_event_type(t)})
    if unknown:  # the catalog (engine/events.py, docs/webhooks.md): a typo would silently match nothing
        raise refuse(
            ErrorCode.INVALID_INPUT, f"unknown event types {unknown}; see docs/webhooks.md", field="eventTypes"
        )
    now = svc.now()
    async with unit_of_work(svc) as s:

        async def run():
            ep = WebhookEndpoint(
                shop_id=shop_id,
                endpoint_id=new_id("wh_"),
                url=url,
                event_types=event_types or [],
                secret=new_secret(),
                enabled=True,
                consecutive_failures=0,
                created_at=now,
            )
            s.add(ep)
            return {"endpoint_id": ep.endpoint_id}

        r = await once(
            s,
            shop_id=shop_id,
            scope="register_webhook",
            key=idempotency_key,
            request={"url": url, "event_types": sorted(event_types or [])},
            now=now,
            run=run,
        )
        return await _endpoint(s, shop_id, r["endpoint_id"])


async def _refuse_unsafe_url(url: str) -> None:
    """SSRF (issue 11.3): a URL that is not http(s), carries userinfo, names an internal host or resolves to
    a non-public address is refused (INVALID_INPUT, one log line with the reason)."""
    try:
        await webhook_targets.check_url(url)
    except webhook_targets.TargetRefused as e:
        log.info("webhook URL refused: %s", e)
        raise refuse(
            ErrorCode.INVALID_INPUT, "the URL must be a public http(s) address without user info", field="url"
        ) from None


async def rotate_secret(
    svc: Services,
    *,
    shop_id: str,
    endpoint_id: str,
    overlap: timedelta = timedelta(hours=24),
    idempotency_key: str | None = None,
) -> WebhookEndpoint:
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
            ep.secret = new_secret()
            return {"endpoint_id": endpoint_id}

        await once(
            s,
            shop_id=shop_id,
            scope="rotate_webhook_secret",
            key=idempotency_key,
            request={"endpoint_id": endpoint_id, "overlap_s": overlap.total_seconds()},
            now=now,
            run=run,
        )
        return await _endpoint(s, shop_id, endpoint_id)


async def _endpoint(s, shop_id: str, endpoint_id: str) -> WebhookEndpoint:
    """The endpoint as it stands in this transaction (a replayed call returns it with its current secret)."""
    await s.flush()
    ep = await s.get(WebhookEndpoint, (shop_id, endpoint_id))
    if ep is None:
        raise refuse(ErrorCode.NOT_FOUND, "endpoint not found", field="endpointId")
    return ep


async def enable_endpoint(
    svc: Services, *, shop_id: str, endpoint_id: str, idempotency_key: str | None = None
) -> WebhookEndpoint:
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

        return await once_row(
            s,
            WebhookEndpoint,
            shop_id=shop_id,
            scope="enable_webhook",
            key=idempotency_key,
            now=now,
            run=run,
            request={"endpoint_id": endpoint_id},
        )


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
        return list(
            (
                await s.execute(
                    select(WebhookEndpoint)
                    .where(WebhookEndpoint.shop_id == shop_id)
                    .order_by(WebhookEndpoint.created_at, WebhookEndpoint.endpoint_id)
                )
            ).scalars()
        )


async def redeliver(
    svc: Services, *, shop_id: str, endpoint_id: str, from_seq: int, to_seq: int, idempotency_key: str | None = None
) -> int:
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
            r = await s.execute(
                text(
                    """
                INSERT INTO webhook_deliveries (shop_id, endpoint_id, event_id, seq, aggregate_id, state, attempts,
                                                next_attempt_at, created_at)
                SELECT v.shop_id, e.endpoint_id, v.event_id, v.seq, v.aggregate_id, 'PENDING', 0, :now, :now
                FROM events v JOIN webhook_endpoints e ON e.shop_id = v.shop_id AND e.endpoint_id = :ep
                WHERE v.shop_id = :s AND v.seq BETWEEN :a AND :b
                  AND (jsonb_array_length(e.event_types) = 0 OR e.event_types ? v.type)
                ON CONFLICT (shop_id, endpoint_id, event_id) DO UPDATE
                    SET state = 'PENDING', next_attempt_at = EXCLUDED.next_attempt_at, attempts = 0
                """
                ),
                {"s": shop_id, "ep": endpoint_id, "a": from_seq, "b": to_seq, "now": now},
            )
            return {"queued": r.rowcount}

        r = await once(
            s,
            shop_id=shop_id,
            scope="redeliver_events",
            key=idempotency_key,
            now=now,
            run=run,
            request={"endpoint_id": endpoint_id, "from_seq": from_seq, "to_seq": to_seq},
        )
        return r["queued"]


def feed(shop_id: str):
    """The shop's events in feed order, each with its `position` (service/jobs/feed.py)."""
    return (
        select(Event)
        .join(EventFeed, (EventFeed.shop_id == Event.shop_id) & (EventFeed.event_id == Event.event_id))
        .where(EventFeed.shop_id == shop_id, Event.shop_id == shop_id)
        .options(with_expression(Event.position, EventFeed.position))
    )


def event_position(ev: Event) -> int:
    """Where an event sits in the shop's feed; the cursor of `events_since_caught_up`."""
    return ev.position


async def events_since_caught_up(
    svc: Services, *, shop_id: str, after: int | None = None, limit: int = 100, types: list[str] | None = None
) -> list[Event]:
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
    return json.dumps(
        {
            "id": ev.event_id,
            "seq": ev.seq,
            "type": ev.type,
            "shop_id": ev.shop_id,
            "aggregate_type": ev.aggregate_type,
            "aggregate_id": ev.aggregate_id,
            "rule": ev.rule,
            "occurred_at": ev.occurred_at.isoformat(),
            "data": ev.payload,
        },
        sort_keys=True,
        separators=(",", ":"),
    ).encode()


# ---------------------------------------------------------------- delivery: claim, commit, post, record

DEADLINE_S = 5.0
"""One overall deadline per attempt: resolving, connecting, TLS, sending, the response headers and what is read
of the body. (httpx's own timeout is per read: a receiver dripping a byte a second would never trip it.)"""
RESPONSE_READ_LIMIT = 4096  # bytes of a response body read (then the connection is closed); never stored
LEASE_SLACK_S = 10.0  # a lease outlives its deadline by this much, so recording an outcome has time to commit
CONCURRENCY, PER_ENDPOINT = 16, 4
GENERIC_FAILURE = "delivery failed"  # all an admin learns of a failure without a status code (SSRF, 11.3)

# Lease times are the database's statement_timestamp(), one clock for every process (Citus refuses a VOLATILE
# function such as clock_timestamp() in an UPDATE of a distributed table; the statement's start is as good).
# The candidate is picked in a MATERIALIZED CTE: as a sub-select in UPDATE … FROM the planner may run it once
# per joined row, and with SKIP LOCKED each run can pick another delivery (leasing several, returning one).
CLAIM_SQL = text(
    """
    WITH c AS MATERIALIZED (
        SELECT d.shop_id, d.endpoint_id, d.event_id FROM webhook_deliveries d
        WHERE d.shop_id = :shop_id AND d.state = 'PENDING' AND d.next_attempt_at <= :now
          AND (d.lease_until IS NULL OR d.lease_until < statement_timestamp())
          AND d.endpoint_id <> ALL(CAST(:busy AS text[]))
          AND NOT EXISTS (SELECT 1 FROM webhook_deliveries p
                          WHERE p.shop_id = d.shop_id AND p.endpoint_id = d.endpoint_id
                            AND p.aggregate_id = d.aggregate_id AND p.state IN ('PENDING', 'HELD') AND p.seq < d.seq)
        ORDER BY d.next_attempt_at, d.seq
        LIMIT 1
        FOR UPDATE OF d SKIP LOCKED)
    UPDATE webhook_deliveries w
       SET lease_until = statement_timestamp() + make_interval(secs => :lease_s), lease_token = :token
    FROM c
    WHERE w.shop_id = :shop_id AND w.shop_id = c.shop_id AND w.endpoint_id = c.endpoint_id AND w.event_id = c.event_id
    RETURNING w.shop_id, w.endpoint_id, w.event_id, w.attempts, w.created_at
    """
)

RECORD_SQL = text(
    """
    UPDATE webhook_deliveries
       SET attempts = attempts + 1, last_status = :status, last_error = :error, lease_until = NULL, lease_token = NULL,
           state = CASE WHEN :ok THEN 'DELIVERED' ELSE state END,
           delivered_at = CASE WHEN :ok THEN CAST(:now AS timestamptz) ELSE delivered_at END,
           next_attempt_at = CASE WHEN :ok THEN next_attempt_at ELSE CAST(:next AS timestamptz) END
    WHERE shop_id = :shop_id AND endpoint_id = :endpoint_id AND event_id = :event_id AND lease_token = :token
    RETURNING attempts, created_at, state
    """
)

# Claims are made shop by shop (docs/sharding.md): find the shops with due deliveries (a read that locks
# nothing), then claim inside one shop, so every locking statement routes to one shard on Citus.
SHOPS_WITH_DUE_DELIVERIES = text(
    "SELECT DISTINCT shop_id FROM webhook_deliveries WHERE state = 'PENDING' AND next_attempt_at <= :now"
    " AND (lease_until IS NULL OR lease_until < statement_timestamp())"
)


class _Job:
    """A claimed delivery, everything its POST needs read in the claim transaction."""

    __slots__ = ("shop_id", "endpoint_id", "event_id", "token", "attempts", "url", "body", "secrets")

    def __init__(self, **kw) -> None:
        for k, v in kw.items():
            setattr(self, k, v)


def webhook_client(*, deadline_s: float = DEADLINE_S, connections: int = CONCURRENCY, verify=True) -> httpx.AsyncClient:
    """The HTTP client deliveries use: no redirects followed (a 3xx is a failure: following one would reach a
    target nobody checked), no proxy taken from the environment, connections bounded. `verify`: the CAs to trust
    (the system's; a test passes its own)."""
    return httpx.AsyncClient(
        timeout=deadline_s,
        follow_redirects=False,
        trust_env=False,
        verify=verify,
        limits=httpx.Limits(max_connections=connections * 2, max_keepalive_connections=connections),
        headers={"user-agent": "Sharecart-Webhooks/1"},
    )


class Deliverer:
    """Lanes of webhook delivery in one process. `fill()` claims due deliveries into free lanes and starts their
    POSTs as tasks without waiting for them; the loop (or a pass) calls it again as lanes free up."""

    def __init__(
        self,
        svc: Services,
        *,
        client: httpx.AsyncClient | None = None,
        concurrency: int = CONCURRENCY,
        per_endpoint: int = PER_ENDPOINT,
        deadline_s: float = DEADLINE_S,
        lease_slack_s: float = LEASE_SLACK_S,
    ) -> None:
        assert concurrency >= 1 and per_endpoint >= 1 and deadline_s > 0
        self.svc, self.concurrency, self.per_endpoint = svc, concurrency, min(per_endpoint, concurrency)
        self.deadline_s, self.lease_s = deadline_s, deadline_s + lease_slack_s
        self._own = client is None
        self.client = client or webhook_client(deadline_s=deadline_s, connections=concurrency)
        self.in_flight: set[asyncio.Task] = set()
        self.lanes: Counter = Counter()  # endpoint id -> POSTs in flight
        self.freed = asyncio.Event()  # set whenever a POST ends: a lane is free
        self.posted = 0

    async def __aenter__(self) -> "Deliverer":
        return self

    async def __aexit__(self, *exc) -> None:
        await self.drain()
        if self._own:
            await self.client.aclose()

    def free(self) -> int:
        return self.concurrency - len(self.in_flight)

    async def fill(self) -> int:
        """Claim due deliveries (the shops with due work taking turns, one claim each) until every lane is busy
        or nothing more is claimable now; returns how many POSTs were started."""
        if self.free() <= 0:
            return 0
        async with self.svc.sessionmaker() as s:
            shops = sorted((await s.execute(SHOPS_WITH_DUE_DELIVERIES, {"now": self.svc.now()})).scalars())
        started = 0
        while shops and self.free() > 0:
            for shop_id in list(shops):
                if self.free() <= 0:
                    break
                job = await self._claim(shop_id)
                if job is None:
                    shops.remove(shop_id)
                elif job is not False:
                    self._start(job)
                    started += 1
        return started

    def _start(self, job: _Job) -> None:
        self.lanes[job.endpoint_id] += 1
        task = asyncio.create_task(self._post_and_record(job))
        self.in_flight.add(task)

        def done(t: asyncio.Task) -> None:
            if not t.cancelled() and t.exception() is not None:
                log.error(
                    "webhook delivery %s/%s broke the worker", job.endpoint_id, job.event_id, exc_info=t.exception()
                )
            self.in_flight.discard(t)
            self.lanes[job.endpoint_id] -= 1
            if self.lanes[job.endpoint_id] <= 0:
                del self.lanes[job.endpoint_id]
            self.freed.set()

        task.add_done_callback(done)

    async def drain(self) -> None:
        while self.in_flight:
            await asyncio.gather(*list(self.in_flight), return_exceptions=True)

    async def _claim(self, shop_id: str) -> _Job | bool | None:
        """One short transaction: lease one due delivery of the shop and read what its POST needs. None: nothing
        claimable in this shop; False: a delivery was settled without a POST (held or set aside)."""
        busy = sorted(e for e, n in self.lanes.items() if n >= self.per_endpoint)
        token = new_id("wl_")
        async with unit_of_work(self.svc) as s:
            now = self.svc.now()
            rows = (
                await s.execute(
                    CLAIM_SQL, {"shop_id": shop_id, "now": now, "busy": busy, "token": token, "lease_s": self.lease_s}
                )
            ).all()
            assert len(rows) <= 1, rows  # one lease per claim, or a leased delivery would never be posted
            if not rows:
                return None
            row = rows[0]
            ep = await s.get(WebhookEndpoint, (shop_id, row.endpoint_id))
            ev = await s.get(Event, (shop_id, row.event_id))
            if ep is None or ev is None:  # cannot be sent (data removed by hand): set aside, visible, not retried
                await s.execute(
                    update(WebhookDelivery)
                    .where(*_delivery_key(row))
                    .values(
                        state="DEAD",
                        lease_until=None,
                        lease_token=None,
                        last_error="endpoint not found" if ep is None else "event not found",
                    )
                )
                return False
            if not ep.enabled:
                await _hold(s, row)
                return False
            live = [ep.secret] + (
                [ep.previous_secret]
                if ep.previous_secret and ep.previous_secret_until and now < ep.previous_secret_until
                else []
            )
            return _Job(
                shop_id=shop_id,
                endpoint_id=row.endpoint_id,
                event_id=row.event_id,
                token=token,
                attempts=row.attempts,
                url=ep.url,
                body=event_body(ev),
                secrets=live,
            )

    async def _post_and_record(self, job: _Job) -> None:
        started = time.perf_counter()
        try:
            status, reason = await self._post(job)
        except Exception:  # a bug, not the receiver: still recorded (as a failure), so the lease is released
            log.exception("webhook delivery %s/%s broke the worker", job.endpoint_id, job.event_id)
            status, reason = None, None
        ok = status is not None and 200 <= status < 300
        metrics.webhook_attempt(ok)
        if reason:
            log.info("webhook %s/%s to %s: %s", job.endpoint_id, job.event_id, job.url, reason)
        self.posted += 1
        try:
            await _record(self.svc, job, status=status, ok=ok, duration_ms=int((time.perf_counter() - started) * 1000))
        except Exception:  # the database is away: the lease expires and the delivery is sent again
            log.exception("recording webhook delivery %s/%s failed", job.endpoint_id, job.event_id)

    async def _post(self, job: _Job) -> tuple[int | None, str | None]:
        """POST within one overall deadline, with no transaction open. Returns (status, reason for the log)."""
        status = None
        try:
            async with asyncio.timeout(self.deadline_s):
                target = await webhook_targets.resolve_target(job.url)  # again now, and pinned (11.3)
                headers = {**signed_headers(job.secrets, job.event_id, job.body), "host": target.host_header}
                extensions = {"sni_hostname": target.host} if target.scheme == "https" else {}
                request = self.client.build_request(
                    "POST", target.pinned_url, content=job.body, headers=headers, extensions=extensions
                )
                response = await self.client.send(request, stream=True)
                try:
                    status = response.status_code
                    read = 0
                    async for chunk in response.aiter_raw():  # a little of the body, so the connection can be kept
                        read += len(chunk)
                        if read >= RESPONSE_READ_LIMIT:
                            break
                except httpx.StreamError:  # the body was read already (a test's in-memory transport)
                    pass
                finally:
                    await response.aclose()
            return status, None
        except TimeoutError:
            return status, None if status is not None else f"no answer within {self.deadline_s} s"
        except webhook_targets.TargetRefused as e:
            return None, f"refused: {e}"
        except (httpx.HTTPError, OSError) as e:
            return status, None if status is not None else f"{type(e).__name__}: {e}"


def _delivery_key(row) -> tuple:
    return (
        WebhookDelivery.shop_id == row.shop_id,
        WebhookDelivery.endpoint_id == row.endpoint_id,
        WebhookDelivery.event_id == row.event_id,
    )


async def _record(svc: Services, job: _Job, *, status: int | None, ok: bool, duration_ms: int) -> None:
    """The outcome, in a transaction of its own after the POST. Guarded by the lease token: a worker whose
    lease expired (and was taken over) records its attempt but changes nothing else."""
    error = None if status is not None else GENERIC_FAILURE
    async with unit_of_work(svc) as s:
        now = svc.now()
        s.add(
            WebhookAttempt(
                shop_id=job.shop_id,
                attempt_id=new_id("wa_"),
                endpoint_id=job.endpoint_id,
                event_id=job.event_id,
                at=now,
                status_code=status,
                error=error,
                duration_ms=duration_ms,
            )
        )
        row = (
            await s.execute(
                RECORD_SQL,
                {
                    "status": status,
                    "error": error,
                    "ok": ok,
                    "now": now,
                    "next": now + backoff(job.attempts + 1),
                    "shop_id": job.shop_id,
                    "endpoint_id": job.endpoint_id,
                    "event_id": job.event_id,
                    "token": job.token,
                },
            )
        ).first()
        if row is None:
            return
        key = (WebhookEndpoint.shop_id == job.shop_id, WebhookEndpoint.endpoint_id == job.endpoint_id)
        if ok:
            await s.execute(
                update(WebhookEndpoint)
                .where(*key, (WebhookEndpoint.consecutive_failures > 0) | WebhookEndpoint.failing_since.is_not(None))
                .values(consecutive_failures=0, failing_since=None)
            )
            return
        failures, since = (
            await s.execute(
                update(WebhookEndpoint)
                .where(*key)
                .values(
                    consecutive_failures=WebhookEndpoint.consecutive_failures + 1,
                    failing_since=func.coalesce(WebhookEndpoint.failing_since, now),
                )
                .returning(WebhookEndpoint.consecutive_failures, WebhookEndpoint.failing_since)
            )
        ).one()
        if failures >= DISABLE_MIN_FAILURES and now - since >= DISABLE_AFTER:
            # guarded, so concurrent workers disable (and tell the admin) once; this delivery stays owed (held)
            disabled = (
                await s.execute(
                    update(WebhookEndpoint)
                    .where(*key, WebhookEndpoint.enabled)
                    .values(enabled=False, disabled_at=now)
                    .returning(WebhookEndpoint.url)
                )
            ).first()
            if disabled:
                events.emit(
                    s,
                    shop_id=job.shop_id,
                    type=EventType.WEBHOOK_ENDPOINT_DISABLED,
                    aggregate_type="webhook",
                    aggregate_id=job.endpoint_id,
                    now=now,
                    payload={
                        "endpoint_id": job.endpoint_id,
                        "url": disabled.url,
                        "failures": failures,
                        "failing_since": since.isoformat(),
                    },
                )
        elif now - row.created_at >= RETRY_FOR and row.attempts >= MIN_ATTEMPTS_BEFORE_DEAD:
            # its endpoint accepts others (else it would be disabled): stop blocking the aggregate
            await s.execute(update(WebhookDelivery).where(*_delivery_key(job)).values(state="DEAD"))


async def _hold(s, row) -> None:
    """The endpoint is disabled: HELD until enable_endpoint releases it. Re-read under FOR SHARE first: an
    enable in progress locks the endpoint row and skips the deliveries workers have claimed (this one), so
    this waits for it and, seeing the endpoint enabled, leaves the delivery due instead of holding it
    forever. The lock lasts only until this transaction commits: no POST is made on this path."""
    enabled = (
        await s.execute(
            select(WebhookEndpoint.enabled)
            .where(WebhookEndpoint.shop_id == row.shop_id, WebhookEndpoint.endpoint_id == row.endpoint_id)
            .with_for_update(read=True)
        )
    ).scalar()
    await s.execute(
        update(WebhookDelivery)
        .where(*_delivery_key(row))
        .values(lease_until=None, lease_token=None, **({} if enabled else {"state": "HELD"}))
    )


async def deliver_due(
    svc: Services,
    *,
    client: httpx.AsyncClient | None = None,
    concurrency: int = 4,
    per_endpoint: int | None = None,
    timeout_s: float = DEADLINE_S,
    lease_slack_s: float = LEASE_SLACK_S,
    stop: asyncio.Event | None = None,
) -> int:
    """One pass (tests, scripts): attempt every delivery due now once — a failure is rescheduled by backoff, so
    it is not due again in this pass, while a success may make the next event of its aggregate due — and wait
    for those POSTs. Returns how many attempts were made (a target refused at connect time counts: it is
    recorded). The service's worker runs `delivery_loop` instead, which never waits for a POST before starting
    the next."""
    async with Deliverer(
        svc,
        client=client,
        concurrency=concurrency,
        per_endpoint=per_endpoint or max(1, concurrency // 2),
        deadline_s=timeout_s,
        lease_slack_s=lease_slack_s,
    ) as d:
        while stop is None or not stop.is_set():
            d.freed.clear()
            started = await d.fill()
            if not started and not d.in_flight and not d.freed.is_set():
                break  # nothing claimable, nothing posting, and no POST ended meanwhile (its lane may have been busy)
            if d.in_flight:
                await d.freed.wait()
    return d.posted


async def delivery_loop(
    svc: Services,
    stop: asyncio.Event,
    *,
    interval: float = 1.0,
    backoff_max: float = 30.0,
    concurrency: int = CONCURRENCY,
    per_endpoint: int = PER_ENDPOINT,
    timeout_s: float = DEADLINE_S,
) -> None:
    """The worker's delivery loop: keeps up to `concurrency` POSTs in flight and claims more whenever a lane frees
    or `interval` passes, so a receiver that takes its whole deadline holds one lane, never the loop. A failing
    claim (the database away) pauses 1, 2, 4 … s up to `backoff_max`, one log line a try (as service.jobs.worker)."""
    from service.availability import Backoff

    backoff = Backoff("webhook delivery", log, interval=interval, max_delay=backoff_max)
    async with Deliverer(svc, concurrency=concurrency, per_endpoint=per_endpoint, deadline_s=timeout_s) as d:
        while not stop.is_set():
            d.freed.clear()
            try:
                await d.fill()
            except Exception as e:
                delay = backoff.failed(e)
            else:
                delay = backoff.succeeded()
            waits = {asyncio.ensure_future(stop.wait())}
            if (
                d.in_flight or d.freed.is_set()
            ) and not backoff.failures:  # wake when a lane frees, else after the delay
                waits.add(asyncio.ensure_future(d.freed.wait()))
            await asyncio.wait(waits, timeout=delay, return_when=asyncio.FIRST_COMPLETED)
            for w in waits:
                w.cancel()


async def disable_endpoint(
    svc: Services, *, shop_id: str, endpoint_id: str, idempotency_key: str | None = None
) -> WebhookEndpoint:
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

        return await once_row(
            s,
            WebhookEndpoint,
            shop_id=shop_id,
            scope="disable_webhook",
            key=idempotency_key,
            now=now,
            run=run,
            request={"endpoint_id": endpoint_id},
        )


# ---------------------------------------------------------------- admin: disable, re-point, delete (issue 11.9)
async def _locked(s, shop_id: str, endpoint_id: str) -> WebhookEndpoint:
    ep = await s.get(WebhookEndpoint, (shop_id, endpoint_id), with_for_update=True)
    if ep is None:
        raise refuse(ErrorCode.NOT_FOUND, "endpoint not found", field="endpointId")
    return ep


async def update_endpoint(
    svc: Services,
    *,
    shop_id: str,
    endpoint_id: str,
    url: str | None = None,
    event_types: list[str] | None = None,
    idempotency_key: str | None = None,
) -> WebhookEndpoint:
    """Re-point an endpoint (a new URL, checked as at registration) and/or change its event-type filter; its
    secret and what it is owed stay."""
    if url is not None:
        await _refuse_unsafe_url(url)  # the registration's SSRF rules (issue 11.3)
    unknown = sorted({t for t in event_types or [] if not is_event_type(t)})
    if unknown:
        raise refuse(
            ErrorCode.INVALID_INPUT, f"unknown event types {unknown}; see docs/webhooks.md", field="eventTypes"
        )
    now = svc.now()
    async with unit_of_work(svc) as s:

        async def run() -> WebhookEndpoint:
            ep = await _locked(s, shop_id, endpoint_id)
            if url is not None:
                ep.url = url
            if event_types is not None:
                ep.event_types = list(event_types)
            return ep

        return await once_row(
            s,
            WebhookEndpoint,
            shop_id=shop_id,
            scope="update_webhook",
            key=idempotency_key,
            now=now,
            run=run,
            request={
                "endpoint_id": endpoint_id,
                "url": url,
                "event_types": sorted(event_types or []) if event_types is not None else None,
            },
        )


async def delete_endpoint(svc: Services, *, shop_id: str, endpoint_id: str, idempotency_key: str | None = None) -> bool:
    """Remove an endpoint with what it is still owed and its attempt records; the shop's events stay (the
    event pull API serves them). A retry with the same key answers True again; without a key, deleting an
    endpoint that is gone is NOT_FOUND."""
    now = svc.now()
    async with unit_of_work(svc) as s:

        async def run() -> dict:
            ep = await _locked(s, shop_id, endpoint_id)
            for model in (WebhookDelivery, WebhookAttempt):
                await s.execute(delete(model).where(model.shop_id == shop_id, model.endpoint_id == endpoint_id))
            await s.delete(ep)
            return {"deleted": True}

        r = await once(
            s,
            shop_id=shop_id,
            scope="delete_webhook",
            key=idempotency_key,
            now=now,
            run=run,
            request={"endpoint_id": endpoint_id},
        )
        return bool(r["deleted"])
