"""A hypothesis state machine driving the service layer on real PostgreSQL through mixed group-buys,
plain orders, refunds, completions, clock advances, payouts and decisions, and settlement periods
closed one after another. After every step: LG-1 stored balances equal ledger sums, every
commission line stands within [0, original] (CM-5), no group holds more seats than its capacity
(GB-2), every order's refund rows sum to its refunded amount and never above what it was paid (OR-2),
an owed refund stays in the owed queue until the backend confirms it (GB-10), and every settlement batch
reconciles to the ledger and is returned again when its period is closed again (LG-3)."""

from __future__ import annotations

import asyncio
import secrets
from datetime import date, datetime, time, timedelta, timezone

from hypothesis import HealthCheck, settings, strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, precondition, rule
from sqlalchemy import text

from engine.distribution import DistributionSettings, DistributorStatus
from engine.errors import ErrorCode, RuleViolation
from service.usecases import distribution, groups, orders, payouts, refunds, settlements, shops
from service.reads import queries
from service.jobs import worker
from service.context import Services
from service.tx.ledger import balance_mismatches
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
        self.batches: list[tuple[date, date, str]] = []  # closed settlement periods, in order
        self.owed_seen: set[str] = set()  # every refund ever seen OWED (GB-5..GB-9)
        self.confirmed: dict[str, str] = {}  # refund id -> the provider reference this machine confirmed it with
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
            await shops.create_shop(
                self.svc,
                shop_id=self.shop_id,
                name="sm",
                currency="CNY",
                settings=DistributionSettings(
                    level1_bp=1000, level2_bp=500, freeze_days=1, min_payout=1, payout_fee_bp=100
                ),
            )
            for d in DISTRIBUTORS:
                await distribution.set_status(
                    self.svc, shop_id=self.shop_id, user_id=d, status=DistributorStatus.ACTIVE, actor="t", reason="t"
                )
            await distribution.bind_referrer(self.svc, shop_id=self.shop_id, user_id="d1", referrer_id="d0")
            for i, u in enumerate(USERS):
                await distribution.bind_referrer(
                    self.svc, shop_id=self.shop_id, user_id=u, referrer_id=DISTRIBUTORS[1 + i % 2]
                )
            for u, price in (("u0", 20_000), ("u1", 15_000)):  # lines that free up after a day: settled money
                o = await orders.report_order(
                    self.svc,
                    shop_id=self.shop_id,
                    external_id=self.ref(),
                    buyer_id=u,
                    lines=[orders.LineInput("p", 1, price)],
                )
                await orders.confirm_payment(
                    self.svc, shop_id=self.shop_id, order_id=o.order_id, amount=price, provider_ref=self.ref()
                )
                await orders.complete_order(self.svc, shop_id=self.shop_id, order_id=o.order_id)
                self.plain.append(o.order_id)
            self.svc.clock.advance(timedelta(hours=25))  # Jan 6 11:00: the lines are released, one is paid out
            await worker.run_due(self.svc, shop_id=self.shop_id)
            p = await payouts.request_payout(self.svc, shop_id=self.shop_id, user_id="d1", amount=500)
            await payouts.decide_payout(
                self.svc,
                shop_id=self.shop_id,
                payout_id=p.payout_id,
                approve=True,
                actor="fin",
                external_ref=self.ref(),
            )
            self.svc.clock.advance(timedelta(hours=14))  # Jan 7 01:00: two whole days can be closed
            c1 = await make_campaign(
                self.svc,
                self.shop_id,
                tiers=[(2, 8000), (3, 7000)],
                leader_discount=300,
                leader_commission_bp=200,
                stock=40,
            )
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
        r = self.run(
            groups.join_group(self.svc, shop_id=self.shop_id, group_id=self.groups[g % len(self.groups)], user_id=u)
        )
        if not isinstance(r, RuleViolation):
            self.seats.append(r)

    @precondition(lambda self: self.seats)
    @rule(i=st.integers(0, 100))
    def pay_seat(self, i):
        seat = self.seats[i % len(self.seats)]
        self.run(
            orders.confirm_payment(
                self.svc, shop_id=self.shop_id, order_id=seat.order_id, amount=seat.amount, provider_ref=self.ref()
            )
        )

    @precondition(lambda self: self.seats)
    @rule(i=st.integers(0, 100))
    def leave(self, i):
        seat = self.seats[i % len(self.seats)]

        async def go():
            o = await orders.get_order_caught_up(self.svc, shop_id=self.shop_id, order_id=seat.order_id)
            await groups.leave_group(self.svc, shop_id=self.shop_id, group_id=seat.group_id, user_id=o.buyer_id)

        self.run(go())

    @rule(
        u=st.sampled_from(USERS + ["d1"]), qty=st.integers(1, 3), price=st.integers(1, 20_000), completed=st.booleans()
    )
    def plain_order(self, u, qty, price, completed):
        async def go():
            o = await orders.report_order(
                self.svc,
                shop_id=self.shop_id,
                external_id=self.ref(),
                buyer_id=u,
                lines=[orders.LineInput("p", qty, price)],
                shipping_amount=500,
            )
            await orders.confirm_payment(
                self.svc, shop_id=self.shop_id, order_id=o.order_id, amount=qty * price + 500, provider_ref=self.ref()
            )
            self.plain.append(o.order_id)
            if completed:
                await orders.complete_order(self.svc, shop_id=self.shop_id, order_id=o.order_id)

        self.run(go())

    def _any_order(self, i):
        ids = self.plain + [s.order_id for s in self.seats]
        return ids[i % len(ids)]

    @precondition(lambda self: self.plain or self.seats)
    @rule(i=st.integers(0, 100), part=st.integers(1, 10))
    def refund(self, i, part):
        async def go():
            o = await orders.get_order_caught_up(self.svc, shop_id=self.shop_id, order_id=self._any_order(i))
            left = o.paid_amount - o.refunded_amount
            if left > 0:
                await orders.refund_order(
                    self.svc,
                    shop_id=self.shop_id,
                    order_id=o.order_id,
                    amount=max(1, left * part // 10),
                    provider_ref=self.ref(),
                )

        self.run(go())

    @precondition(lambda self: self.plain or self.seats)
    @rule(i=st.integers(0, 100))
    def complete(self, i):
        self.run(orders.complete_order(self.svc, shop_id=self.shop_id, order_id=self._any_order(i)))

    @rule(minutes=st.sampled_from([5, 20, 60 * 5, 60 * 25, 60 * 24 * 2]))
    def advance_clock(self, minutes):
        self.svc.clock.advance(timedelta(minutes=minutes))
        self.run(worker.run_due(self.svc, shop_id=self.shop_id))

    @rule(d=st.sampled_from(DISTRIBUTORS + USERS[:1]), amount=st.integers(1, 3000))
    def request_payout(self, d, amount):
        r = self.run(payouts.request_payout(self.svc, shop_id=self.shop_id, user_id=d, amount=amount))
        if not isinstance(r, RuleViolation):
            self.payouts.append(r.payout_id)

    @precondition(lambda self: self.payouts)
    @rule(i=st.integers(0, 100), approve=st.booleans())
    def decide_payout(self, i, approve):
        self.run(
            payouts.decide_payout(
                self.svc,
                shop_id=self.shop_id,
                payout_id=self.payouts[i % len(self.payouts)],
                approve=approve,
                actor="fin",
                external_ref=self.ref() if approve else None,
            )
        )

    @rule(i=st.integers(0, 100))
    def confirm_owed_refund(self, i):
        """The backend pays one owed refund and confirms it with its provider reference (GB-10)."""
        owed = self.loop.run_until_complete(
            refunds.list_refunds(self.svc, shop_id=self.shop_id, state="OWED", limit=1000)
        )
        if owed:
            r, ref = owed[i % len(owed)], self.ref()
            done = self.run(
                refunds.confirm_refund(self.svc, shop_id=self.shop_id, refund_id=r.refund_id, provider_ref=ref)
            )
            assert not isinstance(done, RuleViolation) and done.state == "CONFIRMED", done
            self.confirmed[r.refund_id] = ref

    # ---------------------------------------------------------------- LG-3 settlements
    def _last_closable_day(self) -> date:
        """Periods end at a day boundary and close CLOSE_GRACE after it (LG-3); the shop's zone is UTC."""
        return (self.svc.now() - settlements.CLOSE_GRACE).date()

    def _next_from(self) -> date:
        return self.batches[-1][1] if self.batches else T0.date()

    @rule(days=st.integers(1, 3))
    def close_next_period(self, days):
        """Finance closes the period right after the last batch (no gap, no overlap); if it has not
        ended yet, time first moves to just after its end (and the worker runs)."""
        start = self._next_from()
        end = start + timedelta(days=days)
        ends_at = datetime.combine(end, time(0), timezone.utc)
        if self.svc.now() < ends_at:
            self.svc.clock.advance(ends_at - self.svc.now() + timedelta(minutes=5))
            self.run(worker.run_due(self.svc, shop_id=self.shop_id))
        b = self.run(settlements.close_period(self.svc, shop_id=self.shop_id, day_from=start, day_to=end, actor="fin"))
        assert not isinstance(b, RuleViolation), b
        self.batches.append((start, end, b.settlement_id))

    @precondition(lambda self: self.batches)
    @rule(shift=st.sampled_from([-1, 1]), days=st.integers(1, 2))
    def close_wrong_period(self, shift, days):
        """A period that overlaps the closed ones (shift -1) or leaves a gap after them (+1) is refused."""
        last_to = self.batches[-1][1]
        start = last_to + timedelta(days=shift)
        end = start + timedelta(days=days)
        if shift < 0:
            end = min(end, self._last_closable_day())  # an overlap that has ended, so the overlap is what is refused
        r = self.run(settlements.close_period(self.svc, shop_id=self.shop_id, day_from=start, day_to=end, actor="fin"))
        same = [sid for f, t, sid in self.batches if (f, t) == (start, end)]
        if same:
            assert not isinstance(r, RuleViolation) and r.settlement_id == same[0]
        else:
            expected = (
                ErrorCode.PERIOD_NOT_ENDED
                if end > self._last_closable_day()
                else ErrorCode.PERIOD_OVERLAP
                if start < last_to
                else ErrorCode.PERIOD_GAP
            )
            assert isinstance(r, RuleViolation) and r.code == expected, (start, end, r)

    @invariant()
    def settlements_reconcile(self):
        if not self.batches:
            return

        async def check():
            async with self.svc.sessionmaker() as s:
                q = lambda sql: s.execute(text(sql), {"s": self.shop_id})  # noqa: E731
                periods = (
                    await q(
                        "SELECT settlement_id, local_from, local_to FROM settlements WHERE shop_id=:s "
                        "ORDER BY period_from"
                    )
                ).all()
                assert [(r.local_from, r.local_to, r.settlement_id) for r in periods] == [
                    (f.isoformat(), t.isoformat(), sid) for f, t, sid in self.batches
                ], "LG-3: one batch per period"
                off = (await q(RECONCILE_SQL)).all()
                assert off == [], f"LG-3: a batch does not reconcile to the ledger: {off}"
            f, t, sid = self.batches[-1]  # closing the last period again returns its batch
            again = await settlements.close_period(self.svc, shop_id=self.shop_id, day_from=f, day_to=t, actor="fin")
            assert again.settlement_id == sid

        self.loop.run_until_complete(check())

    @invariant()
    def books_hold(self):
        async def check():
            async with unit_of_work(self.svc) as s:
                assert await balance_mismatches(s, self.shop_id) == []
                q = lambda sql: s.execute(text(sql), {"s": self.shop_id})  # noqa: E731
                bad_lines = (
                    await q(
                        "SELECT line_id FROM commission_lines WHERE shop_id=:s "
                        "AND (standing < 0 OR standing > original)"
                    )
                ).all()
                assert bad_lines == [], "CM-5: a line stands outside [0, original]"
                over = (
                    await q(
                        "SELECT group_id FROM groups g WHERE shop_id=:s AND held_seats > "
                        "(SELECT (g.tiers->-1->>0)::int)"
                    )
                ).all()
                assert over == [], "GB-2: seats above capacity"
                overrefund = (
                    await q("SELECT order_id FROM orders WHERE shop_id=:s AND refunded_amount > paid_amount")
                ).all()
                assert overrefund == [], "OR-2: refunded more than paid"
                neg_payout = (await q("SELECT user_id FROM distributors WHERE shop_id=:s AND in_payout < 0")).all()
                assert neg_payout == []

        self.loop.run_until_complete(check())

    @invariant()
    def refunds_hold(self):
        """OR-2 per order: sum(refund rows) == orders.refunded_amount <= orders.paid_amount. GB-10: every OWED
        refund is listed by the owed-refunds query (paged by its keyset, as owedRefunds pages it), and a refund
        once owed never disappears: it stays OWED until this machine confirmed it, with that reference."""

        async def check():
            async with self.svc.sessionmaker() as s:
                off = (
                    await s.execute(
                        text(
                            "SELECT o.order_id, o.paid_amount, o.refunded_amount, COALESCE(r.total, 0) FROM orders o "
                            "LEFT JOIN (SELECT order_id, sum(amount) AS total FROM refunds WHERE shop_id = :s "
                            "GROUP BY order_id) r USING (order_id) WHERE o.shop_id = :s "
                            "AND (COALESCE(r.total, 0) <> o.refunded_amount OR o.refunded_amount > o.paid_amount)"
                        ),
                        {"s": self.shop_id},
                    )
                ).all()
                assert off == [], f"OR-2: refund rows, refunded and paid amounts disagree: {off}"
                rows = {
                    r.refund_id: r
                    for r in (
                        await s.execute(
                            text("SELECT refund_id, state, provider_ref FROM refunds WHERE shop_id = :s"),
                            {"s": self.shop_id},
                        )
                    ).all()
                }
            listed, after = [], None
            while True:
                page, total = await queries.page_refunds(
                    self.svc, shop_id=self.shop_id, state="OWED", rule=None, limit=3, after=after
                )
                listed += [r.refund_id for r in page]
                if len(page) < 3:
                    break
                after = (page[-1].created_at, page[-1].refund_id)
            owed_now = {rid for rid, r in rows.items() if r.state == "OWED"}
            assert len(listed) == len(set(listed)) == total and set(listed) == owed_now, "GB-10: owed queue"
            self.owed_seen |= owed_now
            for rid in self.owed_seen:
                assert rid in rows, f"GB-10: owed refund {rid} disappeared"
                r = rows[rid]
                if rid in self.confirmed:
                    assert (r.state, r.provider_ref) == ("CONFIRMED", self.confirmed[rid])
                else:
                    assert r.state == "OWED", f"GB-10: refund {rid} left the queue unconfirmed"

        self.loop.run_until_complete(check())


# Every row is a way a batch can fail to reconcile; none may come back. Per batch and distributor:
# the line's closing is its opening plus the period's movements, and equals the ledger's sum of
# AVAILABLE + IN_PAYOUT before the period end (computed here independently of the close SQL); every
# distributor with such entries has a line; the opening is the previous batch's closing; the header
# totals are the sums of the lines; each period starts where the previous one ended.
RECONCILE_SQL = """
WITH b AS (
    SELECT settlement_id, period_from, period_to, opening, released, reversals, bonuses, payouts, fees, closing,
           lag(settlement_id) OVER w AS prev_id, lag(period_to) OVER w AS prev_to
    FROM settlements WHERE shop_id = :s WINDOW w AS (ORDER BY period_from)
), ledger AS (
    SELECT b.settlement_id, e.distributor_id, sum(e.amount) AS closing
    FROM b JOIN ledger_entries e ON e.shop_id = :s AND e.created_at < b.period_to
    WHERE e.bucket IN ('AVAILABLE', 'IN_PAYOUT') GROUP BY b.settlement_id, e.distributor_id
), lines AS (
    SELECT * FROM settlement_lines WHERE shop_id = :s
)
SELECT 'line equation', l.settlement_id, l.distributor_id FROM lines l
 WHERE l.closing <> l.opening + l.released + l.reversals + l.bonuses - l.payouts - l.fees
UNION ALL
SELECT 'closing vs ledger', COALESCE(l.settlement_id, g.settlement_id), COALESCE(l.distributor_id, g.distributor_id)
  FROM lines l FULL JOIN ledger g ON g.settlement_id = l.settlement_id AND g.distributor_id = l.distributor_id
 WHERE COALESCE(l.closing, 0) <> COALESCE(g.closing, 0)
UNION ALL
SELECT 'opening vs previous closing', b.settlement_id, l.distributor_id
  FROM b JOIN lines l ON l.settlement_id = b.settlement_id
  LEFT JOIN lines p ON p.settlement_id = b.prev_id AND p.distributor_id = l.distributor_id
 WHERE l.opening <> COALESCE(p.closing, 0)
UNION ALL
SELECT 'period gap or overlap', b.settlement_id, NULL FROM b WHERE b.prev_to IS NOT NULL AND b.period_from <> b.prev_to
UNION ALL
SELECT 'header vs lines', b.settlement_id, NULL FROM b
  LEFT JOIN (SELECT settlement_id, sum(opening) o, sum(released) r, sum(reversals) v, sum(bonuses) bo,
                    sum(payouts) p, sum(fees) f, sum(closing) c FROM lines GROUP BY settlement_id) t
         ON t.settlement_id = b.settlement_id
 WHERE (b.opening, b.released, b.reversals, b.bonuses, b.payouts, b.fees, b.closing)
       IS DISTINCT FROM (COALESCE(t.o, 0), COALESCE(t.r, 0), COALESCE(t.v, 0), COALESCE(t.bo, 0), COALESCE(t.p, 0),
                         COALESCE(t.f, 0), COALESCE(t.c, 0))
"""


def test_service_state_machine(database_url):
    ServiceMachine.url = database_url
    run = ServiceMachine.TestCase
    run.settings = settings(
        max_examples=15, stateful_step_count=25, deadline=None, suppress_health_check=list(HealthCheck)
    )
    run().runTest()
