"""One group's whole life as a hypothesis state machine (GB-1..GB-12).

The model applies the engine's instructions the way the shell does (stock, per-user units,
refunds owed, final prices) and checks after every step:
- held seats never exceed capacity, each user holds at most one active seat (GB-2);
- stock is conserved: stock_left == initial − units of seats still holding stock (GB-1/GB-2/GB-6/GB-8);
- every paid unit ends charged at its final price or refunded in full (GB-5..GB-9):
  per order, received − refunds owed == what it is finally charged, and refunds never exceed
  what was received. The final price is computed by the model (tier reached by the paid seats,
  leader discount for the order that opened the group, 0 for lottery winners), never read back
  from the engine's FinalPrice;
- the group is always caught up: advance() at the current instant changes nothing (GB-11);
- GB-12 payment grace: nobody joins at or after `expires_at`; a payment made inside its window is
  never refunded (GB-9) in a group that forms, i.e. expiry never costs a buyer in time their seat;
  an OPEN group past `expires_at` is one whose outcome is still uncertain (it decides as soon as it
  is certain), and every decision comes no later than `expires_at + payment_window`.

The group is opened in `setup` (every run has one), strategies favour ladders and larger
capacities, `join_and_pay` seats several new users at once, `leader_leaves` hands over to a paid
member, and `target()` pushes towards more paid seats, so GB-5 partial refunds and GB-8
hand-overs are reached in a good share of runs (see --hypothesis-show-statistics).
"""

from __future__ import annotations

from collections import defaultdict
from datetime import datetime, timedelta, timezone

from hypothesis import HealthCheck, event, settings, target
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, precondition, rule

from engine import groupbuy as gb
from engine.errors import ErrorCode, RuleViolation
from engine.groupbuy import CancelOrder, Campaign, FinalPrice, GroupState, RefundOwed, ReturnStock, SeatState, Tier

T0 = datetime(2025, 3, 1, tzinfo=timezone.utc)
M = timedelta(minutes=1)
USERS = [f"u{i}" for i in range(10)]


@st.composite
def campaigns(draw):
    # Ladders of 2-3 tiers are favoured and capacities go up to 8 seats, so that groups often form
    # above the first tier (GB-5 partial refunds) and have paid members to hand over to (GB-8).
    n = draw(st.sampled_from([1, 2, 2, 3, 3]))
    members = sorted(draw(st.sets(st.integers(2, 8), min_size=n, max_size=n)))
    prices = sorted(draw(st.sets(st.integers(0, 1000), min_size=n, max_size=n)), reverse=True)
    tiers = tuple(Tier(m, p) for m, p in zip(members, prices))
    min_size = tiers[0].members
    c = Campaign(
        id="c",
        list_price=1000,
        tiers=tiers,
        duration=draw(st.integers(60, 480)) * M,
        payment_window=draw(st.integers(5, 60)) * M,
        starts_at=T0,
        ends_at=T0 + draw(st.integers(60, 900)) * M,
        leader_discount=draw(st.sampled_from([0, 0, 50]) | st.integers(0, 1200)),
        stock=draw(st.none() | st.integers(1, 40)),
        per_user_limit=draw(st.none() | st.integers(1, 4)),
        max_quantity_per_order=draw(st.integers(1, 3)),
        new_members_only=draw(st.booleans()),
        fill_at_expiry=draw(st.none() | st.integers(1, min_size - 1)),
        lottery_winners=draw(st.integers(0, min_size - 1)),
        lottery_seed="seed",
        almost_full_at=draw(st.integers(0, 3)),
        expiring_soon_before=draw(st.sampled_from([0, 10, 60, 600])) * M,
    )
    gb.validate_campaign(c)
    return c


class GroupLife(RuleBasedStateMachine):
    @initialize(
        c=campaigns(),
        leader=st.sampled_from(USERS),
        qty=st.integers(0, 3),
        leader_pays=st.sampled_from([True, True, True, False]),
        seed=st.none() | st.binary(min_size=32, max_size=32).map(bytes.hex),
    )
    def setup(self, c, leader, qty, leader_pays, seed):
        self.c = c
        self.seed = seed  # GB-7 v2: the group's own seed (None: a group opened before v2, v1 draw)
        self.nudges: list[gb.GroupNudged] = []  # GB-15
        self.now = T0
        self.group: gb.Group | None = None
        self.stock_left = c.stock
        self.units = defaultdict(int)  # per-user units held in the campaign
        self.user_of: dict[str, str] = {}  # order -> user
        self.qty_of: dict[str, int] = {}  # order -> units reserved
        self.received = defaultdict(int)  # money that arrived for each order
        self.refunded = defaultdict(int)  # refunds owed to each order
        self.extra_received = defaultdict(int)  # further payments of a seat already paid (GB-10)
        self.extra_refunded = defaultdict(int)  # ... and the refunds owed for them
        self.final: dict[str, int] = {}  # FinalPrice per order
        self.cancelled: set[str] = set()
        self.pay_by: dict[str, datetime] = {}  # order -> its payment deadline as reserved (GB-2)
        self.gave_up: set[str] = set()  # reservations their holder cancelled (GB-8)
        self.took: set[str] = set()  # orders whose payment took a seat (OrderPaid)
        self.left: set[str] = set()  # paid orders that left (GB-8 full refund)
        self.has_paid: set[str] = set()
        self.max_paid = 0
        self.n = 0
        self.open(leader, qty)  # may be refused (quantity, stock, per-user limit)
        if self.group is None:
            self.open(leader, 1)  # always allowed: stock ≥ 1, limits ≥ 1, inside the window
        assert self.group is not None
        self.leader_order = self.group.seats[0].order_id  # the LEADER price role for good (GB-3/GB-8)
        if leader_pays:
            self.pay(0, False, False)

    def teardown(self):
        target(float(self.max_paid), label="paid seats reached")

    # ------------------------------------------------------------ applying decisions like the shell
    def apply(self, d: gb.Decision):
        for i in d.instructions:
            if isinstance(i, ReturnStock):
                if self.stock_left is not None:
                    self.stock_left += i.quantity
                self.units[self.user_of[i.order_id]] -= i.quantity
            elif isinstance(i, RefundOwed) and i.rule == "GB-10":
                self.extra_refunded[i.order_id] += i.amount
            elif isinstance(i, RefundOwed):
                self.refunded[i.order_id] += i.amount
                if i.rule == "GB-8":
                    self.left.add(i.order_id)
            elif isinstance(i, FinalPrice):
                assert i.order_id not in self.final
                self.final[i.order_id] = i.final_unit_price
            elif isinstance(i, CancelOrder):
                assert i.order_id not in self.cancelled
                self.cancelled.add(i.order_id)
                if i.rule == "GB-8":
                    self.gave_up.add(i.order_id)
            elif isinstance(i, gb.OrderPaid):
                self.took.add(i.order_id)
                self.has_paid.add(self.user_of[i.order_id])
            elif isinstance(i, gb.GroupNudged):
                self.nudges.append(i)
        if self.group is None or d.group.state is not self.group.state:
            event(f"group -> {d.group.state.value}")
        for i in d.instructions:
            event(f"{type(i).__name__}:{i.rule}")
        self.group = d.group
        self.max_paid = max(self.max_paid, d.group.paid_seats)

    def reserve(self, d: gb.Decision, order_id: str, user: str, qty: int):
        self.user_of[order_id] = user
        self.qty_of[order_id] = qty
        self.pay_by[order_id] = d.group.seat_for_order(order_id).pay_by
        if self.stock_left is not None:
            self.stock_left -= qty
        self.units[user] += qty
        self.apply(d)

    def open(self, user, qty):
        self.n += 1
        oid = f"o{self.n}"
        try:
            d = gb.open_group(
                self.c,
                group_id="g",
                order_id=oid,
                user_id=user,
                quantity=qty,
                now=self.now,
                stock_left=self.stock_left,
                user_units_held=self.units[user],
                lottery_seed=self.seed,
            )
        except RuleViolation as e:
            assert e.code in {ErrorCode.QUANTITY_LIMIT, ErrorCode.OUT_OF_STOCK, ErrorCode.PER_USER_LIMIT}
            return
        self.reserve(d, oid, user, qty)

    # ------------------------------------------------------------ rules
    @rule(user=st.sampled_from(USERS), qty=st.integers(1, 3))
    def join(self, user, qty):
        self.n += 1
        oid = f"o{self.n}"
        try:
            d = gb.join_group(
                self.c,
                self.group,
                order_id=oid,
                user_id=user,
                quantity=qty,
                now=self.now,
                stock_left=self.stock_left,
                user_units_held=self.units[user],
                user_has_paid_order=user in self.has_paid,
            )
        except RuleViolation as e:
            assert e.code in {
                ErrorCode.GROUP_EXPIRED,
                ErrorCode.GROUP_NOT_OPEN,
                ErrorCode.ALREADY_IN_GROUP,
                ErrorCode.GROUP_FULL,
                ErrorCode.NEW_MEMBERS_ONLY,
                ErrorCode.QUANTITY_LIMIT,
                ErrorCode.OUT_OF_STOCK,
                ErrorCode.PER_USER_LIMIT,
            }
            if e.code is ErrorCode.GROUP_FULL:
                assert self.group.held_seats == self.group.capacity
            return
        assert d.group.seat_of(user).order_id == oid
        assert self.now < d.group.expires_at, "GB-12: no one joins once expires_at has come (grace included)"
        self.reserve(d, oid, user, qty)

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
        if was_paid:  # GB-10: another payment took this seat; this second charge is owed back in full
            self.extra_received[seat.order_id] += amount
            assert d.group == self.group
            assert d.instructions == (RefundOwed(seat.order_id, amount, "GB-10", True),)
        else:
            self.received[seat.order_id] += amount
            after = d.group.seat_for_order(seat.order_id)
            took = any(isinstance(i, gb.OrderPaid) for i in d.instructions)
            late = [i for i in d.instructions if isinstance(i, RefundOwed) and i.rule == "GB-9"]
            assert took != bool(late)  # GB-9: either the seat is taken or the money goes back
            if late:
                assert late == [RefundOwed(seat.order_id, amount, "GB-9", True)] and after.state is not SeatState.PAID
                if self.now < self.pay_by[seat.order_id] and seat.order_id not in self.gave_up | self.left:
                    # GB-12: a payment in time is refunded only where the group could not form anyway
                    assert d.group.state in {GroupState.FAILED, GroupState.CANCELLED}, d.group.state
                    event("GB-12: in-time payment of a group that failed anyway")
            if took and self.group.expires_at is not None and self.now >= self.group.expires_at:
                event("GB-12: payment took a seat during the grace")
        self.apply(d)

    def pay_order(self, order_id: str):
        idx = next(i for i, s in enumerate(self.group.seats) if s.order_id == order_id)
        self.pay(idx, False, False)

    @rule(k=st.integers(1, 3), offset=st.integers(0, len(USERS) - 1), qty=st.integers(1, 3))
    def join_and_pay(self, k, offset, qty):
        """Up to k users without a seat join and pay at once: the common path to forming (GB-4/GB-5)."""
        for user in USERS[offset:] + USERS[:offset]:
            if k == 0:
                break
            if self.group.seat_of(user) is not None:
                continue
            k -= 1
            before = len(self.group.seats)
            self.join(user, qty)
            if len(self.group.seats) > before:
                self.pay_order(self.group.seats[-1].order_id)

    @precondition(lambda self: any(s.state is SeatState.RESERVED for s in self.group.seats))
    @rule()
    def pay_all_reserved(self):
        for s in self.group.seats:
            if self.group.seat_for_order(s.order_id).state is SeatState.RESERVED:
                self.pay_order(s.order_id)

    @precondition(lambda self: self.group.state is GroupState.OPEN and self.now < self.group.expires_at)
    @rule(
        k=st.integers(1, 4),
        before=st.sampled_from([1, 2, 3]),
        offset=st.integers(0, len(USERS) - 1),
        past=st.sampled_from([0, 1, 2]),
    )
    def reserve_just_before_expiry(self, k, before, offset, past):
        """GB-12's race: users reserve seats minutes before expires_at and pay (or not) after it;
        the clock then moves to (or past) expires_at."""
        self.now = max(self.now, self.group.expires_at - before * M)
        for user in USERS[offset:] + USERS[:offset]:
            if k == 0:
                break
            if self.group.seat_of(user) is None:
                k -= 1
                self.join(user, 1)
        self.now = max(self.now, self.group.expires_at + past * M)
        self.apply(gb.advance(self.c, self.group, now=self.now))

    @rule(user=st.sampled_from(USERS))
    def leave(self, user):
        try:
            d = gb.leave_group(self.c, self.group, user_id=user, now=self.now)
        except RuleViolation as e:
            assert e.code in {ErrorCode.NOT_A_MEMBER, ErrorCode.GROUP_NOT_OPEN}
            return
        self.apply(d)

    @precondition(lambda self: self.group.state is GroupState.OPEN and self.group.paid_seats >= 2)
    @rule()
    def leader_leaves(self):
        """GB-8 hand-over: the current leader cancels while another member has paid, so the earliest
        remaining paid member takes over (a lone leader leaving is left to `leave`)."""
        self.leave(self.group.leader_user_id)

    @rule(minutes=st.sampled_from([1, 1, 2, 5, 10, 30, 90]))
    def tick(self, minutes):
        self.now += minutes * M
        self.apply(gb.advance(self.c, self.group, now=self.now))

    @precondition(lambda self: gb.next_due_at(self.group, self.c) is not None)
    @rule()
    def tick_to_due(self):
        due = gb.next_due_at(self.group, self.c)
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
        d = gb.advance(self.c, self.group, now=self.now)
        assert d.instructions == () and d.group == self.group
        due = gb.next_due_at(self.group, self.c)
        assert due is None or due > self.now

    @invariant()
    def seats(self):
        g = self.group
        assert g.held_seats <= g.capacity
        active = [s.user_id for s in g.seats if s.active]
        assert len(active) == len(set(active))
        if g.state is GroupState.OPEN:
            assert g.paid_seats < g.capacity and g.paid_seats >= 1
        if g.state in gb.TERMINAL:
            assert not any(s.state is SeatState.RESERVED for s in g.seats)
        if g.state is GroupState.FORMED:
            assert g.paid_seats >= (self.c.fill_at_expiry or g.min_size)
            if g.paid_seats < g.min_size:  # only fill-at-expiry forms below min_size, and only at expiry
                assert g.expires_at <= g.formed_at <= g.expires_at + self.c.payment_window  # GB-12 grace

    @invariant()
    def grace(self):
        """GB-12: past expires_at an OPEN group is waiting for a payment that can still change its
        outcome; a decision taken at or after expiry comes no later than expires_at + payment_window."""
        g = self.group
        if g.state is GroupState.OPEN and self.now >= g.expires_at:
            event("GB-12: in grace")
            assert gb.in_grace(self.c, g, now=self.now) is True
            assert self.now < gb.grace_until(self.c, g) <= g.expires_at + self.c.payment_window
            waiting = [s for s in g.seats if s.state is SeatState.RESERVED]
            assert waiting and g.paid_seats + len(waiting) >= gb.forming_threshold(self.c, g)
        if g.state in {GroupState.FORMED, GroupState.FAILED} and g.expires_at is not None:
            assert g.closed_at <= g.expires_at + self.c.payment_window
            if g.closed_at > g.expires_at:
                event("GB-12: decided after a grace")

    @invariant()
    def stock_conserved(self):
        holding = defaultdict(int)
        for s in self.group.seats:
            if gb.holds_stock(self.group, s):
                holding[s.user_id] += s.quantity
        if self.stock_left is not None:
            assert self.stock_left >= 0
            assert self.stock_left == self.c.stock - sum(holding.values())
        assert {u: n for u, n in self.units.items() if n} == {u: n for u, n in holding.items() if n}

    def expected_final_unit(self, order_id: str, paid_seats: int) -> int:
        """GB-5/GB-7 written out here, independently of the engine: a winner pays 0; otherwise the
        price of the last tier whose members ≤ paid seats (the first tier below min_size, i.e. a
        fill-at-expiry group), less the leader discount (floored at 0) for the order that opened the
        group — the LEADER price role stays with that order after a hand-over (GB-8)."""
        if order_id in self.group.winners:
            return 0
        reached = [t for t in self.c.tiers if t.members <= paid_seats]
        price = (reached[-1] if reached else self.c.tiers[0]).unit_price
        return max(0, price - self.c.leader_discount) if order_id == self.leader_order else price

    @invariant()
    def money(self):
        g = self.group
        first = self.c.tiers[0].unit_price
        paid_now = self.took - self.left
        assert paid_now == {s.order_id for s in g.seats if s.state is SeatState.PAID}
        if g.state is GroupState.FORMED:
            reached = [t for t in self.c.tiers if t.members <= len(paid_now)]
            assert g.tier_members == (reached[-1] if reached else self.c.tiers[0]).members
            assert len(g.winners) == len(set(g.winners)) == min(self.c.lottery_winners, len(paid_now))
            assert set(g.winners) <= paid_now
        for s in g.seats:
            oid, qty = s.order_id, self.qty_of[s.order_id]
            received, refunded = self.received[oid], self.refunded[oid]
            assert self.extra_refunded[oid] == self.extra_received[oid]  # no second charge is kept (GB-10)
            assert 0 <= refunded <= received
            charged = received - refunded
            paid_unit = max(0, first - self.c.leader_discount) if oid == self.leader_order else first  # GB-3
            if oid in paid_now and g.state is GroupState.FORMED:
                final = self.expected_final_unit(oid, len(paid_now))
                assert final <= paid_unit
                assert received == paid_unit * qty
                assert self.final[oid] == final
                assert charged == final * qty
            elif oid in paid_now and g.state is GroupState.OPEN:
                assert received == paid_unit * qty and refunded == 0
            else:  # failed/cancelled group, released or left seat: refunded in full
                assert charged == 0, (s, g.state, received, refunded)
                assert oid not in self.final
            if s.state is SeatState.RELEASED:
                assert oid in self.cancelled

    @invariant()
    def lottery_v2(self):
        """GB-7 v2: the commitment is public from opening and the seed hidden until the draw; the winners
        are re-derived here with hashlib/hmac alone: the K paid seats with the lowest
        HMAC-SHA256(seed, order id), ties by order id."""
        import hashlib
        import hmac

        g = self.group
        if self.seed is None or self.c.lottery_winners == 0:
            assert g.lottery_commitment is None and g.draw() is None
            return
        assert g.lottery_commitment == hashlib.sha256(bytes.fromhex(self.seed)).hexdigest()
        if g.state is not GroupState.FORMED:
            assert g.draw() is None  # no seed is revealed before its group has drawn
            return
        paid = [s.order_id for s in g.seats if s.state is SeatState.PAID]
        rank = sorted(
            paid, key=lambda o: (hmac.new(bytes.fromhex(self.seed), o.encode(), hashlib.sha256).hexdigest(), o)
        )
        k = min(self.c.lottery_winners, len(paid))
        assert g.winners == tuple(rank[:k])
        d = g.draw()
        if k:
            event("GB-7 v2: drew")
            assert d is not None and d.seed == self.seed and d.winners == g.winners
            assert [c for c, _ in d.candidates] == rank

    @invariant()
    def nudges_once_and_on_time(self):
        """GB-15: each nudge at most once per group; while OPEN (caught up), `almost_full` has been emitted
        once paid seats are within `almost_full_at` of capacity, and `expiring_soon` once the clock is within
        `expiring_soon_before` of expires_at."""
        kinds = [n.kind for n in self.nudges]
        assert kinds.count("almost_full") <= 1 and kinds.count("expiring_soon") <= 1
        g = self.group
        if g.state is GroupState.OPEN and self.now < g.expires_at:
            missing = g.capacity - g.paid_seats
            if 0 < missing <= self.c.almost_full_at:
                assert "almost_full" in kinds
            if self.c.expiring_soon_before > timedelta(0) and self.now >= g.expires_at - self.c.expiring_soon_before:
                event("GB-15: expiring soon")
                assert "expiring_soon" in kinds
        for n in self.nudges:
            event(f"GB-15: {n.kind}")


GroupLife.TestCase.settings = settings(
    max_examples=250, stateful_step_count=30, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)
TestGroupLife = GroupLife.TestCase
