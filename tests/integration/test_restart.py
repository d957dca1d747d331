"""A service process killed in the middle of its work loses no committed effect and leaves no
uncommitted one; a new process running the service's worker finishes the due work (GB-11).

Three child processes (tests/integration/restart_child.py), each SIGKILLed or stopped by the test:
1. does committed work, then is killed inside a join's transaction (writes sent, no commit);
2. runs the worker loop and is killed inside the transaction that advances a due group;
3. runs the worker loop to the end of the due work.
The test process only reads rows as stored; it never applies due work itself."""

from __future__ import annotations

import asyncio
import os
import secrets
import select as os_select
import signal
import subprocess
import sys
import time
from pathlib import Path

from sqlalchemy import func, select, text

from store.models import CampaignRow, CampaignUserUnits, CommissionLineRow, Distributor, GroupRow, Order, SeatRow
from tests.integration.helpers import assert_ledger_consistent, raw_row

ROOT = Path(__file__).resolve().parents[2]


def _start(*args: str) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "tests.integration.restart_child", *args],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        bufsize=0,
        env={**os.environ},
    )


def _expect(child: subprocess.Popen, prefix: str, timeout: float = 60) -> list[str]:
    """The words of the child's next output line, which must start with `prefix`. Read a byte at a
    time, so a second line already in the pipe stays there for the next call."""
    fd, line, deadline = child.stdout.fileno(), b"", time.monotonic() + timeout
    while not line.endswith(b"\n"):
        ready, _, _ = os_select.select([fd], [], [], max(0.0, deadline - time.monotonic()))
        if not ready:
            raise AssertionError(f"no {prefix} line from the child in {timeout} s (got {line!r})")
        byte = os.read(fd, 1)
        if not byte:
            raise AssertionError(f"the child ended (code {child.wait()}) before {prefix}: {line!r}")
        line += byte
    text_line = line.decode()
    assert text_line.startswith(prefix), (prefix, text_line)
    return text_line.split()[1:]


def _kill(child: subprocess.Popen) -> None:
    if child.poll() is None:
        child.send_signal(signal.SIGKILL)
    child.wait(timeout=30)


async def _count(svc, model, *where) -> int:
    async with svc.sessionmaker() as s:
        return (await s.execute(select(func.count()).select_from(model).where(*where))).scalar_one()


async def _events(svc, shop_id: str, type_: str, group_id: str) -> int:
    async with svc.sessionmaker() as s:
        return (
            await s.execute(
                text("SELECT count(*) FROM events WHERE shop_id=:s AND type=:t AND aggregate_id=:g"),
                {"s": shop_id, "t": type_, "g": group_id},
            )
        ).scalar_one()


async def test_processes_killed_mid_transaction_lose_nothing_and_a_new_worker_finishes_GB11(svc, database_url):
    shop_id = f"rs-{secrets.token_hex(4)}"

    # 1. committed work, then killed inside the transaction of one more join
    child = _start("work", database_url, shop_id)
    try:
        campaign_id, group_id, late_group, late_order, plain_order = _expect(child, "COMMITTED")
        assert _expect(child, "IN_TX") == [group_id]
    finally:
        _kill(child)

    async def stored_before_the_worker():
        row = await raw_row(svc, GroupRow, shop_id, group_id)
        assert (row.state, row.held_seats, row.paid_seats) == ("OPEN", 2, 2)  # every committed seat
        assert (await raw_row(svc, GroupRow, shop_id, late_group)).state == "PENDING"
        assert (await raw_row(svc, Order, shop_id, late_order)).state == "CREATED"
        line = (await _lines(svc, shop_id, plain_order))[0]
        assert line.state == "FROZEN"
        for model, where in (
            (Order, Order.buyer_id == "ghost"),
            (SeatRow, SeatRow.user_id == "ghost"),
            (CampaignUserUnits, CampaignUserUnits.user_id == "ghost"),
        ):
            assert await _count(svc, model, model.shop_id == shop_id, where) == 0  # nothing uncommitted
        assert (await raw_row(svc, CampaignRow, shop_id, campaign_id)).stock_left == 10 - 3

    await stored_before_the_worker()

    # 2. the worker, killed inside the transaction that advances one of the shop's due groups
    child = _start("worker", database_url, shop_id, "--hang")
    try:
        _expect(child, "WORKER")
        assert _expect(child, "IN_TX")[0] in (group_id, late_group)
    finally:
        _kill(child)
    await stored_before_the_worker()  # its uncommitted advance is not visible

    # 3. a new process's worker finishes the due work
    child = _start("worker", database_url, shop_id)
    try:
        _expect(child, "WORKER")
        deadline = time.monotonic() + 60
        while True:
            done = (
                (await raw_row(svc, GroupRow, shop_id, group_id)).state == "FORMED"
                and (await raw_row(svc, GroupRow, shop_id, late_group)).state == "CANCELLED"
                and (await _lines(svc, shop_id, plain_order))[0].state == "AVAILABLE"
            )
            if done:
                break
            assert time.monotonic() < deadline and child.poll() is None, "the worker did not finish the due work"
            await asyncio.sleep(0.2)
    finally:
        _kill(child)

    row = await raw_row(svc, GroupRow, shop_id, group_id)
    assert (row.state, row.tier_members, row.paid_seats) == ("FORMED", 2, 2)  # GB-4 at expiry, first tier
    assert (await raw_row(svc, Order, shop_id, late_order)).state == "CANCELLED"  # GB-2 release
    assert (await raw_row(svc, CampaignRow, shop_id, campaign_id)).stock_left == 10 - 2  # its stock back
    assert (await raw_row(svc, Distributor, shop_id, "d1")).available == 1_000  # CM-6 release
    assert await _events(svc, shop_id, "group.formed", group_id) == 1  # applied once, not per process
    assert await _events(svc, shop_id, "seat.released", late_group) == 1
    assert await _count(svc, Order, Order.shop_id == shop_id, Order.buyer_id == "ghost") == 0
    async with svc.sessionmaker() as s:
        owed = (
            await s.execute(text("SELECT count(*) FROM refunds WHERE shop_id=:s AND state='OWED'"), {"s": shop_id})
        ).scalar_one()
    assert owed == 0  # formed at the first tier: nobody is owed a difference
    await assert_ledger_consistent(svc, shop_id)


async def _lines(svc, shop_id: str, order_id: str) -> list[CommissionLineRow]:
    async with svc.sessionmaker() as s:
        return list(
            (
                await s.execute(
                    select(CommissionLineRow).where(
                        CommissionLineRow.shop_id == shop_id, CommissionLineRow.order_id == order_id
                    )
                )
            ).scalars()
        )
