"""RP-6 funnel of shared links, and the bound on how fast a storefront may record visits.

The funnel per distributor (or per campaign) and period is visits → distinct visitors → bindings → first
paid orders → repeat buyers. Visits and visitors are counts of recorded visits; bindings are the users
bound in the period (through the distributor, or through a group link of the campaign); the last two come
from each candidate buyer's paid orders (`first_buyers`).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Mapping, Sequence


@dataclass(frozen=True)
class PaidOrder:
    """One paid order of a buyer: when, whether it is attributed to the funnel's subject (the distributor is
    the buyer's referrer in its RF-2 snapshot, or it is an order of the campaign), whether refunded in full."""

    paid_at: datetime
    attributed: bool
    refunded_in_full: bool = False


@dataclass(frozen=True)
class Funnel:
    visits: int
    visitors: int
    bindings: int
    first_orders: int
    repeat_buyers: int


def first_buyers(
    orders_by_buyer: Mapping[str, Sequence[PaidOrder]], period_from: datetime, period_to: datetime
) -> tuple[int, int]:
    """RP-6 `(first paid orders, repeat buyers)`: a buyer counts once as a first paid order when their first
    paid order in the shop (earliest `paid_at`, fully refunded orders do not count as paid, RP-3) falls in
    [from, to) and is attributed to the subject; such a buyer is a repeat buyer when they paid at least one
    more order (any) before `to`."""
    first = repeat = 0
    for orders in orders_by_buyer.values():
        paid = sorted((o for o in orders if not o.refunded_in_full and o.paid_at < period_to), key=lambda o: o.paid_at)
        if not paid or not paid[0].attributed or paid[0].paid_at < period_from:
            continue
        first += 1
        repeat += len(paid) >= 2
    return first, repeat


def funnel(
    *,
    visits: int,
    visitors: int,
    bindings: int,
    orders_by_buyer: Mapping[str, Sequence[PaidOrder]],
    period_from: datetime,
    period_to: datetime,
) -> Funnel:
    first, repeat = first_buyers(orders_by_buyer, period_from, period_to)
    return Funnel(visits=visits, visitors=visitors, bindings=bindings, first_orders=first, repeat_buyers=repeat)


# ---------------------------------------------------------------- recording visits: a token bucket
@dataclass(frozen=True)
class Bucket:
    """Tokens in thousandths (no floats), as of `at`."""

    milli: int
    at: datetime


def take(bucket: Bucket | None, now: datetime, *, per_minute: int, burst: int) -> tuple[bool, Bucket]:
    """RP-6 hardening: one visit takes a token; tokens refill at `per_minute` per minute up to `burst`. Returns
    (allowed, new bucket). A refused take changes nothing but the refill. Over any window of T seconds at most
    `burst + per_minute × T / 60` visits are allowed (rounded down)."""
    full = burst * 1000
    if bucket is None:
        milli = full
    else:
        elapsed_ms = (now - bucket.at) // timedelta(milliseconds=1) if now > bucket.at else 0
        milli = min(full, bucket.milli + elapsed_ms * per_minute // 60)
    if milli >= 1000:
        return True, Bucket(milli - 1000, max(now, bucket.at) if bucket else now)
    return False, Bucket(milli, max(now, bucket.at) if bucket else now)
