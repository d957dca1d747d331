"""Joins per second on one hot group and across many groups, as ratios to PostgreSQL's own
guarded-UPDATE rate measured on the same server in the same run (../shared/tools/pg-baseline).

    DATABASE_URL=postgresql://postgres@127.0.0.1:5432/test .venv/bin/python bench/joins.py \
        [--seconds 5] [--clients 8] [--groups 1000] [--baseline PATH]

DATABASE_URL names the server (its database is only used to connect): the benchmark creates a
database of its own there, migrates it, and drops it at the end, so it leaves nothing behind.
The baseline script is `../shared/tools/pg-baseline` next to the repository, unless `--baseline`
or SHARECART_PG_BASELINE says where it is.

Not part of the test suite: speed is reported as ratios, never asserted.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import secrets
import subprocess
import sys
import time
from datetime import timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.scratch import scratch_database  # noqa: E402
from engine.errors import RuleViolation  # noqa: E402
from service.usecases import campaigns, groups, orders, shops  # noqa: E402
from service.context import Services  # noqa: E402
from store.database import create_engine, to_libpq  # noqa: E402

DEFAULT_BASELINE = ROOT.parent / "shared" / "tools" / "pg-baseline"


def find_baseline(given: str | None) -> Path:
    """--baseline, else SHARECART_PG_BASELINE, else ../shared/tools/pg-baseline beside the repository."""
    path = Path(given or os.environ.get("SHARECART_PG_BASELINE") or DEFAULT_BASELINE).expanduser()
    if not (path.is_file() and os.access(path, os.X_OK)):
        sys.exit(
            f"bench/joins.py: the baseline script {path} is missing or not executable; give its path with "
            f"--baseline PATH or SHARECART_PG_BASELINE (it ships as ../shared/tools/pg-baseline)"
        )
    return path


def baseline(tool: Path, url: str, clients: int, seconds: int) -> dict[str, float]:
    out = subprocess.run(
        [str(tool), "--url", to_libpq(url), "--clients", str(clients), "--seconds", str(seconds)],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    rows = [json.loads(line) for line in out.splitlines() if line.strip()]
    return {r["case"]: float(r["tps"]) for r in rows}


async def run_case(svc: Services, shop_id: str, group_ids: list[str], clients: int, seconds: float) -> float:
    deadline = time.perf_counter() + seconds
    done = 0

    async def client(n: int) -> None:
        nonlocal done
        i = 0
        while time.perf_counter() < deadline:
            gid = group_ids[(n * 7919 + i) % len(group_ids)]
            try:
                await groups.join_group(svc, shop_id=shop_id, group_id=gid, user_id=f"c{n}-{i}-{secrets.token_hex(2)}")
                done += 1
            except RuleViolation:
                pass
            i += 1

    t = time.perf_counter()
    await asyncio.gather(*[client(n) for n in range(clients)])
    return done / (time.perf_counter() - t)


async def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--seconds", type=int, default=5)
    ap.add_argument("--clients", type=int, default=8)
    ap.add_argument("--groups", type=int, default=1000, help="groups the spread case joins (default 1000)")
    ap.add_argument(
        "--baseline", help="path of pg-baseline (default: $SHARECART_PG_BASELINE or ../shared/tools/pg-baseline)"
    )
    a = ap.parse_args()
    tool = find_baseline(a.baseline)
    async with scratch_database("sharecart_bench") as url:
        result = await bench(url, tool, a)
    print(json.dumps(result, indent=2))


async def bench(url: str, tool: Path, a) -> dict:
    engine = create_engine(url, pool_size=a.clients + 2)
    svc = Services(engine=engine)
    shop_id = f"bench-{secrets.token_hex(4)}"
    await shops.create_shop(svc, shop_id=shop_id, name="bench", currency="CNY")
    now = svc.now()
    c = await campaigns.create_campaign(
        svc,
        shop_id=shop_id,
        product_ref="sku",
        title="bench",
        list_price=1000,
        tiers=[(1_000_000, 900)],
        duration=timedelta(days=1),
        payment_window=timedelta(hours=1),
        starts_at=now - timedelta(minutes=1),
        ends_at=now + timedelta(days=2),
    )

    async def opened(i: int) -> str:
        seat = await groups.open_group(svc, shop_id=shop_id, campaign_id=c.campaign_id, user_id=f"leader{i}")
        await orders.confirm_payment(
            svc, shop_id=shop_id, order_id=seat.order_id, amount=seat.amount, provider_ref=f"{shop_id}-{i}"
        )
        return seat.group_id

    hot = [await opened(0)]
    many = [await opened(i) for i in range(1, a.groups + 1)]
    hot_rate = await run_case(svc, shop_id, hot, a.clients, a.seconds)
    many_rate = await run_case(svc, shop_id, many, a.clients, a.seconds)
    await engine.dispose()
    base = baseline(tool, url, a.clients, a.seconds)
    return {
        "clients": a.clients,
        "groups": a.groups,
        "joins_per_s_hot_group": round(hot_rate, 1),
        "joins_per_s_many_groups": round(many_rate, 1),
        "pg_guarded_update_tps_hot": base.get("hot"),
        "pg_guarded_update_tps_spread": base.get("spread"),
        "ratio_hot": round(hot_rate / base["hot"], 4) if base.get("hot") else None,
        "ratio_many": round(many_rate / base["spread"], 4) if base.get("spread") else None,
    }


if __name__ == "__main__":
    asyncio.run(main())
