"""DataLoaders keep a page's SQL constant: the statements the server runs for a page of 1, 10 or 40 items
with their relations (group → campaign, my seat; commission line → order → group → campaign) are the
same number. Counted with a SQLAlchemy event listener on the server's own engine."""

from __future__ import annotations

import secrets
import threading
from datetime import timedelta

import pytest
from sqlalchemy import event

from api.auth import mint_token
from api.relay import global_id
from engine.distribution import DistributorStatus
from service.usecases import campaigns, distribution, groups, orders
from service.usecases.shops import create_shop
from tests.api.conftest import Client

SIZES = (1, 10, 40)


class StatementCounter:
    def __init__(self, engine) -> None:
        self.engine, self.n, self.lock = engine.sync_engine, 0, threading.Lock()

    def __enter__(self):
        event.listen(self.engine, "before_cursor_execute", self._count)
        return self

    def __exit__(self, *exc):
        event.remove(self.engine, "before_cursor_execute", self._count)

    def _count(self, *args, **kwargs) -> None:
        with self.lock:
            self.n += 1


def statements(server, client: Client, query: str, **variables) -> tuple[int, dict]:
    with StatementCounter(server["svc"].engine) as counter:
        data = client.data(query, **variables)
    return counter.n, data


@pytest.fixture(scope="module")
async def forty(server, db_engine):
    """40 open groups of one campaign, each led by a buyer bound to distributor dora; viewer holds a
    seat in every one."""
    from service.context import Services

    svc = Services(engine=db_engine)
    svc.clock.set(server["svc"].now())
    now = svc.now()
    shop = await create_shop(svc, shop_id=f"qc-{secrets.token_hex(4)}", name="QC", currency="CNY")
    sid = shop.shop_id
    c = await campaigns.create_campaign(
        svc,
        shop_id=sid,
        product_ref="tea",
        title="Tea",
        list_price=1000,
        tiers=[(3, 900), (5, 800)],
        duration=timedelta(days=2),
        payment_window=timedelta(hours=2),
        starts_at=now - timedelta(hours=1),
        ends_at=now + timedelta(days=10),
    )
    await distribution.set_status(
        svc, shop_id=sid, user_id="dora", status=DistributorStatus.ACTIVE, actor="t", reason="t"
    )
    for i in range(max(SIZES)):
        svc.clock.set(now + timedelta(seconds=i))  # distinct times: a stable order on every page
        await distribution.bind_referrer(svc, shop_id=sid, user_id=f"u{i}", referrer_id="dora")
        lead = await groups.open_group(svc, shop_id=sid, campaign_id=c.campaign_id, user_id=f"u{i}")
        await orders.confirm_payment(
            svc, shop_id=sid, order_id=lead.order_id, amount=lead.amount, provider_ref=f"qc-{i}"
        )
        await groups.join_group(svc, shop_id=sid, group_id=lead.group_id, user_id="viewer")
    base = server["base"]
    return {
        "campaign": global_id("Campaign", c.campaign_id),
        "viewer": Client(base, mint_token(shop, "viewer", ["customer"], 3600)),
        "dora": Client(base, mint_token(shop, "dora", ["distributor"], 3600)),
    }


def _constant(server, client, query, path, **variables) -> list[int]:
    statements(server, client, query, n=1, **variables)  # warm up: the first request reads the shop (cached after)
    counts = []
    for n in SIZES:
        count, data = statements(server, client, query, n=n, **variables)
        for key in path:
            data = data[key]
        assert len(data["edges"]) == n  # the page really holds n items with their relations
        counts.append(count)
    return counts


def test_a_page_of_open_groups_with_campaign_and_my_seat_costs_the_same_sql(server, forty):
    q = (
        "query($c: ID!, $n: Int) { campaign(id: $c) { openGroups(first: $n) { edges { node { id seatsLeft "
        "tierReached { members } campaign { id title } mySeat { state role } } } } } }"
    )
    counts = _constant(server, forty["viewer"], q, ("campaign", "openGroups"), c=forty["campaign"])
    assert len(set(counts)) == 1, f"statements grow with the page: {dict(zip(SIZES, counts))}"
    assert counts[0] <= 12, counts


def test_a_page_of_my_groups_with_campaign_costs_the_same_sql(server, forty):
    q = (
        "query($n: Int) { myGroups(first: $n) { edges { node { id state campaign { title tiers { members } } "
        "mySeat { state } } } } }"
    )
    counts = _constant(server, forty["viewer"], q, ("myGroups",))
    assert len(set(counts)) == 1, f"statements grow with the page: {dict(zip(SIZES, counts))}"


def test_a_page_of_commission_lines_with_order_group_campaign_costs_the_same_sql(server, forty):
    q = (
        "query($n: Int) { me { commissionLines(first: $n) { edges { node { id standing order { id state "
        "group { id seatsPaid campaign { id title } } } } } } } }"
    )
    counts = _constant(server, forty["dora"], q, ("me", "commissionLines"))
    assert len(set(counts)) == 1, f"statements grow with the page: {dict(zip(SIZES, counts))}"
    assert counts[0] <= 16, counts  # the profile (balances, downline, levels) plus one per relation


def test_the_counter_sees_a_resolver_that_queries_per_item(server, forty, monkeypatch):
    """The counter is not blind: with the group loader replaced by one load per key, counts grow."""
    from api import loaders
    from service.reads import queries

    real_groups = queries.groups_by_ids_caught_up

    async def groups_one_by_one(svc, *, shop_id, ids):
        found = {}
        for i in ids:
            found.update(await real_groups(svc, shop_id=shop_id, ids=[i]))
        return found

    monkeypatch.setattr(loaders.queries, "groups_by_ids_caught_up", groups_one_by_one)
    q = "query($n: Int) { me { commissionLines(first: $n) { edges { node { order { group { id } } } } } } }"
    counts = _constant(server, forty["dora"], q, ("me", "commissionLines"))
    assert counts[0] < counts[1] < counts[2], counts
