"""ER-1: every refusal is a stable machine-readable code plus a human message.

The codes are defined once, here, beside the rules; `api/` maps them to GraphQL error
payloads and never invents its own. A refusal changes nothing: engine functions raise
before they build any new state.
"""

from __future__ import annotations

from enum import Enum


class ErrorCode(str, Enum):
    # generic
    INVALID_INPUT = "INVALID_INPUT"
    NOT_FOUND = "NOT_FOUND"
    FORBIDDEN = "FORBIDDEN"
    UNAUTHENTICATED = "UNAUTHENTICATED"
    IDEMPOTENCY_CONFLICT = "IDEMPOTENCY_CONFLICT"
    INVALID_STATE = "INVALID_STATE"
    # campaigns and groups (GB-*)
    CAMPAIGN_NOT_ACTIVE = "CAMPAIGN_NOT_ACTIVE"
    GROUP_NOT_OPEN = "GROUP_NOT_OPEN"
    GROUP_FULL = "GROUP_FULL"
    GROUP_EXPIRED = "GROUP_EXPIRED"
    ALREADY_IN_GROUP = "ALREADY_IN_GROUP"
    OUT_OF_STOCK = "OUT_OF_STOCK"
    PER_USER_LIMIT = "PER_USER_LIMIT"
    QUANTITY_LIMIT = "QUANTITY_LIMIT"
    NEW_MEMBERS_ONLY = "NEW_MEMBERS_ONLY"
    NOT_A_MEMBER = "NOT_A_MEMBER"
    PAYMENT_AMOUNT_MISMATCH = "PAYMENT_AMOUNT_MISMATCH"
    # orders (OR-*)
    ORDER_CONFLICT = "ORDER_CONFLICT"
    ORDER_NOT_PAID = "ORDER_NOT_PAID"
    REFUND_EXCEEDS_PAID = "REFUND_EXCEEDS_PAID"
    # distribution (DS-*, RF-*)
    NOT_A_DISTRIBUTOR = "NOT_A_DISTRIBUTOR"
    DISTRIBUTOR_SUSPENDED = "DISTRIBUTOR_SUSPENDED"
    SELF_REFERRAL = "SELF_REFERRAL"
    REFERRAL_CYCLE = "REFERRAL_CYCLE"
    ALREADY_BOUND = "ALREADY_BOUND"
    NOT_A_NEW_USER = "NOT_A_NEW_USER"
    INVALID_INVITE_CODE = "INVALID_INVITE_CODE"
    # ledger and payouts (LG-*)
    PAYOUT_BELOW_MINIMUM = "PAYOUT_BELOW_MINIMUM"
    INSUFFICIENT_BALANCE = "INSUFFICIENT_BALANCE"
    # settlements (LG-3)
    PERIOD_OVERLAP = "PERIOD_OVERLAP"
    PERIOD_GAP = "PERIOD_GAP"
    PERIOD_NOT_ENDED = "PERIOD_NOT_ENDED"  # `to` is not yet CLOSE_GRACE in the past
    # reporting (RP-6): a storefront recording visits faster than the bound
    RATE_LIMITED = "RATE_LIMITED"


class RuleViolation(Exception):
    """A refusal: `code` is stable (clients switch on it), `message` is for people,
    `rule` names the rule id (e.g. "GB-2") where one applies, `field` the input at fault."""

    def __init__(
        self,
        code: ErrorCode,
        message: str,
        *,
        rule: str | None = None,
        field: str | None = None,
    ) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.rule = rule
        self.field = field

    def __repr__(self) -> str:  # pragma: no cover - debugging aid
        return f"RuleViolation({self.code.value}, {self.message!r}, rule={self.rule!r})"


def refuse(code: ErrorCode, message: str, *, rule: str | None = None, field: str | None = None) -> RuleViolation:
    """Build a RuleViolation; `raise refuse(...)` reads like the rule text."""
    return RuleViolation(code, message, rule=rule, field=field)
