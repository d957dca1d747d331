"""Mutation gaps of the webhook delivery (service/usecases/webhooks.py, issue 12): what one attempt stores
(the delivery, its attempt record, the endpoint's failure counters), the thresholds that disable an endpoint
or set a delivery aside, and the signatures of a rotation overlap. Every POST goes to an in-memory transport
(httpx.MockTransport), so no test waits on a socket."""

from __future__ import annotations

import base64
import json
import random
import time
from collections import Counter
from datetime import timedelta

import httpx
import pytest
from sqlalchemy import select, update

from service.tx import events
from service.uow import unit_of_work
from service.usecases import webhooks
from store.models import Event, WebhookAttempt, WebhookDelivery, WebhookEndpoint
from tests.http_receiver import verify_standard

URL = "http://127.0.0.1:9/hook"


class Transport:
    """Answers every POST of the shop with the next status of `statuses` (the last one repeats); None raises a
    connect error. A delivery due in another test's shop (the pass claims every shop's) gets a 410, unrecorded."""

    def __init__(self, shop_id: str, *statuses: int | None):
        self.shop_id, self.statuses = shop_id, list(statuses)
        self.requests: list[httpx.Request] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        if json.loads(request.content)["shop_id"] != self.shop_id:
            return httpx.Response(410)
        self.requests.append(request)
        status = self.statuses.pop(0) if len(self.statuses) > 1 else self.statuses[0]
        if status is None:
            raise httpx.ConnectError("refused", request=request)
        return httpx.Response(status)

    def client(self) -> httpx.AsyncClient:
        return httpx.AsyncClient(transport=httpx.MockTransport(self), headers={"user-agent": "Sharecart-Webhooks/1"})


@pytest.fixture
def no_jitter(monkeypatch):
    """The backoff's jitter at its top (×1.5 of the 0.5–1.5 range), so a retry's time is exact."""
    monkeypatch.setattr(random, "uniform", lambda a, b: b if (a, b) == (0.5, 1.5) else (a + b) / 2)


async def _emit(svc, shop_id: str, aggregate_id: str = "agg-1", type: str = "order.paid", **payload) -> Event:
    async with unit_of_work(svc) as s:
        events.emit(
            s,
            shop_id=shop_id,
            type=type,
            aggregate_type="order",
            aggregate_id=aggregate_id,
            now=svc.now(),
            payload=payload or {"order_id": aggregate_id},
            rule="OR-1",
        )
    async with svc.sessionmaker() as s:
        return (
            (await s.execute(select(Event).where(Event.shop_id == shop_id).order_by(Event.seq.desc())))
            .scalars()
            .first()
        )


async def _delivery(svc, shop_id: str, endpoint_id: str, event_id: str) -> WebhookDelivery:
    async with svc.sessionmaker() as s:
        return await s.get(WebhookDelivery, (shop_id, endpoint_id, event_id))


async def _endpoint(svc, shop_id: str, endpoint_id: str) -> WebhookEndpoint:
    async with svc.sessionmaker() as s:
        return await s.get(WebhookEndpoint, (shop_id, endpoint_id))


async def _attempts(svc, shop_id: str) -> list[WebhookAttempt]:
    async with svc.sessionmaker() as s:
        q = select(WebhookAttempt).where(WebhookAttempt.shop_id == shop_id).order_by(WebhookAttempt.at)
        return list((await s.execute(q)).scalars())


async def _set(svc, model, where, **values) -> None:
    async with unit_of_work(svc) as s:
        await s.execute(update(model).where(*where).values(**values))


async def _deliver(svc, transport: Transport) -> int:
    """One delivery pass; how many POSTs it made to the test's shop."""
    before = len(transport.requests)
    async with transport.client() as client:
        await webhooks.deliver_due(svc, client=client)
    return len(transport.requests) - before


async def test_wh_a_failed_then_accepted_delivery_stores_each_attempt_through_service(svc, shop, no_jitter):
    """One delivery: a 503 leaves it owed (attempts, status, the retry 10 s later by the backoff) and starts
    the endpoint's failure window; the next attempt's 200 delivers it, resets the endpoint's counters, and
    each attempt is on record with its status. The POST is the Standard Webhooks request of the event."""
    ep = await webhooks.register_endpoint(svc, shop_id=shop.shop_id, url=URL)
    ev = await _emit(svc, shop.shop_id, amount=100)
    from service import metrics

    delivered = metrics.WEBHOOK_ATTEMPTS.labels("delivered")
    counted = delivered._value.get()
    t0 = svc.now()
    tr = Transport(shop.shop_id, 503, 200)
    before = int(time.time())
    assert await _deliver(svc, tr) == 1
    d = await _delivery(svc, shop.shop_id, ep.endpoint_id, ev.event_id)
    assert (d.state, d.attempts, d.last_status, d.last_error, d.delivered_at) == ("PENDING", 1, 503, None, None)
    assert (d.lease_until, d.lease_token) == (None, None)
    assert d.next_attempt_at == t0 + timedelta(seconds=15)
    e = await _endpoint(svc, shop.shop_id, ep.endpoint_id)
    assert (e.consecutive_failures, e.failing_since, e.enabled, e.disabled_at) == (1, t0, True, None)

    req = tr.requests[0]
    assert req.method == "POST" and str(req.url) == URL
    assert json.loads(req.content) == {
        "id": ev.event_id,
        "seq": ev.seq,
        "type": "order.paid",
        "shop_id": shop.shop_id,
        "aggregate_type": "order",
        "aggregate_id": "agg-1",
        "rule": "OR-1",
        "occurred_at": t0.isoformat(),
        "data": {"currency": "CNY", "amount": 100, "rule": "OR-1"},
    }
    assert req.content == json.dumps(json.loads(req.content), sort_keys=True, separators=(",", ":")).encode()
    assert req.headers["content-type"] == "application/json"
    assert req.headers["webhook-id"] == ev.event_id
    assert before <= int(req.headers["webhook-timestamp"]) <= int(time.time())
    assert req.headers["host"] == "127.0.0.1:9"
    assert len(req.headers["webhook-signature"].split(" ")) == 1
    assert verify_standard(ep.secret, req.headers, req.content) is not None

    svc.clock.advance(timedelta(seconds=14))
    assert await _deliver(svc, tr) == 0  # not due before its backoff
    svc.clock.advance(timedelta(seconds=1))
    t1 = svc.now()
    assert await _deliver(svc, tr) == 1
    d = await _delivery(svc, shop.shop_id, ep.endpoint_id, ev.event_id)
    assert (d.state, d.attempts, d.last_status, d.last_error, d.delivered_at) == ("DELIVERED", 2, 200, None, t1)
    assert (d.lease_until, d.lease_token) == (None, None)
    e = await _endpoint(svc, shop.shop_id, ep.endpoint_id)
    assert (e.consecutive_failures, e.failing_since, e.enabled) == (0, None, True)
    got = [(a.endpoint_id, a.event_id, a.at, a.status_code, a.error) for a in await _attempts(svc, shop.shop_id)]
    assert got == [(ep.endpoint_id, ev.event_id, t0, 503, None), (ep.endpoint_id, ev.event_id, t1, 200, None)]
    assert await _deliver(svc, tr) == 0  # delivered: never again
    assert delivered._value.get() == counted + 1  # the metric counts the one 2xx (another shop's get a 410)


async def test_wh_an_unreachable_receiver_is_a_generic_failure_and_backs_off_doubling_through_service(
    svc, shop, no_jitter
):
    """No status (connect refused): the attempt and the delivery show only the generic failure (11.3). The
    retry delay doubles with each attempt (10 s · 2^n after n earlier ones) and is capped at an hour."""
    ep = await webhooks.register_endpoint(svc, shop_id=shop.shop_id, url=URL)
    ev = await _emit(svc, shop.shop_id)
    key = (WebhookDelivery.shop_id == shop.shop_id, WebhookDelivery.event_id == ev.event_id)
    t0 = svc.now()
    assert await _deliver(svc, Transport(shop.shop_id, None)) == 1
    d = await _delivery(svc, shop.shop_id, ep.endpoint_id, ev.event_id)
    assert (d.state, d.attempts, d.last_status, d.last_error) == ("PENDING", 1, None, webhooks.GENERIC_FAILURE)
    assert d.next_attempt_at == t0 + timedelta(seconds=15)
    assert [(a.status_code, a.error) for a in await _attempts(svc, shop.shop_id)] == [(None, "delivery failed")]
    for made, delay in ((4, 240), (8, 3840), (9, 5400), (30, 5400)):
        await _set(svc, WebhookDelivery, key, attempts=made, next_attempt_at=t0)
        assert await _deliver(svc, Transport(shop.shop_id, 503)) == 1
        d = await _delivery(svc, shop.shop_id, ep.endpoint_id, ev.event_id)
        assert (d.attempts, d.next_attempt_at) == (made + 1, t0 + timedelta(seconds=delay)), made
    assert [webhooks.backoff(n) for n in (0, 1, 2)] == [timedelta(seconds=s) for s in (15, 15, 30)]


async def test_wh_an_endpoint_failing_24h_and_10_times_is_disabled_once_and_loses_nothing_through_service(svc, shop):
    """The 10th failure of an endpoint failing for 24 h disables it, with one `webhook.endpoint_disabled`
    event for the admin; the failing delivery stays owed and is HELD (not posted) until the endpoint is
    enabled again, then delivered."""
    ep = await webhooks.register_endpoint(svc, shop_id=shop.shop_id, url=URL)
    ev = await _emit(svc, shop.shop_id)
    key = (WebhookEndpoint.shop_id == shop.shop_id, WebhookEndpoint.endpoint_id == ep.endpoint_id)
    since = svc.now() - timedelta(hours=24)
    await _set(svc, WebhookEndpoint, key, consecutive_failures=9, failing_since=since)
    assert await _deliver(svc, Transport(shop.shop_id, 500)) == 1
    e = await _endpoint(svc, shop.shop_id, ep.endpoint_id)
    assert (e.enabled, e.disabled_at, e.consecutive_failures, e.failing_since) == (False, svc.now(), 10, since)
    disabled = [
        e for e in await webhooks.events_since_caught_up(svc, shop_id=shop.shop_id) if e.aggregate_id == ep.endpoint_id
    ]
    assert [(e.type, e.aggregate_type, e.payload) for e in disabled] == [
        (
            "webhook.endpoint_disabled",
            "webhook",
            {
                "currency": "CNY",
                "endpoint_id": ep.endpoint_id,
                "url": URL,
                "failures": 10,
                "failing_since": since.isoformat(),
            },
        )
    ]
    d = await _delivery(svc, shop.shop_id, ep.endpoint_id, ev.event_id)
    assert (d.state, d.attempts) == ("PENDING", 1)
    svc.clock.advance(timedelta(hours=2))
    tr = Transport(shop.shop_id, 200)
    assert await _deliver(svc, tr) == 0 and tr.requests == []  # disabled: held, not posted
    held = await _delivery(svc, shop.shop_id, ep.endpoint_id, ev.event_id)
    assert (held.state, held.attempts, held.lease_until, held.lease_token) == ("HELD", 1, None, None)
    await webhooks.enable_endpoint(svc, shop_id=shop.shop_id, endpoint_id=ep.endpoint_id)
    assert await _deliver(svc, tr) == 2  # the held delivery and the disabled event itself
    assert {json.loads(r.content)["id"] for r in tr.requests} >= {ev.event_id}
    d = await _delivery(svc, shop.shop_id, ep.endpoint_id, ev.event_id)
    assert (d.state, d.attempts) == ("DELIVERED", 2)


@pytest.mark.parametrize(
    "failures, hours",
    [(8, 25), (9, 23)],  # one short of the 10 failures, or of the 24 h
)
async def test_wh_an_endpoint_short_of_either_threshold_stays_enabled_through_service(svc, shop, failures, hours):
    ep = await webhooks.register_endpoint(svc, shop_id=shop.shop_id, url=URL)
    await _emit(svc, shop.shop_id)
    key = (WebhookEndpoint.shop_id == shop.shop_id, WebhookEndpoint.endpoint_id == ep.endpoint_id)
    since = svc.now() - timedelta(hours=hours)
    await _set(svc, WebhookEndpoint, key, consecutive_failures=failures, failing_since=since)
    assert await _deliver(svc, Transport(shop.shop_id, 500)) == 1
    e = await _endpoint(svc, shop.shop_id, ep.endpoint_id)
    assert (e.enabled, e.disabled_at, e.consecutive_failures, e.failing_since) == (True, None, failures + 1, since)
    assert [e.type for e in await webhooks.events_since_caught_up(svc, shop_id=shop.shop_id)] == ["order.paid"]


@pytest.mark.parametrize(
    "made, age_h, state",
    [(47, 24, "DEAD"), (46, 30, "PENDING"), (60, 23, "PENDING")],  # the 48th attempt after 24 h; one short of either
)
async def test_wh_a_delivery_failing_24h_and_48_times_is_set_aside_through_service(svc, shop, made, age_h, state):
    """A delivery that keeps failing while its endpoint accepts others (no failure window) is DEAD after
    24 h and 48 attempts, so it stops blocking its aggregate; short of either it stays owed."""
    ep = await webhooks.register_endpoint(svc, shop_id=shop.shop_id, url=URL)
    ev = await _emit(svc, shop.shop_id)
    key = (WebhookDelivery.shop_id == shop.shop_id, WebhookDelivery.event_id == ev.event_id)
    await _set(svc, WebhookDelivery, key, attempts=made, created_at=svc.now() - timedelta(hours=age_h))
    assert await _deliver(svc, Transport(shop.shop_id, 503)) == 1
    d = await _delivery(svc, shop.shop_id, ep.endpoint_id, ev.event_id)
    assert (d.state, d.attempts, d.last_status) == (state, made + 1, 503)
    e = await _endpoint(svc, shop.shop_id, ep.endpoint_id)
    assert (e.enabled, e.consecutive_failures) == (True, 1)


async def test_wh_the_previous_secret_signs_only_until_its_overlap_ends_through_service(svc, shop):
    """Rotation: two signatures while the overlap lasts, the new secret's alone from its end on."""
    ep = await webhooks.register_endpoint(svc, shop_id=shop.shop_id, url=URL)
    old = ep.secret
    ep = await webhooks.rotate_secret(svc, shop_id=shop.shop_id, endpoint_id=ep.endpoint_id, overlap=timedelta(hours=1))
    assert (ep.previous_secret, ep.previous_secret_until) == (old, svc.now() + timedelta(hours=1))
    await _emit(svc, shop.shop_id, aggregate_id="a")
    tr = Transport(shop.shop_id, 200)
    await _deliver(svc, tr)
    svc.clock.advance(timedelta(hours=1))
    await _emit(svc, shop.shop_id, aggregate_id="b")
    await _deliver(svc, tr)
    first, second = tr.requests
    assert len(first.headers["webhook-signature"].split(" ")) == 2
    assert verify_standard(old, first.headers, first.content) and verify_standard(
        ep.secret, first.headers, first.content
    )
    assert len(second.headers["webhook-signature"].split(" ")) == 1
    assert verify_standard(ep.secret, second.headers, second.content)
    assert not verify_standard(old, second.headers, second.content)


class Lanes:
    """An in-memory receiver that measures the lanes. The first `expect` POSTs of the shop are held until all
    of them are in flight (at most 3 s) and then 0.15 s more, so the peak is what the lanes allow (one more
    POST would be seen), not a race between claims and answers; later POSTs are answered at once."""

    def __init__(self, shops: str | set[str], expect: int):
        import asyncio

        self.shops, self.expect, self.arrived = {shops} if isinstance(shops, str) else shops, expect, 0
        self.busy: Counter = Counter()
        self.peak: Counter = Counter()
        self.seen: list[tuple[str, str]] = []
        self.wave = asyncio.Event()

    async def __call__(self, request: httpx.Request) -> httpx.Response:
        import asyncio

        if json.loads(request.content)["shop_id"] not in self.shops:
            return httpx.Response(410)
        for k in ("all", request.url.path):
            self.busy[k] += 1
            self.peak[k] = max(self.peak[k], self.busy[k])
        self.arrived += 1
        if self.arrived <= self.expect:
            if self.arrived == self.expect:
                self.wave.set()
            try:
                await asyncio.wait_for(self.wave.wait(), 3)
            except TimeoutError:
                pass
            await asyncio.sleep(0.15)
        for k in ("all", request.url.path):
            self.busy[k] -= 1
        self.seen.append((request.url.path, request.headers["webhook-id"]))
        return httpx.Response(200)


async def _lanes_setup(svc, shop_id: str, wide: int, narrow: int, n_wide: int, n_all: int) -> list[str]:
    """`wide` endpoints (/w0 …) take every event, `narrow` ones (/n0 …) only group.formed; `n_wide`
    order.paid events, then `n_all` group.formed ones, each of its own aggregate. The clock runs ten years
    back first, so no other test's leftover delivery is due in these passes."""
    svc.clock.advance(timedelta(days=-3650))
    ids = []
    for i in range(wide):
        ids.append((await webhooks.register_endpoint(svc, shop_id=shop_id, url=f"http://127.0.0.1:9/w{i}")).endpoint_id)
    for i in range(narrow):
        ep = await webhooks.register_endpoint(
            svc, shop_id=shop_id, url=f"http://127.0.0.1:9/n{i}", event_types=["group.formed"]
        )
        ids.append(ep.endpoint_id)
    for i in range(n_wide):
        await _emit(svc, shop_id, aggregate_id=f"o{i}")
    for i in range(n_all):
        await _emit(svc, shop_id, aggregate_id=f"g{i}", type="group.formed")
    return ids


async def _states(svc, shop_id: str) -> Counter:
    async with svc.sessionmaker() as s:
        q = select(WebhookDelivery.state).where(WebhookDelivery.shop_id == shop_id)
        return Counter((await s.execute(q)).scalars())


async def test_wh_a_pass_fills_every_lane_and_no_more_than_half_to_one_endpoint_through_service(svc, shop):
    """Lanes of a pass (`deliver_due`, default concurrency 4, per endpoint half of it): 4 POSTs in flight, at
    most 2 to one endpoint, until every delivery is made once; it answers how many POSTs it made, and leaves
    the caller's client open for the caller. A stop that is set makes no POST."""
    import asyncio

    await _lanes_setup(svc, shop.shop_id, wide=1, narrow=2, n_wide=4, n_all=2)  # room for 6 at once
    lanes = Lanes(shop.shop_id, expect=4)
    async with httpx.AsyncClient(transport=httpx.MockTransport(lanes)) as client:
        stop = asyncio.Event()
        stop.set()
        assert await webhooks.deliver_due(svc, client=client, stop=stop) == 0
        assert lanes.seen == []
        assert await webhooks.deliver_due(svc, client=client, stop=asyncio.Event()) == 10
        assert not client.is_closed  # the caller's client: the pass does not close it
    assert (lanes.peak["all"], lanes.peak["/w0"]) == (4, 2)
    assert len(lanes.seen) == len(set(lanes.seen)) == 10
    assert await _states(svc, shop.shop_id) == Counter({"DELIVERED": 10})


async def test_wh_the_delivery_loop_keeps_16_posts_in_flight_at_most_4_to_one_endpoint_through_service(
    svc, shop, monkeypatch
):
    """The worker's loop (`delivery_loop`, its defaults): 16 lanes, at most 4 to one endpoint, a new POST as
    soon as a lane frees, every delivery once; it stops when told, with no POST left in flight. (Claims go by
    seq: the wide endpoint's first 4, then 3 group.formed events for each of the 4 narrow ones: 16.)"""
    import asyncio

    await _lanes_setup(svc, shop.shop_id, wide=1, narrow=4, n_wide=8, n_all=5)
    lanes = Lanes(shop.shop_id, expect=16)
    made = []

    def client(**kw):
        made.append(kw)
        return httpx.AsyncClient(transport=httpx.MockTransport(lanes))

    monkeypatch.setattr(webhooks, "webhook_client", client)
    stop = asyncio.Event()
    loop = asyncio.create_task(webhooks.delivery_loop(svc, stop, interval=0.05))
    for _ in range(200):
        if len(lanes.seen) >= 33:
            break
        await asyncio.sleep(0.02)
    stop.set()
    await asyncio.wait_for(loop, 5)
    assert made == [{"deadline_s": 5.0, "connections": 16}]
    assert (lanes.peak["all"], lanes.peak["/w0"], max(lanes.peak[f"/n{i}"] for i in range(4))) == (16, 4, 3)
    assert len(lanes.seen) == len(set(lanes.seen)) == 33
    assert lanes.busy["all"] == 0
    assert await _states(svc, shop.shop_id) == Counter({"DELIVERED": 33})


async def test_wh_a_delivery_whose_endpoint_row_is_gone_is_set_aside_unposted_through_service(svc, shop):
    """A delivery that cannot be sent (its endpoint removed by hand) is DEAD with the reason, its lease
    released, and nothing is posted; the attempt's duration is recorded in milliseconds."""
    import asyncio

    from sqlalchemy import delete

    gone = await webhooks.register_endpoint(svc, shop_id=shop.shop_id, url="http://127.0.0.1:9/gone")
    ev = await _emit(svc, shop.shop_id)
    async with unit_of_work(svc) as s:
        await s.execute(
            delete(WebhookEndpoint).where(
                WebhookEndpoint.shop_id == shop.shop_id, WebhookEndpoint.endpoint_id == gone.endpoint_id
            )
        )
    tr = Transport(shop.shop_id, 200)
    assert await _deliver(svc, tr) == 0
    d = await _delivery(svc, shop.shop_id, gone.endpoint_id, ev.event_id)
    assert (d.state, d.last_error, d.attempts, d.lease_until, d.lease_token) == (
        "DEAD",
        "endpoint not found",
        0,
        None,
        None,
    )

    ok = await webhooks.register_endpoint(svc, shop_id=shop.shop_id, url=URL)
    await _emit(svc, shop.shop_id, aggregate_id="slow")

    async def slow(request: httpx.Request) -> httpx.Response:
        await asyncio.sleep(0.05)
        return httpx.Response(204)

    async with httpx.AsyncClient(transport=httpx.MockTransport(slow)) as client:
        await webhooks.deliver_due(svc, client=client)
    (a,) = [a for a in await _attempts(svc, shop.shop_id) if a.endpoint_id == ok.endpoint_id]
    assert a.status_code == 204 and 50 <= a.duration_ms < 5000, a.duration_ms


async def test_wh_one_aggregate_goes_out_in_seq_order_one_at_a_time_through_service(svc, shop):
    """Per endpoint, the events of one aggregate go out in `seq` order: the next waits while an earlier one is
    owed (a failed first event holds back the second until it is delivered)."""
    await webhooks.register_endpoint(svc, shop_id=shop.shop_id, url=URL)
    first = await _emit(svc, shop.shop_id, aggregate_id="chain")
    second = await _emit(svc, shop.shop_id, aggregate_id="chain")
    other = await _emit(svc, shop.shop_id, aggregate_id="other")
    tr = Transport(shop.shop_id, 503, 200)
    async with tr.client() as client:
        await webhooks.deliver_due(svc, client=client, concurrency=1)  # one lane: still every due delivery
    ids = [r.headers["webhook-id"] for r in tr.requests]
    assert ids == [first.event_id, other.event_id]  # the second waits behind the failed first
    svc.clock.advance(timedelta(minutes=1))
    await _deliver(svc, tr)
    assert [r.headers["webhook-id"] for r in tr.requests][2:] == [first.event_id, second.event_id]


async def test_wh_admin_updates_disables_lists_and_deletes_an_endpoint_through_service(svc, shop):
    """Issue 11.9: re-point and re-filter an endpoint (its secret stays), disable it (again: its first
    `disabled_at` stays), list the shop's endpoints in creation order, delete it with what it is owed and
    its attempt records; each with its NOT_FOUND, and the replay of a key answering the same."""
    from engine.errors import RuleViolation

    a = await webhooks.register_endpoint(svc, shop_id=shop.shop_id, url=URL, event_types=["order.paid"])
    svc.clock.advance(timedelta(seconds=1))
    b = await webhooks.register_endpoint(svc, shop_id=shop.shop_id, url="http://127.0.0.1:9/b")
    assert [e.endpoint_id for e in await webhooks.list_endpoints(svc, shop_id=shop.shop_id)] == [
        a.endpoint_id,
        b.endpoint_id,
    ]
    assert (a.event_types, b.event_types, a.enabled, a.consecutive_failures) == (["order.paid"], [], True, 0)
    assert a.secret.startswith("whsec_") and len(base64.b64decode(a.secret.removeprefix("whsec_"))) == 32
    assert a.secret != b.secret

    u = await webhooks.update_endpoint(
        svc, shop_id=shop.shop_id, endpoint_id=a.endpoint_id, url="http://127.0.0.1:9/new", idempotency_key="u1"
    )
    assert (u.url, u.event_types, u.secret) == ("http://127.0.0.1:9/new", ["order.paid"], a.secret)
    u = await webhooks.update_endpoint(
        svc, shop_id=shop.shop_id, endpoint_id=a.endpoint_id, event_types=["group.formed", "order.paid"]
    )
    assert (u.url, u.event_types) == ("http://127.0.0.1:9/new", ["group.formed", "order.paid"])
    again = await webhooks.update_endpoint(
        svc, shop_id=shop.shop_id, endpoint_id=a.endpoint_id, url="http://127.0.0.1:9/new", idempotency_key="u1"
    )
    assert again.event_types == ["group.formed", "order.paid"]  # the replay re-reads the row as it stands
    with pytest.raises(RuleViolation) as e:
        await webhooks.update_endpoint(svc, shop_id=shop.shop_id, endpoint_id=a.endpoint_id, event_types=["nope"])
    assert (e.value.code.value, e.value.field) == ("INVALID_INPUT", "eventTypes")

    t_off = svc.now()
    d = await webhooks.disable_endpoint(svc, shop_id=shop.shop_id, endpoint_id=a.endpoint_id)
    assert (d.enabled, d.disabled_at) == (False, t_off)
    svc.clock.advance(timedelta(hours=1))
    d = await webhooks.disable_endpoint(svc, shop_id=shop.shop_id, endpoint_id=a.endpoint_id)
    assert (d.enabled, d.disabled_at) == (False, t_off)
    on = await webhooks.enable_endpoint(svc, shop_id=shop.shop_id, endpoint_id=a.endpoint_id)
    assert (on.enabled, on.disabled_at, on.consecutive_failures, on.failing_since) == (True, None, 0, None)

    ev = await _emit(svc, shop.shop_id)
    await _deliver(svc, Transport(shop.shop_id, 503))
    assert await webhooks.delete_endpoint(svc, shop_id=shop.shop_id, endpoint_id=a.endpoint_id, idempotency_key="d1")
    assert await webhooks.delete_endpoint(svc, shop_id=shop.shop_id, endpoint_id=a.endpoint_id, idempotency_key="d1")
    assert [e.endpoint_id for e in await webhooks.list_endpoints(svc, shop_id=shop.shop_id)] == [b.endpoint_id]
    assert await _delivery(svc, shop.shop_id, a.endpoint_id, ev.event_id) is None
    assert [x.endpoint_id for x in await _attempts(svc, shop.shop_id)] == [b.endpoint_id]
    assert (await _delivery(svc, shop.shop_id, b.endpoint_id, ev.event_id)).attempts == 1
    for call in (
        webhooks.delete_endpoint,
        webhooks.disable_endpoint,
        webhooks.enable_endpoint,
        webhooks.update_endpoint,
    ):
        with pytest.raises(RuleViolation) as e:
            await call(svc, shop_id=shop.shop_id, endpoint_id=a.endpoint_id)
        assert (e.value.code.value, e.value.field) == ("NOT_FOUND", "endpointId"), call
    with pytest.raises(RuleViolation) as e:
        await webhooks.rotate_secret(svc, shop_id=shop.shop_id, endpoint_id=a.endpoint_id)
    assert (e.value.code.value, e.value.field) == ("NOT_FOUND", "endpointId")


async def test_wh_registration_refuses_unknown_event_types_and_the_feed_filters_through_service(svc, shop):
    """An unknown event type is refused at registration (a typo would match nothing); the pull feed pages
    after a cursor, filters by type and caps its page."""
    from engine.errors import RuleViolation

    with pytest.raises(RuleViolation) as e:
        await webhooks.register_endpoint(svc, shop_id=shop.shop_id, url=URL, event_types=["order.paid", "order.payd"])
    assert (e.value.code.value, e.value.field) == ("INVALID_INPUT", "eventTypes")
    assert "order.payd" in str(e.value) and await webhooks.list_endpoints(svc, shop_id=shop.shop_id) == []
    evs = [
        await _emit(svc, shop.shop_id, aggregate_id=f"g{i}", type=t)
        for i, t in enumerate(["order.paid", "group.formed", "order.paid"])
    ]
    got = await webhooks.events_since_caught_up(svc, shop_id=shop.shop_id)
    assert [e.event_id for e in got] == [e.event_id for e in evs]
    first = webhooks.event_position(got[0])
    after = await webhooks.events_since_caught_up(svc, shop_id=shop.shop_id, after=first)
    assert [e.event_id for e in after] == [evs[1].event_id, evs[2].event_id]
    typed = await webhooks.events_since_caught_up(svc, shop_id=shop.shop_id, types=["order.paid"])
    assert [e.event_id for e in typed] == [evs[0].event_id, evs[2].event_id]
    assert [e.event_id for e in await webhooks.events_since_caught_up(svc, shop_id=shop.shop_id, limit=2)] == [
        evs[0].event_id,
        evs[1].event_id,
    ]


# ---------------------------------------------------------------- GB-10: service/tx/idempotency.py


async def test_gb10_a_key_of_128_characters_replays_and_a_longer_one_is_refused_through_service(svc, shop):
    """GB-10: an idempotency key has at most 128 characters (the column): one of 128 guards its call and
    replays it, one of 129 is refused before anything is written."""
    from engine.errors import RuleViolation

    key = "k" * 128
    a = await webhooks.register_endpoint(svc, shop_id=shop.shop_id, url=URL, idempotency_key=key)
    b = await webhooks.register_endpoint(svc, shop_id=shop.shop_id, url=URL, idempotency_key=key)
    assert a.endpoint_id == b.endpoint_id
    with pytest.raises(RuleViolation) as e:
        await webhooks.register_endpoint(svc, shop_id=shop.shop_id, url=URL, idempotency_key=key + "k")
    assert (e.value.code.value, e.value.rule, e.value.field) == ("INVALID_INPUT", "GB-10", "idempotencyKey")
    assert "128" in str(e.value)
    assert [x.endpoint_id for x in await webhooks.list_endpoints(svc, shop_id=shop.shop_id)] == [a.endpoint_id]


async def test_gb10_once_stores_the_key_with_its_scope_request_hash_and_result_through_service(svc, shop):
    """GB-10 (`once`): the first call runs and stores (shop, scope, key, hash of the request, result); a retry
    with the same request, its keys in any order and with values JSON has no type for, replays the result
    without running; another request under the key is IDEMPOTENCY_CONFLICT; no key runs every time. A scope
    longer than the column's 64 characters is stored as a 47-character prefix, '#' and 16 hex of its hash."""
    import hashlib
    from datetime import datetime

    from engine.errors import RuleViolation
    from service.tx.idempotency import once, once_or_replay, request_hash
    from store.models import IdempotencyKey

    runs = []

    async def run():
        runs.append(1)
        return {"n": len(runs), "at": svc.now()}

    when = datetime(2026, 1, 1)
    long_scope = "s" * 64 + "x"
    stored = {"n": 1, "at": str(svc.now())}
    for scope in ("s" * 64, long_scope):
        runs.clear()
        answers = []
        for request in ({"a": 1, "when": when}, {"when": when, "a": 1}):
            async with unit_of_work(svc) as s:
                answers.append(
                    await once_or_replay(
                        s, shop_id=shop.shop_id, scope=scope, key="k1", request=request, now=svc.now(), run=run
                    )
                )
        assert answers == [({"n": 1, "at": svc.now()}, False), (stored, True)]
        assert runs == [1]
    runs.clear()
    async with svc.sessionmaker() as s:
        rows = (await s.execute(select(IdempotencyKey).where(IdempotencyKey.shop_id == shop.shop_id))).scalars().all()
    hashed = "s" * 47 + "#" + hashlib.sha256(long_scope.encode()).hexdigest()[:16]
    assert sorted((r.scope, r.key, r.request_hash, r.result, r.created_at) for r in rows) == sorted(
        (sc, "k1", request_hash({"a": 1, "when": str(when)}), stored, svc.now()) for sc in ("s" * 64, hashed)
    )
    with pytest.raises(RuleViolation) as e:
        async with unit_of_work(svc) as s:
            await once(s, shop_id=shop.shop_id, scope="s" * 64, key="k1", request={"a": 2}, now=svc.now(), run=run)
    assert (e.value.code.value, e.value.rule, e.value.field) == ("IDEMPOTENCY_CONFLICT", "GB-10", "idempotencyKey")
    assert runs == []
    for _ in range(2):
        async with unit_of_work(svc) as s:
            assert await once_or_replay(
                s, shop_id=shop.shop_id, scope="x", key=None, request={}, now=svc.now(), run=run
            ) == (
                {"n": len(runs), "at": svc.now()},
                False,
            )
    assert runs == [1, 1]


# ---------------------------------------------------------------- SH-2: service/tx/events.py


async def test_sh2_an_event_of_a_shop_this_process_has_not_met_reads_its_currency_once_through_service(
    svc, shop, monkeypatch
):
    """SH-2: an event's payload carries the shop's currency. A shop this process has not met yet (another
    process created it) gets its currency read from `shops` at the flush, once: then it is known."""
    from service.usecases.shops import create_shop

    other = await create_shop(svc, shop_id=shop.shop_id + "-usd", name="Other", currency="USD")
    monkeypatch.delitem(events._CURRENCY, other.shop_id, raising=False)
    assert events.known_currency(other.shop_id) is None
    ev = await _emit(svc, other.shop_id, order_id="o1")
    assert (ev.type, ev.aggregate_type, ev.aggregate_id, ev.rule, ev.occurred_at) == (
        "order.paid",
        "order",
        "agg-1",
        "OR-1",
        svc.now(),
    )
    assert ev.payload == {"currency": "USD", "order_id": "o1", "rule": "OR-1"}
    assert events.known_currency(other.shop_id) == "USD"
    mine = await _emit(svc, shop.shop_id, order_id="o2")
    assert mine.payload == {"currency": "CNY", "order_id": "o2", "rule": "OR-1"}


@pytest.mark.parametrize("status, state", [(299, "DELIVERED"), (300, "PENDING"), (302, "PENDING")])
async def test_wh_only_a_2xx_answer_delivers_a_3xx_is_a_failure_through_service(svc, shop, status, state):
    """A delivery is made by a 2xx answer only: a redirect is not followed and counts as a failure (a 3xx
    target was never checked, issue 11.3), so the delivery stays owed."""
    ep = await webhooks.register_endpoint(svc, shop_id=shop.shop_id, url=URL)
    ev = await _emit(svc, shop.shop_id)
    assert await _deliver(svc, Transport(shop.shop_id, status)) == 1
    d = await _delivery(svc, shop.shop_id, ep.endpoint_id, ev.event_id)
    assert (d.state, d.last_status, d.attempts) == (state, status, 1)
    e = await _endpoint(svc, shop.shop_id, ep.endpoint_id)
    assert e.consecutive_failures == (0 if state == "DELIVERED" else 1)


async def test_wh_two_shops_take_turns_in_the_lanes_and_never_overfill_them_through_service(svc, shop):
    """Shops with due work take turns, one claim each, and the pass never starts more POSTs than its lanes:
    with 3 lanes and two shops, the third claim fills the last lane mid-turn and the other shop waits."""
    from service.usecases.shops import create_shop

    other = await create_shop(svc, shop_id=shop.shop_id + "-2", name="Other", currency="CNY")
    svc.clock.advance(timedelta(days=-3650))  # before any other test's leftovers
    for sid in (shop.shop_id, other.shop_id):
        await webhooks.register_endpoint(svc, shop_id=sid, url=URL)
        for i in range(3):
            await _emit(svc, sid, aggregate_id=f"o{i}")
    lanes = Lanes({shop.shop_id, other.shop_id}, expect=3)
    async with httpx.AsyncClient(transport=httpx.MockTransport(lanes)) as client:
        assert await webhooks.deliver_due(svc, client=client, concurrency=3, per_endpoint=3) == 6
    assert lanes.peak["all"] == 3
    assert len(lanes.seen) == len(set(lanes.seen)) == 6


async def test_wh_a_disabled_endpoint_holds_its_deliveries_beside_an_enabled_one_through_service(svc, shop):
    """An admin-disabled endpoint's delivery is HELD (not posted, lease released) while the shop's other,
    enabled endpoint gets the same event; enabling it makes the held one due again."""
    off = await webhooks.register_endpoint(svc, shop_id=shop.shop_id, url="http://127.0.0.1:9/off")
    on = await webhooks.register_endpoint(svc, shop_id=shop.shop_id, url="http://127.0.0.1:9/on")
    await webhooks.disable_endpoint(svc, shop_id=shop.shop_id, endpoint_id=off.endpoint_id)
    ev = await _emit(svc, shop.shop_id)
    tr = Transport(shop.shop_id, 200)
    assert await _deliver(svc, tr) == 1
    assert [r.url.path for r in tr.requests] == ["/on"]
    held = await _delivery(svc, shop.shop_id, off.endpoint_id, ev.event_id)
    assert (held.state, held.attempts, held.lease_until, held.lease_token) == ("HELD", 0, None, None)
    assert (await _delivery(svc, shop.shop_id, on.endpoint_id, ev.event_id)).state == "DELIVERED"
    await webhooks.enable_endpoint(svc, shop_id=shop.shop_id, endpoint_id=off.endpoint_id)
    d = await _delivery(svc, shop.shop_id, off.endpoint_id, ev.event_id)
    assert (d.state, d.next_attempt_at) == ("PENDING", svc.now())
    assert await _deliver(svc, tr) == 1
    assert [r.url.path for r in tr.requests] == ["/on", "/off"]


async def test_wh_a_pass_of_3_lanes_sends_one_at_a_time_to_one_endpoint_through_service(svc, shop):
    """Per endpoint a pass takes half its lanes, at least one: with 3 lanes, one POST at a time to an
    endpoint (3 // 2)."""
    await _lanes_setup(svc, shop.shop_id, wide=1, narrow=0, n_wide=3, n_all=0)
    lanes = Lanes(shop.shop_id, expect=1)
    async with httpx.AsyncClient(transport=httpx.MockTransport(lanes)) as client:
        assert await webhooks.deliver_due(svc, client=client, concurrency=3) == 3
    assert lanes.peak["/w0"] == 1


def test_wh_the_workers_http_client_follows_no_redirect_and_trusts_no_proxy():
    """The client deliveries use (issue 11.3): no redirect followed, no proxy from the environment, one
    overall timeout, 2 connections a lane (half kept alive), its user agent, and the CAs it is given."""
    import ssl

    c = webhooks.webhook_client()
    pool = c._transport._pool
    assert (c.follow_redirects, c.trust_env, c.timeout) == (False, False, httpx.Timeout(5.0))
    assert (pool._max_connections, pool._max_keepalive_connections) == (32, 16)
    assert c.headers["user-agent"] == "Sharecart-Webhooks/1"
    assert pool._ssl_context.verify_mode == ssl.CERT_REQUIRED
    c = webhooks.webhook_client(deadline_s=2.0, connections=3, verify=False)
    pool = c._transport._pool
    assert (c.timeout, pool._max_connections, pool._max_keepalive_connections) == (httpx.Timeout(2.0), 6, 3)
    assert pool._ssl_context.verify_mode == ssl.CERT_NONE


async def test_wh_the_feed_answers_100_events_a_page_by_default_through_service(svc, shop):
    async with unit_of_work(svc) as s:
        for i in range(101):
            events.emit(
                s,
                shop_id=shop.shop_id,
                type="order.paid",
                aggregate_type="order",
                aggregate_id=f"o{i}",
                now=svc.now(),
                payload={"i": i},
            )
    page = await webhooks.events_since_caught_up(svc, shop_id=shop.shop_id)
    assert [e.payload["i"] for e in page] == list(range(100))
    rest = await webhooks.events_since_caught_up(svc, shop_id=shop.shop_id, after=webhooks.event_position(page[-1]))
    assert [e.payload["i"] for e in rest] == [100]


async def test_a_keyed_rotation_replayed_after_its_endpoint_was_deleted_is_not_found(svc, shop):
    """GB-10 replay (`webhooks._endpoint`): a retried rotation answers with the endpoint as it stands now — once
    the endpoint is deleted, the replay is NOT_FOUND on endpointId, not an answer without an endpoint."""
    from engine.errors import ErrorCode, RuleViolation

    ep = await webhooks.register_endpoint(svc, shop_id=shop.shop_id, url=URL)
    await webhooks.rotate_secret(svc, shop_id=shop.shop_id, endpoint_id=ep.endpoint_id, idempotency_key="rot-1")
    assert await webhooks.delete_endpoint(svc, shop_id=shop.shop_id, endpoint_id=ep.endpoint_id)
    with pytest.raises(RuleViolation) as e:
        await webhooks.rotate_secret(svc, shop_id=shop.shop_id, endpoint_id=ep.endpoint_id, idempotency_key="rot-1")
    assert (e.value.code, e.value.field) == (ErrorCode.NOT_FOUND, "endpointId")


async def test_a_redelivery_of_an_empty_range_is_refused_on_to_seq(svc, shop):
    """docs/webhooks.md (replay): `redeliver` owes the events with fromSeq <= seq <= toSeq; a range that ends
    before it starts is INVALID_INPUT on toSeq and owes nothing; a range of one seq is valid."""
    from engine.errors import ErrorCode, RuleViolation

    ep = await webhooks.register_endpoint(svc, shop_id=shop.shop_id, url=URL)
    with pytest.raises(RuleViolation) as e:
        await webhooks.redeliver(svc, shop_id=shop.shop_id, endpoint_id=ep.endpoint_id, from_seq=5, to_seq=4)
    assert (e.value.code, e.value.field) == (ErrorCode.INVALID_INPUT, "toSeq")
    assert await webhooks.redeliver(svc, shop_id=shop.shop_id, endpoint_id=ep.endpoint_id, from_seq=5, to_seq=5) == 0
