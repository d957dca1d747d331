"""OR-5: the one clock every rule reads. Tests (and the test-only API hook) move it."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone


class Clock:
    def __init__(self) -> None:
        self._offset = timedelta(0)
        self._frozen: datetime | None = None

    def now(self) -> datetime:
        if self._frozen is not None:
            return self._frozen
        return datetime.now(timezone.utc) + self._offset

    def advance(self, delta: timedelta) -> datetime:
        if self._frozen is not None:
            self._frozen += delta
        else:
            self._offset += delta
        return self.now()

    def set(self, at: datetime) -> None:
        """Freeze the clock at `at` (tests)."""
        assert at.tzinfo is not None, "the clock speaks UTC-aware datetimes"
        self._frozen = at
