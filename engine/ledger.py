"""Ledger postings and payout arithmetic (LG-1, LG-2).

A posting is a signed delta on one balance bucket; a move between buckets is two postings of
the same kind. Balances are the sums of postings, always.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from enum import Enum
from typing import Iterable

from engine.distribution import DistributionSettings, DistributorStatus
from engine.errors import ErrorCode, refuse
from engine.money import apply_bp


class Bucket(str, Enum):
    PENDING = "PENDING"
    FROZEN = "FROZEN"
    AVAILABLE = "AVAILABLE"
    IN_PAYOUT = "IN_PAYOUT"
    PAID = "PAID"
    FEES = "FEES"  # payout fees charged: kept apart so PAID is what the distributor received


class EntryKind(str, Enum):
    COMMISSION_POSTED = "COMMISSION_POSTED"
    COMMISSION_REVERSED = "COMMISSION_REVERSED"
    COMMISSION_FROZEN = "COMMISSION_FROZEN"
    COMMISSION_RELEASED = "COMMISSION_RELEASED"
    COMMISSION_VOIDED = "COMMISSION_VOIDED"
    UPGRADE_BONUS = "UPGRADE_BONUS"
    PAYOUT_REQUESTED = "PAYOUT_REQUESTED"
    PAYOUT_APPROVED = "PAYOUT_APPROVED"
    PAYOUT_FEE = "PAYOUT_FEE"
    PAYOUT_REJECTED = "PAYOUT_REJECTED"


@dataclass(frozen=True)
class Posting:
    bucket: Bucket
    amount: int
    kind: EntryKind


def move(amount: int, src: Bucket, dst: Bucket, kind: EntryKind) -> tuple[Posting, Posting]:
    return Posting(src, -amount, kind), Posting(dst, amount, kind)


_FIELD = {b: b.value.lower() for b in Bucket}


@dataclass(frozen=True)
class Balances:
    pending: int = 0
    frozen: int = 0
    available: int = 0
    in_payout: int = 0
    paid: int = 0
    fees: int = 0

    def apply(self, postings: Iterable[Posting]) -> "Balances":
        values = {f: getattr(self, f) for f in _FIELD.values()}
        for p in postings:
            values[_FIELD[p.bucket]] += p.amount
        return replace(self, **values)

    @classmethod
    def from_postings(cls, postings: Iterable[Posting]) -> "Balances":
        return cls().apply(postings)


def payout_fee(settings: DistributionSettings, amount: int) -> int:
    """LG-2: floor(A × payout_fee_bp / 10000)."""
    return apply_bp(amount, settings.payout_fee_bp)


def request_payout(settings: DistributionSettings, *, balances: Balances, amount: int,
                   status: DistributorStatus) -> tuple[Posting, ...]:
    """LG-2: min_payout ≤ A ≤ available; A moves to in payout. A negative available (clawback, CM-6)
    blocks every request; a suspended distributor may not request (DS-1)."""
    if status == DistributorStatus.SUSPENDED:
        raise refuse(ErrorCode.DISTRIBUTOR_SUSPENDED, "a suspended distributor cannot request payouts",
                     rule="DS-1")
    if not isinstance(amount, int) or isinstance(amount, bool) or amount <= 0:
        raise refuse(ErrorCode.INVALID_INPUT, "amount must be a positive integer of minor units", field="amount")
    if amount < settings.min_payout:
        raise refuse(ErrorCode.PAYOUT_BELOW_MINIMUM, f"the minimum payout is {settings.min_payout}",
                     field="amount", rule="LG-2")
    if amount > balances.available:
        raise refuse(ErrorCode.INSUFFICIENT_BALANCE, f"available balance is {balances.available}",
                     field="amount", rule="LG-2")
    return move(amount, Bucket.AVAILABLE, Bucket.IN_PAYOUT, EntryKind.PAYOUT_REQUESTED)


def approve_payout(settings: DistributionSettings, amount: int) -> tuple[Posting, ...]:
    """LG-2: in payout −A; paid +(A − fee); the fee is an entry of its own."""
    fee = payout_fee(settings, amount)
    return (
        Posting(Bucket.IN_PAYOUT, -amount, EntryKind.PAYOUT_APPROVED),
        Posting(Bucket.PAID, amount - fee, EntryKind.PAYOUT_APPROVED),
        Posting(Bucket.FEES, fee, EntryKind.PAYOUT_FEE),
    )


def reject_payout(amount: int) -> tuple[Posting, ...]:
    """LG-2: all of A back to available, no fee."""
    return move(amount, Bucket.IN_PAYOUT, Bucket.AVAILABLE, EntryKind.PAYOUT_REJECTED)
