"""service/availability.py: which errors mean "the database is away" (the worker's backoff, not a crash)."""

from __future__ import annotations

import asyncpg

from service.availability import Backoff, is_database_unavailable


def test_an_ordinary_error_is_not_the_database_being_away():
    assert is_database_unavailable(None) is False
    assert is_database_unavailable(ValueError("bad input")) is False
    try:
        try:
            raise KeyError("k")
        except KeyError as inner:
            raise RuntimeError("outer") from inner
    except RuntimeError as chained:
        assert is_database_unavailable(chained) is False


def test_a_lost_connection_anywhere_in_the_cause_chain_is_the_database_being_away():
    try:
        try:
            raise asyncpg.exceptions.ConnectionFailureError("gone")
        except Exception as inner:
            raise RuntimeError("wrapped") from inner
    except RuntimeError as chained:
        assert is_database_unavailable(chained) is True


class _Log:
    def __init__(self):
        self.lines: list[tuple[str, str]] = []

    def warning(self, fmt, *args):
        self.lines.append(("warning", fmt % args))

    def exception(self, fmt, *args):
        self.lines.append(("exception", fmt % args))


def test_backoff_logs_an_ordinary_failure_with_its_traceback_and_doubles_the_pause():
    """A failed pass of a background loop (service/availability.py `Backoff`) is logged once, with its traceback
    (`log.exception`), and the pause doubles from the interval up to the maximum; the database being away is
    one warning line without a traceback; the first pass that goes through says so and resets the pause."""
    from service.metrics import WORKER_PASSES

    def passes(outcome):  # the loop's counter on /metrics (issue 11 ops): one per pass, by outcome
        return WORKER_PASSES.labels("worker", outcome)._value.get()

    before = {o: passes(o) for o in ("ok", "unavailable", "error")}
    log = _Log()
    b = Backoff("worker", log, interval=1.0, max_delay=5.0)
    delays = []
    for _ in range(4):
        try:
            raise ValueError("bug")
        except ValueError as e:
            delays.append(b.failed(e))
    assert delays == [1.0, 2.0, 4.0, 5.0]
    assert log.lines == [("exception", f"worker failed; retry {n} in {d:.0f} s") for n, d in zip(range(1, 5), delays)]
    log.lines.clear()
    assert b.failed(asyncpg.exceptions.ConnectionFailureError("gone")) == 5.0
    assert log.lines == [("warning", "worker: database unavailable (ConnectionFailureError: gone); retry 5 in 5 s")]
    log.lines.clear()
    assert b.succeeded() == 1.0
    assert log.lines == [("warning", "worker: working again after 5 failed tries")]
    assert b.succeeded() == 1.0 and len(log.lines) == 1  # once only
    assert {o: passes(o) - before[o] for o in before} == {"ok": 2, "unavailable": 1, "error": 4}
