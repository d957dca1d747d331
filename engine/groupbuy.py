"""Group-buy (拼团) rules GB-1..GB-11 as pure functions over frozen dataclasses.

Every public function takes the current state and ``now`` (a timezone-aware datetime) and
returns a :class:`Decision`: the new group plus the instructions the shell must carry out
(refunds owed, orders to cancel, stock to return, events). Nothing here performs anything.
A refusal raises :class:`engine.errors.RuleViolation` (ER-1) before any state is built.

Catch-up (GB-11): ``join_group``, ``pay_seat`` and ``leave_group`` first apply whatever
``advance`` would apply at ``now`` (releases past ``pay_by``, forming/failing at
``expires_at``) so no decision is ever taken on a state that is already past due; the
instructions of that catch-up come first in the returned Decision.

Readings of the spec where it is silent are in ``docs/rules-readings-groupbuy.md``.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from enum import Enum
from typing import Union

from engine.errors import ErrorCode, RuleViolation, refuse
from engine import lottery
from engine.lottery import draw_winners


# ------------------------------------------------------------------ values
class GroupState(str, Enum):
    PENDING = "PENDING"  # leader reserved, not yet paid (GB-1)
    OPEN = "OPEN"  # leader paid; members may join until expires_at (GB-1/GB-2)
    FORMED = "FORMED"  # GB-4
    FAILED = "FAILED"  # GB-6
    CANCELLED = "CANCELLED"  # leader's reservation released unpaid (GB-1), or nobody paid left (GB-8)


TERMINAL = frozenset({GroupState.FORMED, GroupState.FAILED, GroupState.CANCELLED})


class SeatState(str, Enum):
    RESERVED = "RESERVED"  # holds a seat and stock, waiting for payment (GB-2)
    PAID = "PAID"  # payment took (GB-1/GB-2); stays PAID when the group forms or fails
    RELEASED = "RELEASED"  # unpaid reservation cancelled (GB-2/GB-4/GB-6, or left unpaid GB-8)
    LEFT = "LEFT"  # paid seat cancelled by its holder before forming (GB-8)


ACTIVE_SEAT_STATES = frozenset({SeatState.RESERVED, SeatState.PAID})


class PriceRole(str, Enum):
    LEADER = "LEADER"
    MEMBER = "MEMBER"


@dataclass(frozen=True)
class Tier:
    members: int
    unit_price: int


@dataclass(frozen=True)
class Variant:
    name: str
    tiers: tuple[Tier, ...]
    weight: int


@dataclass(frozen=True)
class Campaign:
    id: str
    list_price: int
    tiers: tuple[Tier, ...]
    duration: timedelta
    payment_window: timedelta
    starts_at: datetime
    ends_at: datetime
    leader_discount: int = 0
    leader_commission_bp: int | None = None
    stock: int | None = None
    per_user_limit: int | None = None
    max_quantity_per_order: int = 1
    new_members_only: bool = False
    fill_at_expiry: int | None = None
    lottery_winners: int = 0
    lottery_seed: str = ""
    variants: tuple[Variant, ...] = ()
    commission_enabled: bool = True
    almost_full_at: int = 1  # GB-15: seats missing to capacity at which `almost_full` is emitted (0: never)
    expiring_soon_before: timedelta = timedelta(hours=1)  # GB-15: before expires_at (0: never)


@dataclass(frozen=True)
class Seat:
    order_id: str
    user_id: str
    quantity: int
    unit_price: int  # price to pay per unit, fixed at reservation for the seat's role (GB-3)
    role: PriceRole
    state: SeatState
    reserved_at: datetime
    pay_by: datetime
    paid_at: datetime | None = None

    @property
    def amount(self) -> int:
        return self.unit_price * self.quantity

    @property
    def active(self) -> bool:
        return self.state in ACTIVE_SEAT_STATES


@dataclass(frozen=True)
class Group:
    id: str
    campaign_id: str
    tiers: tuple[Tier, ...]
    leader_user_id: str
    state: GroupState
    seats: tuple[Seat, ...]
    opened_at: datetime
    variant: str | None = None
    expires_at: datetime | None = None
    formed_at: datetime | None = None
    closed_at: datetime | None = None
    tier_members: int | None = None  # members of the tier reached (GB-5) once FORMED
    winners: tuple[str, ...] = ()  # order ids drawn by GB-7
    # GB-7 v2: the group's own secret seed (None: opened before v2); kept out of repr so that no log line or
    # assertion message can reveal it before the draw
    lottery_seed: str | None = field(default=None, repr=False)
    nudged_almost_full_at: datetime | None = None  # GB-15: when `almost_full` was emitted
    nudged_expiring_soon_at: datetime | None = None  # GB-15: when `expiring_soon` was emitted (or skipped)

    @property
    def lottery_commitment(self) -> str | None:
        """GB-7 v2: SHA-256(seed), public from opening; None for a group without a seed of its own."""
        return lottery.commitment(self.lottery_seed) if self.lottery_seed else None

    def draw(self) -> lottery.Draw | None:
        """GB-7 v2: the draw, revealed once the group has formed (None before, or without a seed)."""
        if self.state is not GroupState.FORMED or not self.lottery_seed or not self.winners:
            return None
        paid = [s.order_id for s in self.seats if s.state is SeatState.PAID]
        return lottery.draw(self.lottery_seed, paid, len(self.winners))

    @property
    def capacity(self) -> int:
        return self.tiers[-1].members

    @property
    def min_size(self) -> int:
        return self.tiers[0].members

    @property
    def held_seats(self) -> int:
        """Seats (not units) held by RESERVED or PAID seats; never above capacity (GB-2)."""
        return sum(1 for s in self.seats if s.active)

    @property
    def paid_seats(self) -> int:
        return sum(1 for s in self.seats if s.state is SeatState.PAID)

    @property
    def seats_left(self) -> int:
        return self.capacity - self.held_seats

    def seat_of(self, user_id: str) -> Seat | None:
        """The user's active (RESERVED/PAID) seat, if any (GB-2: at most one)."""
        return next((s for s in self.seats if s.user_id == user_id and s.active), None)

    def seat_for_order(self, order_id: str) -> Seat | None:
        return next((s for s in self.seats if s.order_id == order_id), None)


# ------------------------------------------------------------------ instructions
@dataclass(frozen=True)
class RefundOwed:
    """A refund the shell must record: partial (GB-5) or full (GB-6/GB-7/GB-8/GB-9)."""

    order_id: str
    amount: int
    rule: str
    full: bool


@dataclass(frozen=True)
class CancelOrder:
    """An unpaid reservation was released: its order becomes CANCELLED (GB-2/GB-4/GB-6/GB-8)."""

    order_id: str
    rule: str


@dataclass(frozen=True)
class ReturnStock:
    """Units go back to the campaign's stock and the user's per-user count (GB-1/GB-2/GB-6/GB-8)."""

    order_id: str
    quantity: int
    rule: str


@dataclass(frozen=True)
class OrderPaid:
    """A seat's payment took (GB-1 leader, GB-2 member); the role is now fixed for GB-5."""

    order_id: str
    role: PriceRole
    rule: str


@dataclass(frozen=True)
class GroupOpened:
    group_id: str
    expires_at: datetime
    rule: str


@dataclass(frozen=True)
class GroupFormed:
    group_id: str
    tier_members: int
    member_unit_price: int
    leader_unit_price: int
    winners: tuple[str, ...]
    rule: str


@dataclass(frozen=True)
class GroupFailed:
    group_id: str
    rule: str


@dataclass(frozen=True)
class GroupCancelled:
    group_id: str
    rule: str


@dataclass(frozen=True)
class LeaderChanged:
    group_id: str
    old_user_id: str
    new_user_id: str
    rule: str


@dataclass(frozen=True)
class GroupNudged:
    """GB-15: `almost_full` (paid seats missing to capacity first ≤ `almost_full_at`) or
    `expiring_soon` (OPEN, `expiring_soon_before` from `expires_at`), each once per group."""

    group_id: str
    kind: str  # "almost_full" | "expiring_soon"
    seats_missing: int
    expires_at: datetime | None
    rule: str


@dataclass(frozen=True)
class FinalPrice:
    """The unit price finally charged to a paid order of a formed group: the tier price for its
    role (GB-5), or 0 for a lottery winner (GB-7). Always ``paid unit − refunds owed / qty``."""

    order_id: str
    final_unit_price: int
    rule: str


Instruction = Union[
    RefundOwed,
    CancelOrder,
    ReturnStock,
    OrderPaid,
    GroupOpened,
    GroupFormed,
    GroupFailed,
    GroupCancelled,
    LeaderChanged,
    FinalPrice,
    GroupNudged,
]


@dataclass(frozen=True)
class Decision:
    group: Group
    instructions: tuple[Instruction, ...]


# ------------------------------------------------------------------ validation
def _is_int(x: object) -> bool:
    return isinstance(x, int) and not isinstance(x, bool)


def _invalid(message: str, field: str, rule: str | None = None) -> RuleViolation:
    return refuse(ErrorCode.INVALID_INPUT, message, field=field, rule=rule)


def validate_tiers(tiers: tuple[Tier, ...], list_price: int, *, field: str = "tiers") -> None:
    """Section 2 `tiers`: non-empty, members ≥ 2 strictly increasing, unit price strictly
    decreasing, 0 ≤ price ≤ list_price, all ints."""
    if not tiers:
        raise _invalid("a campaign needs at least one tier", field)
    prev: Tier | None = None
    for i, t in enumerate(tiers):
        f = f"{field}[{i}]"
        if not isinstance(t, Tier) or not _is_int(t.members) or not _is_int(t.unit_price):
            raise _invalid("a tier is (members: int, unit_price: int minor units)", f)
        if t.members < 2:
            raise _invalid("a tier needs at least 2 members", f)
        if t.unit_price < 0:
            raise _invalid("a tier price cannot be negative", f)
        if t.unit_price > list_price:
            raise _invalid("a tier price cannot exceed the list price", f)
        if prev is not None:
            if t.members <= prev.members:
                raise _invalid("tier members must be strictly increasing", f)
            if t.unit_price >= prev.unit_price:
                raise _invalid("tier prices must be strictly decreasing", f)
        prev = t


def _aware(dt: object, field: str) -> None:
    if not isinstance(dt, datetime) or dt.tzinfo is None or dt.utcoffset() is None:
        raise _invalid("times must be timezone-aware datetimes", field)


def validate_campaign(c: Campaign) -> None:
    """Section 2 campaign fields; raises INVALID_INPUT naming the field at fault."""
    if not _is_int(c.list_price) or c.list_price < 0:
        raise _invalid("list price must be an int ≥ 0 (minor units)", "list_price")
    validate_tiers(c.tiers, c.list_price)
    if not _is_int(c.leader_discount) or c.leader_discount < 0:
        raise _invalid("leader discount must be an int ≥ 0", "leader_discount")
    if c.leader_commission_bp is not None and (
        not _is_int(c.leader_commission_bp) or not 0 <= c.leader_commission_bp <= 10_000
    ):
        raise _invalid("leader commission must be 0..10000 bp", "leader_commission_bp")
    if not isinstance(c.duration, timedelta) or c.duration <= timedelta(0):
        raise _invalid("duration must be positive", "duration")
    if not isinstance(c.payment_window, timedelta) or c.payment_window <= timedelta(0):
        raise _invalid("payment window must be positive", "payment_window")
    _aware(c.starts_at, "starts_at")
    _aware(c.ends_at, "ends_at")
    if c.ends_at <= c.starts_at:
        raise _invalid("the campaign must end after it starts", "ends_at")
    if c.stock is not None and (not _is_int(c.stock) or c.stock < 0):
        raise _invalid("stock must be an int ≥ 0", "stock")
    if c.per_user_limit is not None and (not _is_int(c.per_user_limit) or c.per_user_limit < 1):
        raise _invalid("per-user limit must be an int ≥ 1", "per_user_limit")
    if not _is_int(c.max_quantity_per_order) or c.max_quantity_per_order < 1:
        raise _invalid("max quantity per order must be an int ≥ 1", "max_quantity_per_order")
    if not _is_int(c.lottery_winners):
        raise _invalid("lottery winners must be an int", "lottery_winners")
    if c.lottery_winners > 0 and not c.lottery_seed:
        raise _invalid("a lottery needs a seed (GB-7)", "lottery_seed", rule="GB-7")
    if not _is_int(c.almost_full_at) or c.almost_full_at < 0:
        raise _invalid("almost full at must be an int ≥ 0 (seats missing)", "almost_full_at", rule="GB-15")
    if not isinstance(c.expiring_soon_before, timedelta) or c.expiring_soon_before < timedelta(0):
        raise _invalid("expiring soon before must be ≥ 0", "expiring_soon_before", rule="GB-15")
    if c.fill_at_expiry is not None and not _is_int(c.fill_at_expiry):
        raise _invalid("fill at expiry must be an int", "fill_at_expiry")

    tier_sets: list[tuple[str, tuple[Tier, ...]]] = [("tiers", c.tiers)]
    names: set[str] = set()
    for i, v in enumerate(c.variants):
        f = f"variants[{i}]"
        if not isinstance(v, Variant) or not isinstance(v.name, str) or not v.name:
            raise _invalid("a variant needs a non-empty name", f"{f}.name")
        if v.name in names:
            raise _invalid(f"duplicate variant name {v.name!r}", f"{f}.name")
        names.add(v.name)
        if not _is_int(v.weight) or v.weight <= 0:
            raise _invalid("a variant weight must be an int > 0", f"{f}.weight")
        validate_tiers(v.tiers, c.list_price, field=f"{f}.tiers")
        tier_sets.append((f"{f}.tiers", v.tiers))

    # M and K must fit every tier set a group may use.
    for _, tiers in tier_sets:
        min_size = tiers[0].members
        if c.fill_at_expiry is not None and not 1 <= c.fill_at_expiry < min_size:
            raise _invalid(f"fill at expiry must be in [1, {min_size})", "fill_at_expiry")
        if not 0 <= c.lottery_winners < min_size:
            raise _invalid(f"lottery winners must be in [0, {min_size})", "lottery_winners", rule="GB-7")


# ------------------------------------------------------------------ pricing
def final_tier(tiers: tuple[Tier, ...], paid_seats: int) -> Tier:
    """GB-5: the last tier whose ``members`` ≤ paid seats. Below the first tier (only possible
    for a fill-at-expiry group, GB-4) the first tier is the floor."""
    reached = tiers[0]
    for t in tiers:
        if t.members <= paid_seats:
            reached = t
    return reached


def role_price(tier_price: int, role: PriceRole, leader_discount: int) -> int:
    """GB-3: members pay the tier price; the leader pays it minus the discount, never below 0."""
    return max(0, tier_price - leader_discount) if role is PriceRole.LEADER else tier_price


# ------------------------------------------------------------------ checks shared by open/join
def _check_quantity_stock_limit(
    campaign: Campaign, *, quantity: int, stock_left: int | None, user_units_held: int, rule: str
) -> None:
    if not _is_int(quantity) or quantity < 1 or quantity > campaign.max_quantity_per_order:
        raise refuse(
            ErrorCode.QUANTITY_LIMIT,
            f"quantity must be between 1 and {campaign.max_quantity_per_order}",
            rule=rule,
            field="quantity",
        )
    if stock_left is not None and stock_left < quantity:
        raise refuse(
            ErrorCode.OUT_OF_STOCK, "the campaign has no stock left for this quantity", rule="GB-1", field="quantity"
        )
    if campaign.per_user_limit is not None and user_units_held + quantity > campaign.per_user_limit:
        raise refuse(
            ErrorCode.PER_USER_LIMIT,
            f"at most {campaign.per_user_limit} units per user in this campaign",
            rule=rule,
            field="quantity",
        )


# ------------------------------------------------------------------ GB-1 opening
def open_group(
    campaign: Campaign,
    *,
    group_id: str,
    order_id: str,
    user_id: str,
    quantity: int,
    now: datetime,
    stock_left: int | None,
    user_units_held: int,
    variant: Variant | None = None,
    lottery_seed: str | None = None,
) -> Decision:
    """GB-1: the user reserves the first seat as leader; the group is PENDING until that
    payment. Only inside [starts_at, ends_at). Stock is taken at reservation (the shell's
    guarded update; ``stock_left`` lets the engine refuse first). The leader's price is the
    first tier minus ``leader_discount`` (GB-3). The payment window is capped at the
    campaign's ``ends_at`` — a group cannot open after the campaign has ended.
    Tiers come from ``variant`` when the campaign runs an A/B test. A lottery campaign's group
    takes ``lottery_seed`` (GB-7 v2: 32 random bytes as hex, drawn by the shell) as its own seed;
    its commitment is public from now on."""
    _aware(now, "now")
    if lottery_seed is not None and not lottery.valid_seed(lottery_seed):
        raise _invalid("a lottery seed is 64 lowercase hex digits", "lottery_seed", rule="GB-7")
    if not campaign.starts_at <= now < campaign.ends_at:
        raise refuse(ErrorCode.CAMPAIGN_NOT_ACTIVE, "the campaign is not running", rule="GB-1")
    _check_quantity_stock_limit(
        campaign, quantity=quantity, stock_left=stock_left, user_units_held=user_units_held, rule="GB-1"
    )
    tiers = variant.tiers if variant is not None else campaign.tiers
    seat = Seat(
        order_id=order_id,
        user_id=user_id,
        quantity=quantity,
        unit_price=role_price(tiers[0].unit_price, PriceRole.LEADER, campaign.leader_discount),
        role=PriceRole.LEADER,
        state=SeatState.RESERVED,
        reserved_at=now,
        pay_by=min(now + campaign.payment_window, campaign.ends_at),
    )
    group = Group(
        id=group_id,
        campaign_id=campaign.id,
        tiers=tiers,
        leader_user_id=user_id,
        state=GroupState.PENDING,
        seats=(seat,),
        opened_at=now,
        variant=variant.name if variant is not None else None,
        lottery_seed=lottery_seed if campaign.lottery_winners > 0 else None,
    )
    return Decision(group, ())


# ------------------------------------------------------------------ GB-2 joining
def join_group(
    campaign: Campaign,
    group: Group,
    *,
    order_id: str,
    user_id: str,
    quantity: int,
    now: datetime,
    stock_left: int | None,
    user_units_held: int,
    user_has_paid_order: bool,
) -> Decision:
    """GB-2: reserve a member seat in an OPEN group at the first tier's price (GB-3), with
    ``pay_by = now + payment_window``. Refusals, in this order: GROUP_EXPIRED (now ≥
    expires_at, even if the worker has not run), GROUP_NOT_OPEN, ALREADY_IN_GROUP, GROUP_FULL
    (reserved + paid seats = capacity), NEW_MEMBERS_ONLY, QUANTITY_LIMIT, OUT_OF_STOCK,
    PER_USER_LIMIT. Due releases (GB-11) are applied first, so a seat whose payment window
    has passed is free again."""
    _aware(now, "now")
    caught = advance(campaign, group, now=now)
    g = caught.group
    if g.expires_at is not None and now >= g.expires_at:
        raise refuse(ErrorCode.GROUP_EXPIRED, "this group has expired", rule="GB-2")
    if g.state is not GroupState.OPEN:
        raise refuse(ErrorCode.GROUP_NOT_OPEN, f"this group is {g.state.value.lower()}, not open", rule="GB-2")
    if g.seat_of(user_id) is not None:
        raise refuse(ErrorCode.ALREADY_IN_GROUP, "you already hold a seat in this group", rule="GB-2")
    if g.held_seats >= g.capacity:
        raise refuse(ErrorCode.GROUP_FULL, "this group is full", rule="GB-2")
    if campaign.new_members_only and user_has_paid_order:
        raise refuse(ErrorCode.NEW_MEMBERS_ONLY, "only new customers may join this group", rule="GB-2")
    _check_quantity_stock_limit(
        campaign, quantity=quantity, stock_left=stock_left, user_units_held=user_units_held, rule="GB-2"
    )
    seat = Seat(
        order_id=order_id,
        user_id=user_id,
        quantity=quantity,
        unit_price=role_price(g.tiers[0].unit_price, PriceRole.MEMBER, campaign.leader_discount),
        role=PriceRole.MEMBER,
        state=SeatState.RESERVED,
        reserved_at=now,
        pay_by=now + campaign.payment_window,
    )
    return Decision(replace(g, seats=g.seats + (seat,)), caught.instructions)


# ------------------------------------------------------------------ GB-13 quick join
@dataclass(frozen=True)
class QuickJoinCandidate:
    """What GB-13 orders the open groups of a campaign by (one row per group, read without locks)."""

    group_id: str
    tiers: tuple[Tier, ...]
    state: GroupState
    held_seats: int
    expires_at: datetime | None
    opened_at: datetime
    user_holds_seat: bool = False


def seats_to_next_threshold(tiers: tuple[Tier, ...], held_seats: int) -> int:
    """GB-13: seats missing to the next threshold — the smallest tier ``members`` above the seats held
    (reserved + paid; the capacity at the latest)."""
    return next((t.members for t in tiers if t.members > held_seats), tiers[-1].members) - held_seats


def quick_join_order(
    candidates: tuple[QuickJoinCandidate, ...] | list[QuickJoinCandidate], *, now: datetime
) -> tuple[str, ...]:
    """GB-13: the groups a customer may be seated in, in the order they are tried: fewest seats missing
    to the next threshold, then earliest ``expires_at``, then earliest opened (then group id, so the
    order is total). Only OPEN groups before ``expires_at`` with a free seat and no active seat of the
    customer are listed; each attempt is still a full GB-2 join (which may refuse: the next is tried)."""
    _aware(now, "now")
    ok = [
        c
        for c in candidates
        if c.state is GroupState.OPEN
        and c.expires_at is not None
        and now < c.expires_at
        and c.held_seats < c.tiers[-1].members
        and not c.user_holds_seat
    ]
    ok.sort(key=lambda c: (seats_to_next_threshold(c.tiers, c.held_seats), c.expires_at, c.opened_at, c.group_id))
    return tuple(c.group_id for c in ok)


QUICK_JOIN_RETRY = frozenset(
    {ErrorCode.GROUP_FULL, ErrorCode.GROUP_EXPIRED, ErrorCode.GROUP_NOT_OPEN, ErrorCode.ALREADY_IN_GROUP}
)
"""GB-13: refusals of one attempt after which the next group is tried (they concern that group only);
any other refusal (stock, per-user limit, quantity, new members only) holds for every group: it ends
the quick join."""


# ------------------------------------------------------------------ GB-14 overflow re-seat
def late_payment(decision: Decision, order_id: str) -> RefundOwed | None:
    """GB-9: the full refund ``pay_seat`` decided for a payment that took no seat, if it did."""
    return next(
        (i for i in decision.instructions if isinstance(i, RefundOwed) and i.rule == "GB-9" and i.order_id == order_id),
        None,
    )


def without_late_refund(decision: Decision, order_id: str) -> Decision:
    """GB-14: the old group's decision for a payment that is re-seated elsewhere: the reservation is still
    released there (its seat and stock come back to that group's campaign), but the order is neither
    cancelled nor refunded — it moves on with its payment."""
    keep = tuple(
        i
        for i in decision.instructions
        if not (
            getattr(i, "order_id", None) == order_id
            and (isinstance(i, CancelOrder) or (isinstance(i, RefundOwed) and i.rule == "GB-9"))
        )
    )
    return Decision(decision.group, keep)


def reseat(
    campaign: Campaign,
    target: Group,
    *,
    seat: Seat,
    amount: int,
    now: datetime,
    stock_left: int | None,
    user_units_held: int,
    user_has_paid_order: bool,
) -> Decision:
    """GB-14: the payment of ``seat`` (which GB-9 would refund) takes a seat in ``target`` at the same role
    and unit price: a GB-2 join (all its refusals) then the payment (GB-2/GB-4). Refusals: those of GB-2;
    GROUP_NOT_OPEN for a leader's payment (an open group has its leader) or a group whose member price
    differs (another variant). The seat keeps its order id, quantity and price."""
    _aware(now, "now")
    if seat.role is not PriceRole.MEMBER:
        raise refuse(ErrorCode.GROUP_NOT_OPEN, "a leader's payment is not re-seated", rule="GB-14")
    joined = join_group(
        campaign,
        target,
        order_id=seat.order_id,
        user_id=seat.user_id,
        quantity=seat.quantity,
        now=now,
        stock_left=stock_left,
        user_units_held=user_units_held,
        user_has_paid_order=user_has_paid_order,
    )
    new = joined.group.seat_for_order(seat.order_id)
    assert new is not None
    if new.unit_price != seat.unit_price or amount != seat.amount:
        raise refuse(ErrorCode.GROUP_NOT_OPEN, "this group sells at another price", rule="GB-14")
    paid = pay_seat(campaign, joined.group, order_id=seat.order_id, amount=amount, now=now)
    assert late_payment(paid, seat.order_id) is None, "a seat just reserved in an open group takes its payment"
    return Decision(
        paid.group,
        joined.instructions
        + tuple(OrderPaid(i.order_id, i.role, "GB-14") if isinstance(i, OrderPaid) else i for i in paid.instructions),
    )


# ------------------------------------------------------------------ payments (GB-1/2/4/9)
def pay_seat(campaign: Campaign, group: Group, *, order_id: str, amount: int, now: datetime) -> Decision:
    """A payment confirmation for the seat of ``order_id``.

    - NOT_FOUND if the order has no seat in this group; PAYMENT_AMOUNT_MISMATCH unless
      ``amount`` equals the seat's amount (unit price × quantity).
    - A seat already PAID: the group is unchanged and this payment, a second charge, is owed back in full
      (RefundOwed(amount, full=True, rule="GB-10")). The shell deduplicates a confirmation repeated with
      the same provider reference before asking, so every call here is money received.
    - Due work is applied first (GB-11). Then a RESERVED seat with ``now < pay_by`` in a group
      that can take it (leader: PENDING; member: OPEN and now < expires_at) becomes PAID
      (OrderPaid). The leader's payment opens the group (GB-1): ``expires_at = min(now +
      duration, ends_at)``. Paid seats reaching capacity form the group at once (GB-4..GB-7).
    - Otherwise (seat released or left, group cancelled/failed/formed/expired, pay_by passed)
      the payment never takes a seat: RefundOwed(amount, full=True, rule="GB-9"), after the
      release of the reservation if it was still RESERVED (CancelOrder + ReturnStock).
    """
    _aware(now, "now")
    seat = group.seat_for_order(order_id)
    if seat is None:
        raise refuse(ErrorCode.NOT_FOUND, "no seat for this order in this group", field="order_id")
    if seat.state is SeatState.PAID:  # another payment took it: this one is money received for nothing
        return Decision(group, (RefundOwed(order_id, amount, "GB-10", True),))
    if not _is_int(amount) or amount != seat.amount:
        raise refuse(
            ErrorCode.PAYMENT_AMOUNT_MISMATCH,
            f"payment of {amount} does not match the seat amount {seat.amount}",
            rule="GB-9",
            field="amount",
        )
    caught = advance(campaign, group, now=now)
    g, out = caught.group, list(caught.instructions)
    seat = g.seat_for_order(order_id)
    assert seat is not None
    if seat.state is SeatState.PAID:  # cannot happen (advance never pays), kept for safety
        return Decision(g, tuple(out))

    # After the catch-up an OPEN group past expires_at is in its payment grace (GB-12): a reservation
    # still inside its payment window takes its seat exactly as before expiry.
    takes = (
        seat.state is SeatState.RESERVED
        and now < seat.pay_by
        and (
            (seat.role is PriceRole.LEADER and g.state is GroupState.PENDING and seat.user_id == g.leader_user_id)
            or (g.state is GroupState.OPEN and g.expires_at is not None)
        )
    )
    if not takes:
        if seat.state is SeatState.RESERVED:
            g = _set_seat(g, replace(seat, state=SeatState.RELEASED))
            out += [CancelOrder(order_id, "GB-9"), ReturnStock(order_id, seat.quantity, "GB-9")]
            if g.state is GroupState.PENDING:
                g = replace(g, state=GroupState.CANCELLED, closed_at=now)
                out.append(GroupCancelled(g.id, "GB-1"))
        out.append(RefundOwed(order_id, amount, "GB-9", True))
        return Decision(g, tuple(out))

    paid = replace(seat, state=SeatState.PAID, paid_at=now)
    g = _set_seat(g, paid)
    if g.state is GroupState.PENDING:
        expires_at = min(now + campaign.duration, campaign.ends_at)
        g = replace(g, state=GroupState.OPEN, expires_at=expires_at)
        out += [OrderPaid(order_id, paid.role, "GB-1"), GroupOpened(g.id, expires_at, "GB-1")]
    else:
        out.append(OrderPaid(order_id, paid.role, "GB-2"))
    if g.paid_seats >= g.capacity:
        formed = _form(campaign, g, at=now, fill=False)
        g, out = formed.group, out + list(formed.instructions)
    elif in_grace(campaign, g, now=now) is False:  # GB-12: this payment made the outcome certain
        d = _decide_at_expiry(campaign, g, at=now, rule="GB-12")
        g, out = d.group, out + list(d.instructions)
    g, nudges = _nudges(campaign, g, now=now)
    return Decision(g, tuple(out) + nudges)


# ------------------------------------------------------------------ GB-8 leaving
def leave_group(campaign: Campaign, group: Group, *, user_id: str, now: datetime) -> Decision:
    """GB-8: before the group forms, the holder of an active seat cancels it.

    A PAID seat becomes LEFT with a full refund and its stock returned; a RESERVED seat is
    RELEASED (order cancelled, stock returned). If the leader leaves, the earliest remaining
    PAID seat (by paid_at, then reserved_at, then order id) becomes leader (LeaderChanged);
    nobody's price or price role changes. If no PAID seat remains, the group is CANCELLED
    and the remaining reservations are released; a PENDING group whose leader cancels is
    CANCELLED too (GB-1). Refusals: GROUP_NOT_OPEN once FORMED/FAILED/CANCELLED (after due
    work, GB-11), NOT_A_MEMBER without an active seat."""
    _aware(now, "now")
    caught = advance(campaign, group, now=now)
    g, out = caught.group, list(caught.instructions)
    if g.state in TERMINAL:
        raise refuse(ErrorCode.GROUP_NOT_OPEN, f"this group is already {g.state.value.lower()}", rule="GB-8")
    seat = g.seat_of(user_id)
    if seat is None:
        raise refuse(ErrorCode.NOT_A_MEMBER, "you hold no seat in this group", rule="GB-8")

    if seat.state is SeatState.PAID:
        g = _set_seat(g, replace(seat, state=SeatState.LEFT))
        out += [RefundOwed(seat.order_id, seat.amount, "GB-8", True), ReturnStock(seat.order_id, seat.quantity, "GB-8")]
    else:
        g = _set_seat(g, replace(seat, state=SeatState.RELEASED))
        out += [CancelOrder(seat.order_id, "GB-8"), ReturnStock(seat.order_id, seat.quantity, "GB-8")]

    if g.state is GroupState.PENDING:  # the leader cancelled before paying
        g = replace(g, state=GroupState.CANCELLED, closed_at=now)
        out.append(GroupCancelled(g.id, "GB-1"))
        return Decision(g, tuple(out))

    if user_id == g.leader_user_id:
        remaining = sorted(
            (s for s in g.seats if s.state is SeatState.PAID), key=lambda s: (s.paid_at, s.reserved_at, s.order_id)
        )
        if remaining:
            g = replace(g, leader_user_id=remaining[0].user_id)
            out.append(LeaderChanged(g.id, user_id, remaining[0].user_id, "GB-8"))
        else:
            for s in g.seats:
                if s.state is SeatState.RESERVED:
                    g = _set_seat(g, replace(s, state=SeatState.RELEASED))
                    out += [CancelOrder(s.order_id, "GB-8"), ReturnStock(s.order_id, s.quantity, "GB-8")]
            g = replace(g, state=GroupState.CANCELLED, closed_at=now)
            out.append(GroupCancelled(g.id, "GB-8"))
    if in_grace(campaign, g, now=now) is False:  # GB-12: leaving during the grace made the outcome certain
        d = _decide_at_expiry(campaign, g, at=now, rule="GB-12")
        g, out = d.group, out + list(d.instructions)
    return Decision(g, tuple(out))


# ------------------------------------------------------------------ GB-11 due work
def advance(campaign: Campaign, group: Group, *, now: datetime) -> Decision:
    """GB-11: everything due at ``now``, idempotent (a second call at the same ``now`` returns
    the same group and no instructions).

    - GB-2: RESERVED seats with ``pay_by ≤ now`` (and before expiry) are RELEASED
      (CancelOrder + ReturnStock). The unpaid leader of a PENDING group: the group is
      CANCELLED (GB-1) with ``closed_at = pay_by``.
    - At ``now ≥ expires_at`` an OPEN group first releases the reservations whose ``pay_by ≤
      expires_at``. If the reservations still inside their payment window, added to its paid
      seats, could reach a forming threshold (GB-12: ``min_size``, or M with ``fill_at_expiry``),
      it waits for them (its payment grace): each is released at its ``pay_by`` (rule GB-12) and
      the group decides at the first instant its outcome is certain — no reservation left, or
      too few left to reach the threshold — which is never later than the last of those
      ``pay_by`` (≤ ``expires_at + payment_window``). Otherwise it decides at ``expires_at`` as
      in v1: it forms if paid seats ≥ min_size (tier reached, GB-4/GB-5) or, with
      ``fill_at_expiry`` = M, if paid seats ≥ M (first tier); else it FAILS (GB-6). The instant
      used is the one the rules name (``expires_at``, or the ``pay_by`` that made the outcome
      certain), never ``now``, so a late worker decides exactly as a punctual one.
    """
    _aware(now, "now")
    g, out = group, list[Instruction]()
    if g.state in TERMINAL:
        return Decision(g, ())
    expired = g.state is GroupState.OPEN and g.expires_at is not None and now >= g.expires_at
    cutoff = g.expires_at if expired and g.expires_at is not None else now
    for s in g.seats:
        if s.state is SeatState.RESERVED and s.pay_by <= cutoff:
            g = _set_seat(g, replace(s, state=SeatState.RELEASED))
            out += [CancelOrder(s.order_id, "GB-2"), ReturnStock(s.order_id, s.quantity, "GB-2")]
            if g.state is GroupState.PENDING and s.role is PriceRole.LEADER:
                g = replace(g, state=GroupState.CANCELLED, closed_at=s.pay_by)
                out.append(GroupCancelled(g.id, "GB-1"))
    if not expired:
        g, nudges = _nudges(campaign, g, now=now)
        return Decision(g, tuple(out) + nudges)
    assert g.expires_at is not None
    if _outcome_certain(campaign, g):  # v1: nothing to wait for
        d = _decide_at_expiry(campaign, g, at=g.expires_at, rule="GB-4")
        return Decision(d.group, tuple(out) + d.instructions)
    # GB-12 payment grace: release the waited-for reservations in pay_by order up to now; decide as
    # soon as the outcome is certain, at the instant it became so.
    for s in sorted((s for s in g.seats if s.state is SeatState.RESERVED), key=lambda s: (s.pay_by, s.order_id)):
        if s.pay_by > now:
            break
        g = _set_seat(g, replace(s, state=SeatState.RELEASED))
        out += [CancelOrder(s.order_id, "GB-12"), ReturnStock(s.order_id, s.quantity, "GB-12")]
        if _outcome_certain(campaign, g):
            d = _decide_at_expiry(campaign, g, at=s.pay_by, rule="GB-12")
            return Decision(d.group, tuple(out) + d.instructions)
    if g.nudged_expiring_soon_at is None:  # GB-15: too late for "expiring soon" (a worker that ran late)
        g = replace(g, nudged_expiring_soon_at=g.expires_at)
    return Decision(g, tuple(out))


def _nudges(campaign: Campaign, g: Group, *, now: datetime) -> tuple[Group, tuple[Instruction, ...]]:
    """GB-15: the nudges due on an OPEN group at ``now``, each once per group."""
    if g.state is not GroupState.OPEN:
        return g, ()
    out: list[Instruction] = []
    missing = g.capacity - g.paid_seats
    if g.nudged_almost_full_at is None and 0 < missing <= campaign.almost_full_at:
        g = replace(g, nudged_almost_full_at=now)
        out.append(GroupNudged(g.id, "almost_full", missing, g.expires_at, "GB-15"))
    soon = expiring_soon_at(campaign, g)
    if soon is not None and soon <= now and g.expires_at is not None and now < g.expires_at:
        g = replace(g, nudged_expiring_soon_at=now)
        out.append(GroupNudged(g.id, "expiring_soon", missing, g.expires_at, "GB-15"))
    return g, tuple(out)


def expiring_soon_at(campaign: Campaign, g: Group) -> datetime | None:
    """GB-15: when the group's `expiring_soon` nudge falls due (None: emitted, or never)."""
    if (
        g.state is not GroupState.OPEN
        or g.expires_at is None
        or g.nudged_expiring_soon_at is not None
        or campaign.expiring_soon_before <= timedelta(0)
    ):
        return None
    return g.expires_at - campaign.expiring_soon_before


def forming_threshold(campaign: Campaign, group: Group) -> int:
    """GB-4/GB-12: the fewest paid seats with which the group forms at expiry (M with
    ``fill_at_expiry``, else ``min_size``)."""
    if campaign.fill_at_expiry is not None:
        return min(campaign.fill_at_expiry, group.min_size)
    return group.min_size


def _outcome_certain(campaign: Campaign, g: Group) -> bool:
    """GB-12: no reservation left whose payment could still change the decision at expiry, or too
    few of them to reach the forming threshold whatever happens."""
    reserved = sum(1 for s in g.seats if s.state is SeatState.RESERVED)
    return reserved == 0 or g.paid_seats + reserved < forming_threshold(campaign, g)


def in_grace(campaign: Campaign, group: Group, *, now: datetime) -> bool | None:
    """GB-12: None when the group is not OPEN past its ``expires_at``; otherwise whether it is
    (still) waiting for reservations inside their payment window (False: its outcome is certain
    and it must decide now). Expects a group caught up at ``now`` (``advance``)."""
    if group.state is not GroupState.OPEN or group.expires_at is None or now < group.expires_at:
        return None
    return not _outcome_certain(campaign, group)


def grace_until(campaign: Campaign, group: Group) -> datetime | None:
    """GB-12: the latest instant the group may still be waiting for payments after ``expires_at``
    (the last ``pay_by`` of the reservations it would wait for), or None if it would decide at
    ``expires_at``. Never later than ``expires_at + payment_window``."""
    if group.state is not GroupState.OPEN or group.expires_at is None:
        return None
    at = group.expires_at
    waiting = [s for s in group.seats if s.state is SeatState.RESERVED and s.pay_by > at]
    if not waiting or group.paid_seats + len(waiting) < forming_threshold(campaign, group):
        return None
    return max(s.pay_by for s in waiting)


def _decide_at_expiry(campaign: Campaign, g: Group, *, at: datetime, rule: str) -> Decision:
    """GB-4/GB-6 at expiry (or at the end of a GB-12 grace): form at the tier reached, or at the
    first tier with ``fill_at_expiry``, else fail."""
    if g.paid_seats >= g.min_size:
        return _form(campaign, g, at=at, fill=False, rule=rule)
    if campaign.fill_at_expiry is not None and g.paid_seats >= campaign.fill_at_expiry:
        return _form(campaign, g, at=at, fill=True, rule=rule)
    return _fail(g, at=at, rule="GB-6" if rule == "GB-4" else rule)


def next_due_at(group: Group, campaign: Campaign | None = None) -> datetime | None:
    """GB-11: the earliest instant at which ``advance`` would change something, or None.

    A group that would wait for payments at expiry (GB-12) changes nothing at ``expires_at``
    itself (joins are refused from then on by the clock alone): its next due instant is the
    next ``pay_by``. ``campaign`` gives the forming threshold with ``fill_at_expiry`` (without
    it, ``min_size``)."""
    if group.state in TERMINAL:
        return None
    due = [s.pay_by for s in group.seats if s.state is SeatState.RESERVED]
    if group.state is GroupState.OPEN and group.expires_at is not None:
        threshold = forming_threshold(campaign, group) if campaign is not None else group.min_size
        waiting = [s for s in group.seats if s.state is SeatState.RESERVED and s.pay_by > group.expires_at]
        if not waiting or group.paid_seats + len(waiting) < threshold:
            due.append(group.expires_at)
        soon = expiring_soon_at(campaign, group) if campaign is not None else None
        if soon is not None:  # GB-15 (at expires_at at the latest: a grace marks it skipped)
            due.append(min(soon, group.expires_at))
    return min(due) if due else None


# ------------------------------------------------------------------ internals
def _set_seat(g: Group, seat: Seat) -> Group:
    return replace(g, seats=tuple(seat if s.order_id == seat.order_id else s for s in g.seats))


def _form(campaign: Campaign, g: Group, *, at: datetime, fill: bool, rule: str = "GB-4") -> Decision:
    """GB-4 forming, GB-5 final prices and GB-7 lottery.

    Tier reached: last tier with members ≤ paid seats (first tier for fill-at-expiry). Final
    unit price: the tier price for members, minus ``leader_discount`` (≥ 0) for the LEADER
    price role. K = min(lottery_winners, paid seats) winners are drawn among all PAID seats
    (the leader included). A winner's final price is 0 and it gets one full refund (GB-7)
    instead of the GB-5 partial; every other paid order is owed (paid unit − final) × qty
    when that is > 0. Remaining reservations are cancelled (GB-4)."""
    out: list[Instruction] = []
    for s in g.seats:
        if s.state is SeatState.RESERVED:
            g = _set_seat(g, replace(s, state=SeatState.RELEASED))
            out += [CancelOrder(s.order_id, "GB-4"), ReturnStock(s.order_id, s.quantity, "GB-4")]
    paid = [s for s in g.seats if s.state is SeatState.PAID]
    tier = g.tiers[0] if fill else final_tier(g.tiers, len(paid))
    member_price = role_price(tier.unit_price, PriceRole.MEMBER, campaign.leader_discount)
    leader_price = role_price(tier.unit_price, PriceRole.LEADER, campaign.leader_discount)
    k = min(campaign.lottery_winners, len(paid))
    if k and g.lottery_seed:  # GB-7 v2: the group's own seed, commit–reveal
        winners = lottery.draw(g.lottery_seed, [s.order_id for s in paid], k).winners
    else:  # groups opened before v2: the campaign's seed (v1 procedure)
        winners = draw_winners(campaign.lottery_seed, g.id, [s.order_id for s in paid], k) if k else ()
    g = replace(g, state=GroupState.FORMED, formed_at=at, closed_at=at, tier_members=tier.members, winners=winners)
    out.append(GroupFormed(g.id, tier.members, member_price, leader_price, winners, rule))
    for s in paid:
        if s.order_id in winners:
            out += [FinalPrice(s.order_id, 0, "GB-7"), RefundOwed(s.order_id, s.amount, "GB-7", True)]
            continue
        final = leader_price if s.role is PriceRole.LEADER else member_price
        out.append(FinalPrice(s.order_id, final, "GB-5"))
        owed = (s.unit_price - final) * s.quantity
        if owed > 0:
            out.append(RefundOwed(s.order_id, owed, "GB-5", False))
    return Decision(g, tuple(out))


def _fail(g: Group, *, at: datetime, rule: str = "GB-6") -> Decision:
    """GB-6: the group FAILS at expiry; every paid order is refunded in full, every
    reservation cancelled, all stock returned. Paid seats keep the state PAID (the group's
    state says they were refunded)."""
    out: list[Instruction] = []
    for s in g.seats:
        if s.state is SeatState.RESERVED:
            g = _set_seat(g, replace(s, state=SeatState.RELEASED))
            out += [CancelOrder(s.order_id, "GB-6"), ReturnStock(s.order_id, s.quantity, "GB-6")]
        elif s.state is SeatState.PAID:
            out += [RefundOwed(s.order_id, s.amount, "GB-6", True), ReturnStock(s.order_id, s.quantity, "GB-6")]
    g = replace(g, state=GroupState.FAILED, closed_at=at)
    out.append(GroupFailed(g.id, rule))
    return Decision(g, tuple(out))


def holds_stock(group: Group, seat: Seat) -> bool:
    """Whether a seat still holds campaign stock: RESERVED, or PAID in a group that has not
    failed (GB-1 stock taken at reservation; GB-2/GB-6/GB-8 return it)."""
    if seat.state is SeatState.RESERVED:
        return True
    return seat.state is SeatState.PAID and group.state is not GroupState.FAILED
