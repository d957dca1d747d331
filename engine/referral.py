"""Referral binding (RF-1) and the order snapshot (RF-2).

The referral graph is read through a `ReferralView` the shell supplies (current referrers only,
lapsed EXPIRING bindings already removed). The engine never writes it: `decide_binding` returns
the binding to store, or None to keep the current one.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import Enum
from typing import Protocol

from engine.distribution import BindingMode, DistributionSettings, DistributorStatus
from engine.errors import ErrorCode, refuse


class BindingSource(str, Enum):
    """RF-1/RF-3: how a binding was made. INVITE_CODE is RF-3's `CODE` (a storefront bound the code; the
    stored name predates v2), GROUP_INVITE a group share link (RF-3 a), ORDER_CODE a code on a reported order
    (RF-3 b), ADMIN an admin with a reason (RF-3 c). LINK is kept for rows written before v2."""

    INVITE_CODE = "INVITE_CODE"
    LINK = "LINK"
    ADMIN = "ADMIN"
    GROUP_INVITE = "GROUP_INVITE"
    ORDER_CODE = "ORDER_CODE"


@dataclass(frozen=True)
class Binding:
    """RF-1: a user's current referrer, when and how bound; `expires_at` only in EXPIRING mode."""

    user_id: str
    referrer_id: str
    bound_at: datetime
    source: BindingSource
    expires_at: datetime | None = None


class ReferralView(Protocol):
    def referrer_of(self, user_id: str) -> str | None:
        """The user's current referrer (lapses applied), read-only."""
        ...


def current_referrer(binding: Binding | None, now: datetime) -> str | None:
    """RF-1 (EXPIRING): a binding lapses at `expires_at` (half-open: live in [bound_at, expires_at));
    a lapsed binding names nobody, so an order paid after the lapse earns the old referrer nothing."""
    if binding is None or (binding.expires_at is not None and now >= binding.expires_at):
        return None
    return binding.referrer_id


def upline(view: ReferralView, user_id: str) -> tuple[str, ...]:
    """RF-1: the chain of referrers above `user_id` (nearest first). Loop-guarded: stops at the first
    repeated user, so a corrupt graph cannot hang the engine."""
    seen = {user_id}
    out: list[str] = []
    cur = view.referrer_of(user_id)
    while cur is not None and cur not in seen:
        out.append(cur)
        seen.add(cur)
        cur = view.referrer_of(cur)
    return tuple(out)


def in_downline(view: ReferralView, *, ancestor: str, user_id: str) -> bool:
    """RF-1: True when `user_id` is `ancestor` or sits below it at any depth (walking up from `user_id`)."""
    return user_id == ancestor or ancestor in upline(view, user_id)


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
    """RF-1: the binding to store, or None to keep the current one (the same live referrer again —
    neither `bound_at` nor `expires_at` is refreshed).

    Refusals (ER-1), checked in this order:
    1. SELF_REFERRAL — `referrer_id == user_id`.
    2. NOT_A_DISTRIBUTOR — the referrer is not ACTIVE at binding time. A SUSPENDED distributor takes no
       new bindings (not in good standing, CM-2); the code does not reveal the suspension (DS-2).
    3. ALREADY_BOUND — a live binding to someone else exists and the mode is PERMANENT or EXPIRING
       (EXPIRING may be replaced only once lapsed). LAST_TOUCH replaces. An ADMIN binding replaces in
       every mode (an admin corrects a relationship; past orders keep their snapshot, RF-2).
    4. NOT_A_NEW_USER — `bind_new_users_only` and the user has a paid order (ADMIN exempt, as in 3).
    5. REFERRAL_CYCLE — the user is the referrer's referrer at any depth (the new edge would close a loop).
    EXPIRING bindings get `expires_at = now + binding_days`.
    """
    if referrer_id == user_id:
        raise refuse(ErrorCode.SELF_REFERRAL, "a user cannot refer themselves", field="inviteCode", rule="RF-1")
    if referrer_status != DistributorStatus.ACTIVE:
        raise refuse(
            ErrorCode.NOT_A_DISTRIBUTOR, "the referrer is not an active distributor", field="inviteCode", rule="RF-1"
        )
    admin = source == BindingSource.ADMIN
    live = current_referrer(current, now)
    if live == referrer_id:
        return None
    if live is not None and settings.binding != BindingMode.LAST_TOUCH and not admin:
        raise refuse(ErrorCode.ALREADY_BOUND, "the user already has a referrer", field="inviteCode", rule="RF-1")
    if settings.bind_new_users_only and user_has_paid_order and not admin:
        raise refuse(
            ErrorCode.NOT_A_NEW_USER, "only users without a paid order can be bound", field="inviteCode", rule="RF-1"
        )
    if in_downline(view, ancestor=user_id, user_id=referrer_id):
        raise refuse(
            ErrorCode.REFERRAL_CYCLE, "the referrer is in the user's own downline", field="inviteCode", rule="RF-1"
        )
    expires = None
    if settings.binding == BindingMode.EXPIRING:
        expires = now + timedelta(days=settings.binding_days or 0)
    return Binding(user_id=user_id, referrer_id=referrer_id, bound_at=now, source=source, expires_at=expires)


def snapshot_referrers(view: ReferralView, buyer_id: str) -> tuple[str | None, str | None]:
    """RF-2: level 1 (the buyer's referrer) and level 2 (level 1's referrer) at the moment of payment.
    The shell stores them on the order; later rebinding never changes them. The view must already have
    applied EXPIRING lapses. Defensive: a referrer equal to the buyer (impossible under RF-1) is dropped."""
    l1 = view.referrer_of(buyer_id)
    if l1 is None or l1 == buyer_id:
        return None, None
    l2 = view.referrer_of(l1)
    return l1, (l2 if l2 not in (buyer_id, l1) else None)


# ---------------------------------------------------------------- RF-3 attribution
@dataclass(frozen=True)
class OrderCodeDecision:
    """RF-3 (b) for a code on a reported order: `binding` to store (the buyer had no live referrer), or
    `override` — the distributor this order's RF-2 snapshot takes as level 1 instead of the live referrer
    (the binding is unchanged) — or neither (the code names the live referrer already, or the shop does not
    let codes override)."""

    binding: Binding | None = None
    override: str | None = None


def decide_order_code(
    settings: DistributionSettings,
    *,
    buyer_id: str,
    referrer_id: str,
    now: datetime,
    current: Binding | None,
    view: ReferralView,
    referrer_status: DistributorStatus,
    user_has_paid_order: bool,
) -> OrderCodeDecision:
    """RF-3 (b), every branch under RF-1:
    - no live referrer: the code binds (`decide_binding`, source ORDER_CODE, all its refusals);
    - the live referrer is the code's distributor: nothing to do;
    - another live referrer and `order_code_overrides` off: nothing (the binding wins, as in v1);
    - another live referrer and `order_code_overrides` on: this order's snapshot uses the code's distributor,
      refused like a binding would be for SELF_REFERRAL, NOT_A_DISTRIBUTOR and REFERRAL_CYCLE (the order would
      otherwise pay a chain RF-1 forbids); `bind_new_users_only` does not apply — nothing is bound."""
    live = current_referrer(current, now)
    if live is None:
        return OrderCodeDecision(
            binding=decide_binding(
                settings,
                user_id=buyer_id,
                referrer_id=referrer_id,
                now=now,
                current=current,
                view=view,
                referrer_status=referrer_status,
                user_has_paid_order=user_has_paid_order,
                source=BindingSource.ORDER_CODE,
            )
        )
    if live == referrer_id or not settings.order_code_overrides:
        return OrderCodeDecision()
    if referrer_id == buyer_id:
        raise refuse(ErrorCode.SELF_REFERRAL, "a user cannot refer themselves", field="inviteCode", rule="RF-3")
    if referrer_status != DistributorStatus.ACTIVE:
        raise refuse(
            ErrorCode.NOT_A_DISTRIBUTOR, "the code's distributor is not active", field="inviteCode", rule="RF-3"
        )
    if in_downline(view, ancestor=buyer_id, user_id=referrer_id):
        raise refuse(
            ErrorCode.REFERRAL_CYCLE,
            "the code's distributor is in the buyer's own downline",
            field="inviteCode",
            rule="RF-3",
        )
    return OrderCodeDecision(override=referrer_id)


def decide_admin_binding(
    settings: DistributionSettings,
    *,
    user_id: str,
    referrer_id: str,
    reason: str,
    now: datetime,
    current: Binding | None,
    view: ReferralView,
    referrer_status: DistributorStatus,
) -> Binding | None:
    """RF-3 (c): an admin (re)binds a user, with a reason (INVALID_INPUT without one). It replaces a live
    binding in every mode and ignores `bind_new_users_only` (an admin corrects a relationship; past orders
    keep their snapshot, RF-2), but obeys the rest of RF-1: not to oneself, only to an active distributor,
    no cycle. None: the user is already bound to that referrer."""
    if not reason.strip():
        raise refuse(ErrorCode.INVALID_INPUT, "a reason is required", field="reason", rule="RF-3")
    return decide_binding(
        settings,
        user_id=user_id,
        referrer_id=referrer_id,
        now=now,
        current=current,
        view=view,
        referrer_status=referrer_status,
        user_has_paid_order=False,
        source=BindingSource.ADMIN,
    )
