"""Ids are minted by the shell so the engine never invents them."""

from __future__ import annotations

import os
import secrets


def new_id(prefix: str = "") -> str:
    # 128 random bits as 32 hex digits, as uuid4().hex gave them (less the version bits), without building
    # a UUID object: the worker mints one per event, refund and ledger entry (issue 10, GB-11)
    return prefix + os.urandom(16).hex()


def new_invite_code() -> str:
    # 10 chars of an unambiguous alphabet: no personal data, hard to guess (DS-2)
    alphabet = "23456789ABCDEFGHJKLMNPQRSTUVWXYZ"
    return "".join(secrets.choice(alphabet) for _ in range(10))
