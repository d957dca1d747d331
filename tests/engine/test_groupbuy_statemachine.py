"""One group's whole life as a hypothesis state machine (GB-1..GB-11).

The model applies the engine's instructions the way the shell does (stock, per-user units,
refunds owed, final prices) and checks after every step:
- held seats never exceed capacity, each user holds at most one active seat (GB-2);
- stock is conserved: stock_left == initial − units of seats still holding stock (GB-1/GB-2/GB-6/GB-8);
- every paid unit ends charged at its final price or refunded in full (GB-5..GB-9):
  per order, received − refunds owed == what it is finally charged, and refunds never exceed
  what was received;
- the group is always caught up: advance() at the current instant changes nothing (GB-11).
"""

from __future__ import annotations

from collections import defaultdict
from datetime import datetime, timedelta, timezone

from hypothesis import HealthCheck, event, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, precondition, rule

from engine import groupbuy as gb
from engine.errors import ErrorCode, RuleViolation
from engine.groupbuy import CancelOrder, Campaign, FinalPrice, GroupState, RefundOwed, ReturnStock, SeatState, Tier

T0 = datetime(2025, 3, 1, tzinfo=timezone.utc)
M = timedelta(minutes=1)
USERS = [f"u{i}" for i in range(6)]


@st.composite
def campaigns(draw):
    n = draw(st.integers(1, 3))
    members = sorted(draw(st.sets(st.integers(2, 5), min_size=n, max_size=n)))
    prices = sorted(draw(st.sets(st.integers(0, 1000), min_size=n, max_size=n)), reverse=True)
    tiers = tuple(Tier(m, p) for m, p in zip(members, prices))
    min_size = tiers[0].members
    c = Campaign(
        id="c", list_price=1000, tiers=tiers, duration=draw(st.integers(30, 240)) * M,
        payment_window=draw(st.integers(5, 60)) * M, starts_at=T0, ends_at=T0 + draw(st.integers(20, 900)) * M,
        leader_discount=draw(st.integers(0, 1200)),
        stock=draw(st.none() | st.integers(0, 20)), per_user_limit=draw(st.none() | st.integers(1, 4)),
        max_quantity_per_order=draw(st.integers(1, 3)), new_members_only=draw(st.booleans()),
        fill_at_expiry=draw(st.none() | st.integers(1, min_size - 1)),
        lottery_winners=draw(st.integers(0, min_size - 1)), lottery_seed="seed",
    )
    gb.validate_campaign(c)
    return c


class GroupLife(RuleBasedStateMachine):
    @initialize(c=campaigns(), start=st.sampled_from(["none", "pending", "open", "open"]),
                leader=st.sampled_from(USERS))
    def setup(self, c, start, leader):
        self.c = c
        self.now = T0
        self.group: gb.Group | None = None
        self.stock_left = c.stock
        self.units = defaultdict(int)        # per-user units held in the campaign
        self.user_of: dict[str, str] = {}    # order -> user
        self.received = defaultdict(int)     # money that arrived for each order
        self.refunded = defaultdict(int)     # refunds owed to each order
        self.final: dict[str, int] = {}      # FinalPrice per order
        self.cancelled: set[str] = set()
        self.has_paid: set[str] = set()
        self.n = 0
        if start != "none":
            self.open(leader, 1)
        if start == "open" and self.group is not None:
            self.pay(0, False, False)

    # ------------------------------------------------------------ applying decisions like the shell
    def apply(self, d: gb.Decision):
        for i in d.instructions:
            if isinstance(i, ReturnStock):
                if self.stock_left is not None:
                    self.stock_left += i.quantity
                self.units[self.user_of[i.order_id]] -= i.quantity
            elif isinstance(i, RefundOwed):
                self.refunded[i.order_id] += i.amount
            elif isinstance(i, FinalPrice):
                assert i.order_id not in self.final
                self.final[i.order_id] = i.final_unit_price
            elif isinstance(i, CancelOrder):
                assert i.order_id not in self.cancelled
                self.cancelled.add(i.order_id)
            elif isinstance(i, gb.OrderPaid):
                self.has_paid.add(self.user_of[i.order_id])
        if self.group is None or d.group.state is not self.group.state:
            event(f"group -> {d.group.state.value}")
        for i in d.instructions:
            event(f"{type(i).__name__}:{i.rule}")
        self.group = d.group

    def reserve(self, d: gb.Decision, order_id: str, user: str, qty: int):
        self.user_of[order_id] = user
        if self.stock_left is not None:
            self.stock_left -= qty
        self.units[user] += qty
        self.apply(d)

    # ------------------------------------------------------------ rules
    @precondition(lambda self: self.group is None)
    @rule(user=st.sampled_from(USERS), qty=st.integers(0, 3))
    def open(self, user, qty):
        self.n += 1
        oid = f"o{self.n}"
        try:
            d = gb.open_group(self.c, group_id="g", order_id=oid, user_id=user, quantity=qty, now=self.now,
                              stock_left=self.stock_left, user_units_held=self.units[user])
        except RuleViolation as e:
            assert e.code in {ErrorCode.CAMPAIGN_NOT_ACTIVE, ErrorCode.QUANTITY_LIMIT, ErrorCode.OUT_OF_STOCK,
                              ErrorCode.PER_USER_LIMIT}
            return
        self.reserve(d, oid, user, qty)

    @precondition(lambda self: self.group is not None)
    @rule(user=st.sampled_from(USERS), qty=st.integers(1, 3))
    def join(self, user, qty):
        self.n += 1
        oid = f"o{self.n}"
        try:
            d = gb.join_group(self.c, self.group, order_id=oid, user_id=user, quantity=qty, now=self.now,
                              stock_left=self.stock_left, user_units_held=self.units[user],
                              user_has_paid_order=user in self.has_paid)
        except RuleViolation as e:
            assert e.code in {ErrorCode.GROUP_EXPIRED, ErrorCode.GROUP_NOT_OPEN, ErrorCode.ALREADY_IN_GROUP,
                              ErrorCode.GROUP_FULL, ErrorCode.NEW_MEMBERS_ONLY, ErrorCode.QUANTITY_LIMIT,
                              ErrorCode.OUT_OF_STOCK, ErrorCode.PER_USER_LIMIT}
            if e.code is ErrorCode.GROUP_FULL:
                assert self.group.held_seats == self.group.capacity
            return
        assert d.group.seat_of(user).order_id == oid
        self.reserve(d, oid, user, qty)

    @precondition(lambda self: self.group is not None)
    @rule(pick=st.integers(0, 20), wrong=st.sampled_from([False] * 5 + [True]), reserved_first=st.booleans())
    def pay(self, pick, wrong, reserved_first):
        seats = self.group.seats
        if reserved_first and any(s.state is SeatState.RESERVED for s in seats):
            seats = [s for s in seats if s.state is SeatState.RESERVED]
        seat = seats[pick % len(seats)]
        amount = seat.amount + (1 if wrong else 0)
        was_paid = seat.state is SeatState.PAID
        try:
            d = gb.pay_seat(self.c, self.group, order_id=seat.order_id, amount=amount, now=self.now)
        except RuleViolation as e:
            assert wrong and e.code is ErrorCode.PAYMENT_AMOUNT_MISMATCH
            return
        if was_paid:  # GB-10: a duplicate confirmation, no new money
            assert d.instructions == ()
        else:
            self.received[seat.order_id] += amount
            after = d.group.seat_for_order(seat.order_id)
            took = any(isinstance(i, gb.OrderPaid) for i in d.instructions)
            late = [i for i in d.instructions if isinstance(i, RefundOwed) and i.rule == "GB-9"]
            assert took != bool(late)  # GB-9: either the seat is taken or the money goes back
            if late:
                assert late == [RefundOwed(seat.order_id, amount, "GB-9", True)] and after.state is not SeatState.PAID
        self.apply(d)

    @precondition(lambda self: self.group is not None)
    @rule(user=st.sampled_from(USERS), qty=st.integers(1, 3))
    def join_and_pay(self, user, qty):
        before = len(self.group.seats)
        self.join(user, qty)
        if len(self.group.seats) > before:
            self.pay(len(self.group.seats) - 1, False, False)

    @precondition(lambda self: self.group is not None
                  and any(s.state is SeatState.RESERVED for s in self.group.seats))
    @rule()
    def pay_all_reserved(self):
        for i, s in enumerate(self.group.seats):
            if s.state is SeatState.RESERVED and self.group.seat_for_order(s.order_id).state is SeatState.RESERVED:
                self.pay(i, False, False)

    @precondition(lambda self: self.group is not None)
    @rule(user=st.sampled_from(USERS))
    def leave(self, user):
        try:
            d = gb.leave_group(self.c, self.group, user_id=user, now=self.now)
        except RuleViolation as e:
            assert e.code in {ErrorCode.NOT_A_MEMBER, ErrorCode.GROUP_NOT_OPEN}
            return
        self.apply(d)

    @rule(minutes=st.sampled_from([1, 1, 2, 5, 10, 30, 90]))
    def tick(self, minutes):
        self.now += minutes * M
        if self.group is not None:
            self.apply(gb.advance(self.c, self.group, now=self.now))

    @precondition(lambda self: self.group is not None and gb.next_due_at(self.group) is not None)
    @rule()
    def tick_to_due(self):
        due = gb.next_due_at(self.group)
        assert due > self.now
        quiet = gb.advance(self.c, self.group, now=due - timedelta(microseconds=1))
        assert quiet.instructions == () and quiet.group == self.group
        self.now = due
        d = gb.advance(self.c, self.group, now=due)
        assert d.instructions or d.group != self.group  # something was due
        self.apply(d)

    # ------------------------------------------------------------ invariants
    @invariant()
    def caught_up(self):
        if self.group is not None:
            d = gb.advance(self.c, self.group, now=self.now)
            assert d.instructions == () and d.group == self.group
            due = gb.next_due_at(self.group)
            assert due is None or due > self.now

    @invariant()
    def seats(self):
        g = self.group
        if g is None:
            return
        assert g.held_seats <= g.capacity
        active = [s.user_id for s in g.seats if s.active]
        assert len(active) == len(set(active))
        if g.state is GroupState.OPEN:
            assert g.paid_seats < g.capacity and g.paid_seats >= 1
        if g.state in gb.TERMINAL:
            assert not any(s.state is SeatState.RESERVED for s in g.seats)
        if g.state is GroupState.FORMED:
            assert g.paid_seats >= (self.c.fill_at_expiry or g.min_size) or g.paid_seats >= g.min_size

    @invariant()
    def stock_conserved(self):
        holding = defaultdict(int)
        if self.group is not None:
            for s in self.group.seats:
                if gb.holds_stock(self.group, s):
                    holding[s.user_id] += s.quantity
        if self.stock_left is not None:
            assert self.stock_left >= 0
            assert self.stock_left == self.c.stock - sum(holding.values())
        assert {u: n for u, n in self.units.items() if n} == {u: n for u, n in holding.items() if n}

    @invariant()
    def money(self):
        g = self.group
        if g is None:
            return
        for s in g.seats:
            received, refunded = self.received[s.order_id], self.refunded[s.order_id]
            assert 0 <= refunded <= received
            charged = received - refunded
            if s.state is SeatState.PAID and g.state is GroupState.FORMED:
                assert self.final[s.order_id] <= s.unit_price
                assert charged == self.final[s.order_id] * s.quantity
            elif s.state is SeatState.PAID and g.state is GroupState.OPEN:
                assert received == s.amount and refunded == 0
            else:  # failed/cancelled group, released or left seat: refunded in full
                assert charged == 0, (s, g.state, received, refunded)
                assert s.order_id not in self.final
            if s.state is SeatState.RELEASED:
                assert s.order_id in self.cancelled
        for w in g.winners:
            assert self.final[w] == 0


GroupLife.TestCase.settings = settings(max_examples=400, stateful_step_count=40, deadline=None,
                                       suppress_health_check=[HealthCheck.too_slow])
TestGroupLife = GroupLife.TestCase
