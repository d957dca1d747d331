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
