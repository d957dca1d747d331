"""service/availability.py: which errors mean "the database is away" (the worker's backoff, not a crash)."""

from __future__ import annotations

import asyncpg

from service.availability import is_database_unavailable


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
