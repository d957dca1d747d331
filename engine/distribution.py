"""Distribution settings (section 3) and distributor status (DS-1, CM-2).

Pure: the shell loads the shop's settings record (SH-2), asks these functions, and writes.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum

from engine.errors import ErrorCode, refuse


class DistributionMode(str, Enum):
    """DS-1: who is a distributor."""

    EVERYONE = "EVERYONE"
    APPROVAL = "APPROVAL"
    SPEND_THRESHOLD = "SPEND_THRESHOLD"


class BindingMode(str, Enum):
    """RF-1: how a referral binding lives."""

    PERMANENT = "PERMANENT"
    EXPIRING = "EXPIRING"
    LAST_TOUCH = "LAST_TOUCH"


class DistributorStatus(str, Enum):
    """DS-1: NONE (not a distributor), APPLIED (APPROVAL mode, waiting), ACTIVE, SUSPENDED."""

    NONE = "NONE"
    APPLIED = "APPLIED"
    ACTIVE = "ACTIVE"
    SUSPENDED = "SUSPENDED"


@dataclass(frozen=True)
class DistributionSettings:
    """Section 3 settings of one shop. Money in minor units, rates in bp, durations in whole days."""

    mode: DistributionMode = DistributionMode.EVERYONE
    binding: BindingMode = BindingMode.PERMANENT
    binding_days: int | None = None
    bind_new_users_only: bool = False
    level1_bp: int = 1000
    level2_bp: int = 500
    self_purchase: bool = False
    freeze_days: int = 7
    max_total_bp: int = 5000
    min_payout: int = 100
    payout_fee_bp: int = 0
    spend_threshold: int = 0
    order_code_overrides: bool = False  # RF-3 (b): a reported order's code beats the live referrer for its snapshot


def _is_int(v: object) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def validate_settings(s: DistributionSettings) -> None:
    """Section 3 / ER-1: refuse a settings record that the rules cannot run on (INVALID_INPUT with `field`).

    Rates (`level1_bp`, `level2_bp`, `max_total_bp`, `payout_fee_bp`) are ints in 0..10000 bp;
    `freeze_days`, `min_payout`, `spend_threshold` ints ≥ 0; EXPIRING needs `binding_days` ≥ 1
    (other modes ignore it, but a given value must still be ≥ 1).
    """
    if not isinstance(s.mode, DistributionMode):
        raise refuse(ErrorCode.INVALID_INPUT, "unknown distribution mode", field="mode", rule="DS-1")
    if not isinstance(s.binding, BindingMode):
        raise refuse(ErrorCode.INVALID_INPUT, "unknown binding mode", field="binding", rule="RF-1")
    for name in ("level1_bp", "level2_bp", "max_total_bp", "payout_fee_bp"):
        v = getattr(s, name)
        if not _is_int(v) or not 0 <= v <= 10_000:
            raise refuse(ErrorCode.INVALID_INPUT, f"{name} must be an integer in 0..10000 bp", field=name)
    for name in ("freeze_days", "min_payout", "spend_threshold"):
        v = getattr(s, name)
        if not _is_int(v) or v < 0:
            raise refuse(ErrorCode.INVALID_INPUT, f"{name} must be an integer >= 0", field=name)
    if s.binding_days is not None and (not _is_int(s.binding_days) or s.binding_days < 1):
        raise refuse(ErrorCode.INVALID_INPUT, "binding_days must be an integer >= 1", field="binding_days", rule="RF-1")
    if s.binding == BindingMode.EXPIRING and s.binding_days is None:
        raise refuse(
            ErrorCode.INVALID_INPUT, "EXPIRING binding needs binding_days >= 1", field="binding_days", rule="RF-1"
        )


def admits_automatically(s: DistributionSettings, *, net_paid_spend: int) -> bool:
    """DS-1: EVERYONE admits every user (the shell calls this at a user's first bind or order);
    SPEND_THRESHOLD admits the moment net paid spend ≥ `spend_threshold`; APPROVAL never by itself
    (an admin approves an application)."""
    if s.mode == DistributionMode.EVERYONE:
        return True
    if s.mode == DistributionMode.SPEND_THRESHOLD:
        return net_paid_spend >= s.spend_threshold
    return False


def in_good_standing(status: DistributorStatus) -> bool:
    """CM-2: only an ACTIVE distributor earns; SUSPENDED keeps balances but earns nothing (DS-1)."""
    return status == DistributorStatus.ACTIVE


# DS-1 status changes an admin (or the shop's rules) may make. Anything else is INVALID_STATE.
_ALLOWED = {
    (DistributorStatus.NONE, DistributorStatus.APPLIED),  # a user applies (APPROVAL)
    (DistributorStatus.NONE, DistributorStatus.ACTIVE),  # admitted automatically, or admin approval
    (DistributorStatus.APPLIED, DistributorStatus.ACTIVE),  # approved
    (DistributorStatus.APPLIED, DistributorStatus.NONE),  # application rejected / withdrawn
    (DistributorStatus.ACTIVE, DistributorStatus.SUSPENDED),  # suspended, with a reason
    (DistributorStatus.SUSPENDED, DistributorStatus.ACTIVE),  # reinstated, with a reason
}


def decide_status_change(current: DistributorStatus, target: DistributorStatus) -> DistributorStatus:
    """DS-1: the new status, or INVALID_STATE for a change the life cycle does not have
    (e.g. suspending someone who is not ACTIVE, or an active distributor going back to NONE).
    Setting the status it already has is allowed and changes nothing (GB-10 retries)."""
    if current == target or (current, target) in _ALLOWED:
        return target
    raise refuse(
        ErrorCode.INVALID_STATE,
        f"a distributor cannot go from {current.value} to {target.value}",
        field="status",
        rule="DS-1",
    )


def may_request_payout(status: DistributorStatus) -> bool:
    """DS-1/LG-2: everyone with a balance may ask for a payout except a SUSPENDED distributor
    (a group leader's reward can sit in the ledger of a user who is not a distributor)."""
    return status != DistributorStatus.SUSPENDED
