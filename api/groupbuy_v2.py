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


# ---------------------------------------------------------------- GB-7 v2: the verifiable lottery
import strawberry  # noqa: E402


@strawberry.type(description="GB-7 v2: one candidate of a group's draw (a paid seat at forming).")
class LotteryCandidate:
    order_id: strawberry.ID = strawberry.field(description="The candidate's order (global id, as elsewhere)")
    order_key: str = strawberry.field(description="The order's own id: the HMAC message of its score")
    score: str = strawberry.field(description="HMAC-SHA256(key = seed bytes, msg = orderKey), 64 hex digits")


@strawberry.type(description="GB-7 v2: a group's revealed draw — re-run it with docs/lottery.md.")
class LotteryDraw:
    commitment: str = strawberry.field(description="SHA-256 of the seed's 32 bytes, public since opening")
    seed: str = strawberry.field(description="The group's seed, 64 hex digits (32 bytes), revealed at the draw")
    candidates: list[LotteryCandidate] = strawberry.field(
        description="Every candidate, in draw order (score, then orderKey)"
    )
    winners: list[strawberry.ID] = strawberry.field(description="The first K candidates' orders (global ids)")
    winner_keys: list[str] = strawberry.field(description="The winners' own order ids, in draw order")


def sees_draw(ctx, g: gb.Group) -> bool:
    """GB-7 v2: the draw is shown to the group's members (anyone who held a seat in it), admins and finance."""
    p = ctx.principal
    if p is None:
        return False
    return bool(p.roles & {"admin", "finance"}) or any(s.user_id == p.user_id for s in g.seats)


def lottery_commitment(root: Any, info: Info) -> Optional[str]:
    """GB-7 v2: SHA-256(seed), public from the moment the group opens (null: no lottery, or opened before v2)."""
    return root._g.lottery_commitment


def lottery_draw(root: Any, info: Info) -> Optional[LotteryDraw]:
    """GB-7 v2: after the draw, for the group's members, admins and finance; null before or for others."""
    from api.relay import global_id

    g: gb.Group = root._g
    d = g.draw()
    if d is None or not sees_draw(info.context, g):
        return None
    return LotteryDraw(
        commitment=d.commitment,
        seed=d.seed,
        candidates=[
            LotteryCandidate(order_id=strawberry.ID(global_id("Order", o)), order_key=o, score=sc)
            for o, sc in d.candidates
        ],
        winners=[strawberry.ID(global_id("Order", o)) for o in d.winners],
        winner_keys=list(d.winners),
    )


# ---------------------------------------------------------------- GB-15: nudges
def nudges(root: Any, info: Info) -> list[str]:
    """GB-15: the nudges this group has emitted (`almost_full`, `expiring_soon`), each at most once."""
    g: gb.Group = root._g
    out = []
    if g.nudged_almost_full_at is not None:
        out.append("almost_full")
    # a grace that began before the worker could nudge marks `expiring_soon` as skipped, at expires_at
    if g.nudged_expiring_soon_at is not None and (g.expires_at is None or g.nudged_expiring_soon_at < g.expires_at):
        out.append("expiring_soon")
    return out
