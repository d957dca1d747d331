"""LG-3 exports of a settlement batch as CSV and XLSX: same batch, same bytes.

Rows are in distributor order, the only timestamp written is the batch's own closing time, and
lines are streamed from a server-side cursor, so memory stays flat as the batch grows.
Amounts appear twice: a decimal string in the shop currency (CNY 2 minor digits, JPY 0, …) and the
integer of minor units it came from.
"""

from __future__ import annotations

import csv
import io
import os
import tempfile
from typing import AsyncIterator, Callable

from engine.money import format_minor
from service.context import Services
from service.settlements import get_settlement, stream_lines

AMOUNTS = ("opening", "released", "reversals", "bonuses", "payouts", "fees", "closing")
HEADER = ["distributor_id", *[c for a in AMOUNTS for c in (a, f"{a}_minor")]]


def _row(label: str, obj, currency: str) -> list:
    out: list = [label]
    for a in AMOUNTS:
        v = int(getattr(obj, a))
        out += [format_minor(v, currency), v]
    return out


def _preamble(batch) -> list[list]:
    return [
        ["settlement_id", batch.settlement_id],
        ["shop_id", batch.shop_id],
        ["period_local", f"[{batch.local_from}, {batch.local_to})"],
        ["period_utc", f"[{batch.period_from.isoformat()}, {batch.period_to.isoformat()})"],
        ["currency", batch.currency],
        ["closed_at", batch.closed_at.isoformat()],
        [],
    ]


async def csv_chunks(svc: Services, *, shop_id: str, settlement_id: str,
                     progress: Callable[[int], None] | None = None) -> AsyncIterator[bytes]:
    batch = await get_settlement(svc, shop_id=shop_id, settlement_id=settlement_id)
    if batch is None:
        raise LookupError(settlement_id)
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    for r in _preamble(batch):
        w.writerow(r)
    w.writerow(HEADER)
    yield buf.getvalue().encode()
    async for part in stream_lines(svc, shop_id=shop_id, settlement_id=settlement_id):
        buf.seek(0)
        buf.truncate()
        for line in part:
            w.writerow(_row(line.distributor_id, line, batch.currency))
        if progress:
            progress(len(part))
        yield buf.getvalue().encode()
    buf.seek(0)
    buf.truncate()
    w.writerow(_row("TOTAL", batch, batch.currency))
    yield buf.getvalue().encode()


async def xlsx_file(svc: Services, *, shop_id: str, settlement_id: str,
                    progress: Callable[[int], None] | None = None) -> str:
    """Write the XLSX to a temporary file (constant-memory mode) and return its path."""
    import xlsxwriter

    batch = await get_settlement(svc, shop_id=shop_id, settlement_id=settlement_id)
    if batch is None:
        raise LookupError(settlement_id)
    fd, path = tempfile.mkstemp(suffix=".xlsx")
    os.close(fd)
    wb = xlsxwriter.Workbook(path, {"constant_memory": True, "strings_to_numbers": False})
    # fixed document times: the same batch always gives the same bytes
    wb.set_properties({"created": batch.closed_at.replace(tzinfo=None), "title": f"Settlement {settlement_id}"})
    ws = wb.add_worksheet("settlement")
    r = 0
    for row in _preamble(batch):
        ws.write_row(r, 0, row)
        r += 1
    ws.write_row(r, 0, HEADER)
    r += 1
    async for part in stream_lines(svc, shop_id=shop_id, settlement_id=settlement_id):
        for line in part:
            ws.write_row(r, 0, _row(line.distributor_id, line, batch.currency))
            r += 1
        if progress:
            progress(len(part))
    ws.write_row(r, 0, _row("TOTAL", batch, batch.currency))
    wb.close()
    return path
