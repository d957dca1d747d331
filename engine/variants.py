"""A/B test of group size (campaign ``variants``, reported per variant by RP-2).

Each leader is assigned a variant deterministically from (campaign, user) with the given
weights: ``int(sha256(f"{campaign_id}:{user_id}").hexdigest(), 16) % total_weight`` picks a
point on the cumulative weights. The same leader always gets the same variant of a campaign;
over many users the shares converge to weight / total_weight.
"""

from __future__ import annotations

import hashlib
from typing import TYPE_CHECKING, Sequence

from engine.errors import ErrorCode, refuse

if TYPE_CHECKING:  # pragma: no cover
    from engine.groupbuy import Variant


def variant_point(campaign_id: str, user_id: str, total_weight: int) -> int:
    """The user's point in [0, total_weight) for this campaign."""
    digest = hashlib.sha256(f"{campaign_id}:{user_id}".encode("utf-8")).hexdigest()
    return int(digest, 16) % total_weight


def assign_variant(campaign_id: str, user_id: str, variants: Sequence["Variant"]) -> "Variant | None":
    """The leader's variant (section 2 `variants`), or None when the campaign has no variants.
    Walks the variants in their given order: variant i owns the points
    [w0 + … + w(i-1), w0 + … + wi). A weight that is not an int > 0 is refused with INVALID_INPUT
    naming it (ER-1), as validate_campaign does."""
    if not variants:
        return None
    for i, v in enumerate(variants):
        if not isinstance(v.weight, int) or isinstance(v.weight, bool) or v.weight <= 0:
            raise refuse(ErrorCode.INVALID_INPUT, "a variant weight must be an int > 0", field=f"variants[{i}].weight")
    total = sum(v.weight for v in variants)
    point = variant_point(campaign_id, user_id, total)
    upto = 0
    for v in variants:
        upto += v.weight
        if point < upto:
            return v
    raise AssertionError("unreachable: point < total weight")  # pragma: no cover
