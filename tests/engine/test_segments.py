"""RP-3 lifecycle segments."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest

from engine.segments import DORMANT_AFTER, Segment, segment_of

NOW = datetime(2025, 9, 1, 12, tzinfo=timezone.utc)
D = timedelta(days=1)


@pytest.mark.parametrize(
    "n,expected",
    [
        (0, Segment.NEW),
        (1, Segment.FIRST_ORDER),
        (2, Segment.REPEAT),
        (3, Segment.REPEAT),
        (4, Segment.LOYAL),
        (9, Segment.LOYAL),
    ],
)
def test_RP3_counts(n, expected):
    assert segment_of([NOW - i * D for i in range(n)], NOW) == expected


def test_RP3_dormant_90_day_boundary():
    assert DORMANT_AFTER == 90 * D
    just_inside = NOW - 90 * D + timedelta(microseconds=1)
    assert segment_of([just_inside], NOW) == Segment.FIRST_ORDER
    assert segment_of([NOW - 90 * D], NOW) == Segment.DORMANT  # exactly 90 days ago is outside the window
    assert segment_of([NOW - 200 * D], NOW) == Segment.DORMANT


def test_RP3_dormant_takes_precedence_over_loyal_and_one_recent_order_wakes_up():
    old = [NOW - (100 + i) * D for i in range(5)]
    assert segment_of(old, NOW) == Segment.DORMANT
    assert segment_of(old + [NOW - 89 * D], NOW) == Segment.LOYAL


def test_RP3_order_of_times_does_not_matter():
    times = [NOW - 95 * D, NOW - 1 * D, NOW - 120 * D]
    assert segment_of(times, NOW) == segment_of(list(reversed(times)), NOW) == Segment.REPEAT
