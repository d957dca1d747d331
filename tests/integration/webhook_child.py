"""Child process for the kill-mid-delivery test: starts delivering to a receiver that never answers."""

import asyncio
import sys

from service import webhooks
from service.context import Services
from store.database import create_engine
from tests.conftest import T0


async def main(url: str) -> None:
    svc = Services(engine=create_engine(url))
    svc.clock.set(T0)
    print("DELIVERING", flush=True)
    await webhooks.deliver_due(svc, timeout_s=600)  # hangs inside the POST, holding its claim


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1]))
