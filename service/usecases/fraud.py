"""Fraud review use cases (FR-2..FR-4): the shop's rules, and an admin's clear / void / dissolve.

Each decision takes the flag and its lines under FOR UPDATE, applies the engine's transition per line
(`fraud.clear_line`, `fraud.void_held_line`, `fraud.dissolve_group`) in one applier write, and records the action
on the flag (who, when, why) with an event (FR-4).
"""

from __future__ import annotations

from dataclasses import asdict

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from engine import commission as cm
from engine import fraud as fr
from engine.errors import ErrorCode, refuse
from engine.events import EventType
from service.context import Services
from service.reads.fraud import FLAG_COLUMNS, FlagView, _flag_view, review_queue
from service.tx.fraud import RULE_FIELDS
from service.tx.idempotency import once_or_replay
from service.tx.ledger import LedgerBatch, line_from_row
from service.uow import unit_of_work


async def set_rules(svc: Services, *, shop_id: str, rules: fr.FraudRules, actor: str) -> fr.FraudRules:
    """FR-2: the shop's rules and thresholds, replaced whole (validated by the engine)."""
    fr.validate_rules(rules)
    now = svc.now()
    values = asdict(rules)
    cols = ", ".join(RULE_FIELDS)
    async with unit_of_work(svc) as s:
        await s.execute(
            text(
                f"INSERT INTO fraud_rules (shop_id, {cols}, updated_at, updated_by) VALUES (:s, "
                + ", ".join(f":{f}" for f in RULE_FIELDS)
                + ", :now, :actor) ON CONFLICT (shop_id) DO UPDATE SET "
                + ", ".join(f"{f} = EXCLUDED.{f}" for f in RULE_FIELDS)
                + ", updated_at = :now, updated_by = :actor"
            ),
            {"s": shop_id, **values, "now": now, "actor": actor},
        )
    return rules


# a flag's lines: its own line, or every line of its group's orders
_FLAG_LINES = """
    SELECT c.* FROM commission_lines c
    WHERE c.shop_id = :s AND ((:subject = 'LINE' AND c.line_id = :line_id)
       OR (:subject = 'GROUP' AND c.order_id IN (SELECT order_id FROM orders WHERE shop_id = :s AND group_id = :g)))
"""


async def _load_flag(s: AsyncSession, shop_id: str, flag_id: str) -> FlagView:
    row = (
        await s.execute(
            text(f"SELECT {FLAG_COLUMNS} FROM fraud_flags WHERE shop_id = :s AND flag_id = :f FOR UPDATE"),
            {"s": shop_id, "f": flag_id},
        )
    ).first()
    if row is None:
        raise refuse(ErrorCode.NOT_FOUND, "no such flag in the review queue", field="flagId")
    return _flag_view(row)


async def _flag_lines(s: AsyncSession, shop_id: str, flag: FlagView) -> list[cm.CommissionLine]:
    rows = (
        await s.execute(
            text(f"{_FLAG_LINES} ORDER BY c.line_id FOR UPDATE"),
            {"s": shop_id, "subject": flag.subject, "line_id": flag.line_id, "g": flag.group_id},
        )
    ).all()
    return [line_from_row(r) for r in rows]


async def _still_flagged(s: AsyncSession, shop_id: str, flag: FlagView, lines: list[cm.CommissionLine]) -> set[str]:
    """Lines another OPEN flag also holds (a line flag of theirs, or their group's flag): a clearance of this
    flag leaves them held."""
    if not lines:
        return set()
    rows = (
        await s.execute(
            text(
                """
        SELECT c.line_id FROM commission_lines c JOIN orders o ON o.shop_id = c.shop_id AND o.order_id = c.order_id
        WHERE c.shop_id = :s AND c.line_id = ANY(CAST(:ids AS text[])) AND EXISTS (
            SELECT 1 FROM fraud_flags f WHERE f.shop_id = c.shop_id AND f.state = 'OPEN' AND f.flag_id <> :fid
              AND ((f.subject = 'LINE' AND f.line_id = c.line_id) OR (f.subject = 'GROUP' AND f.group_id = o.group_id)))
        """
            ),
            {"s": shop_id, "ids": [ln.id for ln in lines], "fid": flag.flag_id},
        )
    ).scalars()
    return set(rows)


def _resolve(
    ledger: LedgerBatch,
    flag: FlagView,
    *,
    state: str,
    line_ids: list[str],
    amount: int,
    actor: str,
    reason: str | None,
) -> None:
    """FR-4: the admin's decision on an OPEN flag (CLEARED, VOIDED or DISSOLVED) — recorded on the flag (who,
    when, why) and as its event."""
    ledger.row(
        "UPDATE fraud_flags SET state = :state, resolved_at = :now, resolved_by = :actor, reason = :reason "
        "WHERE shop_id = :shop_id AND flag_id = :flag_id AND state = 'OPEN'",
        state=state,
        now=ledger.now,
        actor=actor,
        reason=reason,
        flag_id=flag.flag_id,
    )
    group = flag.subject == "GROUP"
    ledger.event(
        type=EventType.FRAUD_CLEARED
        if state == "CLEARED"
        else EventType.FRAUD_VOIDED
        if state == "VOIDED"
        else EventType.FRAUD_GROUP_DISSOLVED,
        aggregate_type="group" if group else "order",
        aggregate_id=(flag.group_id if group else flag.order_id) or "",
        rule="FR-4",
        payload={
            "flag_id": flag.flag_id,
            "subject": flag.subject,
            "line_ids": line_ids,
            "group_id": flag.group_id,
            "amount": amount,
            "by": actor,
            "reason": reason,
        },
    )


def _check_reason(reason: str | None, required: bool) -> None:
    if (required and (not reason or not reason.strip())) or (reason is not None and len(reason) > 500):
        raise refuse(
            ErrorCode.INVALID_INPUT,
            "a reason is required (1..500 characters)" if required else "the reason is at most 500 characters",
            field="reason",
            rule="FR-4",
        )


async def _decide(
    svc: Services,
    *,
    shop_id: str,
    flag_id: str,
    actor: str,
    reason: str | None,
    target: str,
    idempotency_key: str | None,
    act,
) -> FlagView:
    now = svc.now()
    async with unit_of_work(svc) as s:

        async def run():
            flag = await _load_flag(s, shop_id, flag_id)
            if flag.state == target:
                return {"flag_id": flag_id}  # the same decision again is a no-op (GB-10)
            if flag.state != "OPEN":
                raise refuse(ErrorCode.INVALID_STATE, f"the flag is already {flag.state}", field="flagId", rule="FR-3")
            await act(s, flag, now)
            return {"flag_id": flag_id}

        await once_or_replay(
            s,
            shop_id=shop_id,
            scope=f"fraud_{target.lower()}",
            key=idempotency_key,
            now=now,
            run=run,
            request={"flag_id": flag_id, "reason": reason},
        )
    return (await review_queue(svc, shop_id=shop_id, state=None, flag_id=flag_id, limit=1))[0]


async def clear_flag(
    svc: Services,
    *,
    shop_id: str,
    flag_id: str,
    actor: str,
    reason: str | None = None,
    idempotency_key: str | None = None,
) -> FlagView:
    """FR-3: the admin clears a flag — each line it holds (and no other open flag holds) resumes its life cycle,
    AVAILABLE at once if its `available_at` has passed (`fraud.clear_line`). No amount changes."""
    _check_reason(reason, required=False)

    async def act(s, flag: FlagView, now):
        lines = await _flag_lines(s, shop_id, flag)
        keep = await _still_flagged(s, shop_id, flag, lines)
        ledger = LedgerBatch(shop_id, now)
        cleared = []
        for line in lines:
            if line.id in keep or not line.held:
                continue
            new, postings = fr.clear_line(line, now)
            ledger.line(s, (new, postings), hold=True)
            cleared.append(new)
            if new.state == cm.CommissionState.AVAILABLE and line.state != cm.CommissionState.AVAILABLE:
                ledger.event(
                    type=EventType.COMMISSION_AVAILABLE,
                    aggregate_type="distributor",
                    aggregate_id=line.beneficiary_id,
                    rule="CM-6",
                    payload={"line_id": line.id, "order_id": line.order_id, "amount": new.standing},
                )
        _resolve(
            ledger,
            flag,
            state="CLEARED",
            line_ids=[ln.id for ln in cleared],
            amount=sum(ln.standing for ln in cleared),
            actor=actor,
            reason=reason,
        )
        await ledger.flush(s)

    return await _decide(
        svc,
        shop_id=shop_id,
        flag_id=flag_id,
        actor=actor,
        reason=reason,
        target="CLEARED",
        idempotency_key=idempotency_key,
        act=act,
    )


async def void_flag(
    svc: Services, *, shop_id: str, flag_id: str, actor: str, reason: str, idempotency_key: str | None = None
) -> FlagView:
    """FR-3: the admin voids a flag's lines, with a reason: what each still stands at is reversed by a new entry
    from its bucket (`fraud.void_held_line`); the line is VOID and the payout of it never happens."""
    _check_reason(reason, required=True)

    async def act(s, flag: FlagView, now):
        lines = await _flag_lines(s, shop_id, flag)
        ledger = LedgerBatch(shop_id, now)
        voided = []
        for line in lines:
            if not line.held or line.state == cm.CommissionState.VOID:
                continue
            new, postings = fr.void_held_line(line)
            ledger.line(s, (new, postings), hold=True)
            voided.append((line, new))
            ledger.event(
                type=EventType.COMMISSION_VOIDED,
                aggregate_type="order",
                aggregate_id=line.order_id,
                rule="FR-3",
                payload={
                    "order_id": line.order_id,
                    "line_id": line.id,
                    "beneficiary_id": line.beneficiary_id,
                    "level": line.level,
                    "amount": line.standing,
                    "cause": "FR-3",
                },
            )
        _resolve(
            ledger,
            flag,
            state="VOIDED",
            line_ids=[old.id for old, _ in voided],
            amount=sum(old.standing for old, _ in voided),
            actor=actor,
            reason=reason,
        )
        await ledger.flush(s)

    return await _decide(
        svc,
        shop_id=shop_id,
        flag_id=flag_id,
        actor=actor,
        reason=reason,
        target="VOIDED",
        idempotency_key=idempotency_key,
        act=act,
    )


async def dissolve_group(
    svc: Services, *, shop_id: str, flag_id: str, actor: str, reason: str, idempotency_key: str | None = None
) -> FlagView:
    """FR-3: the admin dissolves a flagged group before it forms: it fails now with GB-6's refunds, its lines are
    voided (CM-6) and the flag is DISSOLVED. A formed group is refused (INVALID_STATE)."""
    from service.tx import lean
    from service.usecases import groups

    _check_reason(reason, required=True)

    async def act(s, flag: FlagView, now):
        if flag.subject != "GROUP" or not flag.group_id:
            raise refuse(ErrorCode.INVALID_STATE, "only a flagged group can be dissolved", field="flagId", rule="FR-3")
        ld = await lean.load_group(s, shop_id, flag.group_id)
        if ld is None:
            raise refuse(ErrorCode.NOT_FOUND, "group not found", field="flagId")
        decision = fr.dissolve_group(ld.group, now=now)
        held = sum(ln.standing for ln in await _flag_lines(s, shop_id, flag) if ln.held)
        await groups._carry_out(s, ld, decision, lean.Writes(shop_id, now, ld.currency), now=now)
        ledger = LedgerBatch(shop_id, now)
        _resolve(
            ledger,
            flag,
            state="DISSOLVED",
            line_ids=[],
            amount=held,
            actor=actor,
            reason=reason,
        )
        await ledger.flush(s)

    return await _decide(
        svc,
        shop_id=shop_id,
        flag_id=flag_id,
        actor=actor,
        reason=reason,
        target="DISSOLVED",
        idempotency_key=idempotency_key,
        act=act,
    )
