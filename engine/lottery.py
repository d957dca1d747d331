"""GB-7 lottery (抽奖免单): a deterministic, recorded, re-runnable draw.

v2 (commit–reveal, a seed per group) is at the end of this module and is how every group opened
since v2 draws; the v1 procedure below stays for groups opened before (they have no seed of their
own). The v1 procedure, in full, so that finance can re-run it with nothing but the recorded inputs:

1. Inputs: the campaign's ``lottery_seed`` (a secret string stored with the campaign), the
   group id, the order ids of the group's PAID seats at the instant it formed, and
   K = min(``lottery_winners``, number of paid seats).
2. For each candidate order id ``c`` compute
   ``HMAC-SHA256(key=seed.encode("utf-8"), msg=f"{group_id}:{c}".encode("utf-8")).hexdigest()``.
3. Sort the candidates by (that lowercase hex digest, then the order id) ascending.
4. The first K are the winners, in that order (the group records them as ``Group.winners``).

Re-running, e.g. in a Python shell::

    >>> import hmac, hashlib
    >>> rank = lambda c: (hmac.new(seed.encode(), f"{gid}:{c}".encode(), hashlib.sha256).hexdigest(), c)
    >>> sorted(paid_order_ids, key=rank)[:k]

The result does not depend on the order in which candidates are given, nor on any clock or
random source; the seed being secret until the draw keeps it unpredictable to buyers.
"""

from __future__ import annotations

import hashlib
import hmac
from dataclasses import dataclass
from typing import Sequence

from engine.errors import ErrorCode, refuse


def ticket(seed: str, group_id: str, candidate: str) -> str:
    """GB-7: the HMAC-SHA256 hex digest that ranks one candidate (lower ranks first)."""
    msg = f"{group_id}:{candidate}".encode("utf-8")
    return hmac.new(seed.encode("utf-8"), msg, hashlib.sha256).hexdigest()


def draw_winners(seed: str, group_id: str, candidates: Sequence[str], k: int) -> tuple[str, ...]:
    """GB-7: rank ``candidates`` (order ids) by ``ticket(seed, group_id, c)`` ascending, ties by
    the candidate itself, and return the first ``k``. Deterministic: the same inputs always give
    the same winners in the same order, whatever the order of ``candidates``."""
    if len(set(candidates)) != len(candidates):
        raise refuse(ErrorCode.INVALID_INPUT, "lottery candidates must be distinct", rule="GB-7", field="candidates")
    if not 0 <= k <= len(candidates):
        raise refuse(
            ErrorCode.INVALID_INPUT,
            f"cannot draw {k} winners among {len(candidates)} candidates",
            rule="GB-7",
            field="k",
        )
    ranked = sorted(candidates, key=lambda c: (ticket(seed, group_id, c), c))
    return tuple(ranked[:k])


# ------------------------------------------------------------------ GB-7 v2: commit–reveal, per group
# The procedure (docs/lottery.md gives it with a stand-alone verifier):
#   seed        32 bytes from a CSPRNG, drawn by the service when the group opens, written as 64
#               lowercase hex digits; secret (encrypted at rest) until the group draws.
#   commitment  SHA-256(seed bytes), hex — public from the moment the group opens.
#   score(c)    HMAC-SHA256(key = seed bytes, msg = order id c as UTF-8), hex.
#   winners     the K candidates (the group's PAID seats at forming) with the lowest score, ties by
#               order id; K = min(lottery_winners, number of candidates).
SEED_HEX_DIGITS = 64


def valid_seed(seed: str) -> bool:
    """GB-7 v2: a seed is 64 lowercase hex digits (32 bytes)."""
    return isinstance(seed, str) and len(seed) == SEED_HEX_DIGITS and all(ch in "0123456789abcdef" for ch in seed)


def commitment(seed: str) -> str:
    """GB-7 v2: SHA-256 of the seed's 32 bytes, as 64 hex digits."""
    return hashlib.sha256(bytes.fromhex(seed)).hexdigest()


def score(seed: str, order_id: str) -> str:
    """GB-7 v2: HMAC-SHA256(key = seed bytes, msg = order id) as 64 hex digits; lower draws first."""
    return hmac.new(bytes.fromhex(seed), order_id.encode("utf-8"), hashlib.sha256).hexdigest()


@dataclass(frozen=True)
class Draw:
    """GB-7 v2: everything a verifier needs — commitment, the revealed seed, every candidate with its
    score (in draw order: score, then order id) and the winners (the first ``k``)."""

    commitment: str
    seed: str
    candidates: tuple[tuple[str, str], ...]  # (order id, score), in draw order
    winners: tuple[str, ...]


def draw(seed: str, candidates: Sequence[str], k: int) -> Draw:
    """GB-7 v2: the draw of a group among ``candidates`` (order ids of its paid seats)."""
    if not valid_seed(seed):
        raise refuse(ErrorCode.INVALID_INPUT, "a lottery seed is 64 lowercase hex digits", rule="GB-7", field="seed")
    if len(set(candidates)) != len(candidates):
        raise refuse(ErrorCode.INVALID_INPUT, "lottery candidates must be distinct", rule="GB-7", field="candidates")
    if not 0 <= k <= len(candidates):
        raise refuse(
            ErrorCode.INVALID_INPUT,
            f"cannot draw {k} winners among {len(candidates)} candidates",
            rule="GB-7",
            field="k",
        )
    ranked = sorted(((c, score(seed, c)) for c in candidates), key=lambda cs: (cs[1], cs[0]))
    return Draw(
        commitment=commitment(seed), seed=seed, candidates=tuple(ranked), winners=tuple(c for c, _ in ranked[:k])
    )
