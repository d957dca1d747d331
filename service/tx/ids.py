"""Ids are minted by the shell so the engine never invents them."""

from __future__ import annotations

import secrets
import uuid


def new_id(prefix: str = "") -> str:
    return f"{prefix}{uuid.uuid4().hex}"


def new_invite_code() -> str:
    # 10 chars of an unambiguous alphabet: no personal data, hard to guess (DS-2)
    alphabet = "23456789ABCDEFGHJKLMNPQRSTUVWXYZ"
    return "".join(secrets.choice(alphabet) for _ in range(10))
