"""Fraud review (FR-1..FR-4): fingerprints as keyed hashes, the four rule kinds, holds and their resolution.

- FR-1: a payment may carry the payer's fingerprints; only `fingerprint_hash` of each (HMAC-SHA256 under the
  shop's key, `shop_key`) is ever kept. Values are normalised first, so "  1.2.3.4" and "1.2.3.4" match.
- FR-2: `screen_order` (rules a, b, d, for each beneficiary of a paid order) and `screen_group` (rule c) take
  what the shell loaded — counts and hash sets, no rows — and answer the flags with their evidence.
- FR-3: a flag holds a line (`hold_line`): nothing moves, no amount changes; `clear_line` lets its life cycle
  resume (available at once when `available_at` has passed); `void_held_line` reverses what still stands by a
  new posting from the bucket the line sits in (CM-5 style). `dissolve_group` fails a flagged group before it
  forms with GB-6's refunds.

Pure: the shell hands in the key bytes and every count; no clock, no IO.
"""

from __future__ import annotations

import hashlib
import hmac
from dataclasses import dataclass, field, replace
from datetime import datetime
from enum import Enum
from typing import Mapping, Sequence

from engine import groupbuy as gb
from engine.commission import STATE_BUCKET, CommissionLine, CommissionState, Transition, make_available
from engine.errors import ErrorCode, refuse
from engine.ledger import EntryKind, Posting


class FingerprintKind(str, Enum):
    PAYER = "PAYER"  # payment account reference
    DEVICE = "DEVICE"
    IP = "IP"
    ADDRESS = "ADDRESS"  # shipping address


class FraudRule(str, Enum):
    SELF_DEALING = "SELF_DEALING"  # FR-2 (a)
    VELOCITY = "VELOCITY"  # FR-2 (b)
    SCALPER_GROUP = "SCALPER_GROUP"  # FR-2 (c)
    REFUND_RATE = "REFUND_RATE"  # FR-2 (d)


RULE_ID = {
    FraudRule.SELF_DEALING: "FR-2a",
    FraudRule.VELOCITY: "FR-2b",
    FraudRule.SCALPER_GROUP: "FR-2c",
    FraudRule.REFUND_RATE: "FR-2d",
}
# FR-2 (b): velocity counts orders that share a device, an IP or a payer (not an address: a household or an
# office shares one honestly).
VELOCITY_KINDS = frozenset({FingerprintKind.DEVICE, FingerprintKind.IP, FingerprintKind.PAYER})
MAX_FINGERPRINT = 512


# ---------------------------------------------------------------- FR-1 keyed hashes
def shop_key(server_key: bytes, shop_id: str) -> bytes:
    """FR-1: the shop's own key, derived from the server's: hashes of one shop never match another's."""
    return hmac.new(server_key, b"sharecart-fingerprint:" + shop_id.encode(), hashlib.sha256).digest()


def normalise(kind: FingerprintKind, value: str) -> str:
    """Case and outer/inner whitespace do not make a different payer, device or address."""
    return " ".join(value.split()).casefold()


def fingerprint_hash(key: bytes, kind: FingerprintKind, value: str) -> str:
    """FR-1: `HMAC-SHA256(shop key, kind ":" normalised value)`, hex. The raw value is never returned."""
    if not isinstance(value, str) or not value.strip() or len(value) > MAX_FINGERPRINT:
        raise refuse(
            ErrorCode.INVALID_INPUT,
            f"a fingerprint is 1..{MAX_FINGERPRINT} characters",
            field=f"fingerprints.{kind.value.lower()}",
            rule="FR-1",
        )
    msg = f"{kind.value}:{normalise(kind, value)}".encode()
    return hmac.new(key, msg, hashlib.sha256).hexdigest()


@dataclass(frozen=True)
class Fingerprint:
    kind: FingerprintKind
    hash: str


# ---------------------------------------------------------------- FR-2 rules per shop
@dataclass(frozen=True)
class FraudRules:
    """FR-2: each rule on or off per shop, with its thresholds (durations in seconds, rates in bp)."""

    self_dealing: bool = False
    velocity: bool = False
    velocity_max_orders: int = 5  # flag when MORE than this many orders share a fingerprint within the window
    velocity_window: int = 86_400
    scalper_group: bool = False
    scalper_min_seats: int = 2  # k: this many paid seats of one group sharing a fingerprint
    refund_rate: bool = False
    refund_rate_window: int = 30 * 86_400
    refund_rate_max_bp: int = 3000  # X %: flag when the downline's refunded share exceeds it
    refund_rate_min_orders: int = 5  # a rate over fewer orders says nothing

    @property
    def any_on(self) -> bool:
        return self.self_dealing or self.velocity or self.scalper_group or self.refund_rate


def validate_rules(r: FraudRules) -> FraudRules:
    """Thresholds in range (INVALID_INPUT naming the field otherwise)."""
    bounds = {
        "velocity_max_orders": (1, 10_000),
        "velocity_window": (60, 366 * 86_400),
        "scalper_min_seats": (2, 1000),
        "refund_rate_window": (3600, 366 * 86_400),
        "refund_rate_max_bp": (0, 10_000),
        "refund_rate_min_orders": (1, 100_000),
    }
    for name, (lo, hi) in bounds.items():
        v = getattr(r, name)
        if not isinstance(v, int) or isinstance(v, bool) or not lo <= v <= hi:
            raise refuse(ErrorCode.INVALID_INPUT, f"{name} must be in {lo}..{hi}", field=name, rule="FR-2")
    return r


@dataclass(frozen=True)
class Flag:
    """One rule that fired, with its evidence (counts, fingerprint kinds — never a hash or raw value)."""

    rule: FraudRule
    evidence: Mapping[str, object]


@dataclass(frozen=True)
class DownlineRefunds:
    """FR-2 (d): the beneficiary's downline orders paid within the window (where they are level 1 or 2)."""

    orders: int = 0
    paid: int = 0
    refunded: int = 0


@dataclass(frozen=True)
class OrderSignals:
    """What the shell loaded for one paid order and its beneficiaries.

    - `shared_with`: per beneficiary, the fingerprint kinds of this payment seen on that beneficiary's own
      paid orders (FR-2 a);
    - `velocity`: per beneficiary, the number of OTHER orders paid within the window that earn them and share
      a device, IP or payer fingerprint with this payment (FR-2 b);
    - `downline`: per beneficiary, their downline's paid and refunded amounts within the window (FR-2 d)."""

    buyer_id: str
    fingerprints: frozenset[Fingerprint] = frozenset()
    shared_with: Mapping[str, frozenset[FingerprintKind]] = field(default_factory=dict)
    velocity: Mapping[str, int] = field(default_factory=dict)
    downline: Mapping[str, DownlineRefunds] = field(default_factory=dict)


def screen_order(rules: FraudRules, signals: OrderSignals, beneficiaries: Sequence[str]) -> dict[str, tuple[Flag, ...]]:
    """FR-2 (a), (b), (d) for each beneficiary of a paid order: the flags that fire, beneficiaries with none
    omitted. A buyer who is their own beneficiary (self-purchase, CM-2) is not self-dealing: the programme
    allows it. Amounts play no part: FR-3's "flags change no amount" holds by construction."""
    out: dict[str, tuple[Flag, ...]] = {}
    has_velocity_fp = any(f.kind in VELOCITY_KINDS for f in signals.fingerprints)
    for ben in dict.fromkeys(beneficiaries):
        flags: list[Flag] = []
        shared = signals.shared_with.get(ben, frozenset())
        if rules.self_dealing and ben != signals.buyer_id and shared:
            flags.append(Flag(FraudRule.SELF_DEALING, {"shared": sorted(k.value for k in shared)}))
        if rules.velocity and has_velocity_fp:
            n = signals.velocity.get(ben, 0) + 1  # this order counts
            if n > rules.velocity_max_orders:
                flags.append(
                    Flag(
                        FraudRule.VELOCITY,
                        {"orders": n, "max_orders": rules.velocity_max_orders, "window_seconds": rules.velocity_window},
                    )
                )
        d = signals.downline.get(ben)
        if (
            rules.refund_rate
            and d is not None
            and d.orders >= rules.refund_rate_min_orders
            and d.paid > 0
            and d.refunded * 10_000 > d.paid * rules.refund_rate_max_bp
        ):
            flags.append(
                Flag(
                    FraudRule.REFUND_RATE,
                    {
                        "orders": d.orders,
                        "paid": d.paid,
                        "refunded": d.refunded,
                        "rate_bp": d.refunded * 10_000 // d.paid,
                        "max_bp": rules.refund_rate_max_bp,
                    },
                )
            )
        if flags:
            out[ben] = tuple(flags)
    return out


def screen_group(rules: FraudRules, seats: Mapping[str, frozenset[Fingerprint]]) -> Flag | None:
    """FR-2 (c): `seats` maps each paid seat's order to its payment's fingerprints; the group is a scalper
    group when k or more seats share one fingerprint (any kind). Evidence: the largest such set's size and
    kind, and the orders in it."""
    if not rules.scalper_group:
        return None
    by_fp: dict[Fingerprint, list[str]] = {}
    for order_id, fps in seats.items():
        for fp in fps:
            by_fp.setdefault(fp, []).append(order_id)
    best = max(by_fp.items(), key=lambda kv: (len(kv[1]), kv[0].kind.value, kv[0].hash), default=None)
    if best is None or len(best[1]) < rules.scalper_min_seats:
        return None
    return Flag(
        FraudRule.SCALPER_GROUP,
        {
            "seats": len(best[1]),
            "kind": best[0].kind.value,
            "orders": sorted(best[1]),
            "min_seats": rules.scalper_min_seats,
        },
    )


# ---------------------------------------------------------------- FR-3 holds
def hold_line(line: CommissionLine) -> CommissionLine:
    """FR-3: the line is held; its state, standing and buckets are untouched (no postings, no amount)."""
    if line.state == CommissionState.AVAILABLE:
        raise refuse(ErrorCode.INVALID_STATE, "an available line was already released", rule="FR-3")
    return line if line.held or line.state == CommissionState.VOID else replace(line, held=True)


def clear_line(line: CommissionLine, now: datetime) -> Transition:
    """FR-3: an admin cleared the flag — the life cycle resumes: a FROZEN line whose `available_at` has
    passed becomes AVAILABLE at once (`make_available`); any other line just stops being held."""
    if not line.held:
        return line, ()
    return make_available(replace(line, held=False), now)


def void_held_line(line: CommissionLine) -> Transition:
    """FR-3: an admin voided the flagged line — what still stands is reversed by a new posting from the
    bucket the line sits in (PENDING or FROZEN; COMMISSION_VOIDED), standing 0, state VOID. A VOID line is
    unchanged; a line that is not held cannot be voided this way (INVALID_STATE)."""
    if line.state == CommissionState.VOID:
        return line, ()
    if not line.held or line.state == CommissionState.AVAILABLE:
        raise refuse(ErrorCode.INVALID_STATE, "only a held line can be voided in review", rule="FR-3")
    postings = (
        (Posting(STATE_BUCKET[line.state], -line.standing, EntryKind.COMMISSION_VOIDED),) if line.standing else ()
    )
    return replace(line, state=CommissionState.VOID, standing=0, held=False), postings


def dissolve_group(group: gb.Group, *, now: datetime) -> gb.Decision:
    """FR-3: an admin dissolves a flagged group before it forms — it fails now, with GB-6's refunds and
    cancellations. A formed, failed or cancelled group is refused (INVALID_STATE)."""
    if group.state not in (gb.GroupState.OPEN, gb.GroupState.PENDING):
        raise refuse(
            ErrorCode.INVALID_STATE,
            f"the group is {group.state.value}: only a group that has not formed can be dissolved",
            field="groupId",
            rule="FR-3",
        )
    return gb._fail(group, at=now)
