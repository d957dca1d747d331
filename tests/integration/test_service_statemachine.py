"""A hypothesis state machine driving the service layer on real PostgreSQL through mixed group-buys,
plain orders, refunds, completions, clock advances, payouts and decisions. After every step:
LG-1 stored balances equal ledger sums, every commission line stands within [0, original] (CM-5),
no group holds more seats than its capacity (GB-2), no order is refunded more than it was paid (OR-2)."""

from __future__ import annotations

import asyncio
import secrets
from datetime import timedelta

from hypothesis import HealthCheck, settings, strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, precondition, rule
from sqlalchemy import text

from engine.distribution import DistributionSettings, DistributorStatus
from engine.errors import RuleViolation
from service import distribution, groups, orders, payouts, shops, worker
from service.context import Services
from service.ledger import balance_mismatches
from service.uow import unit_of_work
from store.database import create_engine
from tests.conftest import T0
from tests.integration.helpers import make_campaign

USERS = [f"u{i}" for i in range(8)]
DISTRIBUTORS = ["d0", "d1", "d2"]


class ServiceMachine(RuleBasedStateMachine):
    url: str = ""

    def __init__(self):
        super().__init__()
        self.loop = asyncio.new_event_loop()
        self.engine = self.loop.run_until_complete(self._engine())
        self.svc = Services(engine=self.engine)
        self.svc.clock.set(T0)
        self.shop_id = f"sm-{secrets.token_hex(5)}"
        self.campaigns: list[str] = []
        self.groups: list[str] = []
        self.seats: list = []
        self.plain: list[str] = []
        self.payouts: list[str] = []
        self.refs = 0

    async def _engine(self):
        return create_engine(self.url, pool_size=2, max_overflow=0)

    def run(self, coro):
        try:
            return self.loop.run_until_complete(coro)
        except RuleViolation as e:  # ER-1: a refusal changes nothing; the invariants below check that
            return e

    def ref(self) -> str:
        self.refs += 1
        return f"{self.shop_id}-{self.refs}"

    def teardown(self):
        self.loop.run_until_complete(self.engine.dispose())
        self.loop.close()

    @initialize()
    def setup(self):
        async def go():
            await shops.create_shop(self.svc, shop_id=self.shop_id, name="sm", currency="CNY",
                                    settings=DistributionSettings(level1_bp=1000, level2_bp=500, freeze_days=1,
                                                                  min_payout=1, payout_fee_bp=100))
            for d in DISTRIBUTORS:
                await distribution.set_status(self.svc, shop_id=self.shop_id, user_id=d,
                                              status=DistributorStatus.ACTIVE, actor="t", reason="t")
            await distribution.bind_referrer(self.svc, shop_id=self.shop_id, user_id="d1", referrer_id="d0")
            for i, u in enumerate(USERS):
                await distribution.bind_referrer(self.svc, shop_id=self.shop_id, user_id=u,
                                                 referrer_id=DISTRIBUTORS[1 + i % 2])
            c1 = await make_campaign(self.svc, self.shop_id, tiers=[(2, 8000), (3, 7000)], leader_discount=300,
                                     leader_commission_bp=200, stock=40)
            c2 = await make_campaign(self.svc, self.shop_id, tiers=[(3, 5000)], fill_at_expiry=2, lottery_winners=1)
            self.campaigns = [c1.campaign_id, c2.campaign_id]
        self.loop.run_until_complete(go())

    @rule(c=st.integers(0, 1), u=st.sampled_from(USERS))
    def open_group(self, c, u):
        r = self.run(groups.open_group(self.svc, shop_id=self.shop_id, campaign_id=self.campaigns[c], user_id=u))
        if not isinstance(r, RuleViolation):
            self.groups.append(r.group_id)
            self.seats.append(r)

    @precondition(lambda self: self.groups)
    @rule(g=st.integers(0, 100), u=st.sampled_from(USERS))
    def join(self, g, u):
        r = self.run(groups.join_group(self.svc, shop_id=self.shop_id, group_id=self.groups[g % len(self.groups)],
                                       user_id=u))
        if not isinstance(r, RuleViolation):
            self.seats.append(r)

    @precondition(lambda self: self.seats)
    @rule(i=st.integers(0, 100))
    def pay_seat(self, i):
        seat = self.seats[i % len(self.seats)]
        self.run(orders.confirm_payment(self.svc, shop_id=self.shop_id, order_id=seat.order_id, amount=seat.amount,
                                        provider_ref=self.ref()))

    @precondition(lambda self: self.seats)
    @rule(i=st.integers(0, 100))
    def leave(self, i):
        seat = self.seats[i % len(self.seats)]
        async def go():
            o = await orders.get_order(self.svc, shop_id=self.shop_id, order_id=seat.order_id)
            await groups.leave_group(self.svc, shop_id=self.shop_id, group_id=seat.group_id, user_id=o.buyer_id)
        self.run(go())

    @rule(u=st.sampled_from(USERS + ["d1"]), qty=st.integers(1, 3), price=st.integers(1, 20_000))
    def plain_order(self, u, qty, price):
        async def go():
            o = await orders.report_order(self.svc, shop_id=self.shop_id, external_id=self.ref(), buyer_id=u,
                                          lines=[orders.LineInput("p", qty, price)], shipping_amount=500)
            await orders.confirm_payment(self.svc, shop_id=self.shop_id, order_id=o.order_id,
                                         amount=qty * price + 500, provider_ref=self.ref())
            self.plain.append(o.order_id)
        self.run(go())

    def _any_order(self, i):
        ids = self.plain + [s.order_id for s in self.seats]
        return ids[i % len(ids)]

    @precondition(lambda self: self.plain or self.seats)
    @rule(i=st.integers(0, 100), part=st.integers(1, 10))
    def refund(self, i, part):
        async def go():
            o = await orders.get_order(self.svc, shop_id=self.shop_id, order_id=self._any_order(i))
            left = o.paid_amount - o.refunded_amount
            if left > 0:
                await orders.refund_order(self.svc, shop_id=self.shop_id, order_id=o.order_id,
                                          amount=max(1, left * part // 10), provider_ref=self.ref())
        self.run(go())

    @precondition(lambda self: self.plain or self.seats)
    @rule(i=st.integers(0, 100))
    def complete(self, i):
        self.run(orders.complete_order(self.svc, shop_id=self.shop_id, order_id=self._any_order(i)))

    @rule(minutes=st.sampled_from([5, 20, 60 * 5, 60 * 25, 60 * 24 * 2]))
    def advance_clock(self, minutes):
        self.svc.clock.advance(timedelta(minutes=minutes))
        self.run(worker.run_due(self.svc))

    @rule(d=st.sampled_from(DISTRIBUTORS + USERS[:1]), amount=st.integers(1, 3000))
    def request_payout(self, d, amount):
        r = self.run(payouts.request_payout(self.svc, shop_id=self.shop_id, user_id=d, amount=amount))
        if not isinstance(r, RuleViolation):
            self.payouts.append(r.payout_id)

    @precondition(lambda self: self.payouts)
    @rule(i=st.integers(0, 100), approve=st.booleans())
    def decide_payout(self, i, approve):
        self.run(payouts.decide_payout(self.svc, shop_id=self.shop_id, payout_id=self.payouts[i % len(self.payouts)],
                                       approve=approve, actor="fin", external_ref=self.ref() if approve else None))

    @invariant()
    def books_hold(self):
        async def check():
            async with unit_of_work(self.svc) as s:
                assert await balance_mismatches(s, self.shop_id) == []
                q = lambda sql: s.execute(text(sql), {"s": self.shop_id})  # noqa: E731
                bad_lines = (await q("SELECT line_id FROM commission_lines WHERE shop_id=:s "
                                     "AND (standing < 0 OR standing > original)")).all()
                assert bad_lines == [], "CM-5: a line stands outside [0, original]"
                over = (await q("SELECT group_id FROM groups g WHERE shop_id=:s AND held_seats > "
                                "(SELECT (g.tiers->-1->>0)::int)")).all()
                assert over == [], "GB-2: seats above capacity"
                overrefund = (await q("SELECT order_id FROM orders WHERE shop_id=:s "
                                      "AND refunded_amount > paid_amount")).all()
                assert overrefund == [], "OR-2: refunded more than paid"
                neg_payout = (await q("SELECT user_id FROM distributors WHERE shop_id=:s AND in_payout < 0")).all()
                assert neg_payout == []
        self.loop.run_until_complete(check())


def test_service_state_machine(database_url):
    ServiceMachine.url = database_url
    run = ServiceMachine.TestCase
    run.settings = settings(max_examples=15, stateful_step_count=25, deadline=None,
                            suppress_health_check=list(HealthCheck))
    run().runTest()
