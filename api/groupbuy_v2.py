"""Group-buy v2 fields (issue 15): GB-12 `Group.graceUntil`, GB-7 v2 `Group.lotteryCommitment` and
`Group.draw`. Kept apart from api/types.py while the api/ cut (issue 12) is under way; `Group` registers
these resolvers with one line each."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Optional

from strawberry.types import Info

from engine import groupbuy as gb
from store import mapping


async def grace_until(root: Any, info: Info) -> Optional[datetime]:
    """GB-12: while the group waits past `expires_at` for reservations still inside their payment window,
    the last of their `pay_by` (the latest the group can decide); null otherwise."""
    g: gb.Group = root._g
    now = info.context.svc.now()
    if g.state is not gb.GroupState.OPEN or g.expires_at is None or now < g.expires_at:
        return None
    row = await info.context.loaders.campaign.load(g.campaign_id)
    return gb.grace_until(mapping.campaign_from_row(row), g) if row is not None else None
