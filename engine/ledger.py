"""Ledger postings and payout arithmetic (LG-1, LG-2).

A posting is a signed delta on one balance bucket; a move between buckets is two postings of
the same kind. Balances are the sums of postings, always (LG-1): the shell stores every posting as an
immutable entry with its own id and never edits one; corrections are new postings.

Buckets: PENDING, FROZEN, AVAILABLE (CM-6), IN_PAYOUT, PAID (what the distributor received) and FEES
(payout fees charged, LG-2). A payout of A ends as PAID + FEES = A; a failed one (LG-4) as PAID + FEES = 0,
by two more entries that return A to AVAILABLE.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from enum import Enum
from typing import Iterable

from engine.distribution import DistributionSettings, DistributorStatus, may_request_payout
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
    PAYOUT_FAILED = "PAYOUT_FAILED"  # LG-4: the transfer bounced, what was paid comes back to available
    PAYOUT_FEE_REVERSED = "PAYOUT_FEE_REVERSED"  # LG-4: the fee of a failed payout, back to available


@dataclass(frozen=True)
class Posting:
    bucket: Bucket
    amount: int
    kind: EntryKind


def move(amount: int, src: Bucket, dst: Bucket, kind: EntryKind) -> tuple[Posting, Posting]:
    """LG-1: a move between buckets is two postings of the same kind, summing to zero."""
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
        """LG-1: balances are the sums of entries."""
        return cls().apply(postings)

    @property
    def total(self) -> int:
        """Everything ever credited less reversals: pending + frozen + available + in payout + paid + fees."""
        return self.pending + self.frozen + self.available + self.in_payout + self.paid + self.fees


def _positive(amount: object, field: str = "amount") -> int:
    if not isinstance(amount, int) or isinstance(amount, bool) or amount <= 0:
        raise refuse(ErrorCode.INVALID_INPUT, "amount must be a positive integer of minor units", field=field)
    return amount


def bonus_postings(bonuses: Iterable[tuple[int, int]]) -> tuple[Posting, ...]:
    """LV-4: each upgrade bonus `(grade, amount)` is credited straight to AVAILABLE (UPGRADE_BONUS),
    one posting per level; zero amounts post nothing."""
    return tuple(Posting(Bucket.AVAILABLE, amount, EntryKind.UPGRADE_BONUS) for _, amount in bonuses if amount)


def payout_fee(settings: DistributionSettings, amount: int) -> int:
    """LG-2: `floor(A × payout_fee_bp / 10000)`, quoted at request time (`quote_payout`) and kept with the
    payout, so a settings change does not alter a payout already asked for."""
    return apply_bp(amount, settings.payout_fee_bp)


@dataclass(frozen=True)
class PayoutQuote:
    """LG-2 at request: the amount, the fee the approval will charge, and the postings of the request."""

    amount: int
    fee: int
    postings: tuple[Posting, ...]


def request_payout(
    settings: DistributionSettings, *, balances: Balances, amount: int, status: DistributorStatus
) -> tuple[Posting, ...]:
    """LG-2: `min_payout ≤ A ≤ available`; A moves available → in payout (PAYOUT_REQUESTED).

    Refusals in order: DISTRIBUTOR_SUSPENDED (DS-1), INVALID_INPUT (A not a positive int),
    PAYOUT_BELOW_MINIMUM, INSUFFICIENT_BALANCE. A negative available (clawback, CM-6) blocks every request.
    `balances` must be the current (locked) balances: two requests decided on the same balances would
    together exceed it — the shell serialises them (LG-2)."""
    if not may_request_payout(status):
        raise refuse(ErrorCode.DISTRIBUTOR_SUSPENDED, "a suspended distributor cannot request payouts", rule="DS-1")
    _positive(amount)
    if amount < settings.min_payout:
        raise refuse(
            ErrorCode.PAYOUT_BELOW_MINIMUM, f"the minimum payout is {settings.min_payout}", field="amount", rule="LG-2"
        )
    if amount > balances.available:
        raise refuse(
            ErrorCode.INSUFFICIENT_BALANCE, f"available balance is {balances.available}", field="amount", rule="LG-2"
        )
    return move(amount, Bucket.AVAILABLE, Bucket.IN_PAYOUT, EntryKind.PAYOUT_REQUESTED)


def quote_payout(
    settings: DistributionSettings, *, balances: Balances, amount: int, status: DistributorStatus
) -> PayoutQuote:
    """LG-2: `request_payout` and the fee quoted with it (`payout_fee` at the rate of the moment of request),
    which the shell records with the payout and passes back to `approve_payout`."""
    postings = request_payout(settings, balances=balances, amount=amount, status=status)
    return PayoutQuote(amount=amount, fee=payout_fee(settings, amount), postings=postings)


def approve_payout(amount: int, *, fee: int) -> tuple[Posting, ...]:
    """LG-2: finance approves: in payout −A, paid +(A − fee) (PAYOUT_APPROVED) and fees +fee as an entry of
    its own (PAYOUT_FEE, omitted when the fee is 0). `fee` is the fee recorded at request (`quote_payout`):
    there is no default, so nothing can recompute it from the rate as it stands at approval."""
    _positive(amount)
    if not isinstance(fee, int) or isinstance(fee, bool) or not 0 <= fee <= amount:
        raise refuse(ErrorCode.INVALID_INPUT, "fee must be in 0..amount", field="fee", rule="LG-2")
    if fee == 0:
        return (
            Posting(Bucket.IN_PAYOUT, -amount, EntryKind.PAYOUT_APPROVED),
            Posting(Bucket.PAID, amount, EntryKind.PAYOUT_APPROVED),
        )
    return (
        Posting(Bucket.IN_PAYOUT, -amount, EntryKind.PAYOUT_APPROVED),
        Posting(Bucket.PAID, amount - fee, EntryKind.PAYOUT_APPROVED),
        Posting(Bucket.FEES, fee, EntryKind.PAYOUT_FEE),
    )


def reject_payout(amount: int) -> tuple[Posting, ...]:
    """LG-2: finance rejects: all of A back to available (PAYOUT_REJECTED), no fee."""
    _positive(amount)
    return move(amount, Bucket.IN_PAYOUT, Bucket.AVAILABLE, EntryKind.PAYOUT_REJECTED)


def fail_payout(amount: int, *, fee: int) -> tuple[Posting, ...]:
    """LG-4: an approved payout's transfer failed. By new entries (LG-1), never edits: paid −(A − fee) →
    available (PAYOUT_FAILED) and fees −fee → available (PAYOUT_FEE_REVERSED, omitted when the fee is 0).
    Afterwards PAID and FEES are as before the approval and available has all of A back; `fee` is the fee
    the approval charged (recorded with the payout)."""
    _positive(amount)
    if not isinstance(fee, int) or isinstance(fee, bool) or not 0 <= fee <= amount:
        raise refuse(ErrorCode.INVALID_INPUT, "fee must be in 0..amount", field="fee", rule="LG-4")
    out: tuple[Posting, ...] = (
        move(amount - fee, Bucket.PAID, Bucket.AVAILABLE, EntryKind.PAYOUT_FAILED) if amount > fee else ()
    )
    if fee:
        out += move(fee, Bucket.FEES, Bucket.AVAILABLE, EntryKind.PAYOUT_FEE_REVERSED)
    return out


# ---------------------------------------------------------------- payee method (LG-4)
class PayeeKind(str, Enum):
    BANK_ACCOUNT = "BANK_ACCOUNT"
    ALIPAY = "ALIPAY"
    WECHAT = "WECHAT"
    PAYPAL = "PAYPAL"
    OTHER = "OTHER"


@dataclass(frozen=True)
class PayeeMethod:
    """LG-4: where a payout goes, as recorded: the kind and a masked reference (never the full account)."""

    kind: PayeeKind
    masked_reference: str


MAX_REFERENCE = 128
VISIBLE_TAIL = 4


def mask_reference(reference: str) -> str:
    """LG-4: `****` and the last 4 characters of the reference (spaces and dashes dropped first); a
    reference of 8 characters or fewer keeps only its last 2, one of 4 or fewer none — the stored value never
    holds enough of the account to use it."""
    compact = "".join(ch for ch in reference if ch not in " -")
    if len(compact) <= 4:
        return "****"
    tail = VISIBLE_TAIL if len(compact) > 8 else 2
    return "****" + compact[-tail:]


def payee_method(kind: object, reference: object) -> PayeeMethod:
    """LG-4 at request: validate the chosen method and mask its reference (INVALID_INPUT otherwise)."""
    try:
        k = PayeeKind(kind)
    except ValueError:
        raise refuse(
            ErrorCode.INVALID_INPUT,
            f"payee kind is one of {', '.join(x.value for x in PayeeKind)}",
            field="payeeMethod.kind",
            rule="LG-4",
        ) from None
    if not isinstance(reference, str) or not reference.strip() or len(reference) > MAX_REFERENCE:
        raise refuse(
            ErrorCode.INVALID_INPUT,
            f"the account reference is 1..{MAX_REFERENCE} characters",
            field="payeeMethod.reference",
            rule="LG-4",
        )
    return PayeeMethod(k, mask_reference(reference.strip()))
