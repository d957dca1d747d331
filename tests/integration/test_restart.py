"""A service process killed between steps loses no committed effect, and the worker of the next
process finishes the due work (GB-11)."""

from __future__ import annotations

import os
import secrets
import signal
import subprocess
import sys
from datetime import timedelta
from pathlib import Path

from service import groups, refunds, worker

ROOT = Path(__file__).resolve().parents[2]


async def test_killed_process_loses_nothing_and_worker_finishes_after_restart_GB11(svc, database_url):
    shop_id = f"rs-{secrets.token_hex(4)}"
    child = subprocess.Popen([sys.executable, "-m", "tests.integration.restart_child", database_url, shop_id],
                             cwd=ROOT, stdout=subprocess.PIPE, text=True, env={**os.environ})
    try:
        line = child.stdout.readline()
        assert line.startswith("READY"), line
        group_id = line.split()[1]
    finally:
        child.send_signal(signal.SIGKILL)
        child.wait(timeout=30)
    row, g = await groups.get_group(svc, shop_id=shop_id, group_id=group_id)
    assert g.state.value == "OPEN" and g.paid_seats == 2  # every committed effect is there
    svc.clock.advance(timedelta(hours=25))  # the new process's clock: past expires_at
    assert await worker.run_due_groups(svc) >= 1
    row, g = await groups.get_group(svc, shop_id=shop_id, group_id=group_id)
    assert g.state.value == "FORMED" and g.tier_members == 2  # GB-4 at expiry with min_size paid
    assert await refunds.list_refunds(svc, shop_id=shop_id, state="OWED") == []  # first tier: no partial refund
