"""Lifecycle segments (RP-3)."""

from __future__ import annotations

from datetime import datetime, timedelta
from enum import Enum
from typing import Sequence

DORMANT_AFTER = timedelta(days=90)


class Segment(str, Enum):
    NEW = "NEW"
    FIRST_ORDER = "FIRST_ORDER"
    REPEAT = "REPEAT"
    LOYAL = "LOYAL"
    DORMANT = "DORMANT"


def segment_of(paid_order_times: Sequence[datetime], now: datetime) -> Segment:
    """RP-3: callers pass the payment times of orders that count as paid (not refunded in full).

    NEW: none. DORMANT (takes precedence): paid orders, none in the last 90 days — the window is
    `(now − 90 days, now]`, so an order paid exactly 90 days ago no longer keeps a user active (the same
    rule as the shell's SQL `last_paid <= now − 90 days`). Otherwise FIRST_ORDER (1), REPEAT (2–3),
    LOYAL (≥ 4 paid orders, counted over the whole history)."""
    if not paid_order_times:
        return Segment.NEW
    if max(paid_order_times) <= now - DORMANT_AFTER:
        return Segment.DORMANT
    n = len(paid_order_times)
    return Segment.LOYAL if n >= 4 else Segment.REPEAT if n >= 2 else Segment.FIRST_ORDER
