"""Mutation gaps of seed 71 in the webhook and plumbing modules (issue 12): what the stored idempotency
scope looks like when a scope outgrows its column."""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
from datetime import timedelta

import httpx
from sqlalchemy import delete, select

from service.tx.idempotency import once
from service.uow import unit_of_work
from service.usecases import webhooks
from store.models import IdempotencyKey, WebhookDelivery, WebhookEndpoint
from tests.integration.test_gaps_hooks import URL, Transport, _delivery, _emit, _endpoint, _set


async def test_GB10_scope_of_65_characters_is_stored_hashed_within_the_column(svc, shop):
    """A 65-character scope (one over idempotency_keys.scope's 64) is answered and stored as a 64-character
    prefix-and-hash scope; a replay answers the first result without running again."""
    runs = []

    async def run():
        runs.append(1)
        return {"n": len(runs)}

    scope = "s" * 64 + "x"
    answers = []
    for _ in range(2):
        async with unit_of_work(svc) as s:
            answers.append(
                await once(s, shop_id=shop.shop_id, scope=scope, key="k1", request={"a": 1}, now=svc.now(), run=run)
            )
    assert answers == [{"n": 1}, {"n": 1}]
    assert runs == [1]
    async with svc.sessionmaker() as s:
        rows = (await s.execute(select(IdempotencyKey).where(IdempotencyKey.shop_id == shop.shop_id))).scalars().all()
    assert [r.scope for r in rows] == ["s" * 47 + "#" + hashlib.sha256(scope.encode()).hexdigest()[:16]]


# ---------------------------------------------------------------- webhook delivery (service/usecases/webhooks.py)


async def _pass(svc, transport, **kw) -> int:
    """One delivery pass, bounded: a pass that never ends (a delivery claimed again and again) fails the test.
    Returns how many POSTs it made to the test's shop."""
    before = len(transport.requests)
    async with transport.client() as client:
        await asyncio.wait_for(webhooks.deliver_due(svc, client=client, **kw), 20)
    return len(transport.requests) - before


async def test_wh_a_delivery_failing_24h_and_48_times_is_dead_and_not_posted_again(svc, shop):
    """The 48th failed attempt of a delivery 25 h old, its endpoint otherwise accepting (one failure, no
    failure window), sets it DEAD; the next pass posts nothing for it."""
    ep = await webhooks.register_endpoint(svc, shop_id=shop.shop_id, url=URL)
    ev = await _emit(svc, shop.shop_id)
    key = (WebhookDelivery.shop_id == shop.shop_id, WebhookDelivery.event_id == ev.event_id)
    await _set(
        svc, WebhookDelivery, key, attempts=47, created_at=svc.now() - timedelta(hours=25), next_attempt_at=svc.now()
    )
    tr = Transport(shop.shop_id, 503)
    assert await _pass(svc, tr) == 1
    d = await _delivery(svc, shop.shop_id, ep.endpoint_id, ev.event_id)
    assert (d.state, d.attempts, d.last_status) == ("DEAD", 48, 503)
    await _set(svc, WebhookDelivery, key, next_attempt_at=svc.now())  # due again, were it still owed
    assert await _pass(svc, tr) == 0
    assert len(tr.requests) == 1
    assert (await _endpoint(svc, shop.shop_id, ep.endpoint_id)).enabled is True


async def test_wh_a_delivery_whose_endpoint_row_is_gone_is_dead_with_the_reason(svc, shop):
    """A delivery whose endpoint row was removed by hand is DEAD with the reason, unposted and unleased, and the pass ends (it is not claimed again)."""
    ep = await webhooks.register_endpoint(svc, shop_id=shop.shop_id, url=URL)
    ev = await _emit(svc, shop.shop_id)
    async with unit_of_work(svc) as s:
        await s.execute(
            delete(WebhookEndpoint).where(
                WebhookEndpoint.shop_id == shop.shop_id, WebhookEndpoint.endpoint_id == ep.endpoint_id
            )
        )
    tr = Transport(shop.shop_id, 200)
    assert await _pass(svc, tr) == 0
    assert tr.requests == []
    d = await _delivery(svc, shop.shop_id, ep.endpoint_id, ev.event_id)
    assert (d.state, d.last_error, d.attempts, d.lease_until, d.lease_token) == (
        "DEAD",
        "endpoint not found",
        0,
        None,
        None,
    )


async def test_wh_only_the_disabled_endpoint_holds_its_delivery_the_enabled_one_is_posted(svc, shop):
    """With one enabled and one disabled endpoint, the pass posts only to the enabled one (DELIVERED); the
    disabled one's delivery is HELD, unposted."""
    on = await webhooks.register_endpoint(svc, shop_id=shop.shop_id, url="http://127.0.0.1:9/on")
    off = await webhooks.register_endpoint(svc, shop_id=shop.shop_id, url="http://127.0.0.1:9/off")
    await webhooks.disable_endpoint(svc, shop_id=shop.shop_id, endpoint_id=off.endpoint_id)
    ev = await _emit(svc, shop.shop_id)
    tr = Transport(shop.shop_id, 200)
    assert await _pass(svc, tr) == 1
    assert [r.url.path for r in tr.requests] == ["/on"]
    assert (await _delivery(svc, shop.shop_id, on.endpoint_id, ev.event_id)).state == "DELIVERED"
    assert (await _delivery(svc, shop.shop_id, off.endpoint_id, ev.event_id)).state == "HELD"


async def test_wh_a_receiver_that_does_not_answer_in_time_is_logged_as_no_answer(svc, shop, caplog):
    """A receiver silent past the deadline: the attempt is a failure and the log says `no answer within
    0.2 s` for that endpoint and event."""
    ep = await webhooks.register_endpoint(svc, shop_id=shop.shop_id, url=URL)
    ev = await _emit(svc, shop.shop_id)

    async def silent(request: httpx.Request) -> httpx.Response:
        if json.loads(request.content)["shop_id"] != shop.shop_id:
            return httpx.Response(410)
        await asyncio.sleep(5)
        return httpx.Response(200)

    caplog.set_level(logging.INFO, logger=webhooks.log.name)
    async with httpx.AsyncClient(transport=httpx.MockTransport(silent)) as client:
        await asyncio.wait_for(webhooks.deliver_due(svc, client=client, timeout_s=0.2), 20)
    d = await _delivery(svc, shop.shop_id, ep.endpoint_id, ev.event_id)
    assert (d.state, d.attempts, d.last_status) == ("PENDING", 1, None)
    assert f"webhook {ep.endpoint_id}/{ev.event_id} to {URL}: no answer within 0.2 s" in caplog.messages


async def test_wh_a_bug_escaping_a_post_is_logged_as_breaking_the_worker(svc, shop, caplog, monkeypatch):
    """An exception escaping the POST task (here the metrics call) is logged at ERROR as `webhook delivery
    <endpoint>/<event> broke the worker`, with the exception, and the pass still ends."""
    ep = await webhooks.register_endpoint(svc, shop_id=shop.shop_id, url=URL)
    ev = await _emit(svc, shop.shop_id)

    def boom(ok):
        raise RuntimeError("metrics broke")

    monkeypatch.setattr(webhooks.metrics, "webhook_attempt", boom)
    caplog.set_level(logging.INFO, logger=webhooks.log.name)
    await _pass(svc, Transport(shop.shop_id, 200))
    (r,) = [
        r
        for r in caplog.records
        if r.getMessage() == f"webhook delivery {ep.endpoint_id}/{ev.event_id} broke the worker"
    ]
    assert r.levelno == logging.ERROR and isinstance(r.exc_info[1], RuntimeError)


async def test_wh_the_delivery_loop_leaves_no_wait_pending_after_each_pause(svc, shop, monkeypatch):
    """The worker's loop waits on the stop signal (and a freed lane) each pause and cancels those waits: after
    many idle passes at most a couple of waits are pending, not one per pass."""
    monkeypatch.setattr(
        webhooks,
        "webhook_client",
        lambda **kw: httpx.AsyncClient(transport=httpx.MockTransport(lambda r: httpx.Response(410))),
    )

    def waits() -> int:
        return sum(1 for t in asyncio.all_tasks() if t.get_coro().__qualname__ == "Event.wait")

    before = waits()
    stop = asyncio.Event()
    loop = asyncio.create_task(webhooks.delivery_loop(svc, stop, interval=0.01))
    await asyncio.sleep(0.6)
    pending = waits() - before
    stop.set()
    await asyncio.wait_for(loop, 5)
    assert pending <= 2, pending


async def test_wh_a_registered_endpoint_starts_with_no_failures(svc, shop):
    """A new endpoint is enabled with 0 consecutive failures and no failure window, as returned and as stored."""
    ep = await webhooks.register_endpoint(svc, shop_id=shop.shop_id, url=URL)
    stored = await _endpoint(svc, shop.shop_id, ep.endpoint_id)
    assert (ep.enabled, ep.consecutive_failures, ep.failing_since) == (True, 0, None)
    assert (stored.enabled, stored.consecutive_failures, stored.failing_since) == (True, 0, None)


async def test_wh_a_refused_connection_is_logged_with_its_error(svc, shop, caplog):
    """A connection the receiver refuses: the attempt is a failure with no status, and the log names the
    error (`ConnectError: refused`) for that endpoint and event."""
    ep = await webhooks.register_endpoint(svc, shop_id=shop.shop_id, url=URL)
    ev = await _emit(svc, shop.shop_id)
    caplog.set_level(logging.INFO, logger=webhooks.log.name)
    await _pass(svc, Transport(shop.shop_id, None))
    d = await _delivery(svc, shop.shop_id, ep.endpoint_id, ev.event_id)
    assert (d.state, d.attempts, d.last_status) == ("PENDING", 1, None)
    assert f"webhook {ep.endpoint_id}/{ev.event_id} to {URL}: ConnectError: refused" in caplog.messages
