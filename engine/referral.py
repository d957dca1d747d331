"""Referral binding (RF-1) and the order snapshot (RF-2)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import Enum
from typing import Protocol

from engine.distribution import BindingMode, DistributionSettings, DistributorStatus
from engine.errors import ErrorCode, refuse


class BindingSource(str, Enum):
    INVITE_CODE = "INVITE_CODE"
    LINK = "LINK"
    ADMIN = "ADMIN"


@dataclass(frozen=True)
class Binding:
    user_id: str
    referrer_id: str
    bound_at: datetime
    source: BindingSource
    expires_at: datetime | None = None


class ReferralView(Protocol):
    def referrer_of(self, user_id: str) -> str | None: ...


def current_referrer(binding: Binding | None, now: datetime) -> str | None:
    """RF-1 with EXPIRING: a lapsed binding names nobody."""
    if binding is None or (binding.expires_at is not None and now >= binding.expires_at):
        return None
    return binding.referrer_id


def in_downline(view: ReferralView, *, ancestor: str, user_id: str) -> bool:
    """True when `ancestor` is reached walking up from `user_id` (any depth; loop-guarded)."""
    seen: set[str] = set()
    cur: str | None = user_id
    while cur is not None and cur not in seen:
        if cur == ancestor:
            return True
        seen.add(cur)
        cur = view.referrer_of(cur)
    return False


def decide_binding(
    settings: DistributionSettings,
    *,
    user_id: str,
    referrer_id: str,
    now: datetime,
    current: Binding | None,
    view: ReferralView,
    referrer_status: DistributorStatus,
    user_has_paid_order: bool,
    source: BindingSource,
) -> Binding | None:
    """RF-1: the new binding, or None to keep the current one (same referrer again).

    Refusals, in order: SELF_REFERRAL, NOT_A_DISTRIBUTOR (the referrer must be ACTIVE; a suspended
    distributor takes no new bindings), ALREADY_BOUND (PERMANENT, or EXPIRING not yet lapsed),
    NOT_A_NEW_USER (bind_new_users_only), REFERRAL_CYCLE (the referrer is in the user's downline).
    """
    if referrer_id == user_id:
        raise refuse(ErrorCode.SELF_REFERRAL, "a user cannot refer themselves", field="inviteCode", rule="RF-1")
    if referrer_status != DistributorStatus.ACTIVE:
        raise refuse(ErrorCode.NOT_A_DISTRIBUTOR, "the referrer is not an active distributor", field="inviteCode",
                     rule="RF-1")
    live = current_referrer(current, now)
    if live == referrer_id:
        return None
    if live is not None and settings.binding != BindingMode.LAST_TOUCH:
        raise refuse(ErrorCode.ALREADY_BOUND, "the user already has a referrer", field="inviteCode", rule="RF-1")
    if settings.bind_new_users_only and user_has_paid_order:
        raise refuse(ErrorCode.NOT_A_NEW_USER, "only users without a paid order can be bound", field="inviteCode",
                     rule="RF-1")
    if in_downline(view, ancestor=user_id, user_id=referrer_id):
        raise refuse(ErrorCode.REFERRAL_CYCLE, "the referrer is in the user's own downline", field="inviteCode",
                     rule="RF-1")
    expires = now + timedelta(days=settings.binding_days) if settings.binding == BindingMode.EXPIRING else None
    return Binding(user_id=user_id, referrer_id=referrer_id, bound_at=now, source=source, expires_at=expires)


def snapshot_referrers(view: ReferralView, buyer_id: str) -> tuple[str | None, str | None]:
    """RF-2: level 1 and level 2 at the moment of payment (the view has applied lapses)."""
    l1 = view.referrer_of(buyer_id)
    l2 = view.referrer_of(l1) if l1 else None
    return l1, (l2 if l2 != buyer_id else None)
