"""The hand-written reference for bench/http.py's storefront figure: the campaign page (campaign + open
groups with their seats) as a bare Starlette endpoint over an asyncpg pool, running the SQL Sharecart
runs for that page (shop by public key, campaign, open-group count and page, due check, groups, seats)
as prepared statements, and answering the same JSON shape. No GraphQL, no ORM, no validation: what the
page costs at least in Python on this stack.

    DATABASE_URL=postgresql://… python bench/reference_storefront.py --port 8791
"""

from __future__ import annotations

import sys
from pathlib import Path

if sys.path and Path(sys.path[0]).resolve() == Path(__file__).resolve().parent:
    sys.path.pop(0)  # bench/http.py beside this file would shadow the standard library's http package

import argparse
import contextlib
import datetime as dt
import json
import os

import asyncpg
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

SHOP = "SELECT shop_id, currency FROM shops WHERE shop_id = $1 AND public_key = $2"
CAMPAIGN = (
    "SELECT campaign_id, title, list_price, tiers, stock_left, starts_at, ends_at FROM campaigns "
    "WHERE shop_id = $1 AND campaign_id = $2"
)
OPEN_COUNT = (
    "SELECT count(*) FROM groups WHERE shop_id = $1 AND campaign_id = $2 AND state = 'OPEN' AND expires_at > $3"
)
OPEN_PAGE = (
    "SELECT group_id FROM groups WHERE shop_id = $1 AND campaign_id = $2 AND state = 'OPEN' "
    "AND expires_at > $3 ORDER BY expires_at, group_id LIMIT $4"
)
DUE = "SELECT group_id FROM groups WHERE shop_id = $1 AND group_id = ANY($2) AND due_at <= $3"
GROUPS = (
    "SELECT group_id, state, tiers, expires_at, held_seats, paid_seats FROM groups "
    "WHERE shop_id = $1 AND group_id = ANY($2)"
)
SEATS = "SELECT group_id, state FROM seats WHERE shop_id = $1 AND group_id = ANY($2)"


def make_app(url: str) -> Starlette:
    pool: dict = {}

    @contextlib.asynccontextmanager
    async def lifespan(_app):
        pool["p"] = await asyncpg.create_pool(url, min_size=2, max_size=10)
        yield
        await pool["p"].close()

    async def page(request: Request):
        body = json.loads(await request.body())
        key, campaign_id, first = request.headers.get("x-shop-key", ""), body["campaign"], body.get("first", 10)
        shop_id = key.split("_")[1] if key.count("_") >= 2 else ""
        now = dt.datetime.now(dt.timezone.utc)
        async with pool["p"].acquire() as c:
            shop = await c.fetchrow(SHOP, shop_id, key)
            if shop is None:
                return Response(b'{"error":"unknown shop key"}', status_code=401, media_type="application/json")
            cmp = await c.fetchrow(CAMPAIGN, shop_id, campaign_id)
            total = await c.fetchval(OPEN_COUNT, shop_id, campaign_id, now)
            ids = [r[0] for r in await c.fetch(OPEN_PAGE, shop_id, campaign_id, now, first)]
            await c.fetch(DUE, shop_id, ids, now)
            rows = await c.fetch(GROUPS, shop_id, ids)
            seats = await c.fetch(SEATS, shop_id, ids)
        held: dict[str, int] = {}
        for s in seats:
            if s["state"] in ("RESERVED", "PAID"):
                held[s["group_id"]] = held.get(s["group_id"], 0) + 1
        by_id = {r["group_id"]: r for r in rows}
        edges = []
        for gid in ids:
            g = by_id[gid]
            tiers = json.loads(g["tiers"])
            edges.append(
                {
                    "node": {
                        "id": gid,
                        "seatsLeft": tiers[-1][0] - held.get(gid, 0),
                        "seatsHeld": held.get(gid, 0),
                        "expiresAt": g["expires_at"].isoformat(),
                        "secondsLeft": int((g["expires_at"] - now).total_seconds()),
                    }
                }
            )
        out = {
            "data": {
                "campaign": {
                    "id": cmp["campaign_id"],
                    "title": cmp["title"],
                    "listPrice": cmp["list_price"],
                    "currency": shop["currency"],
                    "stockLeft": cmp["stock_left"],
                    "tiers": [{"members": m, "unitPrice": p} for m, p in json.loads(cmp["tiers"])],
                    "openGroups": {"totalCount": total, "edges": edges},
                }
            }
        }
        return Response(json.dumps(out).encode(), media_type="application/json")

    return Starlette(routes=[Route("/graphql", page, methods=["POST"])], lifespan=lifespan)


if __name__ == "__main__":
    ap = argparse.ArgumentParser()
    ap.add_argument("--port", type=int, required=True)
    a = ap.parse_args()
    url = os.environ["DATABASE_URL"].replace("postgresql+asyncpg:", "postgresql:")
    uvicorn.run(make_app(url), host="127.0.0.1", port=a.port, log_level="warning")
