"""LG-3 settlement batches and their exports."""

from __future__ import annotations

import csv
import io
import secrets
from collections import defaultdict
from datetime import date, datetime, timedelta, timezone
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from hypothesis import HealthCheck, given, settings, strategies as st
from sqlalchemy import text

from engine.distribution import DistributionSettings, DistributorStatus
from engine.errors import ErrorCode, RuleViolation
from engine.levels import Level
from engine.fraud import FraudRules
from service.usecases import distribution, fraud, orders, payouts, settlements, shops
from service.reads import exports
from service.reads import fraud as fraud_reads
from service.jobs import worker
from service.uow import unit_of_work
from tests.conftest import T0
from tests.integration.helpers import assert_ledger_consistent, pay
from tests.spreadsheets import assert_total_row_matches, ledger_sums, libreoffice_rows, soffice_or_skip

GOLDEN = Path(__file__).parent / "golden" / "settlement.csv"


async def _history(svc, shop_id):
    """d1 earns 10 % on buyer orders: 1000 released, a clawback of 400 after availability, a payout of 500 (fee 1 %)."""
    await distribution.set_status(
        svc, shop_id=shop_id, user_id="d1", status=DistributorStatus.ACTIVE, actor="t", reason="t"
    )
    await distribution.bind_referrer(svc, shop_id=shop_id, user_id="b1", referrer_id="d1")
    o = await orders.report_order(
        svc, shop_id=shop_id, external_id="o1", buyer_id="b1", lines=[orders.LineInput("p", 1, 10_000)]
    )
    await pay(svc, shop_id, o.order_id, amount=10_000)
    await orders.complete_order(svc, shop_id=shop_id, order_id=o.order_id)
    svc.clock.advance(timedelta(days=8))
    await worker.run_due(svc)
    await orders.refund_order(svc, shop_id=shop_id, order_id=o.order_id, amount=4_000, provider_ref="rf1")
    p = await payouts.request_payout(svc, shop_id=shop_id, user_id="d1", amount=500)
    await payouts.decide_payout(
        svc, shop_id=shop_id, payout_id=p.payout_id, approve=True, actor="fin", external_ref="bank-1"
    )


async def test_close_period_reconciles_and_is_idempotent_LG3(svc, shop, owner_engine):
    from service.usecases.shops import update_settings

    await update_settings(svc, shop_id=shop.shop_id, payout_fee_bp=100)
    await _history(svc, shop.shop_id)
    svc.clock.set(datetime(2026, 3, 1, tzinfo=timezone.utc))
    b = await settlements.close_period(
        svc, shop_id=shop.shop_id, day_from=date(2026, 1, 1), day_to=date(2026, 2, 1), actor="fin"
    )
    # 1000 released − 400 clawback − (500 − 5) paid − 5 fee = 100 left owed
    assert (b.opening, b.released, b.reversals, b.bonuses, b.payouts, b.fees, b.closing) == (
        0,
        1000,
        -400,
        0,
        495,
        5,
        100,
    )
    again = await settlements.close_period(
        svc, shop_id=shop.shop_id, day_from=date(2026, 1, 1), day_to=date(2026, 2, 1), actor="fin"
    )
    assert again.settlement_id == b.settlement_id
    d = await distribution.get_distributor(svc, shop_id=shop.shop_id, user_id="d1")
    assert b.closing == d.available + d.in_payout
    with pytest.raises(RuleViolation) as e:
        await settlements.close_period(
            svc, shop_id=shop.shop_id, day_from=date(2026, 2, 5), day_to=date(2026, 2, 10), actor="fin"
        )
    assert e.value.code == ErrorCode.PERIOD_GAP
    with pytest.raises(RuleViolation) as e:
        await settlements.close_period(
            svc, shop_id=shop.shop_id, day_from=date(2026, 1, 15), day_to=date(2026, 2, 10), actor="fin"
        )
    assert e.value.code == ErrorCode.PERIOD_OVERLAP
    # a period closes only CLOSE_GRACE (5 minutes) after its end on the service clock: a write stamped
    # 23:59:59 that commits a moment later still lands in it
    for late in (timedelta(0), timedelta(minutes=4, seconds=59)):
        svc.clock.set(datetime(2026, 3, 1, tzinfo=timezone.utc) + late)
        with pytest.raises(RuleViolation) as e:
            await settlements.close_period(
                svc, shop_id=shop.shop_id, day_from=date(2026, 2, 1), day_to=date(2026, 3, 1), actor="fin"
            )
        assert e.value.code == ErrorCode.PERIOD_NOT_ENDED and e.value.rule == "LG-3"
    svc.clock.set(datetime(2026, 3, 1, 0, 5, tzinfo=timezone.utc))
    nxt = await settlements.close_period(
        svc, shop_id=shop.shop_id, day_from=date(2026, 2, 1), day_to=date(2026, 3, 1), actor="fin"
    )
    assert nxt.opening == b.closing and nxt.closing == b.closing
    with pytest.raises(Exception, match="append-only"):  # even to the owner (the runtime role may not UPDATE it)
        async with owner_engine.begin() as c:
            await c.execute(text("UPDATE settlements SET closing = 0 WHERE settlement_id = :i"), {"i": b.settlement_id})


async def test_exports_are_byte_identical_LG3(svc, shop, tmp_path):
    await _history(svc, shop.shop_id)
    svc.clock.set(datetime(2026, 3, 1, tzinfo=timezone.utc))
    b = await settlements.close_period(
        svc, shop_id=shop.shop_id, day_from=date(2026, 1, 1), day_to=date(2026, 2, 1), actor="fin"
    )

    async def csv_bytes():
        return b"".join([c async for c in exports.csv_chunks(svc, shop_id=shop.shop_id, settlement_id=b.settlement_id)])

    first, second = await csv_bytes(), await csv_bytes()
    assert first == second
    rows = list(csv.reader(io.StringIO(first.decode())))
    header = rows.index(exports.HEADER)
    assert rows[header + 1] == [
        "d1",
        "0.00",
        "0",
        "10.00",
        "1000",
        "-4.00",
        "-400",
        "0.00",
        "0",
        "5.00",
        "500",
        "0.00",
        "0",
        "0.00",
        "0",
        "1.00",
        "100",
        "0.00",
        "0",
    ]
    assert rows[header + 2][0] == "TOTAL" and rows[header + 2][1:] == rows[header + 1][1:]
    x1 = Path(await exports.xlsx_file(svc, shop_id=shop.shop_id, settlement_id=b.settlement_id)).read_bytes()
    x2 = Path(await exports.xlsx_file(svc, shop_id=shop.shop_id, settlement_id=b.settlement_id)).read_bytes()
    assert x1 == x2 and x1[:2] == b"PK"


async def test_database_refuses_a_batch_that_does_not_reconcile_LG3(svc, shop):
    """The identity is a CHECK constraint (migration 0006), not a Python assert: an entry the close does not
    classify (here an AVAILABLE entry of a kind no column counts) makes the close fail and write nothing."""
    from sqlalchemy.exc import IntegrityError

    from engine.distribution import DistributorStatus
    from service.usecases import distribution

    await distribution.set_status(
        svc, shop_id=shop.shop_id, user_id="dx", status=DistributorStatus.ACTIVE, actor="t", reason="t"
    )
    async with unit_of_work(svc) as s:  # with its balance moved: LG-1 holds at commit (0010), LG-3 cannot classify it
        await s.execute(
            text(
                "INSERT INTO ledger_entries (shop_id, entry_id, distributor_id, bucket, amount, kind, ref_type, ref_id, "
                "created_at) VALUES (:s, 'odd-1', 'dx', 'AVAILABLE', 700, 'COMMISSION_FROZEN', 'test', 'x', :at)"
            ),
            {"s": shop.shop_id, "at": datetime(2026, 1, 10, tzinfo=timezone.utc)},
        )
        await s.execute(
            text("UPDATE distributors SET available = available + 700 WHERE shop_id = :s AND user_id = 'dx'"),
            {"s": shop.shop_id},
        )
    svc.clock.set(datetime(2026, 3, 1, 1, tzinfo=timezone.utc))
    with pytest.raises(IntegrityError, match="ck_settlement"):
        await settlements.close_period(
            svc, shop_id=shop.shop_id, day_from=date(2026, 1, 1), day_to=date(2026, 2, 1), actor="fin"
        )
    assert await settlements.list_settlements(svc, shop_id=shop.shop_id) == []
    for table in ("settlements", "settlement_lines"):
        cols = "shop_id, settlement_id, " + (
            "distributor_id, "
            if table == "settlement_lines"
            else "period_from, period_to, local_from, local_to, currency, closed_at, closed_by, distributors, "
        )
        vals = ":s, 'st-bad', " + (
            "'d', " if table == "settlement_lines" else "now(), now(), 'a', 'b', 'CNY', now(), 't', 0, "
        )
        with pytest.raises(IntegrityError, match=f"ck_{table}_identity"):
            async with unit_of_work(svc) as s:
                if table == "settlement_lines":  # a reconciling header first, then a line that does not
                    await s.execute(
                        text(
                            "INSERT INTO settlements (shop_id, settlement_id, period_from, period_to, local_from, "
                            "local_to, currency, closed_at, closed_by, distributors, opening, released, reversals, "
                            "bonuses, payouts, fees, closing) VALUES (:s, 'st-bad', now(), now(), 'a', 'b', 'CNY', "
                            "now(), 't', 0, 0, 0, 0, 0, 0, 0, 0)"
                        ),
                        {"s": shop.shop_id},
                    )
                await s.execute(
                    text(
                        f"INSERT INTO {table} ({cols}opening, released, reversals, bonuses, payouts, fees, closing) "
                        f"VALUES ({vals}100, 50, -10, 5, 20, 1, 125)"
                    ),
                    {"s": shop.shop_id},
                )  # 124 would reconcile


def utc(*a) -> datetime:
    return datetime(*a, tzinfo=timezone.utc)


async def _two_distributor_history(svc, shop_id: str, currency: str = "CNY"):
    """The history of docs/worked-examples/settlement.md (shop in Asia/Shanghai, UTC+8): December gives
    d1 2000 and d2 1000 of available commission (the opening of January); January has a clawback of 500
    (d1), a payout of 1000 with a 2 % fee (d1), a rejected payout (d2), an upgrade bonus of 300 (d2),
    1000 released (d2); a reversal stamped exactly at the January end (d2) and a line still frozen
    (d1) stay out. Returns the January batch, closed with a fixed id at a fixed clock."""
    svc.clock.set(utc(2025, 12, 2, 2))
    await shops.create_shop(
        svc,
        shop_id=shop_id,
        name="Golden",
        currency=currency,
        timezone="Asia/Shanghai",
        settings=DistributionSettings(level1_bp=1000, level2_bp=500, freeze_days=7, min_payout=100, payout_fee_bp=200),
    )
    await shops.set_levels(
        svc,
        shop_id=shop_id,
        levels=[
            Level(grade=0, name="Member", level1_bp=1000, level2_bp=500),
            Level(grade=1, name="Silver", level1_bp=1000, level2_bp=500, upgrade_bonus=300, min_direct_referrals=99),
        ],
    )
    for d in ("d1", "d2"):
        await distribution.set_status(
            svc, shop_id=shop_id, user_id=d, status=DistributorStatus.ACTIVE, actor="t", reason="t"
        )
    await distribution.bind_referrer(svc, shop_id=shop_id, user_id="b1", referrer_id="d1")
    await distribution.bind_referrer(svc, shop_id=shop_id, user_id="b3", referrer_id="d2")

    async def sale(ext: str, buyer: str, amount: int):
        o = await orders.report_order(
            svc, shop_id=shop_id, external_id=ext, buyer_id=buyer, lines=[orders.LineInput("p", 1, amount)]
        )
        await pay(svc, shop_id, o.order_id, amount=amount)
        await orders.complete_order(svc, shop_id=shop_id, order_id=o.order_id)
        return o

    o1 = await sale("o1", "b1", 20_000)  # d1: 2000, frozen until Dec 9
    await sale("o3", "b3", 10_000)  # d2: 1000
    svc.clock.set(utc(2025, 12, 10, 2))
    await worker.run_due(svc)  # released in December
    svc.clock.set(utc(2026, 1, 1))  # 08:00 in Shanghai: December ended 8 h ago
    await settlements.close_period(
        svc,
        shop_id=shop_id,
        day_from=date(2025, 12, 1),
        day_to=date(2026, 1, 1),
        actor="fin",
        settlement_id="st_golden_2025_12",
    )
    svc.clock.set(utc(2026, 1, 5, 2))
    await distribution.set_level(svc, shop_id=shop_id, user_id="d2", grade=1, actor="admin", reason="VIP")  # +300
    svc.clock.set(utc(2026, 1, 6, 2))
    await orders.refund_order(svc, shop_id=shop_id, order_id=o1.order_id, amount=5_000, provider_ref="rf-o1")
    svc.clock.set(utc(2026, 1, 7, 2))
    p = await payouts.request_payout(svc, shop_id=shop_id, user_id="d1", amount=1_000)
    await payouts.decide_payout(
        svc, shop_id=shop_id, payout_id=p.payout_id, approve=True, actor="fin", external_ref="bank-1"
    )
    q = await payouts.request_payout(svc, shop_id=shop_id, user_id="d2", amount=500)
    await payouts.decide_payout(
        svc, shop_id=shop_id, payout_id=q.payout_id, approve=False, actor="fin", reason="wrong account"
    )
    svc.clock.set(utc(2026, 1, 8, 2))
    o4 = await sale("o4", "b3", 10_000)  # d2: 1000, available Jan 15
    svc.clock.set(utc(2026, 1, 15, 3))
    await worker.run_due(svc)
    svc.clock.set(utc(2026, 1, 28, 2))
    await sale("o5", "b1", 5_000)  # d1: 500 frozen until Feb 4: not settled in January
    svc.clock.set(utc(2026, 1, 31, 16))  # = 2026-02-01 00:00 in Shanghai: February already
    await orders.refund_order(svc, shop_id=shop_id, order_id=o4.order_id, amount=2_000, provider_ref="rf-o4")
    svc.clock.set(utc(2026, 2, 2, 1))
    await assert_ledger_consistent(svc, shop_id)
    return await settlements.close_period(
        svc,
        shop_id=shop_id,
        day_from=date(2026, 1, 1),
        day_to=date(2026, 2, 1),
        actor="fin",
        settlement_id="st_golden_2026_01",
    )


async def _csv(svc, shop_id: str, settlement_id: str) -> bytes:
    return b"".join([c async for c in exports.csv_chunks(svc, shop_id=shop_id, settlement_id=settlement_id)])


async def test_export_matches_the_hand_computed_golden_csv_LG3(svc):
    """The whole file, byte for byte (docs/worked-examples/settlement.md has the arithmetic)."""
    b = await _two_distributor_history(svc, "golden-cny")
    assert (b.opening, b.released, b.reversals, b.bonuses, b.payouts, b.fees, b.closing) == (
        3000,
        1000,
        -500,
        300,
        980,
        20,
        2800,
    )
    assert await _csv(svc, "golden-cny", b.settlement_id) == GOLDEN.read_bytes()


def xlsx_rows(data: bytes) -> list[list[str]]:
    """The first sheet's rows as strings (inline strings and numbers, which is all the export writes), each at
    its row number: a row without cells (none is written for it) is [], as csv.reader reads a blank line."""
    import re
    import zipfile
    from xml.etree import ElementTree

    ns = {"m": "http://schemas.openxmlformats.org/spreadsheetml/2006/main"}
    sheet = ElementTree.fromstring(zipfile.ZipFile(io.BytesIO(data)).read("xl/worksheets/sheet1.xml"))
    rows = []
    for row in sheet.iterfind(".//m:sheetData/m:row", ns):
        cells: dict[int, str] = {}
        for c in row.iterfind("m:c", ns):
            letters = re.match(r"[A-Z]+", c.get("r")).group()
            col = 0
            for ch in letters:
                col = col * 26 + ord(ch) - 64
            text_node = c.find("m:is/m:t", ns) if c.get("t") == "inlineStr" else c.find("m:v", ns)
            cells[col - 1] = text_node.text or ""
        number = int(row.get("r"))  # 1-based
        rows += [[] for _ in range(number - 1 - len(rows))]
        rows.append([cells.get(i, "") for i in range(max(cells) + 1)])
    return rows


ZERO_DIGIT_ROWS = (
    ["2000", "2000", "0", "0", "-500", "-500", "0", "0", "980", "980", "20", "20", "0", "0", "500", "500", "0", "0"],
    [
        "3000",
        "3000",
        "1000",
        "1000",
        "-500",
        "-500",
        "300",
        "300",
        "980",
        "980",
        "20",
        "20",
        "0",
        "0",
        "2800",
        "2800",
        "0",
        "0",
    ],
)


@pytest.mark.parametrize(
    "currency, d1_row, total_row",
    [
        # opening, released, reversals, bonuses, payouts, fees, failed, closing, held: decimal string, then minor units
        ("JPY", *ZERO_DIGIT_ROWS),
        # issue 13: the old hand-written table printed these with 2 decimals; ISO 4217 gives them none
        ("XOF", *ZERO_DIGIT_ROWS),
        ("UGX", *ZERO_DIGIT_ROWS),
        ("PYG", *ZERO_DIGIT_ROWS),
        (
            "CNY",
            [
                "20.00",
                "2000",
                "0.00",
                "0",
                "-5.00",
                "-500",
                "0.00",
                "0",
                "9.80",
                "980",
                "0.20",
                "20",
                "0.00",
                "0",
                "5.00",
                "500",
                "0.00",
                "0",
            ],
            [
                "30.00",
                "3000",
                "10.00",
                "1000",
                "-5.00",
                "-500",
                "3.00",
                "300",
                "9.80",
                "980",
                "0.20",
                "20",
                "0.00",
                "0",
                "28.00",
                "2800",
                "0.00",
                "0",
            ],
        ),
        (
            "KWD",
            [
                "2.000",
                "2000",
                "0.000",
                "0",
                "-0.500",
                "-500",
                "0.000",
                "0",
                "0.980",
                "980",
                "0.020",
                "20",
                "0.000",
                "0",
                "0.500",
                "500",
                "0.000",
                "0",
            ],
            [
                "3.000",
                "3000",
                "1.000",
                "1000",
                "-0.500",
                "-500",
                "0.300",
                "300",
                "0.980",
                "980",
                "0.020",
                "20",
                "0.000",
                "0",
                "2.800",
                "2800",
                "0.000",
                "0",
            ],
        ),
    ],
)
async def test_exports_write_each_currencys_minor_digits_LG3(svc, currency, d1_row, total_row):
    """JPY, XOF, UGX, PYG have 0 minor digits, CNY 2, KWD 3 (ISO 4217): the same minor units, three decimal renderings —
    in the CSV and, cell for cell, in the XLSX."""
    shop_id = f"cur-{currency.lower()}-{secrets.token_hex(3)}"
    b = await _two_distributor_history(svc, shop_id, currency=currency)
    rows = list(csv.reader(io.StringIO((await _csv(svc, shop_id, b.settlement_id)).decode())))
    header = rows.index(exports.HEADER)
    assert rows[header - 3] == ["currency", currency]
    assert rows[header + 1] == ["d1", *d1_row] and rows[header + 3] == ["TOTAL", *total_row]
    path = Path(await exports.xlsx_file(svc, shop_id=shop_id, settlement_id=b.settlement_id))
    try:
        assert xlsx_rows(path.read_bytes()) == rows  # row for row, from A1, the blank spacer row included
    finally:
        path.unlink()


def test_local_bounds_follow_the_shop_time_zone_LG3():
    """[from, to) are local calendar days: Shanghai is UTC+8 all year; New York moves at DST."""
    assert settlements.local_bounds("Asia/Shanghai", date(2026, 1, 1), date(2026, 2, 1)) == (
        utc(2025, 12, 31, 16),
        utc(2026, 1, 31, 16),
    )
    assert settlements.local_bounds("America/New_York", date(2026, 3, 1), date(2026, 4, 1)) == (
        utc(2026, 3, 1, 5),
        utc(2026, 4, 1, 4),
    )
    assert settlements.local_bounds("UTC", date(2026, 1, 1), date(2026, 1, 2)) == (utc(2026, 1, 1), utc(2026, 1, 2))


async def test_shanghai_period_boundaries_put_each_entry_in_its_local_day_LG3(svc):
    """An entry at 23:59:59 Shanghai time on Dec 31 is December's; one at 00:00:00 on Jan 1 is January's,
    although both are December 31 in UTC."""
    shop_id = f"sh-{secrets.token_hex(4)}"
    svc.clock.set(utc(2025, 12, 1))
    await shops.create_shop(svc, shop_id=shop_id, name="SH", currency="CNY", timezone="Asia/Shanghai")
    await shops.set_levels(
        svc,
        shop_id=shop_id,
        levels=[
            Level(grade=0, name="M", level1_bp=1000, level2_bp=500),
            Level(grade=1, name="S", level1_bp=1000, level2_bp=500, upgrade_bonus=111, min_direct_referrals=99),
            Level(grade=2, name="G", level1_bp=1000, level2_bp=500, upgrade_bonus=222, min_direct_referrals=99),
        ],
    )
    await distribution.set_status(
        svc, shop_id=shop_id, user_id="d", status=DistributorStatus.ACTIVE, actor="t", reason="t"
    )
    svc.clock.set(utc(2025, 12, 31, 15, 59, 59))  # Dec 31 23:59:59 local
    await distribution.set_level(svc, shop_id=shop_id, user_id="d", grade=1, actor="a", reason="r")
    svc.clock.set(utc(2025, 12, 31, 16))  # Jan 1 00:00:00 local
    await distribution.set_level(svc, shop_id=shop_id, user_id="d", grade=2, actor="a", reason="r")
    svc.clock.set(utc(2026, 1, 2))
    dec = await settlements.close_period(
        svc, shop_id=shop_id, day_from=date(2025, 12, 1), day_to=date(2026, 1, 1), actor="fin"
    )
    jan = await settlements.close_period(
        svc, shop_id=shop_id, day_from=date(2026, 1, 1), day_to=date(2026, 1, 2), actor="fin"
    )
    assert (dec.period_from, dec.period_to) == (utc(2025, 11, 30, 16), utc(2025, 12, 31, 16))
    assert (dec.bonuses, dec.closing, jan.opening, jan.bonuses, jan.closing) == (111, 111, 111, 222, 333)


# ---------------------------------------------------------------------------------------------------
# LG-3 as a property: after any history of orders, refunds (before and after availability), clawbacks
# into negative balances, upgrade bonuses (admin-set and earned), approved, rejected and pending payouts,
# closed into several consecutive periods, every batch reconciles with the ledger to the cent.
#
# Checked for every batch, against the raw ledger entries (read back and summed in Python):
# - every line: closing = opening + released + reversals + bonuses − payouts − fees;
# - every line's closing = that distributor's AVAILABLE + IN_PAYOUT entries stamped before `to`, and the
#   batch has a line for exactly the distributors with an entry before `to`;
# - each line's opening = the same distributor's closing in the previous batch (0 if absent), and the
#   batch's opening = the previous batch's closing;
# - the batch's totals = the sums of its lines = the ledger's sums by bucket and kind over [from, to).

DISTRIBUTORS = ("d0", "d1", "d2")  # d2 is bound to d0: d0 earns level 2 on d2's buyers
BUYERS = {"b0": "d0", "b1": "d1", "b2": "d2", "b3": "d1", "b4": None}

BUY = st.tuples(
    st.just("buy"),
    st.sampled_from(sorted(BUYERS)),
    st.integers(100, 60_000),
    st.sampled_from([True, True, False]),  # completed at once (most) or left PAID
    st.sampled_from([None, None, "dev-1"]),
)  # FR-1: the payment's device (velocity, FR-2 b, N = 1)
STEP = st.one_of(
    BUY,
    BUY,
    BUY,
    st.tuples(st.just("complete"), st.integers(0, 40)),
    st.tuples(st.just("refund"), st.integers(0, 40), st.sampled_from([2500, 5000, 10_000])),
    st.tuples(st.just("refund"), st.integers(0, 40), st.sampled_from([2500, 5000, 10_000])),
    st.tuples(st.just("advance"), st.sampled_from([6, 30, 80])),
    st.tuples(st.just("advance"), st.sampled_from([6, 30, 80])),
    st.tuples(
        st.just("payout"),
        st.sampled_from(DISTRIBUTORS),
        st.sampled_from([4000, 10_000]),
        st.sampled_from(["approve", "approve", "reject", "later"]),
    ),
    st.tuples(
        st.just("payout"),
        st.sampled_from(DISTRIBUTORS),
        st.sampled_from([4000, 10_000]),
        st.sampled_from(["approve", "approve", "reject", "later"]),
    ),
    st.tuples(st.just("decide"), st.booleans()),
    st.tuples(st.just("level"), st.sampled_from(DISTRIBUTORS), st.integers(1, 2)),
    st.tuples(st.just("close")),
    st.tuples(st.just("close")),
    # LG-4: the oldest approved payout's transfer fails; FR-3: the oldest open flag is cleared or voided
    st.tuples(st.just("fail")),
    st.tuples(st.just("review"), st.sampled_from(["clear", "void"])),
    st.tuples(st.just("review"), st.sampled_from(["clear", "void"])),
)


async def run_history(svc, steps, *, tz_name: str = "UTC", freeze_days: int = 1, fee_bp: int = 150) -> str:
    """Play `steps` in a fresh shop, close consecutive periods along the way and at the end; returns the shop."""
    shop_id = f"sp-{secrets.token_hex(5)}"
    svc.clock.set(T0)
    tz = ZoneInfo(tz_name)
    await shops.create_shop(
        svc,
        shop_id=shop_id,
        name="prop",
        currency="CNY",
        timezone=tz_name,
        settings=DistributionSettings(
            level1_bp=1000, level2_bp=500, freeze_days=freeze_days, min_payout=100, payout_fee_bp=fee_bp
        ),
    )
    # FR-2 (b): a second order from one device earning a distributor within 30 days is held for review
    await fraud.set_rules(
        svc,
        shop_id=shop_id,
        actor="t",
        rules=FraudRules(velocity=True, velocity_max_orders=1, velocity_window=30 * 86_400),
    )
    await shops.set_levels(
        svc,
        shop_id=shop_id,
        levels=[
            Level(grade=0, name="Member", level1_bp=1000, level2_bp=500),
            # earned (LV-2) once level-1 buyers paid 600.00 net, bonus 250; grade 2 only by an admin (LV-3)
            Level(grade=1, name="Silver", level1_bp=1200, level2_bp=500, upgrade_bonus=250, min_direct_sales=60_000),
            Level(grade=2, name="Gold", level1_bp=1500, level2_bp=600, upgrade_bonus=700, min_direct_referrals=99),
        ],
    )
    for d in DISTRIBUTORS:
        await distribution.set_status(
            svc, shop_id=shop_id, user_id=d, status=DistributorStatus.ACTIVE, actor="t", reason="t"
        )
    await distribution.bind_referrer(svc, shop_id=shop_id, user_id="d2", referrer_id="d0")
    for b, d in BUYERS.items():
        if d:
            await distribution.bind_referrer(svc, shop_id=shop_id, user_id=b, referrer_id=d)

    order_ids: list[str] = []
    pending: list[str] = []
    approved: list[str] = []
    last_to: date | None = None
    start_day = T0.astimezone(tz).date()
    n = 0

    async def close():
        nonlocal last_to
        today = (svc.now() - settlements.CLOSE_GRACE).astimezone(tz).date()
        first = last_to or start_day
        if today > first:
            await settlements.close_period(svc, shop_id=shop_id, day_from=first, day_to=today, actor="fin")
            last_to = today

    for step in steps:
        n += 1
        kind = step[0]
        try:
            if kind == "buy":
                o = await orders.report_order(
                    svc,
                    shop_id=shop_id,
                    external_id=f"o{n}",
                    buyer_id=step[1],
                    lines=[orders.LineInput("p", 1, step[2])],
                )
                await orders.confirm_payment(
                    svc,
                    shop_id=shop_id,
                    order_id=o.order_id,
                    amount=step[2],
                    provider_ref=f"{shop_id}-pay-{n}",
                    fingerprints={"DEVICE": step[4]} if len(step) > 4 and step[4] else None,
                )
                order_ids.append(o.order_id)
                if step[3]:
                    await orders.complete_order(svc, shop_id=shop_id, order_id=o.order_id)
            elif kind == "complete" and order_ids:
                await orders.complete_order(svc, shop_id=shop_id, order_id=order_ids[step[1] % len(order_ids)])
            elif kind == "refund" and order_ids:
                o = await orders.get_order_caught_up(svc, shop_id=shop_id, order_id=order_ids[step[1] % len(order_ids)])
                left = o.paid_amount - o.refunded_amount
                if left > 0:
                    await orders.refund_order(
                        svc,
                        shop_id=shop_id,
                        order_id=o.order_id,
                        amount=max(1, left * step[2] // 10_000),
                        provider_ref=f"{shop_id}-rf-{n}",
                    )
            elif kind == "advance":
                svc.clock.advance(timedelta(hours=step[1]))
                await worker.release_due_lines(svc, shop_id=shop_id)
            elif kind == "payout":
                d = await distribution.get_distributor(svc, shop_id=shop_id, user_id=step[1])
                amount = max(100, d.available * step[2] // 10_000)
                p = await payouts.request_payout(svc, shop_id=shop_id, user_id=step[1], amount=amount)
                if step[3] == "later":
                    pending.append(p.payout_id)
                else:
                    await payouts.decide_payout(
                        svc,
                        shop_id=shop_id,
                        payout_id=p.payout_id,
                        approve=step[3] == "approve",
                        actor="fin",
                        external_ref=f"bank-{n}",
                        reason="no",
                    )
                    if step[3] == "approve":
                        approved.append(p.payout_id)
            elif kind == "decide" and pending:
                pid = pending.pop(0)
                await payouts.decide_payout(
                    svc,
                    shop_id=shop_id,
                    payout_id=pid,
                    approve=step[1],
                    actor="fin",
                    external_ref=f"bank-{n}",
                    reason="no",
                )
                if step[1]:
                    approved.append(pid)
            elif kind == "fail" and approved:
                await payouts.fail_payout(
                    svc, shop_id=shop_id, payout_id=approved.pop(0), actor="be", transfer_ref=f"t-{n}", reason="bounced"
                )
            elif kind == "review":
                queue = await fraud_reads.review_queue(svc, shop_id=shop_id, limit=1)
                if queue and step[1] == "clear":
                    await fraud.clear_flag(svc, shop_id=shop_id, flag_id=queue[0].flag_id, actor="a")
                elif queue:
                    await fraud.void_flag(svc, shop_id=shop_id, flag_id=queue[0].flag_id, actor="a", reason="t")
            elif kind == "level":
                await distribution.set_level(
                    svc, shop_id=shop_id, user_id=step[1], grade=step[2], actor="a", reason="t"
                )
            elif kind == "close":
                await close()
        except RuleViolation:
            pass  # ER-1: a refusal (payout below minimum or above available, …) changes nothing
    svc.clock.advance(timedelta(days=freeze_days + 1, hours=1))
    await worker.release_due_lines(svc, shop_id=shop_id)
    await close()
    await assert_ledger_consistent(svc, shop_id)
    return shop_id


COLUMNS = ("opening", "released", "reversals", "bonuses", "payouts", "fees", "failed", "closing", "held")


async def check_batches(svc, shop_id: str) -> list:
    """The LG-3 properties of the module docstring; returns the batches with their lines."""
    batches = await settlements.list_settlements(svc, shop_id=shop_id)
    assert batches, "the history closes at least one period"
    async with svc.sessionmaker() as s:
        entries = (
            await s.execute(
                text(
                    "SELECT distributor_id, bucket, kind, amount, created_at, ref_type, ref_id FROM ledger_entries "
                    "WHERE shop_id = :s"
                ),
                {"s": shop_id},
            )
        ).all()
        flags = (
            await s.execute(
                text(
                    "SELECT line_id, flagged_at, resolved_at FROM fraud_flags WHERE shop_id = :s AND subject = 'LINE'"
                ),
                {"s": shop_id},
            )
        ).all()
        all_lines = (
            (await s.execute(text("SELECT * FROM settlement_lines WHERE shop_id = :s"), {"s": shop_id}))
            .mappings()
            .all()
        )
    lines_of = defaultdict(dict)
    for ln in all_lines:
        lines_of[ln["settlement_id"]][ln["distributor_id"]] = ln
    prev_batch, prev_lines, out = None, {}, []
    for b in batches:
        lines = lines_of[b.settlement_id]
        before_to = [e for e in entries if e.created_at < b.period_to]
        inside = [e for e in before_to if e.created_at >= b.period_from]
        settled = defaultdict(int)
        for e in before_to:
            if e.bucket in ("AVAILABLE", "IN_PAYOUT"):
                settled[e.distributor_id] += e.amount
        assert set(lines) == {e.distributor_id for e in before_to}
        # FR-3: a line is held at `to` when its flag was raised before and not resolved before; what it holds
        # then is its PENDING and FROZEN entries before `to` (a held line never reaches AVAILABLE)
        held_lines = {
            f.line_id
            for f in flags
            if f.flagged_at < b.period_to and (f.resolved_at is None or f.resolved_at >= b.period_to)
        }
        held = defaultdict(int)
        for e in before_to:
            if e.ref_type == "commission" and e.ref_id in held_lines:
                assert e.kind != "COMMISSION_RELEASED" or e.created_at >= b.period_to  # held: never released
                if e.bucket in ("PENDING", "FROZEN"):
                    held[e.distributor_id] += e.amount
        for d, ln in lines.items():
            assert ln["closing"] == (
                ln["opening"]
                + ln["released"]
                + ln["reversals"]
                + ln["bonuses"]
                - ln["payouts"]
                - ln["fees"]
                + ln["failed"]
            ), (b.settlement_id, d, dict(ln))
            assert ln["closing"] == settled[d], (b.settlement_id, d)
            assert ln["held"] == held[d] >= 0, (b.settlement_id, d)
            assert ln["opening"] == (prev_lines[d]["closing"] if d in prev_lines else 0), (b.settlement_id, d)
        if prev_batch is not None:
            assert b.period_from == prev_batch.period_to and b.opening == prev_batch.closing
        for col in COLUMNS:
            assert getattr(b, col) == sum(ln[col] for ln in lines.values()), col

        def total(bucket=None, kind=None, rows=inside):
            return sum(
                e.amount for e in rows if (bucket is None or e.bucket in bucket) and (kind is None or e.kind == kind)
            )

        before_from = [e for e in before_to if e.created_at < b.period_from]
        assert (b.opening, b.released, b.reversals, b.bonuses, b.payouts, b.fees, b.failed, b.closing, b.held) == (
            total(("AVAILABLE", "IN_PAYOUT"), rows=before_from),
            total(("AVAILABLE",), "COMMISSION_RELEASED"),
            total(("AVAILABLE",), "COMMISSION_REVERSED"),
            total(kind="UPGRADE_BONUS"),
            total(("PAID",), "PAYOUT_APPROVED"),
            total(("FEES",), "PAYOUT_FEE"),
            total(("AVAILABLE",), "PAYOUT_FAILED") + total(("AVAILABLE",), "PAYOUT_FEE_REVERSED"),
            total(("AVAILABLE", "IN_PAYOUT"), rows=before_to),
            sum(held.values()),
        )
        out.append((b, lines))
        prev_batch, prev_lines = b, lines
    return out


@settings(
    max_examples=20, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow]
)
@given(
    steps=st.lists(STEP, min_size=10, max_size=40),
    tz_name=st.sampled_from(["UTC", "Asia/Shanghai"]),
    freeze_days=st.integers(0, 2),
    fee_bp=st.sampled_from([0, 150]),
)
async def test_batches_reconcile_after_any_history_LG3(svc, steps, tz_name, freeze_days, fee_bp):
    shop_id = await run_history(svc, steps, tz_name=tz_name, freeze_days=freeze_days, fee_bp=fee_bp)
    await check_batches(svc, shop_id)


async def test_a_history_with_every_movement_reconciles_LG3(svc):
    """A fixed history that surely contains each movement the property is about (random ones may not):
    release, clawback into a negative balance, earned and admin bonuses, approved (with fee), rejected and
    pending payouts, refunds before availability, several periods."""
    steps = [
        ("buy", "b1", 50_000, True),
        ("buy", "b2", 20_000, True),
        ("buy", "b0", 30_000, False),
        ("refund", 1, 5000),  # before availability: reverses a frozen line
        ("advance", 30),
        ("close",),
        ("payout", "d1", 10_000, "approve"),  # all of d1's 5000 (Silver rate on o1 after LV-2) paid out
        ("level", "d2", 2),  # admin bonus 700
        ("refund", 0, 10_000),  # after availability and payout: d1 goes negative
        ("advance", 30),
        ("close",),
        ("complete", 2),
        ("advance", 30),
        ("payout", "d0", 10_000, "reject"),
        ("payout", "d0", 4000, "later"),
        ("close",),
        ("advance", 9),
    ]
    shop_id = await run_history(svc, steps, freeze_days=1, fee_bp=150)
    batches = await check_batches(svc, shop_id)
    assert len(batches) >= 3
    lines = [ln for _, ls in batches for ln in ls.values()]
    assert min(ln["closing"] for ln in lines) < 0  # a clawback to a negative balance
    assert sum(b.bonuses for b, _ in batches) >= 700 + 250 and sum(b.fees for b, _ in batches) > 0
    assert sum(b.released for b, _ in batches) > 0 and sum(b.reversals for b, _ in batches) < 0
    async with svc.sessionmaker() as s:
        kinds = set(
            (
                await s.execute(text("SELECT DISTINCT kind FROM ledger_entries WHERE shop_id = :s"), {"s": shop_id})
            ).scalars()
        )
    assert {"PAYOUT_REJECTED", "COMMISSION_REVERSED", "UPGRADE_BONUS", "PAYOUT_FEE"} <= kinds


async def test_a_history_with_held_cleared_voided_and_failed_items_reconciles_LG3_LG4_FR3(svc):
    """The issue's "done when": a history that surely holds commission for review across a period end, clears
    one flag after its line came due (released at once), voids another, and fails an approved payout — every
    batch reconciles to the cent, `held` shows at the period end and `failed` joins the identity."""
    steps = [
        ("buy", "b1", 20_000, True, "dev-1"),
        ("buy", "b3", 30_000, True, "dev-1"),  # b3's order: d1's line held
        ("buy", "b0", 10_000, True, "dev-1"),
        ("buy", "b2", 40_000, True, "dev-1"),  # b2's: d0's level 2 held
        ("buy", "b3", 10_000, False, "dev-1"),  # left PAID: d1's line held in PENDING
        ("advance", 30),
        ("close",),  # the held lines are due but stay frozen: held at the period end
        ("payout", "d1", 10_000, "approve"),
        ("fail",),  # LG-4: all of it back to available, the fee reversed
        ("review", "clear"),  # d1's frozen line: available at once
        ("review", "void"),  # d0's: voided from FROZEN
        ("advance", 30),
        ("close",),
        ("review", "clear"),  # the pending one: cleared, no longer held, still pending
        ("advance", 30),
        ("close",),
        ("payout", "d1", 4000, "approve"),
        ("advance", 30),
        ("close",),
    ]
    shop_id = await run_history(svc, steps, freeze_days=1, fee_bp=150)
    batches = await check_batches(svc, shop_id)
    assert len(batches) >= 3
    assert batches[0][0].held > 0 and sum(b.failed for b, _ in batches) > 0
    async with svc.sessionmaker() as s:
        states = set(
            (await s.execute(text("SELECT state FROM fraud_flags WHERE shop_id = :s"), {"s": shop_id})).scalars()
        )
        voided = (
            await s.execute(
                text("SELECT count(*) FROM ledger_entries WHERE shop_id = :s AND kind = 'COMMISSION_VOIDED'"),
                {"s": shop_id},
            )
        ).scalar()
    assert {"CLEARED", "VOIDED"} <= states and voided >= 1


# ---------------------------------------------------------------------------------------------------
async def test_xlsx_opens_in_libreoffice_and_its_totals_match_the_ledger_LG3(svc, tmp_path):
    """The issue's "done when": a spreadsheet program opens the XLSX (LibreOffice headless converts it to
    CSV) and the TOTAL row it shows equals the ledger's sums to the cent. (Over HTTP, as finance downloads
    it: tests/api/test_e2e.py::test_finance_closes_last_month_and_its_xlsx_in_libreoffice_matches_the_ledger_LG3.)"""
    soffice_or_skip()
    shop_id = f"lo-{secrets.token_hex(4)}"
    b = await _two_distributor_history(svc, shop_id)
    path = Path(await exports.xlsx_file(svc, shop_id=shop_id, settlement_id=b.settlement_id))
    try:
        rows = libreoffice_rows(path.read_bytes(), tmp_path)
    finally:
        path.unlink()
    sums = await ledger_sums(svc, shop_id, b.period_from, b.period_to)
    shown = assert_total_row_matches(rows, sums, digits=2)  # CNY: 2 minor digits
    assert (int(shown["closing_minor"]), shown["closing"]) == (2800, "28.00")


# ---------------------------------------------------------------------------------------------------
async def test_cli_closes_and_exports_identical_bytes_in_both_formats_LG3(svc, database_url, tmp_path):
    """`sharecart close-period` and `sharecart export` as a finance user runs them (a separate process on
    DATABASE_URL, the wall clock): the same batch exported twice gives the same bytes, equal to the
    service's own CSV and XLSX."""
    import asyncio
    import os
    import subprocess
    import sys

    root = Path(__file__).resolve().parents[2]
    env = {**os.environ, "DATABASE_URL": database_url, "PYTHONPATH": str(root)}

    def cli(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run(
            [sys.executable, "-m", "api.cli", *args], cwd=root, env=env, capture_output=True, text=True, timeout=120
        )

    shop_id = f"cli-{secrets.token_hex(4)}"
    jan = await _two_distributor_history(svc, shop_id)
    # February by the CLI: its clock is the wall clock, long past 2026-03-01
    r = await asyncio.to_thread(cli, "close-period", shop_id, "--from", "2026-02-01", "--to", "2026-03-01")
    assert r.returncode == 0, r.stderr
    feb_id, closing = r.stdout.split()[0], r.stdout.split()[1]
    feb = await settlements.get_settlement(svc, shop_id=shop_id, settlement_id=feb_id)
    assert feb.opening == jan.closing and closing == f"closing={feb.closing}"
    assert feb.reversals == -200 and feb.closing == 2800 - 200  # the reversal stamped Feb 1 00:00 Shanghai time
    again = await asyncio.to_thread(cli, "close-period", shop_id, "--from", "2026-02-01", "--to", "2026-03-01")
    assert again.stdout.split()[0] == feb_id  # the same period twice: the first batch

    for fmt in ("csv", "xlsx"):
        outs = [tmp_path / f"{feb_id}-{i}.{fmt}" for i in (1, 2)]
        for out in outs:
            r = await asyncio.to_thread(cli, "export", shop_id, feb_id, "--format", fmt, "--out", str(out))
            assert r.returncode == 0 and f"wrote {out}" in r.stdout, r.stderr
        first, second = (o.read_bytes() for o in outs)
        assert first == second
        if fmt == "csv":
            assert first == await _csv(svc, shop_id, feb_id)
        else:
            path = Path(await exports.xlsx_file(svc, shop_id=shop_id, settlement_id=feb_id))
            assert first == path.read_bytes()
            path.unlink()
    missing = await asyncio.to_thread(cli, "export", shop_id, "st_nope", "--out", str(tmp_path / "x.csv"))
    assert missing.returncode == 2 and "no settlement st_nope" in missing.stderr
    bad = await asyncio.to_thread(cli, "export", shop_id, feb_id, "--format", "pdf", "--out", str(tmp_path / "x"))
    assert bad.returncode == 2 and "csv or xlsx" in bad.stderr
    early = await asyncio.to_thread(cli, "close-period", shop_id, "--from", "2026-03-01", "--to", "2099-01-01")
    assert early.returncode == 2 and "PERIOD_NOT_ENDED" in early.stderr


async def test_cli_export_draws_its_progress_bar_on_stderr_LG3(svc, database_url, tmp_path):
    """`sharecart export` shows progress on stderr: a bar that reaches 100 % when stderr is a terminal (a
    pseudo-terminal here), only its label when it is not; stdout carries the result line alone either way."""
    import asyncio
    import os
    import pty
    import re
    import subprocess
    import sys

    root = Path(__file__).resolve().parents[2]
    env = {**os.environ, "DATABASE_URL": database_url, "PYTHONPATH": str(root)}
    shop_id = f"bar-{secrets.token_hex(4)}"
    b = await _two_distributor_history(svc, shop_id)
    out = tmp_path / "batch.csv"
    args = [sys.executable, "-m", "api.cli", "export", shop_id, b.settlement_id, "--out", str(out)]

    def on_a_terminal() -> tuple[int, str, str]:
        master, slave = pty.openpty()
        try:
            p = subprocess.Popen(args, cwd=root, env=env, stdout=subprocess.PIPE, stderr=slave, text=True)
        finally:
            os.close(slave)
        stdout = p.communicate(timeout=120)[0]
        seen = b""
        while True:
            try:
                chunk = os.read(master, 4096)
            except OSError:  # EIO: the child side is closed and everything has been read
                break
            if not chunk:
                break
            seen += chunk
        os.close(master)
        return p.returncode, stdout, seen.decode()

    code, stdout, terminal = await asyncio.to_thread(on_a_terminal)
    assert code == 0 and stdout == f"wrote {out}\n", (stdout, terminal)
    shown = re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", terminal)  # without the cursor hide/show sequences
    frames = [f for f in shown.replace("\r\n", "\r").split("\r") if f.strip()]
    assert frames[0].startswith("exporting csv") and "0%" in frames[0]  # drawn at the start ...
    assert "100%" in frames[-1] and "[" + "#" * 36 + "]" in frames[-1], frames  # ... and full at the end
    assert out.read_bytes() == await _csv(svc, shop_id, b.settlement_id)

    piped = await asyncio.to_thread(
        subprocess.run, args, cwd=root, env=env, capture_output=True, text=True, timeout=120
    )
    assert piped.returncode == 0 and piped.stdout == f"wrote {out}\n"
    assert piped.stderr.strip() == "exporting csv"  # not a terminal: the label once, no bar redrawn
