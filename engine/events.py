"""The catalog of event types (issue 12, point 4): one enum, one payload dataclass per type.

Every emitter names its type from `EventType` (`service.tx.events.emit` takes an `EventType`, and mypy
holds service/ to it), every payload has exactly the keys of its dataclass (required ones without a
default; tests/engine/test_event_catalog.py checks each call site's literal payload), a webhook
endpoint may subscribe only to these types (`registerWebhook` refuses others as INVALID_INPUT), and
`docs/webhooks.md` lists exactly these (tests/engine/test_event_catalog.py). A new event type is added
here first: its enum member, its payload class, its line in PAYLOADS and in docs/webhooks.md.

Every event's `data` also carries the shop's `currency` (SH-2) and, when a rule decided it, `rule`;
`emit` adds both, so they are not fields here. A field named after a Python keyword takes a trailing
underscore (`from_`): the key in the payload is `from`.
"""

from __future__ import annotations

from dataclasses import MISSING, dataclass, fields
from enum import Enum
from typing import Any


class EventType(str, Enum):
    GROUP_OPENED = "group.opened"
    GROUP_FORMED = "group.formed"
    GROUP_FAILED = "group.failed"
    GROUP_CANCELLED = "group.cancelled"
    GROUP_LEADER_CHANGED = "group.leader_changed"
    GROUP_ALMOST_FULL = "group.almost_full"
    GROUP_EXPIRING_SOON = "group.expiring_soon"
    SEAT_RELEASED = "seat.released"
    ORDER_PAID = "order.paid"
    ORDER_RESEATED = "order.reseated"
    ORDER_COMPLETED = "order.completed"
    REFUND_OWED = "refund.owed"
    REFUND_RECORDED = "refund.recorded"
    REFUND_CONFIRMED = "refund.confirmed"
    COMMISSION_POSTED = "commission.posted"
    COMMISSION_REVERSED = "commission.reversed"
    COMMISSION_VOIDED = "commission.voided"
    COMMISSION_AVAILABLE = "commission.available"
    DISTRIBUTOR_LEVEL_CHANGED = "distributor.level_changed"
    DISTRIBUTOR_STATUS_CHANGED = "distributor.status_changed"
    REFERRAL_BOUND = "referral.bound"
    REFERRAL_REBOUND = "referral.rebound"
    PAYOUT_REQUESTED = "payout.requested"
    PAYOUT_APPROVED = "payout.approved"
    PAYOUT_REJECTED = "payout.rejected"
    PAYOUT_FAILED = "payout.failed"
    FRAUD_FLAGGED = "fraud.flagged"
    FRAUD_CLEARED = "fraud.cleared"
    FRAUD_VOIDED = "fraud.voided"
    FRAUD_GROUP_DISSOLVED = "fraud.group_dissolved"
    SETTLEMENT_CLOSED = "settlement.closed"
    WEBHOOK_ENDPOINT_DISABLED = "webhook.endpoint_disabled"


# ---------------------------------------------------------------- group-buy (GB-*)
@dataclass(frozen=True)
class GroupOpened:
    """GB-1: the leader paid; members may join until `expires_at` (ISO 8601)."""

    group_id: str
    campaign_id: str
    leader_user_id: str
    expires_at: str
    lottery_commitment: str | None = None  # GB-7 v2: SHA-256(seed), public from opening


@dataclass(frozen=True)
class GroupFormed:
    """GB-4/GB-5/GB-7: ship. The tier reached, the final unit prices, the lottery winners' orders."""

    group_id: str
    campaign_id: str
    tier_members: int
    member_unit_price: int
    leader_unit_price: int
    winners: list[str]
    order_ids: list[str]
    leader_order_id: str | None
    draw: dict[str, Any] | None = None  # GB-7 v2: {commitment, seed, candidates [{order_id, score}], winners}


@dataclass(frozen=True)
class GroupFailed:
    """GB-6: every paid order is owed a full refund (`refund.owed`)."""

    group_id: str
    campaign_id: str


@dataclass(frozen=True)
class GroupCancelled:
    """GB-1/GB-8: the leader's reservation lapsed or the last paid member left."""

    group_id: str


@dataclass(frozen=True)
class GroupLeaderChanged:
    """GB-8: the leader left; the earliest remaining paid member leads."""

    group_id: str
    from_: str
    to: str


@dataclass(frozen=True)
class GroupAlmostFull:
    """GB-15: the paid seats missing to capacity first reached the campaign's `almost_full_at`; once."""

    group_id: str
    campaign_id: str
    seats_missing: int
    expires_at: str


@dataclass(frozen=True)
class GroupExpiringSoon:
    """GB-15: the open group is `expiring_soon_before` from `expires_at` and has not formed; once."""

    group_id: str
    campaign_id: str
    seats_missing: int
    expires_at: str


@dataclass(frozen=True)
class OrderReseated:
    """GB-14: a payment GB-9 would have refunded took a seat in another open group instead (same role and
    unit price); `order.paid` follows for the new group. A payment no group could take gets `refund.owed`
    with reason GB-9 as before."""

    order_id: str
    from_group_id: str
    to_group_id: str
    amount: int


@dataclass(frozen=True)
class SeatReleased:
    """GB-2/GB-4/GB-6/GB-8: a reservation was cancelled (its order is CANCELLED)."""

    order_id: str
    user_id: str


# ---------------------------------------------------------------- orders and refunds (OR-*, GB-5..GB-9)
@dataclass(frozen=True)
class OrderPaid:
    """GB-1/GB-2/OR-2: a payment took. `role` (LEADER/MEMBER) for a group order only."""

    order_id: str
    amount: int
    buyer_id: str
    role: str | None = None


@dataclass(frozen=True)
class OrderCompleted:
    """OR-4: delivered and not disputed."""

    order_id: str


@dataclass(frozen=True)
class RefundOwed:
    """GB-5..GB-9: Sharecart owes the buyer `amount`; `reason` is the rule."""

    refund_id: str
    order_id: str
    amount: int
    full: bool
    reason: str


@dataclass(frozen=True)
class RefundRecorded:
    """OR-2: the backend reported a refund it made (already confirmed by its provider reference)."""

    refund_id: str
    order_id: str
    amount: int
    full: bool
    reason: str


@dataclass(frozen=True)
class RefundConfirmed:
    """GB-10: an owed refund was paid out by the backend."""

    refund_id: str
    order_id: str
    amount: int
    provider_ref: str


# ---------------------------------------------------------------- commission (CM-*)
@dataclass(frozen=True)
class CommissionPosted:
    """CM-4/CM-6 (level 1, 2) and GB-4 (level 0: the leader's reward): a line PENDING."""

    order_id: str
    line_id: str
    beneficiary_id: str
    level: int
    amount: int


@dataclass(frozen=True)
class CommissionReversed:
    """CM-5: `amount` taken back by a refund; `standing` is what the line is worth now."""

    order_id: str
    line_id: str
    beneficiary_id: str
    amount: int
    standing: int
    cause: str


@dataclass(frozen=True)
class CommissionVoided:
    """CM-6: a failed group's line; `amount` is what still stood and leaves pending."""

    order_id: str
    line_id: str
    beneficiary_id: str
    level: int
    amount: int
    cause: str


@dataclass(frozen=True)
class CommissionAvailable:
    """CM-6: a frozen line reached its `available_at`."""

    line_id: str
    order_id: str
    amount: int


# ---------------------------------------------------------------- distributors and referrals (DS-*, LV-*, RF-*)
@dataclass(frozen=True)
class DistributorLevelChanged:
    """LV-2 (by the system) or LV-3 (by an admin, with a reason)."""

    user_id: str
    from_: int
    to: int
    by: str
    reason: str


@dataclass(frozen=True)
class DistributorStatusChanged:
    """DS-1: approved, suspended or reinstated, with who and why."""

    user_id: str
    status: str
    by: str
    reason: str


@dataclass(frozen=True)
class ReferralBound:
    """RF-1: the user's referrer, and how the binding was made."""

    user_id: str
    referrer_id: str
    source: str


@dataclass(frozen=True)
class ReferralRebound:
    """RF-3 (c): an admin bound the user to another referrer (`from` None: there was no live one), with a
    reason. Past orders keep their snapshot (RF-2)."""

    user_id: str
    referrer_id: str
    from_: str | None
    by: str
    reason: str


# ---------------------------------------------------------------- payouts and settlements (LG-*)
@dataclass(frozen=True)
class PayoutRequested:
    """LG-2: `amount` moved to in-payout; `fee` is what approval will charge."""

    payout_id: str
    user_id: str
    amount: int
    fee: int


@dataclass(frozen=True)
class PayoutDecided:
    """LG-2: approved (with the transfer's `external_ref`; `net` = amount − fee) or rejected (`reason`)."""

    payout_id: str
    user_id: str
    amount: int
    fee: int
    net: int
    external_ref: str | None
    reason: str | None


@dataclass(frozen=True)
class PayoutFailed:
    """LG-4: an approved payout's transfer failed (`transfer_ref`, `reason`, marked `by` finance or the backend):
    `amount` is back in available and `fee_reversed` of it is the fee given back."""

    payout_id: str
    user_id: str
    amount: int
    fee_reversed: int
    external_ref: str | None
    transfer_ref: str
    reason: str
    by: str


# ---------------------------------------------------------------- fraud review (FR-*)
@dataclass(frozen=True)
class FraudFlagged:
    """FR-3/FR-4: a rule flagged a commission line (`subject` LINE) or a group (GROUP); `rules` and `evidence`
    say why, `by` is `system`; `amount` is what the flag holds now (a group's lines are held as they post)."""

    flag_id: str
    subject: str
    rules: list[str]
    evidence: dict[str, Any]
    line_id: str | None
    group_id: str | None
    order_id: str | None
    beneficiary_id: str | None
    amount: int
    by: str


@dataclass(frozen=True)
class FraudResolved:
    """FR-3/FR-4: an admin (`by`) cleared, voided or dissolved a flag, with `reason`; `line_ids` are the
    lines it released from hold (cleared) or voided, `amount` what they stood at."""

    flag_id: str
    subject: str
    line_ids: list[str]
    group_id: str | None
    amount: int
    by: str
    reason: str | None


@dataclass(frozen=True)
class SettlementClosed:
    """LG-3: a period closed into an immutable batch (`from`, `to`: local dates)."""

    settlement_id: str
    from_: str
    to: str
    closing: int


@dataclass(frozen=True)
class WebhookEndpointDisabled:
    """An endpoint failed for 24 h over at least 10 attempts (docs/webhooks.md, Disabling)."""

    endpoint_id: str
    url: str
    failures: int
    failing_since: str


PAYLOADS: dict[EventType, type] = {
    EventType.GROUP_OPENED: GroupOpened,
    EventType.GROUP_FORMED: GroupFormed,
    EventType.GROUP_FAILED: GroupFailed,
    EventType.GROUP_CANCELLED: GroupCancelled,
    EventType.GROUP_LEADER_CHANGED: GroupLeaderChanged,
    EventType.GROUP_ALMOST_FULL: GroupAlmostFull,
    EventType.GROUP_EXPIRING_SOON: GroupExpiringSoon,
    EventType.SEAT_RELEASED: SeatReleased,
    EventType.ORDER_PAID: OrderPaid,
    EventType.ORDER_RESEATED: OrderReseated,
    EventType.ORDER_COMPLETED: OrderCompleted,
    EventType.REFUND_OWED: RefundOwed,
    EventType.REFUND_RECORDED: RefundRecorded,
    EventType.REFUND_CONFIRMED: RefundConfirmed,
    EventType.COMMISSION_POSTED: CommissionPosted,
    EventType.COMMISSION_REVERSED: CommissionReversed,
    EventType.COMMISSION_VOIDED: CommissionVoided,
    EventType.COMMISSION_AVAILABLE: CommissionAvailable,
    EventType.DISTRIBUTOR_LEVEL_CHANGED: DistributorLevelChanged,
    EventType.DISTRIBUTOR_STATUS_CHANGED: DistributorStatusChanged,
    EventType.REFERRAL_BOUND: ReferralBound,
    EventType.REFERRAL_REBOUND: ReferralRebound,
    EventType.PAYOUT_REQUESTED: PayoutRequested,
    EventType.PAYOUT_APPROVED: PayoutDecided,
    EventType.PAYOUT_REJECTED: PayoutDecided,
    EventType.PAYOUT_FAILED: PayoutFailed,
    EventType.FRAUD_FLAGGED: FraudFlagged,
    EventType.FRAUD_CLEARED: FraudResolved,
    EventType.FRAUD_VOIDED: FraudResolved,
    EventType.FRAUD_GROUP_DISSOLVED: FraudResolved,
    EventType.SETTLEMENT_CLOSED: SettlementClosed,
    EventType.WEBHOOK_ENDPOINT_DISABLED: WebhookEndpointDisabled,
}

# keys every payload may carry besides its fields: emit adds them (SH-2, the rule that decided)
COMMON_KEYS = frozenset({"currency", "rule"})


def payload_keys(event_type: EventType) -> tuple[frozenset[str], frozenset[str]]:
    """(required, optional) keys of a type's payload, as they appear in `data`."""
    required: set[str] = set()
    optional: set[str] = set()
    for f in fields(PAYLOADS[event_type]):
        key = f.name.rstrip("_")
        (required if f.default is MISSING and f.default_factory is MISSING else optional).add(key)
    return frozenset(required), frozenset(optional)


def check_payload(event_type: str | EventType, payload: dict[str, Any]) -> EventType:
    """The catalog's type for `event_type`, after checking `payload` has exactly its keys.
    Raises ValueError for an unknown type or a payload that does not match: a programming error."""
    try:
        t = EventType(event_type)
    except ValueError:
        raise ValueError(f"event type {event_type!r} is not in the catalog (engine/events.py)") from None
    required, optional = payload_keys(t)
    keys = set(payload)
    missing, unknown = required - keys, keys - required - optional - COMMON_KEYS
    if missing or unknown:
        raise ValueError(
            f"{t.value} payload: missing {sorted(missing)}, unknown {sorted(unknown)} "
            f"(engine/events.py {PAYLOADS[t].__name__})"
        )
    return t


def is_event_type(value: str) -> bool:
    return value in _VALUES


_VALUES = frozenset(t.value for t in EventType)
