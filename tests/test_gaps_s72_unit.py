"""Seed-72 service survivors that need no database (docs/testing.md, "Session 2026-12-02 e")."""

from __future__ import annotations

import hashlib

from service.tx import fraud


def test_FR1_fingerprints_are_keyed_by_the_first_secret_key_so_every_process_hashes_alike(monkeypatch):
    """FR-1: with SHARECART_SECRET_KEY set (a rotation list, first key first), the fingerprint key is derived from
    its first key — two processes (API and worker) then hash one device alike; without it each process draws a
    key of its own. Kills service/tx/fraud.py:40 (`settings().secret_key or ''` → `and ''`)."""
    monkeypatch.setattr(fraud, "_SERVER_KEY", [])
    monkeypatch.setenv("SHARECART_SECRET_KEY", " k-one , k-old")
    assert fraud.server_key() == hashlib.sha256(b"sharecart-fingerprint:k-one").digest()
    first = fraud.hash_fingerprints("shop-a", {"DEVICE": "phone"})
    monkeypatch.setattr(fraud, "_SERVER_KEY", [])  # another process, the same secret
    assert fraud.hash_fingerprints("shop-a", {"DEVICE": "phone"}) == first
    monkeypatch.setattr(fraud, "_SERVER_KEY", [])
    monkeypatch.delenv("SHARECART_SECRET_KEY")
    assert fraud.server_key() != hashlib.sha256(b"sharecart-fingerprint:").digest()  # a random one, not ''


def test_RP1_a_report_is_cut_into_at_most_366_days_or_120_months():
    """RP-1: a daily earnings report spans at most 366 days (a leap year) and a monthly one 120 months; one more
    is INVALID_INPUT on periodTo. Kills service/reads/reports.py:299 (`MAX_PERIODS` 366 → 367, 120 → 121)."""
    from datetime import date, timedelta

    import pytest

    from engine.errors import ErrorCode, RuleViolation
    from service.reads.reports import Granularity, local_periods

    start = date(2024, 1, 1)
    assert len(local_periods(Granularity.DAY, start, start + timedelta(days=366))) == 366
    assert len(local_periods(Granularity.MONTH, start, date(2034, 1, 1))) == 120
    for g, end in ((Granularity.DAY, start + timedelta(days=367)), (Granularity.MONTH, date(2034, 2, 1))):
        with pytest.raises(RuleViolation) as e:
            local_periods(g, start, end)
        assert (e.value.code, e.value.field, e.value.rule) == (ErrorCode.INVALID_INPUT, "periodTo", "RP-1")
