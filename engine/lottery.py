"""GB-7 lottery (抽奖免单): a deterministic, recorded, re-runnable draw.

The procedure, in full, so that finance can re-run it with nothing but the recorded inputs:

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
        raise refuse(ErrorCode.INVALID_INPUT, "lottery candidates must be distinct", rule="GB-7",
                     field="candidates")
    if not 0 <= k <= len(candidates):
        raise refuse(ErrorCode.INVALID_INPUT, f"cannot draw {k} winners among {len(candidates)} candidates",
                     rule="GB-7", field="k")
    ranked = sorted(candidates, key=lambda c: (ticket(seed, group_id, c), c))
    return tuple(ranked[:k])
