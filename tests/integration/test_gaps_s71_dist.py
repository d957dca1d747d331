"""Survivors of the seed-71 mutation sample of service/ (issue 12), each killed by a test through the service on a
real PostgreSQL: what the mutant changed is checked as an outcome a caller can see."""

from __future__ import annotations

import pytest

from engine.distribution import DistributorStatus
from engine.errors import ErrorCode, RuleViolation
from service.reads import preview
from service.usecases import distribution, visits


async def test_DS1_a_reinstated_distributor_keeps_the_first_approval(svc, shop):
    """DS-1 (service/usecases/distribution.py `set_status`): approved by a1, suspended by a2 and reinstated by a3,
    the distributor's approval is still a1's, at the first instant; the reinstatement does not re-approve."""
    sid = shop.shop_id
    kw = dict(svc=svc, shop_id=sid, user_id="dora", reason="r")
    await distribution.set_status(status=DistributorStatus.ACTIVE, actor="a1", **kw)
    first = await distribution.get_distributor(svc, shop_id=sid, user_id="dora")
    await distribution.set_status(status=DistributorStatus.SUSPENDED, actor="a2", **kw)
    await distribution.set_status(status=DistributorStatus.ACTIVE, actor="a3", **kw)
    got = await distribution.get_distributor(svc, shop_id=sid, user_id="dora")
    assert got.status == DistributorStatus.ACTIVE.value
    assert (got.approved_by, got.approved_at) == ("a1", first.approved_at)


async def test_GB10_a_visit_with_a_one_character_idempotency_key_is_recorded(svc, shop):
    """GB-10 (service/usecases/visits.py `record_visit`): an idempotency key is 1..200 characters: one of a single
    character records the visit (and again, the same visit); an empty one is INVALID_INPUT on idempotencyKey."""
    sid = shop.shop_id
    await distribution.set_status(
        svc, shop_id=sid, user_id="ref", status=DistributorStatus.ACTIVE, actor="a", reason="r"
    )
    code = (await distribution.get_distributor(svc, shop_id=sid, user_id="ref")).invite_code
    kw = dict(shop_id=sid, invite_code=code, visitor_id="visitor-aaa", limiter=visits.VisitLimiter())
    one = await visits.record_visit(svc, idempotency_key="k", **kw)
    again = await visits.record_visit(svc, idempotency_key="k", **kw)
    assert (one.replayed, again.replayed, again.visit_id) == (False, True, one.visit_id)
    assert not (await visits.record_visit(svc, idempotency_key="k" * 200, **kw)).replayed
    for bad in ("", "k" * 201):
        with pytest.raises(RuleViolation) as e:
            await visits.record_visit(svc, idempotency_key=bad, **kw)
        assert (e.value.code, e.value.field) == (ErrorCode.INVALID_INPUT, "idempotencyKey")


async def test_OR3_a_preview_line_with_a_129_character_product_ref_is_invalid_input(svc, shop):
    """OR-3/CM-7 (service/reads/preview.py `_check_cart`): a cart line's product ref is 1..128 characters; one of
    129 is INVALID_INPUT on that line (`lines.1`), before anything is priced."""
    lines = [preview.CartLine("plain", 1, 100), preview.CartLine("p" * 129, 1, 100)]
    with pytest.raises(RuleViolation) as e:
        await preview.commission_preview(svc, shop_id=shop.shop_id, buyer_id="buyer", lines=lines)
    assert (e.value.code, e.value.field) == (ErrorCode.INVALID_INPUT, "lines.1")
    lines[1] = preview.CartLine("p" * 128, 1, 100)
    await preview.commission_preview(svc, shop_id=shop.shop_id, buyer_id="buyer", lines=lines)  # 128: priced


async def test_LG3_an_xlsx_export_that_fails_midway_raises_and_leaves_no_file(svc, shop, tmp_path, monkeypatch):
    """LG-3 (service/reads/exports.py `xlsx_file`): the export writes a temporary file named
    `sharecart-settlement-*.xlsx` (what the leftover checks look for); when writing fails midway (here the progress
    callback raises) the error reaches the caller and the half-written file is gone, and so are the worksheet
    spool files xlsxwriter's constant-memory mode writes beside it (`tmpXXXXXXXX`): nothing is left behind."""
    import tempfile
    from datetime import date, datetime, timezone
    from pathlib import Path

    from service.reads import exports
    from service.usecases import settlements
    from tests.integration.test_gaps_money import _earned

    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    sid = shop.shop_id
    await _earned(svc, sid, fee_bp=0)
    svc.clock.set(datetime(2026, 2, 1, 0, 5, tzinfo=timezone.utc))
    b = await settlements.close_period(svc, shop_id=sid, day_from=date(2026, 1, 1), day_to=date(2026, 2, 1), actor="f")
    path = Path(await exports.xlsx_file(svc, shop_id=sid, settlement_id=b.settlement_id))
    assert path.parent == tmp_path and path.name.startswith("sharecart-settlement-") and path.suffix == ".xlsx"
    assert list(tmp_path.iterdir()) == [path]  # a finished export leaves only the file the caller removes
    path.unlink()

    def boom(n: int) -> None:
        raise OSError("disk full")

    with pytest.raises(OSError, match="disk full"):
        await exports.xlsx_file(svc, shop_id=sid, settlement_id=b.settlement_id, progress=boom)
    assert list(tmp_path.iterdir()) == []
