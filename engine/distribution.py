"""Distribution settings (section 3) and distributor status (DS-1, CM-2)."""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum

from engine.errors import ErrorCode, refuse


class DistributionMode(str, Enum):
    EVERYONE = "EVERYONE"
    APPROVAL = "APPROVAL"
    SPEND_THRESHOLD = "SPEND_THRESHOLD"


class BindingMode(str, Enum):
    PERMANENT = "PERMANENT"
    EXPIRING = "EXPIRING"
    LAST_TOUCH = "LAST_TOUCH"


class DistributorStatus(str, Enum):
    NONE = "NONE"
    APPLIED = "APPLIED"
    ACTIVE = "ACTIVE"
    SUSPENDED = "SUSPENDED"


@dataclass(frozen=True)
class DistributionSettings:
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


def validate_settings(s: DistributionSettings) -> None:
    """Section 3: rates in [0, 10000] bp, non-negative amounts, EXPIRING needs binding_days."""
    for name in ("level1_bp", "level2_bp", "max_total_bp", "payout_fee_bp"):
        v = getattr(s, name)
        if not isinstance(v, int) or isinstance(v, bool) or not 0 <= v <= 10_000:
            raise refuse(ErrorCode.INVALID_INPUT, f"{name} must be an integer in 0..10000 bp", field=name)
    for name in ("freeze_days", "min_payout", "spend_threshold"):
        v = getattr(s, name)
        if not isinstance(v, int) or isinstance(v, bool) or v < 0:
            raise refuse(ErrorCode.INVALID_INPUT, f"{name} must be an integer >= 0", field=name)
    if s.binding == BindingMode.EXPIRING and (s.binding_days is None or s.binding_days < 1):
        raise refuse(ErrorCode.INVALID_INPUT, "EXPIRING binding needs binding_days >= 1", field="binding_days")


def admits_automatically(s: DistributionSettings, *, net_paid_spend: int) -> bool:
    """DS-1: EVERYONE admits every user; SPEND_THRESHOLD once net paid spend reaches the threshold;
    APPROVAL never by itself (an admin approves)."""
    if s.mode == DistributionMode.EVERYONE:
        return True
    if s.mode == DistributionMode.SPEND_THRESHOLD:
        return net_paid_spend >= s.spend_threshold
    return False


def in_good_standing(status: DistributorStatus) -> bool:
    """CM-2: only an ACTIVE distributor earns; a suspended one keeps balances but earns nothing."""
    return status == DistributorStatus.ACTIVE
