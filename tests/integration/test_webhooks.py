"""Events out to the shop: outbox written with its transaction, signed webhooks delivered in order
per aggregate, retried, never sent twice at once (two processes). The webhook-only backend running a whole
campaign over HTTP is tests/api/test_webhook_backend.py."""

from __future__ import annotations

import asyncio
import json
import threading
from collections import Counter, defaultdict
from datetime import timedelta

import pytest
from sqlalchemy import func, select, text

from engine.errors import RuleViolation
from service.tx import events, group_batch
from service.usecases import groups, orders, refunds, webhooks
from service.uow import unit_of_work
from store.models import Event
from tests.http_receiver import LocalReceiver, verify_standard
from tests.integration.helpers import make_campaign, pay


class Receiver(LocalReceiver):
    """A real HTTP server on a free local port that fails the first `fail_first` attempts of each event."""

    def __init__(self, fail_first: int = 0):
        self.fail_first = fail_first
        self.seen: Counter = Counter()
        self.accepted: list[tuple[dict, str, bytes]] = []
        self.lock = threading.Lock()
        super().__init__(self._answer)

    def _answer(self, path, headers, body: bytes) -> int:
        eid = headers["webhook-id"]
        with self.lock:
            self.seen[eid] += 1
            ok = self.seen[eid] > self.fail_first
            if ok:
                self.accepted.append((json.loads(body), headers, body))
        return 200 if ok else 503


@pytest.fixture
def receiver():
    r = Receiver(fail_first=2)
    yield r
    r.close()


async def _drain(svc, rounds=80):
    for _ in range(rounds):
        await webhooks.deliver_due(svc)
        svc.clock.advance(timedelta(minutes=30))


async def test_webhook_only_backend_runs_a_campaign_and_totals_match(svc, shop, receiver):
    """At the service level: every event arrives (after failures), signatures verify, per-group order holds, and
    the refunds webhooks announce are the ones Sharecart owes. The issue's done-when (a webhook-only backend
    over real HTTP, shipping and paying, duplicates included) is tests/api/test_webhook_backend.py."""
    ep = await webhooks.register_endpoint(svc, shop_id=shop.shop_id, url=receiver.url)
    c = await make_campaign(svc, shop.shop_id, tiers=[(2, 8000), (3, 7000)])
    g1 = await groups.open_group(svc, shop_id=shop.shop_id, campaign_id=c.campaign_id, user_id="a")
    await pay(svc, shop.shop_id, g1)
    for u in ("b", "c"):
        s = await groups.join_group(svc, shop_id=shop.shop_id, group_id=g1.group_id, user_id=u)
        await pay(svc, shop.shop_id, s)
    g2 = await groups.open_group(svc, shop_id=shop.shop_id, campaign_id=c.campaign_id, user_id="d")
    await pay(svc, shop.shop_id, g2)
    svc.clock.advance(timedelta(hours=25))
    from service.jobs import worker

    await worker.run_due(svc)
    await _drain(svc)

    async with unit_of_work(svc) as s:
        n_events = (
            await s.execute(select(func.count()).select_from(Event).where(Event.shop_id == shop.shop_id))
        ).scalar()
    got = [e for e, _, _ in receiver.accepted]
    assert len({e["id"] for e in got}) == n_events  # every event arrived
    assert all(verify_standard(ep.secret, headers, body) for _, headers, body in receiver.accepted)
    by_group = defaultdict(list)
    for e in got:
        by_group[e["aggregate_id"]].append(e["seq"])
    assert all(seqs == sorted(seqs) for seqs in by_group.values())  # per-aggregate order
    types = [e["type"] for e in got]
    assert "group.formed" in types and "group.failed" in types
    # the backend pays what webhooks told it to, confirming with its provider reference
    owed = {e["data"]["refund_id"]: e["data"]["amount"] for e in got if e["type"] == "refund.owed"}
    for rid in owed:
        await refunds.confirm_refund(svc, shop_id=shop.shop_id, refund_id=rid, provider_ref=f"bank-{rid}")
    assert await refunds.list_refunds(svc, shop_id=shop.shop_id, state="OWED") == []
    done = await refunds.list_refunds(svc, shop_id=shop.shop_id, state="CONFIRMED")
    assert sum(owed.values()) == sum(r.amount for r in done) == 3 * 1000 + 8000  # GB-5 ×3, GB-6 for d


async def test_event_is_written_iff_its_transaction_commits(svc, shop):
    with pytest.raises(RuntimeError):
        async with unit_of_work(svc) as s:
            events.emit(
                s,
                shop_id=shop.shop_id,
                type="test.rolled_back",
                aggregate_type="t",
                aggregate_id="x",
                now=svc.now(),
                payload={},
            )
            await s.flush()
            raise RuntimeError("roll back")
    c = await make_campaign(svc, shop.shop_id, tiers=[(2, 8000)], almost_full_at=0)  # no GB-15 nudge here
    g = await groups.open_group(svc, shop_id=shop.shop_id, campaign_id=c.campaign_id, user_id="a")
    with pytest.raises(RuleViolation):
        await groups.join_group(svc, shop_id=shop.shop_id, group_id=g.group_id, user_id="b")  # not open: refused
    evs = await webhooks.events_since_caught_up(svc, shop_id=shop.shop_id)
    assert [e.type for e in evs] == []  # the open itself emits nothing until the leader pays
    await pay(svc, shop.shop_id, g)
    assert [e.type for e in await webhooks.events_since_caught_up(svc, shop_id=shop.shop_id)] == [
        "order.paid",
        "group.opened",
    ]


class SlowReceiver(LocalReceiver):
    """A receiver that takes `delay` seconds per POST and records when each delivery of each event was in flight."""

    def __init__(self, delay: float):
        import secrets

        self.delay = delay
        self.lock = threading.Lock()
        self.in_flight: Counter = Counter()  # event id -> POSTs of it being answered right now
        self.overlaps: list[str] = []  # event ids seen in flight twice at once
        self.spans: dict[str, list[tuple[float, float]]] = defaultdict(list)
        self.arrivals: list[dict] = []
        self.busy, self.max_busy = 0, 0
        self.path = f"/hook/{secrets.token_hex(4)}"  # anything else is a leftover of another test: not ours
        super().__init__(self._answer, self.path)

    def _answer(self, path, headers, body: bytes) -> int:
        import time

        if path != self.path:
            return 404
        eid, began = headers["webhook-id"], time.monotonic()
        with self.lock:
            self.in_flight[eid] += 1
            if self.in_flight[eid] > 1:
                self.overlaps.append(eid)
            self.busy += 1
            self.max_busy = max(self.max_busy, self.busy)
            self.arrivals.append(json.loads(body))
        time.sleep(self.delay)
        with self.lock:
            self.in_flight[eid] -= 1
            self.busy -= 1
            self.spans[eid].append((began, time.monotonic()))
        return 200


async def test_two_processes_never_deliver_the_same_event_concurrently(svc, shop, database_url):
    """Two OS processes (each its own engine and connections, as two service instances) deliver the same
    backlog to a slow receiver at the same time: the FOR UPDATE SKIP LOCKED claim means no event is ever in
    flight twice at once, every event arrives exactly once, and one aggregate's events still arrive in order."""
    import os
    import subprocess
    import sys
    from pathlib import Path

    r = SlowReceiver(delay=0.25)
    children = []
    try:
        await webhooks.register_endpoint(svc, shop_id=shop.shop_id, url=r.url)
        await _emit_many(svc, shop.shop_id, 16)  # 16 aggregates: deliverable side by side
        async with unit_of_work(svc) as s:  # and one aggregate of 4: strictly one after the other
            for i in range(4):
                events.emit(
                    s,
                    shop_id=shop.shop_id,
                    type="test.chain",
                    aggregate_type="t",
                    aggregate_id="chain",
                    now=svc.now(),
                    payload={"i": i},
                )
        root = Path(__file__).resolve().parents[2]
        for _ in range(2):
            children.append(
                subprocess.Popen(
                    [sys.executable, "-m", "tests.integration.webhook_child", database_url, "deliver", r.url],
                    cwd=root,
                    stdin=subprocess.PIPE,
                    stdout=subprocess.PIPE,
                    text=True,
                    env={**os.environ},
                )
            )
        for c in children:
            assert c.stdout.readline().strip() == "READY"
        for c in children:  # both start at once
            c.stdin.write("GO\n")
            c.stdin.flush()
        outs = [c.communicate(timeout=60)[0] for c in children]
        assert [c.returncode for c in children] == [0, 0], outs
        posts = [int(o.split()[-1]) for o in outs]
    finally:
        for c in children:
            if c.poll() is None:
                c.kill()
                c.wait(timeout=10)
        r.close()

    assert r.overlaps == []  # no event was ever in flight twice at the same moment
    for eid, spans in r.spans.items():  # (the same, from the recorded intervals)
        spans.sort()
        assert all(a_end <= b_start for (_, a_end), (b_start, _) in zip(spans, spans[1:])), eid
    assert len(r.spans) == 20 and all(len(v) == 1 for v in r.spans.values())  # all arrived, once each
    assert sum(posts) == 20 and all(p > 0 for p in posts), posts  # both processes delivered
    assert r.max_busy > 2  # the processes really posted side by side (each holds at most 2 lanes per endpoint)
    chain = [e["data"]["i"] for e in r.arrivals if e["type"] == "test.chain"]
    assert chain == [0, 1, 2, 3]


async def test_rotation_signs_with_both_secrets_and_replay_redelivers(svc, shop):
    r = Receiver(fail_first=0)
    try:
        ep = await webhooks.register_endpoint(svc, shop_id=shop.shop_id, url=r.url)
        old = ep.secret
        ep = await webhooks.rotate_secret(svc, shop_id=shop.shop_id, endpoint_id=ep.endpoint_id)
        o = await orders.report_order(
            svc, shop_id=shop.shop_id, external_id="o1", buyer_id="b", lines=[orders.LineInput("p", 1, 100)]
        )
        await pay(svc, shop.shop_id, o.order_id, amount=100)
        await webhooks.deliver_due(svc)
        _, headers, body = r.accepted[0]
        assert verify_standard(old, headers, body) and verify_standard(ep.secret, headers, body)
        assert not verify_standard(webhooks.new_secret(), headers, body)
        assert len(headers["webhook-signature"].split(" ")) == 2  # one v1 per live secret, space-separated
        evs = await webhooks.events_since_caught_up(svc, shop_id=shop.shop_id)
        assert await webhooks.redeliver(
            svc, shop_id=shop.shop_id, endpoint_id=ep.endpoint_id, from_seq=evs[0].seq, to_seq=evs[-1].seq
        ) == len(evs)
        await webhooks.deliver_due(svc)
        assert set(r.seen.values()) == {2}
    finally:
        r.close()


async def test_killing_the_service_mid_delivery_loses_no_event(svc, shop, database_url):
    """The claim is a lease (no transaction is held across the POST): while the killed process's lease lasts,
    no other worker sends the delivery; once it has expired the delivery is still PENDING and the next
    worker sends it (at-least-once)."""
    import os
    import signal
    import socket
    import subprocess
    import sys
    import time as _time
    from pathlib import Path

    hang = socket.socket()
    hang.bind(("127.0.0.1", 0))
    hang.listen(16)  # accepts connections, never answers
    await webhooks.register_endpoint(svc, shop_id=shop.shop_id, url=f"http://127.0.0.1:{hang.getsockname()[1]}/hook")
    o = await orders.report_order(
        svc, shop_id=shop.shop_id, external_id="k1", buyer_id="b", lines=[orders.LineInput("p", 1, 100)]
    )
    await pay(svc, shop.shop_id, o.order_id, amount=100)
    root = Path(__file__).resolve().parents[2]
    child = subprocess.Popen(
        [sys.executable, "-m", "tests.integration.webhook_child", database_url],
        cwd=root,
        stdout=subprocess.PIPE,
        text=True,
        env={**os.environ},
    )
    try:
        assert child.stdout.readline().startswith("DELIVERING")
        hang.settimeout(10)
        held, _ = hang.accept()  # the child is now inside its POST
        assert await webhooks.deliver_due(svc) == 0  # leased by the child: skipped, not sent twice
    finally:
        child.send_signal(signal.SIGKILL)
        child.wait(timeout=30)
        hang.close()
    killed_at = _time.monotonic()
    r = Receiver(fail_first=0)
    try:
        async with unit_of_work(svc) as s:
            from sqlalchemy import update as _update

            from store.models import WebhookEndpoint

            await s.execute(_update(WebhookEndpoint).where(WebhookEndpoint.shop_id == shop.shop_id).values(url=r.url))
        sent = await webhooks.deliver_due(svc)
        while sent == 0 and _time.monotonic() - killed_at < 10:  # the lease (3 s + 1 s) runs out
            await asyncio.sleep(0.2)
            sent = await webhooks.deliver_due(svc)
        assert sent == 1
        assert len(r.seen) == 1
    finally:
        r.close()


async def test_every_event_payload_carries_the_shop_currency(svc, shop):
    """The backend needs the currency beside every amount (SH-2: the shop's one currency)."""
    c = await make_campaign(svc, shop.shop_id, tiers=[(2, 8000)], almost_full_at=0)  # no GB-15 nudge here
    g = await groups.open_group(svc, shop_id=shop.shop_id, campaign_id=c.campaign_id, user_id="a")
    await pay(svc, shop.shop_id, g)
    evs = await webhooks.events_since_caught_up(svc, shop_id=shop.shop_id)
    assert evs and all(e.payload["currency"] == "CNY" for e in evs)


async def test_a_failed_group_reports_its_voided_commission_lines_CM6(svc, shop):
    """CM-6: lines of a failed group are voided, and the shop hears of each one."""
    from engine.distribution import DistributorStatus
    from service.usecases import distribution
    from service.jobs import worker

    await distribution.set_status(
        svc, shop_id=shop.shop_id, user_id="ref", status=DistributorStatus.ACTIVE, actor="t", reason="t"
    )
    await distribution.bind_referrer(svc, shop_id=shop.shop_id, user_id="m1", referrer_id="ref")
    c = await make_campaign(svc, shop.shop_id, tiers=[(3, 8000)])
    g = await groups.open_group(svc, shop_id=shop.shop_id, campaign_id=c.campaign_id, user_id="lead")
    await pay(svc, shop.shop_id, g)
    m1 = await groups.join_group(svc, shop_id=shop.shop_id, group_id=g.group_id, user_id="m1")
    await pay(svc, shop.shop_id, m1)
    svc.clock.advance(timedelta(hours=25))
    await worker.run_due(svc)
    evs = await webhooks.events_since_caught_up(svc, shop_id=shop.shop_id)
    posted = [e.payload for e in evs if e.type == "commission.posted"]
    voided = [e for e in evs if e.type == "commission.voided"]
    assert [v.payload["line_id"] for v in voided] == [p["line_id"] for p in posted]
    assert all(v.rule == "CM-6" and v.payload["order_id"] == m1.order_id for v in voided)


def _hanging_endpoint():
    """A TCP port that accepts connections and never answers: a receiver slower than any timeout."""
    import socket

    hang = socket.socket()
    hang.bind(("127.0.0.1", 0))
    hang.listen(64)
    return hang, f"http://127.0.0.1:{hang.getsockname()[1]}/hook"


async def _deliveries(svc, shop_id, endpoint_id=None):
    from store.models import WebhookDelivery

    async with unit_of_work(svc) as s:
        q = select(WebhookDelivery).where(WebhookDelivery.shop_id == shop_id)
        if endpoint_id:
            q = q.where(WebhookDelivery.endpoint_id == endpoint_id)
        return list((await s.execute(q.order_by(WebhookDelivery.seq))).scalars())


async def _emit_many(svc, shop_id, n, prefix="burst"):
    async with unit_of_work(svc) as s:
        for i in range(n):
            events.emit(
                s,
                shop_id=shop_id,
                type="test.burst",
                aggregate_type="t",
                aggregate_id=f"{prefix}{i}",
                now=svc.now(),
                payload={"i": i},
            )


async def test_a_burst_of_failures_does_not_disable_and_a_disabled_endpoint_loses_nothing(svc, shop):
    """Disabling takes failures over a real time window (>= 24 h, docs/webhooks.md), not a count reached in
    one pass; a disabled endpoint keeps being owed every event (held), and gets them all once enabled."""
    r = Receiver(fail_first=10**6)  # down
    try:
        ep = await webhooks.register_endpoint(svc, shop_id=shop.shop_id, url=r.url)
        await _emit_many(svc, shop.shop_id, 60)
        await webhooks.deliver_due(svc)
        assert [d.attempts for d in await _deliveries(svc, shop.shop_id)] == [1] * 60  # 60 failures, 0 s elapsed
        [row] = await webhooks.list_endpoints(svc, shop_id=shop.shop_id)
        assert row.enabled and row.consecutive_failures == 60
        svc.clock.advance(timedelta(hours=13))  # still failing after 13 h: not yet
        await webhooks.deliver_due(svc)
        [row] = await webhooks.list_endpoints(svc, shop_id=shop.shop_id)
        assert row.enabled and row.consecutive_failures == 120
        svc.clock.advance(timedelta(hours=12))  # failing for 25 h without a success: disabled
        await webhooks.deliver_due(svc)
        [row] = await webhooks.list_endpoints(svc, shop_id=shop.shop_id)
        assert not row.enabled and row.disabled_at is not None
        disabled = [
            e
            for e in await webhooks.events_since_caught_up(svc, shop_id=shop.shop_id, limit=1000)
            if e.type == "webhook.endpoint_disabled"
        ]
        assert [e.aggregate_id for e in disabled] == [ep.endpoint_id]  # the admin sees it, once
        assert {d.state for d in await _deliveries(svc, shop.shop_id)} <= {"PENDING", "HELD"}  # none given up

        await _emit_many(svc, shop.shop_id, 5, prefix="while-disabled")  # still owed while disabled
        before = sum(r.seen.values())
        svc.clock.advance(timedelta(hours=2))
        await webhooks.deliver_due(svc)
        assert sum(r.seen.values()) == before  # held: nothing sent
        assert len(await _deliveries(svc, shop.shop_id)) == 60 + 1 + 5

        r.fail_first = 0  # the receiver is fixed; the admin re-enables
        await webhooks.enable_endpoint(svc, shop_id=shop.shop_id, endpoint_id=ep.endpoint_id)
        await webhooks.deliver_due(svc)
        assert {d.state for d in await _deliveries(svc, shop.shop_id)} == {"DELIVERED"}
        assert len({e["id"] for e, _, _ in r.accepted}) == 66
    finally:
        r.close()


async def test_redeliver_refuses_an_unknown_endpoint_and_honours_the_type_filter(svc, shop, receiver):
    from engine.errors import ErrorCode

    with pytest.raises(RuleViolation) as e:
        await webhooks.redeliver(svc, shop_id=shop.shop_id, endpoint_id="wh_nope", from_seq=0, to_seq=10**12)
    assert e.value.code == ErrorCode.NOT_FOUND
    ep = await webhooks.register_endpoint(svc, shop_id=shop.shop_id, url=receiver.url, event_types=["order.paid"])
    o = await orders.report_order(
        svc, shop_id=shop.shop_id, external_id="f1", buyer_id="b", lines=[orders.LineInput("p", 1, 100)]
    )
    await pay(svc, shop.shop_id, o.order_id, amount=100)
    await orders.complete_order(svc, shop_id=shop.shop_id, order_id=o.order_id)
    assert (
        await webhooks.redeliver(svc, shop_id=shop.shop_id, endpoint_id=ep.endpoint_id, from_seq=0, to_seq=10**12) == 1
    )  # order.paid only, not order.completed


async def test_one_broken_delivery_never_rolls_back_the_others(svc, shop):
    """A delivery the worker cannot process (its endpoint is gone) is set aside; the other deliveries of the
    same pass keep their POST and attempt records, and the worker carries on."""
    from store.models import WebhookAttempt

    r = Receiver(fail_first=0)
    try:
        ep = await webhooks.register_endpoint(svc, shop_id=shop.shop_id, url=r.url)
        await _emit_many(svc, shop.shop_id, 3)
        [first, *_] = await _deliveries(svc, shop.shop_id)
        async with unit_of_work(svc) as s:  # an orphan: owed to an endpoint that does not exist
            await s.execute(
                text(
                    "INSERT INTO webhook_deliveries (shop_id, endpoint_id, event_id, seq, aggregate_id, state, attempts,"
                    " next_attempt_at, created_at) VALUES (:s, 'wh_gone', :e, :q, 'orphan', 'PENDING', 0, :t, :t)"
                ),
                {"s": shop.shop_id, "e": first.event_id, "q": first.seq, "t": svc.now() - timedelta(seconds=1)},
            )
        await webhooks.deliver_due(svc)
        good = await _deliveries(svc, shop.shop_id, ep.endpoint_id)
        assert [d.state for d in good] == ["DELIVERED"] * 3 and len(r.seen) == 3
        [orphan] = await _deliveries(svc, shop.shop_id, "wh_gone")
        assert orphan.state == "DEAD" and orphan.last_error
        async with unit_of_work(svc) as s:
            n = (
                await s.execute(
                    select(func.count()).select_from(WebhookAttempt).where(WebhookAttempt.shop_id == shop.shop_id)
                )
            ).scalar()
        assert n == 3
    finally:
        r.close()


async def test_one_slow_receiver_does_not_hold_up_the_others(svc, shop):
    """While a POST to a receiver that never answers waits for its timeout, the other endpoint's deliveries go
    out and are committed; the worker holds no lock on the slow endpoint that others would wait for."""
    import time as _time

    hang, slow_url = _hanging_endpoint()
    fast = Receiver(fail_first=0)
    try:
        slow = await webhooks.register_endpoint(svc, shop_id=shop.shop_id, url=slow_url)
        quick = await webhooks.register_endpoint(svc, shop_id=shop.shop_id, url=fast.url)
        await _emit_many(svc, shop.shop_id, 3)
        started = _time.monotonic()
        task = asyncio.create_task(webhooks.deliver_due(svc, timeout_s=2.0))
        while _time.monotonic() - started < 1.5:
            done = [d.state for d in await _deliveries(svc, shop.shop_id, quick.endpoint_id)]
            if done == ["DELIVERED"] * 3:
                break
            await asyncio.sleep(0.05)
        assert done == ["DELIVERED"] * 3, done  # committed while the slow POST still hangs
        other = await asyncio.wait_for(webhooks.deliver_due(svc, timeout_s=0.2), timeout=1.5)  # not blocked
        assert other <= 2
        await task
        assert {d.state for d in await _deliveries(svc, shop.shop_id, slow.endpoint_id)} == {"PENDING"}
    finally:
        hang.close()
        fast.close()


async def test_a_slow_webhook_never_delays_group_expiry_GB11(svc, shop):
    """The worker delivers webhooks in a loop of its own: expiry and commission release go on while a POST
    hangs for its whole timeout."""
    from service.jobs import worker
    from store.models import GroupRow

    hang, url = _hanging_endpoint()
    try:
        await webhooks.register_endpoint(svc, shop_id=shop.shop_id, url=url)
        await _emit_many(svc, shop.shop_id, 3)
        c = await make_campaign(svc, shop.shop_id, tiers=[(3, 8000)])
        g = await groups.open_group(svc, shop_id=shop.shop_id, campaign_id=c.campaign_id, user_id="lead")
        await pay(svc, shop.shop_id, g)
        stop = asyncio.Event()
        loop = asyncio.create_task(worker.worker_loop(svc, stop, interval=0.05))
        try:
            hang.settimeout(5)
            held, _ = await asyncio.to_thread(hang.accept)  # the delivery loop is now inside a POST
            svc.clock.advance(timedelta(hours=25))
            state = None
            for _ in range(40):
                async with unit_of_work(svc) as s:  # the row itself: a read through the service would catch up
                    state = (
                        await s.execute(
                            select(GroupRow.state).where(
                                GroupRow.shop_id == shop.shop_id, GroupRow.group_id == g.group_id
                            )
                        )
                    ).scalar()
                if state == "FAILED":
                    break
                await asyncio.sleep(0.05)
            assert state == "FAILED"
            held.close()
        finally:
            stop.set()
            hang.close()
            await asyncio.wait_for(loop, timeout=15)
    finally:
        hang.close()


async def test_enabling_an_endpoint_never_waits_for_a_post_in_flight(svc, shop):
    """enableWebhook locks the endpoint and skips the deliveries workers hold: waiting for a POST while holding
    the endpoint row would stall the admin and deadlock with the worker's own update of the endpoint."""
    from sqlalchemy import update as _update

    from store.models import WebhookEndpoint

    hang, url = _hanging_endpoint()
    try:
        ep = await webhooks.register_endpoint(svc, shop_id=shop.shop_id, url=url)
        await _emit_many(svc, shop.shop_id, 2)
        task = asyncio.create_task(webhooks.deliver_due(svc, timeout_s=3.0))
        hang.settimeout(5)
        held, _ = await asyncio.to_thread(hang.accept)  # a POST is in flight, its delivery claimed
        async with unit_of_work(svc) as s:
            await s.execute(
                _update(WebhookEndpoint).where(WebhookEndpoint.shop_id == shop.shop_id).values(enabled=False)
            )
        await asyncio.wait_for(
            webhooks.enable_endpoint(svc, shop_id=shop.shop_id, endpoint_id=ep.endpoint_id), timeout=1.5
        )
        held.close()
        await task
        [row] = await webhooks.list_endpoints(svc, shop_id=shop.shop_id)
        assert row.enabled
    finally:
        hang.close()


async def test_register_webhook_is_idempotent_by_key_GB10(svc, shop):
    """A retried registration (the answer was lost) must not create a second endpoint: every event would then be
    delivered twice, under a secret nobody kept. Concurrent retries too (the key row serialises them)."""
    from engine.errors import ErrorCode

    first = await webhooks.register_endpoint(
        svc, shop_id=shop.shop_id, url="http://127.0.0.1:9/a", event_types=["order.paid"], idempotency_key="reg-1"
    )
    again, racing = await asyncio.gather(
        *[
            webhooks.register_endpoint(
                svc,
                shop_id=shop.shop_id,
                url="http://127.0.0.1:9/a",
                event_types=["order.paid"],
                idempotency_key="reg-1",
            )
            for _ in range(2)
        ]
    )
    assert again.endpoint_id == racing.endpoint_id == first.endpoint_id and again.secret == first.secret
    assert len(await webhooks.list_endpoints(svc, shop_id=shop.shop_id)) == 1
    with pytest.raises(RuleViolation) as e:
        await webhooks.register_endpoint(svc, shop_id=shop.shop_id, url="http://127.0.0.1:9/b", idempotency_key="reg-1")
    assert e.value.code == ErrorCode.IDEMPOTENCY_CONFLICT
    other = await webhooks.register_endpoint(
        svc, shop_id=shop.shop_id, url="http://127.0.0.1:9/a", event_types=["order.paid"], idempotency_key="reg-2"
    )
    assert other.endpoint_id != first.endpoint_id  # another key: another registration
    assert len(await webhooks.list_endpoints(svc, shop_id=shop.shop_id)) == 2


async def test_rotate_webhook_secret_is_idempotent_by_key_and_keeps_the_overlap_GB10(svc, shop):
    """A retried rotation must not rotate again: the secret receivers verify with (the one before the first
    rotation) would lose its overlap at once, and the secret the first answer carried would be dropped."""
    from engine.errors import ErrorCode

    r = Receiver(fail_first=0)
    try:
        ep = await webhooks.register_endpoint(svc, shop_id=shop.shop_id, url=r.url)
        original = ep.secret
        rotated = await webhooks.rotate_secret(
            svc, shop_id=shop.shop_id, endpoint_id=ep.endpoint_id, idempotency_key="rot-1"
        )
        svc.clock.advance(timedelta(minutes=5))
        retried = await webhooks.rotate_secret(
            svc, shop_id=shop.shop_id, endpoint_id=ep.endpoint_id, idempotency_key="rot-1"
        )
        assert retried.secret == rotated.secret != original
        assert retried.previous_secret == original  # not the rotated one: no second rotation
        assert retried.previous_secret_until == rotated.previous_secret_until  # the overlap is not moved
        with pytest.raises(RuleViolation) as e:
            await webhooks.rotate_secret(
                svc,
                shop_id=shop.shop_id,
                endpoint_id=ep.endpoint_id,
                overlap=timedelta(hours=1),
                idempotency_key="rot-1",
            )
        assert e.value.code == ErrorCode.IDEMPOTENCY_CONFLICT
        with pytest.raises(RuleViolation) as e:  # a refused first call keeps no key: a corrected retry may run
            await webhooks.rotate_secret(svc, shop_id=shop.shop_id, endpoint_id="wh_nope", idempotency_key="rot-2")
        assert e.value.code == ErrorCode.NOT_FOUND
        [row] = await webhooks.list_endpoints(svc, shop_id=shop.shop_id)
        assert (row.secret, row.previous_secret) == (rotated.secret, original)

        await _emit_many(svc, shop.shop_id, 1)
        await webhooks.deliver_due(svc)
        [(_, headers, body)] = r.accepted
        assert verify_standard(original, headers, body) and verify_standard(rotated.secret, headers, body)
        again = await webhooks.rotate_secret(
            svc, shop_id=shop.shop_id, endpoint_id=ep.endpoint_id, idempotency_key="rot-2"
        )
        assert again.secret != rotated.secret and again.previous_secret == rotated.secret  # a new key rotates
    finally:
        r.close()


async def test_a_real_use_case_that_fails_after_emitting_leaves_no_event_and_no_delivery(svc, shop, monkeypatch):
    """The outbox half of "written iff committed", on a real use case: a leader's payment (confirm_payment ->
    GB-1 group opens) emits order.paid and group.opened, whose fan-out owes them to the endpoint; a later step of
    the same transaction then fails. Inside the transaction the rows exist; after it, neither the events nor the
    deliveries do (nor the payment). The same payment, succeeding, writes both."""
    from store.models import Order, Payment, WebhookDelivery

    ep = await webhooks.register_endpoint(svc, shop_id=shop.shop_id, url="http://127.0.0.1:9/hook")
    c = await make_campaign(svc, shop.shop_id, tiers=[(2, 8000)], almost_full_at=0)  # no GB-15 nudge here
    g = await groups.open_group(svc, shop_id=shop.shop_id, campaign_id=c.campaign_id, user_id="lead")

    async def counts(s):
        evs = (await s.execute(select(Event.type).where(Event.shop_id == shop.shop_id).order_by(Event.seq))).scalars()
        n = (
            await s.execute(
                select(func.count())
                .select_from(WebhookDelivery)
                .where(WebhookDelivery.shop_id == shop.shop_id, WebhookDelivery.endpoint_id == ep.endpoint_id)
            )
        ).scalar()
        return list(evs), n

    seen_inside = []

    real_flush = group_batch.GroupBatch.flush

    async def fail_after_write(self):  # the payment's one write statement went through, then a later step fails
        await real_flush(self)
        seen_inside.append(await counts(self.session))
        raise RuntimeError("a later step of the use case fails")

    monkeypatch.setattr(group_batch.GroupBatch, "flush", fail_after_write)
    with pytest.raises(RuntimeError):
        await pay(svc, shop.shop_id, g, ref="pay-lead")
    assert seen_inside == [(["order.paid", "group.opened"], 2)]  # written in the transaction, fanned out
    async with unit_of_work(svc) as s:
        assert await counts(s) == ([], 0)  # ... and gone with it
        assert (await s.get(Order, (shop.shop_id, g.order_id))).state == "CREATED"
        assert await s.get(Payment, (shop.shop_id, "pay-lead")) is None

    monkeypatch.undo()
    assert (await pay(svc, shop.shop_id, g, ref="pay-lead"))["accepted"] is True
    async with unit_of_work(svc) as s:
        assert await counts(s) == (["order.paid", "group.opened"], 2)


async def test_GB15_nudges_reach_a_subscribed_webhook_once_each_and_signed(svc, shop):
    """GB-15 over real HTTP: a group's `group.almost_full` (on the payment that first leaves ≤ `almost_full_at`
    paid seats missing) and `group.expiring_soon` (by the worker, `expiring_soon_before` from `expires_at`,
    nobody reading the group) are each POSTed once to the subscribed endpoint, signed like every other event,
    and never again: not on a later payment, not on later worker passes, not when the group forms."""
    from service.jobs import worker

    r = Receiver(fail_first=0)  # every POST accepted: a POST count of 1 is "delivered once"
    try:
        ep = await webhooks.register_endpoint(svc, shop_id=shop.shop_id, url=r.url)
        c = await make_campaign(
            svc, shop.shop_id, tiers=[(4, 8000)], almost_full_at=2, expiring_soon_before=timedelta(hours=2)
        )
        g = await groups.open_group(svc, shop_id=shop.shop_id, campaign_id=c.campaign_id, user_id="a")
        await pay(svc, shop.shop_id, g)
        await _drain(svc, rounds=3)

        def nudges() -> list[dict]:
            return [e for e, _, _ in r.accepted if e["type"] in ("group.almost_full", "group.expiring_soon")]

        assert nudges() == []  # 3 missing > almost_full_at = 2
        s = await groups.join_group(svc, shop_id=shop.shop_id, group_id=g.group_id, user_id="b")
        await pay(svc, shop.shop_id, s)
        await _drain(svc, rounds=3)
        assert [(e["type"], e["data"]["seats_missing"]) for e in nudges()] == [("group.almost_full", 2)]
        s = await groups.join_group(svc, shop_id=shop.shop_id, group_id=g.group_id, user_id="c")
        await pay(svc, shop.shop_id, s)  # a later change: 1 missing, still ≤ 2, but once per group
        await worker.run_due(svc)
        await _drain(svc, rounds=3)  # 4 h 30 min after open: still more than 2 h before expiry
        assert [e["type"] for e in nudges()] == ["group.almost_full"]

        svc.clock.advance(timedelta(hours=18))  # 3 drains × 1 h 30 min + 18 h: 22 h 30 min open, due since 22 h
        await worker.run_due(svc)  # on time, by the worker: nobody read the group
        await webhooks.deliver_due(svc)
        got = nudges()
        assert [(e["type"], e["data"]["seats_missing"]) for e in got] == [
            ("group.almost_full", 2),
            ("group.expiring_soon", 1),
        ]
        assert all(e["data"]["group_id"] == g.group_id and e["data"]["campaign_id"] == c.campaign_id for e in got)

        for _ in range(3):  # later worker passes, before expiry: nothing new
            svc.clock.advance(timedelta(minutes=10))
            await worker.run_due(svc)
            await webhooks.deliver_due(svc)
        s = await groups.join_group(svc, shop_id=shop.shop_id, group_id=g.group_id, user_id="d")
        await pay(svc, shop.shop_id, s)  # the group forms
        await worker.run_due(svc)
        await _drain(svc, rounds=3)
    finally:
        r.close()

    types = [e["type"] for e, _, _ in r.accepted]
    assert "group.formed" in types
    got = [(e, h, b) for e, h, b in r.accepted if e["type"] in ("group.almost_full", "group.expiring_soon")]
    assert sorted(e["type"] for e, _, _ in got) == ["group.almost_full", "group.expiring_soon"]  # once each
    assert all(r.seen[e["id"]] == 1 for e, _, _ in got)  # each POSTed once
    assert all(verify_standard(ep.secret, h, b) == e for e, h, b in got)  # signed as the other events are
    seqs = [e["seq"] for e, _, _ in r.accepted if e["aggregate_id"] == g.group_id]
    assert seqs == sorted(seqs)  # in the group's order with its other events
