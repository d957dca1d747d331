"""LG-3 exports of a settlement batch as CSV and XLSX: same batch, same bytes.

Rows are in distributor order, the only timestamp written is the batch's own closing time, and
lines are streamed from a server-side cursor, so memory stays flat as the batch grows.
Amounts appear twice: a decimal string in the shop currency (ISO 4217 minor digits: CNY 2, JPY 0, XOF 0, KWD 3; service.currencies) and the
integer of minor units it came from.
"""

from __future__ import annotations

import asyncio
import csv
import io
import os
import tempfile
from typing import AsyncIterator, Callable

from engine.money import format_minor
from service.currencies import minor_digits
from service.context import Services
from service.usecases.settlements import get_settlement, stream_lines

AMOUNTS = ("opening", "released", "reversals", "bonuses", "payouts", "fees", "failed", "closing", "held")
HEADER = ["distributor_id", *[c for a in AMOUNTS for c in (a, f"{a}_minor")]]


def _row(label: str, obj, currency: str) -> list:
    out: list = [label]
    digits = minor_digits(currency)
    for a in AMOUNTS:
        v = int(getattr(obj, a))
        out += [format_minor(v, digits), v]
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


async def csv_chunks(
    svc: Services, *, shop_id: str, settlement_id: str, progress: Callable[[int], None] | None = None
) -> AsyncIterator[bytes]:
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


XLSX_PREFIX = "sharecart-settlement-"


def _write_rows(ws, first_row: int, rows: list[list]) -> int:
    for i, row in enumerate(rows):
        ws.write_row(first_row + i, 0, row)
    return first_row + len(rows)


async def xlsx_file(
    svc: Services, *, shop_id: str, settlement_id: str, progress: Callable[[int], None] | None = None
) -> str:
    """Write the XLSX to a temporary file (constant-memory mode) and return its path; the caller removes it.

    The database lines arrive on the event loop (server-side cursor); formatting rows into the sheet and
    deflating the ZIP at the end run in a worker thread (asyncio.to_thread), one partition at a time, so
    a large export never stalls the other requests of the process. The file cannot be streamed while it
    is written: an XLSX is a ZIP whose entries carry their sizes and checksums in front, and a ZIP written
    to a pipe (with data descriptors) would differ byte for byte from the one written to a file."""
    import xlsxwriter

    batch = await get_settlement(svc, shop_id=shop_id, settlement_id=settlement_id)
    if batch is None:
        raise LookupError(settlement_id)
    fd, path = tempfile.mkstemp(prefix=XLSX_PREFIX, suffix=".xlsx")
    os.close(fd)
    # constant-memory mode spools each worksheet to a file of its own: in a directory of this export's, gone
    # whatever happens, so an export that fails midway leaves none behind (xlsxwriter removes them only on close)
    with tempfile.TemporaryDirectory(prefix=XLSX_PREFIX) as spool:
        try:
            wb = xlsxwriter.Workbook(path, {"constant_memory": True, "strings_to_numbers": False, "tmpdir": spool})
            # fixed document times: the same batch always gives the same bytes
            wb.set_properties({"created": batch.closed_at.replace(tzinfo=None), "title": f"Settlement {settlement_id}"})
            ws = wb.add_worksheet("settlement")
            r = await asyncio.to_thread(_write_rows, ws, 0, [*_preamble(batch), HEADER])
            async for part in stream_lines(svc, shop_id=shop_id, settlement_id=settlement_id):
                r = await asyncio.to_thread(
                    _write_rows, ws, r, [_row(line.distributor_id, line, batch.currency) for line in part]
                )
                if progress:
                    progress(len(part))
            await asyncio.to_thread(_write_rows, ws, r, [_row("TOTAL", batch, batch.currency)])
            await asyncio.to_thread(wb.close)
        except BaseException:
            os.remove(path)
            raise
    return path
