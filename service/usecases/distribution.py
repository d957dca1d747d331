"""Distributors (DS-1, DS-2), referral binding (RF-1), admin level changes (LV-3)."""

from __future__ import annotations

from dataclasses import dataclass
from types import SimpleNamespace
from datetime import datetime

from sqlalchemy import select, text
from sqlalchemy.ext.asyncio import AsyncSession

from engine import levels as lv
from engine.distribution import DistributionMode, DistributionSettings, DistributorStatus
from engine.errors import ErrorCode, refuse
from engine.events import EventType
from engine.referral import Binding as EngineBinding
from engine.referral import BindingSource, current_referrer, decide_admin_binding, decide_binding, decide_order_code
from service.tx import commissions, events
from service.tx.commissions import DbReferralView, ensure_distributor
from service.context import Services
from service.tx.idempotency import once, once_row
from service.tx.ids import new_id
from service.tx.ledger import LedgerBatch
from service.usecases.shops import ensure_user, load_levels, load_settings
from service.uow import unit_of_work
from store import mapping
from store.models import Binding, BindingHistory, Distributor, DistributorAudit, User


async def _user_has_paid(s: AsyncSession, shop_id: str, user_id: str) -> bool:
    u = await s.get(User, (shop_id, user_id))
    return bool(u and u.paid_orders > 0)


async def my_distributor(svc: Services, *, shop_id: str, user_id: str) -> Distributor | None:
    """The caller's distributor record; in EVERYONE mode it is created on first look (DS-1)."""
    async with unit_of_work(svc) as s:
        settings = await load_settings(s, shop_id)
        row = await s.get(Distributor, (shop_id, user_id))
        if row is None and settings.mode == DistributionMode.EVERYONE:
            await ensure_user(s, shop_id, user_id, svc.now())
            row = await ensure_distributor(s, shop_id, user_id, status=DistributorStatus.ACTIVE, now=svc.now())
        return row


async def apply(svc: Services, *, shop_id: str, user_id: str, idempotency_key: str | None = None) -> Distributor:
    """DS-1: a user applies; APPROVAL waits for an admin, the other modes admit as their rule says."""
    now = svc.now()
    async with unit_of_work(svc) as s:

        async def run() -> Distributor:
            await ensure_user(s, shop_id, user_id, now)
            settings = await load_settings(s, shop_id)
            row = await s.get(Distributor, (shop_id, user_id), with_for_update=True)
            if row is None:
                row = await ensure_distributor(
                    s, shop_id, user_id, status=DistributorStatus.APPLIED, now=now, actor=user_id, reason="application"
                )
            await commissions.admit_if_due(s, shop_id, user_id, settings, now)
            await s.refresh(row)
            return row

        return await once_row(
            s, Distributor, shop_id=shop_id, scope=f"apply:{user_id}", key=idempotency_key, request={}, now=now, run=run
        )


# The status changes an admin makes (DS-1): the status they lead to and the statuses they start from.
STATUS_CHANGES: dict[str, tuple[DistributorStatus, tuple[str, ...]]] = {
    "approve_distributor": (DistributorStatus.ACTIVE, ("APPLIED", "NONE")),
    "suspend_distributor": (DistributorStatus.SUSPENDED, ("ACTIVE",)),
    "reinstate_distributor": (DistributorStatus.ACTIVE, ("SUSPENDED",)),
}


async def change_status(
    svc: Services,
    *,
    shop_id: str,
    user_id: str,
    change: str,
    actor: str,
    reason: str,
    idempotency_key: str | None = None,
) -> Distributor:
    """DS-1: one of STATUS_CHANGES, decided under the distributor's row lock: a distributor already in the
    target status is left as it is; one in a status the change does not start from is INVALID_STATE."""
    status, allowed_from = STATUS_CHANGES[change]
    return await set_status(
        svc,
        shop_id=shop_id,
        user_id=user_id,
        status=status,
        actor=actor,
        reason=reason,
        allowed_from=allowed_from,
        scope=change,
        idempotency_key=idempotency_key,
    )


async def set_status(
    svc: Services,
    *,
    shop_id: str,
    user_id: str,
    status: DistributorStatus,
    actor: str,
    reason: str,
    allowed_from: tuple[str, ...] | None = None,
    scope: str = "set_status",
    idempotency_key: str | None = None,
) -> Distributor:
    """DS-1: approve (APPLIED -> ACTIVE), suspend (-> SUSPENDED) or reinstate (SUSPENDED -> ACTIVE), with a reason.
    With `allowed_from`, a distributor in another status (and not already in `status`) is INVALID_STATE.
    `idempotency_key` (GB-10) is kept under `scope` (the operation)."""
    now = svc.now()
    async with unit_of_work(svc) as s:

        async def run() -> Distributor:
            row = await s.get(Distributor, (shop_id, user_id), with_for_update=True)
            if row is None:
                if status != DistributorStatus.ACTIVE:
                    raise refuse(
                        ErrorCode.NOT_A_DISTRIBUTOR, "no such distributor or applicant", field="userId", rule="DS-1"
                    )
                await ensure_user(s, shop_id, user_id, now)
                return await ensure_distributor(s, shop_id, user_id, status=status, now=now, actor=actor, reason=reason)
            if row.status == status.value:
                return row
            if allowed_from is not None and row.status not in allowed_from:
                raise refuse(ErrorCode.INVALID_STATE, f"distributor is {row.status}", field="userId", rule="DS-1")
            s.add(
                DistributorAudit(
                    shop_id=shop_id,
                    audit_id=new_id("aud_"),
                    user_id=user_id,
                    action="STATUS",
                    from_value=row.status,
                    to_value=status.value,
                    actor=actor,
                    reason=reason,
                    at=now,
                )
            )
            if status == DistributorStatus.ACTIVE and row.approved_at is None:
                row.approved_at, row.approved_by = now, actor
            row.status, row.status_reason = status.value, reason
            events.emit(
                s,
                shop_id=shop_id,
                type=EventType.DISTRIBUTOR_STATUS_CHANGED,
                aggregate_type="distributor",
                aggregate_id=user_id,
                now=now,
                rule="DS-1",
                payload={"user_id": user_id, "status": status.value, "by": actor, "reason": reason},
            )
            return row

        return await once_row(
            s,
            Distributor,
            shop_id=shop_id,
            scope=scope,
            key=idempotency_key,
            now=now,
            run=run,
            request={"user_id": user_id, "status": status.value, "reason": reason},
        )


async def resolve_invite(svc: Services, *, shop_id: str, code: str) -> Distributor | None:
    """DS-2: an invite code resolves to its distributor (the API reveals no personal data)."""
    async with svc.sessionmaker() as s:
        return (
            await s.execute(
                select(Distributor).where(
                    Distributor.shop_id == shop_id, Distributor.invite_code == code.strip().upper()
                )
            )
        ).scalar_one_or_none()


@dataclass(frozen=True)
class BindResult:
    referrer_id: str
    bound_at: datetime
    changed: bool


async def distributor_by_code(s: AsyncSession, shop_id: str, code: str) -> Distributor:
    """DS-2: the distributor of an invite code (case and blanks ignored), else INVALID_INVITE_CODE."""
    d = (
        await s.execute(
            select(Distributor).where(Distributor.shop_id == shop_id, Distributor.invite_code == code.strip().upper())
        )
    ).scalar_one_or_none()
    if d is None:
        raise refuse(ErrorCode.INVALID_INVITE_CODE, "unknown invite code", field="inviteCode", rule="DS-2")
    return d


@dataclass
class _BindingContext:
    """What every RF-1/RF-3 decision reads, under the shop's binding lock and the user's binding row lock."""

    settings: DistributionSettings
    referrer_status: DistributorStatus
    current_row: Binding | None
    current: EngineBinding | None
    view: DbReferralView
    user_has_paid: bool


async def _binding_context(s: AsyncSession, *, shop_id: str, user_id: str, ref_id: str, now) -> _BindingContext:
    await ensure_user(s, shop_id, user_id, now)
    settings = await load_settings(s, shop_id)
    # serialize bindings within a shop: two concurrent binds (A->B, B->A) could otherwise close a
    # cycle that neither saw (RF-1). Binding is rare next to orders, so one lock per shop is cheap.
    await s.execute(text("SELECT pg_advisory_xact_lock(hashtext(:k))"), {"k": f"bind:{shop_id}"})
    ref_row = await s.get(Distributor, (shop_id, ref_id))
    if ref_row is None and settings.mode == DistributionMode.EVERYONE and ref_id != user_id:
        await ensure_user(s, shop_id, ref_id, now)
        ref_row = await ensure_distributor(s, shop_id, ref_id, status=DistributorStatus.ACTIVE, now=now)
    current_row = await s.get(Binding, (shop_id, user_id), with_for_update=True)
    current = mapping.binding_from_row(current_row) if current_row else None
    view = DbReferralView(s, shop_id, now)
    await view.load_chain(ref_id)
    return _BindingContext(
        settings=settings,
        referrer_status=DistributorStatus(ref_row.status) if ref_row else DistributorStatus.NONE,
        current_row=current_row,
        current=current,
        view=view,
        user_has_paid=await _user_has_paid(s, shop_id, user_id),
    )


async def _store_binding(
    s: AsyncSession,
    ctx: _BindingContext,
    decision,
    *,
    shop_id: str,
    user_id: str,
    now,
    reason: str | None = None,
    actor: str | None = None,
    campaign_id: str | None = None,
) -> dict:
    """Write the engine's binding (RF-1/RF-3): the current row, its history entry (with the referrer it
    replaced), `referral.bound` — and `referral.rebound` for an admin's — then DS-1 admission and LV-2."""
    current_row, current = ctx.current_row, ctx.current
    previous = current_referrer(current, now) if current is not None else None
    if current_row is None:
        s.add(
            Binding(
                shop_id=shop_id,
                user_id=user_id,
                referrer_id=decision.referrer_id,
                bound_at=decision.bound_at,
                source=decision.source.value,
                expires_at=decision.expires_at,
                reason=reason,
                bound_by=actor,
            )
        )
    else:
        current_row.referrer_id, current_row.bound_at = decision.referrer_id, decision.bound_at
        current_row.source, current_row.expires_at = decision.source.value, decision.expires_at
        current_row.reason, current_row.bound_by = reason, actor
    s.add(
        BindingHistory(
            shop_id=shop_id,
            entry_id=new_id("bh_"),
            user_id=user_id,
            referrer_id=decision.referrer_id,
            source=decision.source.value,
            bound_at=decision.bound_at,
            expires_at=decision.expires_at,
            reason=reason,
            bound_by=actor,
            previous_referrer_id=previous,
            campaign_id=campaign_id,
        )
    )
    events.emit(
        s,
        shop_id=shop_id,
        type=EventType.REFERRAL_BOUND,
        aggregate_type="user",
        aggregate_id=user_id,
        now=now,
        rule="RF-3" if decision.source != BindingSource.INVITE_CODE else "RF-1",
        payload={"user_id": user_id, "referrer_id": decision.referrer_id, "source": decision.source.value},
    )
    if decision.source == BindingSource.ADMIN:
        events.emit(
            s,
            shop_id=shop_id,
            type=EventType.REFERRAL_REBOUND,
            aggregate_type="user",
            aggregate_id=user_id,
            now=now,
            rule="RF-3",
            payload={
                "user_id": user_id,
                "referrer_id": decision.referrer_id,
                "from": previous,
                "by": actor or "",
                "reason": reason or "",
            },
        )
    await commissions.admit_if_due(s, shop_id, user_id, ctx.settings, now)
    await s.flush()
    ledger = LedgerBatch(shop_id, now)
    level2 = await commissions.referrer_of(s, shop_id, decision.referrer_id, now)
    await commissions.evaluate_levels(
        s, ledger, shop_id=shop_id, user_ids={decision.referrer_id, level2, previous}, now=now
    )
    await ledger.flush(s)
    return {"referrer_id": decision.referrer_id, "bound_at": decision.bound_at.isoformat(), "changed": True}


async def bind_in_session(
    s: AsyncSession,
    *,
    shop_id: str,
    user_id: str,
    referrer_id: str,
    now,
    source: BindingSource = BindingSource.INVITE_CODE,
    campaign_id: str | None = None,
) -> dict:
    """RF-1 (and RF-3 a) inside the caller's transaction: the engine's `decide_binding`, then stored."""
    ctx = await _binding_context(s, shop_id=shop_id, user_id=user_id, ref_id=referrer_id, now=now)
    decision = decide_binding(
        ctx.settings,
        user_id=user_id,
        referrer_id=referrer_id,
        now=now,
        current=ctx.current,
        view=ctx.view,
        referrer_status=ctx.referrer_status,
        user_has_paid_order=ctx.user_has_paid,
        source=source,
    )
    if decision is None:  # the same live referrer again
        assert ctx.current is not None
        return {"referrer_id": ctx.current.referrer_id, "bound_at": ctx.current.bound_at.isoformat(), "changed": False}
    return await _store_binding(s, ctx, decision, shop_id=shop_id, user_id=user_id, now=now, campaign_id=campaign_id)


@dataclass(frozen=True)
class Attribution:
    """RF-3 (a)/(b): what a code carried by a group link or a reported order did. `outcome` is BOUND (a binding
    was made), OVERRIDE (this order's snapshot takes the code's distributor), UNCHANGED (nothing to do) or
    REFUSED (`refusal` says which RF-1 rule; the join or the order went ahead without it)."""

    outcome: str
    refusal: object = None  # engine.errors.ErrorCode


async def attribute_in_session(
    s: AsyncSession,
    *,
    shop_id: str,
    user_id: str,
    invite_code: str,
    now,
    source: BindingSource,
    campaign_id: str | None = None,
    order_id: str | None = None,
) -> Attribution:
    """RF-3 (a) group links (`source` GROUP_INVITE) and (b) order codes (ORDER_CODE, with `order_id`): try the
    code under RF-1 inside a savepoint, so a refusal undoes only its own writes and the join or order it came
    with goes ahead. An ORDER_CODE override is stored as the order's attribution (read at payment, RF-2)."""
    from engine.errors import RuleViolation
    from store.models import OrderAttribution

    try:
        async with s.begin_nested():
            d = await distributor_by_code(s, shop_id, invite_code)
            if source == BindingSource.GROUP_INVITE:
                r = await bind_in_session(
                    s,
                    shop_id=shop_id,
                    user_id=user_id,
                    referrer_id=d.user_id,
                    now=now,
                    source=source,
                    campaign_id=campaign_id,
                )
                return Attribution("BOUND" if r["changed"] else "UNCHANGED")
            ctx = await _binding_context(s, shop_id=shop_id, user_id=user_id, ref_id=d.user_id, now=now)
            dec = decide_order_code(
                ctx.settings,
                buyer_id=user_id,
                referrer_id=d.user_id,
                now=now,
                current=ctx.current,
                view=ctx.view,
                referrer_status=ctx.referrer_status,
                user_has_paid_order=ctx.user_has_paid,
            )
            if dec.binding is not None:
                await _store_binding(s, ctx, dec.binding, shop_id=shop_id, user_id=user_id, now=now)
                return Attribution("BOUND")
            if dec.override is not None and order_id is not None:
                s.add(
                    OrderAttribution(
                        shop_id=shop_id,
                        order_id=order_id,
                        referrer_id=dec.override,
                        invite_code=d.invite_code,
                        created_at=now,
                    )
                )
                await s.flush()
                return Attribution("OVERRIDE")
            return Attribution("UNCHANGED")
    except RuleViolation as e:
        return Attribution("REFUSED", e.code)


async def bind_referrer(
    svc: Services,
    *,
    shop_id: str,
    user_id: str,
    invite_code: str | None = None,
    referrer_id: str | None = None,
    source: BindingSource = BindingSource.INVITE_CODE,
    idempotency_key: str | None = None,
) -> BindResult:
    """RF-1: bind a user to a referrer, refusing self-referral and cycles at any depth."""
    now = svc.now()
    async with unit_of_work(svc) as s:

        async def run():
            await ensure_user(s, shop_id, user_id, now)
            ref_id = referrer_id
            if invite_code is not None:
                ref_id = (await distributor_by_code(s, shop_id, invite_code)).user_id
            if not ref_id:
                raise refuse(ErrorCode.INVALID_INPUT, "give an invite code or a referrer", field="inviteCode")
            return await bind_in_session(
                s, shop_id=shop_id, user_id=user_id, referrer_id=ref_id, now=now, source=source
            )

        r = await once(
            s,
            shop_id=shop_id,
            scope=f"bind:{user_id}",
            key=idempotency_key,
            request={"invite_code": invite_code, "referrer_id": referrer_id},
            now=now,
            run=run,
        )
    return BindResult(
        referrer_id=r["referrer_id"], bound_at=datetime.fromisoformat(r["bound_at"]), changed=r["changed"]
    )


async def rebind_referrer(
    svc: Services,
    *,
    shop_id: str,
    user_id: str,
    actor: str,
    reason: str,
    invite_code: str | None = None,
    referrer_id: str | None = None,
    idempotency_key: str | None = None,
) -> BindResult:
    """RF-3 (c): an admin binds `user_id` to another referrer with a reason (`decide_admin_binding`: replaces in
    every mode, RF-1 otherwise), recorded on the binding and its history with who and why; `referral.bound`
    and `referral.rebound`. Past orders keep their snapshot (RF-2)."""
    now = svc.now()
    async with unit_of_work(svc) as s:

        async def run():
            ref_id = referrer_id
            if invite_code is not None:
                ref_id = (await distributor_by_code(s, shop_id, invite_code)).user_id
            if not ref_id:
                raise refuse(ErrorCode.INVALID_INPUT, "give an invite code or a referrer", field="inviteCode")
            ctx = await _binding_context(s, shop_id=shop_id, user_id=user_id, ref_id=ref_id, now=now)
            decision = decide_admin_binding(
                ctx.settings,
                user_id=user_id,
                referrer_id=ref_id,
                reason=reason,
                now=now,
                current=ctx.current,
                view=ctx.view,
                referrer_status=ctx.referrer_status,
            )
            if decision is None:
                return {
                    "referrer_id": ctx.current.referrer_id,
                    "bound_at": ctx.current.bound_at.isoformat(),
                    "changed": False,
                }
            return await _store_binding(
                s, ctx, decision, shop_id=shop_id, user_id=user_id, now=now, reason=reason.strip(), actor=actor
            )

        r = await once(
            s,
            shop_id=shop_id,
            scope="rebind_referrer",
            key=idempotency_key,
            now=now,
            run=run,
            request={"user_id": user_id, "invite_code": invite_code, "referrer_id": referrer_id, "reason": reason},
        )
    return BindResult(
        referrer_id=r["referrer_id"], bound_at=datetime.fromisoformat(r["bound_at"]), changed=r["changed"]
    )


@dataclass(frozen=True)
class BindingView:
    """RF-3: a user's current referrer and how they were bound (lapses applied: None when none is live), with
    the history of their bindings, newest first."""

    user_id: str
    referrer_id: str | None
    referrer_code: str | None
    source: str | None
    bound_at: datetime | None
    expires_at: datetime | None
    reason: str | None
    bound_by: str | None
    history: list


async def binding_of(svc: Services, *, shop_id: str, user_id: str, history_limit: int = 50) -> BindingView:
    """RF-3: read the binding (one statement for the current one, one for its history)."""
    now = svc.now()
    async with svc.sessionmaker() as s:
        row = (
            await s.execute(
                text(
                    "SELECT b.referrer_id, b.source, b.bound_at, b.expires_at, b.reason, b.bound_by, d.invite_code "
                    "FROM bindings b LEFT JOIN distributors d ON d.shop_id = b.shop_id AND d.user_id = b.referrer_id "
                    "WHERE b.shop_id = :s AND b.user_id = :u"
                ),
                {"s": shop_id, "u": user_id},
            )
        ).first()
        hist = list(
            (
                await s.execute(
                    select(BindingHistory)
                    .where(BindingHistory.shop_id == shop_id, BindingHistory.user_id == user_id)
                    .order_by(BindingHistory.bound_at.desc(), BindingHistory.entry_id.desc())
                    .limit(history_limit)
                )
            ).scalars()
        )
    live = (
        row is not None
        and current_referrer(
            mapping.binding_from_row(
                SimpleNamespace(
                    user_id=user_id,
                    referrer_id=row.referrer_id,
                    bound_at=row.bound_at,
                    source=row.source,
                    expires_at=row.expires_at,
                )
            ),
            now,
        )
        is not None
    )
    if row is None or not live:
        return BindingView(user_id, None, None, None, None, None, None, None, hist)
    return BindingView(
        user_id,
        row.referrer_id,
        row.invite_code,
        row.source,
        row.bound_at,
        row.expires_at,
        row.reason,
        row.bound_by,
        hist,
    )


async def set_level(
    svc: Services,
    *,
    shop_id: str,
    user_id: str,
    grade: int,
    actor: str,
    reason: str,
    idempotency_key: str | None = None,
) -> Distributor:
    """LV-3: an admin sets a level, recorded with who and why."""
    if not reason.strip():
        raise refuse(ErrorCode.INVALID_INPUT, "a reason is required", field="reason", rule="LV-3")
    now = svc.now()
    async with unit_of_work(svc) as s:

        async def run() -> Distributor:
            row = await s.get(Distributor, (shop_id, user_id), with_for_update=True)
            if row is None:
                raise refuse(ErrorCode.NOT_A_DISTRIBUTOR, "no such distributor", field="userId", rule="LV-3")
            levels = await load_levels(s, shop_id)
            decision = lv.admin_set_level(
                levels, current_grade=row.grade, new_grade=grade, bonuses_credited=frozenset(row.bonuses_credited or [])
            )
            ledger = LedgerBatch(shop_id, now)
            await commissions.apply_level_decision(
                s, ledger, row=row, decision=decision, now=now, actor=actor, reason=reason
            )
            await ledger.flush(s)
            return row

        return await once_row(
            s,
            Distributor,
            shop_id=shop_id,
            scope="set_distributor_level",
            key=idempotency_key,
            now=now,
            run=run,
            request={"user_id": user_id, "grade": grade, "reason": reason},
        )


async def get_distributor(svc: Services, *, shop_id: str, user_id: str) -> Distributor | None:
    """The distributor with balances as of now: lines already due are released first (GB-11/CM-6)."""
    from service.jobs.worker import release_due_lines

    await release_due_lines(svc, shop_id=shop_id, user_ids=[user_id], wait=True)
    async with svc.sessionmaker() as s:
        return await s.get(Distributor, (shop_id, user_id))
