"""Child processes for the webhook tests (a separate OS process each: its own engine, its own connections).

python -m tests.integration.webhook_child DATABASE_URL
    kill mode: starts delivering to a receiver that never answers, and hangs inside the POST (its lease
    lasts the 3 s deadline plus 1 s of slack).
python -m tests.integration.webhook_child DATABASE_URL deliver RECEIVER_URL
    deliver mode: connects, prints READY, waits for a line on stdin (so two children start together),
    delivers everything due once, prints DONE <POSTs this process made to RECEIVER_URL>.
"""

import asyncio
import sys

import httpx
from sqlalchemy import text

from service.usecases import webhooks
from service.context import Services
from store.database import create_engine
from tests.conftest import T0


async def main(url: str) -> None:
    svc = Services(engine=create_engine(url))
    svc.clock.set(T0)
    print("DELIVERING", flush=True)
    await webhooks.deliver_due(svc, timeout_s=3.0, lease_slack_s=1.0)  # hangs inside the POST, holding its lease


async def deliver(url: str, receiver_url: str) -> None:
    svc = Services(engine=create_engine(url))
    svc.clock.set(T0)
    async with svc.engine.connect() as c:  # connected before the start signal: both children race from GO
        await c.execute(text("SELECT 1"))
    posts = 0

    async def count(request: httpx.Request) -> None:
        nonlocal posts
        if str(request.url) == receiver_url:
            posts += 1

    async with httpx.AsyncClient(timeout=10, event_hooks={"request": [count]}) as client:
        print("READY", flush=True)
        await asyncio.to_thread(sys.stdin.readline)
        await webhooks.deliver_due(svc, client=client, concurrency=4)
    await svc.engine.dispose()
    print(f"DONE {posts}", flush=True)


if __name__ == "__main__":
    if len(sys.argv) > 2 and sys.argv[2] == "deliver":
        asyncio.run(deliver(sys.argv[1], sys.argv[3]))
    else:
        asyncio.run(main(sys.argv[1]))
