"""LG-3 export checks shared by the service-level and the end-to-end tests: what LibreOffice reads from an
XLSX (headless conversion to CSV), and the ledger's own sums for a period, computed here independently of
the SQL that closes a batch."""

from __future__ import annotations

import csv
import io
import shutil
import subprocess
from datetime import datetime
from pathlib import Path

import pytest
from sqlalchemy import text

from service.reads.exports import AMOUNTS


def soffice_or_skip() -> str:
    soffice = shutil.which("soffice") or shutil.which("libreoffice")
    if soffice is None:
        pytest.skip(
            "LibreOffice is not installed (Debian: apt-get install libreoffice-calc-nogui; "
            "`python3 tasks.py test` installs it when run as root with apt-get)"
        )
    return soffice


def libreoffice_rows(xlsx: bytes, workdir: Path) -> list[list[str]]:
    """The rows LibreOffice shows: `soffice --headless --convert-to csv` of the XLSX bytes (skips the test when
    LibreOffice is absent)."""
    soffice = soffice_or_skip()
    workdir.mkdir(parents=True, exist_ok=True)
    src = workdir / "settlement.xlsx"
    src.write_bytes(xlsx)
    profile = workdir / "lo-profile"  # a private profile: no clash with another soffice, no first-run state
    r = subprocess.run(
        [
            soffice,
            f"-env:UserInstallation={profile.as_uri()}",
            "--headless",
            "--norestore",
            "--convert-to",
            "csv",
            "--outdir",
            str(workdir),
            str(src),
        ],
        capture_output=True,
        text=True,
        timeout=180,
    )
    converted = workdir / "settlement.csv"
    assert r.returncode == 0 and converted.exists(), (r.stdout, r.stderr)
    return list(csv.reader(io.StringIO(converted.read_text(encoding="utf-8"))))


LEDGER_SUMS_SQL = text(
    """SELECT
         COALESCE(SUM(amount) FILTER (WHERE created_at < :f AND bucket IN ('AVAILABLE', 'IN_PAYOUT')), 0),
         COALESCE(SUM(amount) FILTER (WHERE created_at >= :f AND bucket = 'AVAILABLE'
                                      AND kind = 'COMMISSION_RELEASED'), 0),
         COALESCE(SUM(amount) FILTER (WHERE created_at >= :f AND bucket = 'AVAILABLE'
                                      AND kind = 'COMMISSION_REVERSED'), 0),
         COALESCE(SUM(amount) FILTER (WHERE created_at >= :f AND kind = 'UPGRADE_BONUS'), 0),
         COALESCE(SUM(amount) FILTER (WHERE created_at >= :f AND bucket = 'PAID' AND kind = 'PAYOUT_APPROVED'), 0),
         COALESCE(SUM(amount) FILTER (WHERE created_at >= :f AND bucket = 'FEES' AND kind = 'PAYOUT_FEE'), 0),
         COALESCE(SUM(amount) FILTER (WHERE created_at >= :f AND bucket = 'AVAILABLE'
                                      AND kind IN ('PAYOUT_FAILED', 'PAYOUT_FEE_REVERSED')), 0),
         COALESCE(SUM(amount) FILTER (WHERE bucket IN ('AVAILABLE', 'IN_PAYOUT')), 0),
         -- held (FR-3) as the lines held now stand: the exports' tests close periods that hold nothing at their end
         COALESCE(SUM(amount) FILTER (WHERE ref_type = 'commission' AND bucket IN ('PENDING', 'FROZEN')
                                      AND ref_id IN (SELECT line_id FROM commission_lines
                                                     WHERE shop_id = :s AND held)), 0)
       FROM ledger_entries WHERE shop_id = :s AND created_at < :t"""
)


async def ledger_sums(svc, shop_id: str, period_from: datetime, period_to: datetime) -> dict[str, int]:
    """The ledger's figures for [period_from, period_to), by export column (opening … closing)."""
    async with svc.sessionmaker() as s:
        row = (await s.execute(LEDGER_SUMS_SQL, {"s": shop_id, "f": period_from, "t": period_to})).one()
    return dict(zip(AMOUNTS, map(int, row)))


def decimal_string(minor: int, digits: int) -> str:
    if digits == 0:
        return str(minor)
    whole, frac = divmod(abs(minor), 10**digits)
    return f"{'-' if minor < 0 else ''}{whole}.{frac:0{digits}d}"


def assert_total_row_matches(rows: list[list[str]], sums: dict[str, int], digits: int) -> dict[str, str]:
    """The TOTAL row under the distributor_id header shows each sum as minor units and as a decimal string
    with the currency's `digits` minor digits. Returns the row by column name."""
    header = next(row for row in rows if row and row[0] == "distributor_id")
    total = next(row for row in rows if row and row[0] == "TOTAL")
    shown = dict(zip(header[1:], total[1:]))
    for name, value in sums.items():
        assert int(shown[f"{name}_minor"]) == value, name
        assert shown[name] == decimal_string(value, digits), name
    return shown
