"""A settlement batch over 1,000,000 ledger entries: close time, export time and peak memory.

    DATABASE_URL=postgresql://postgres@127.0.0.1:5432/test .venv/bin/python bench/export_memory.py [--entries 1000000]

DATABASE_URL names the server; the benchmark works in a database of its own there (bench/scratch.py).

Peak memory is the process's max RSS (resource.getrusage), read before and after each export, so a
flat export shows (almost) no growth over the baseline.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import resource
import secrets
import sys
import time
from datetime import date, datetime, timezone
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from sqlalchemy import text  # noqa: E402

from bench.scratch import scratch_database  # noqa: E402
from service.reads import exports  # noqa: E402
from service.usecases import settlements, shops
from service.context import Services  # noqa: E402
from store.database import create_engine  # noqa: E402


def rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


async def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--entries", type=int, default=1_000_000)
    ap.add_argument("--per-distributor", type=int, default=10)
    a = ap.parse_args()
    async with scratch_database("sharecart_bench_export") as url:
        await run(url, a)


async def run(url: str, a) -> None:
    eng = create_engine(url)
    svc = Services(engine=eng)
    shop_id = f"bx-{secrets.token_hex(4)}"
    await shops.create_shop(svc, shop_id=shop_id, name="bench", currency="CNY")
    t = time.perf_counter()
    async with eng.begin() as c:
        await c.execute(
            text(
                "INSERT INTO ledger_entries (shop_id, entry_id, distributor_id, bucket, amount, kind, ref_type, ref_id,"
                " created_at) SELECT :s, 'e' || g, 'd' || lpad((g % :n)::text, 7, '0'), 'AVAILABLE', (g % 997) - 100,"
                " CASE WHEN g % 5 = 0 THEN 'COMMISSION_REVERSED' ELSE 'COMMISSION_RELEASED' END, 'bench', 'x',"
                " timestamptz '2026-01-01 00:00+00' + (g % 2592000) * interval '1 second'"
                " FROM generate_series(1, :e) g"
            ),
            {"s": shop_id, "n": a.entries // a.per_distributor, "e": a.entries},
        )
    load_s = time.perf_counter() - t
    svc.clock.set(datetime(2026, 3, 1, tzinfo=timezone.utc))
    t = time.perf_counter()
    b = await settlements.close_period(
        svc, shop_id=shop_id, day_from=date(2026, 1, 1), day_to=date(2026, 2, 1), actor="bench"
    )
    close_s = time.perf_counter() - t
    base = rss_mb()
    t = time.perf_counter()
    size = 0
    async for chunk in exports.csv_chunks(svc, shop_id=shop_id, settlement_id=b.settlement_id):
        size += len(chunk)
    csv_s, csv_peak = time.perf_counter() - t, rss_mb()
    t = time.perf_counter()
    path = await exports.xlsx_file(svc, shop_id=shop_id, settlement_id=b.settlement_id)
    xlsx_s, xlsx_peak = time.perf_counter() - t, rss_mb()
    xlsx_size = os.path.getsize(path)
    os.remove(path)
    await eng.dispose()
    print(
        json.dumps(
            {
                "ledger_entries": a.entries,
                "distributors": b.distributors,
                "load_s": round(load_s, 1),
                "close_period_s": round(close_s, 2),
                "csv_export_s": round(csv_s, 2),
                "csv_bytes": size,
                "xlsx_export_s": round(xlsx_s, 2),
                "xlsx_bytes": xlsx_size,
                "rss_before_exports_mb": round(base, 1),
                "peak_rss_after_csv_mb": round(csv_peak, 1),
                "peak_rss_after_xlsx_mb": round(xlsx_peak, 1),
            },
            indent=2,
        )
    )


if __name__ == "__main__":
    asyncio.run(main())
