"""Fraud review inside the payment's transaction (FR-1..FR-3): fingerprints kept, orders and groups screened.

Called by `service.tx.commissions.on_order_paid` (and, for a leader reward at forming, by the batch writer's
`_formed`):
- FR-1: the payment's fingerprints (hashed before the transaction by `hash_fingerprints`, HMAC under the shop's
  key) are written by the payment's own applier statement (`LedgerBatch.row`): no round trip of their own.
- FR-2: a shop whose rules are all off (the rules come with the payment's loading statement) stops here. Else
  ONE statement loads the counts the engine needs (`SCREEN_SQL`), `engine.fraud` decides, and the flags, the
  holds and their events go into the same applier statement. A flag changes no amount (FR-3).

The review queue is read by `service.reads.fraud`; an admin's decisions are `service.usecases.fraud`.
"""

from __future__ import annotations

import hashlib
import json
import secrets
from datetime import datetime, timedelta
from typing import Any, Mapping

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from engine import commission as cm
from engine import fraud as fr
from engine.events import EventType
from service.tx.ids import new_id
from service.tx.ledger import LedgerBatch

FINGERPRINTS = "sharecart.fingerprints"  # session.info: order id -> the payment's hashed fingerprints
_SERVER_KEY: list[bytes] = []


def server_key() -> bytes:
    """The key every shop's fingerprint key is derived from (FR-1): from SHARECART_SECRET_KEY (its first key),
    so every process hashes alike; without it, one per process (development only, like user aliases)."""
    from service.settings import settings

    if not _SERVER_KEY:
        master = (settings().secret_key or "").split(",")[0].strip()
        _SERVER_KEY.append(
            hashlib.sha256(b"sharecart-fingerprint:" + master.encode()).digest() if master else secrets.token_bytes(32)
        )
    return _SERVER_KEY[0]


def hash_fingerprints(shop_id: str, raw: Mapping[str, str | None] | None) -> frozenset[fr.Fingerprint]:
    """FR-1: `{"PAYER": …, "DEVICE": …, "IP": …, "ADDRESS": …}` (each optional) as keyed hashes; the raw values go
    no further than this function."""
    if not raw:
        return frozenset()
    key = fr.shop_key(server_key(), shop_id)
    return frozenset(
        fr.Fingerprint(fr.FingerprintKind(k), fr.fingerprint_hash(key, fr.FingerprintKind(k), v))
        for k, v in raw.items()
        if v is not None
    )


def carry(session: AsyncSession, order_id: str, fps: frozenset[fr.Fingerprint]) -> None:
    """The payment's fingerprints, for `screen_paid_order` further down the same transaction."""
    if fps:
        session.info.setdefault(FINGERPRINTS, {})[order_id] = fps


# ---------------------------------------------------------------- rules (FR-2)
RULE_FIELDS = [f for f in fr.FraudRules.__dataclass_fields__]


def rules_from_json(d: Mapping[str, Any] | None) -> fr.FraudRules:
    if not d:
        return fr.FraudRules()
    return fr.FraudRules(**{f: d[f] for f in RULE_FIELDS if d.get(f) is not None})


def _j(v):
    return json.loads(v) if isinstance(v, str) else v


# ---------------------------------------------------------------- screening at payment (FR-1..FR-3)
# FR-2 in one round trip: for the beneficiaries `bens` of the order `oid` paid by `buyer`,
# (a) the kinds of this payment's fingerprints seen on each beneficiary's own paid orders,
# (b) per beneficiary, the other orders paid since `since_v` that earn them and share a device/IP/payer hash,
# (d) per beneficiary, their downline's orders paid since `since_r` (as level 1 or 2): count, paid, refunded,
# (c) for a group order: its other paid seats' fingerprints, whether the group was flagged before (and is it
#     open), and what its other orders' lines stand at.
SCREEN_SQL = text(
    """
    SELECT
      (SELECT json_object_agg(buyer_id, kinds) FROM (
         SELECT buyer_id, json_agg(DISTINCT kind) AS kinds FROM payment_fingerprints
          WHERE shop_id = :s AND buyer_id = ANY(CAST(:bens AS text[])) AND buyer_id <> :buyer
            AND order_id <> :oid AND hash = ANY(CAST(:hashes AS text[]))
          GROUP BY buyer_id) x) AS shared,
      (SELECT json_object_agg(ben, n) FROM (
         SELECT b.ben, count(DISTINCT o.order_id) AS n
           FROM unnest(CAST(:bens AS text[])) AS b(ben)
           JOIN orders o ON o.shop_id = :s AND (o.level1_id = b.ben OR o.level2_id = b.ben)
           JOIN payment_fingerprints f ON f.shop_id = o.shop_id AND f.order_id = o.order_id
          WHERE o.paid_at >= :since_v AND o.order_id <> :oid AND f.hash = ANY(CAST(:vhashes AS text[]))
          GROUP BY b.ben) x) AS velocity,
      (SELECT json_object_agg(ben, json_build_array(n, paid, refunded)) FROM (
         SELECT b.ben, count(o.order_id) AS n, COALESCE(sum(o.paid_amount), 0) AS paid,
                COALESCE(sum(o.refunded_amount), 0) AS refunded
           FROM unnest(CAST(:bens AS text[])) AS b(ben)
           JOIN orders o ON o.shop_id = :s AND (o.level1_id = b.ben OR o.level2_id = b.ben)
          WHERE o.paid_at >= :since_r AND o.order_id <> :oid
          GROUP BY b.ben) x) AS downline,
      (SELECT json_agg(json_build_array(f.order_id, f.kind, f.hash)) FROM payment_fingerprints f
         JOIN seats st ON st.shop_id = f.shop_id AND st.order_id = f.order_id
        WHERE f.shop_id = :s AND st.group_id = :g AND st.state = 'PAID' AND f.order_id <> :oid) AS seats,
      (SELECT json_build_array(flag_id, state) FROM fraud_flags
        WHERE shop_id = :s AND subject = 'GROUP' AND group_id = :g ORDER BY flagged_at DESC LIMIT 1) AS group_flag,
      (SELECT COALESCE(sum(c.standing), 0) FROM commission_lines c JOIN orders o
          ON o.shop_id = c.shop_id AND o.order_id = c.order_id
        WHERE c.shop_id = :s AND o.group_id = :g AND c.order_id <> :oid
          AND c.state IN ('PENDING', 'FROZEN')) AS group_standing
    """
)

# FR-3: the engine's hold (`fraud.hold_line`: held, nothing else) of a newly flagged group's earlier lines.
HOLD_GROUP_LINES = (
    "UPDATE commission_lines c SET held = true FROM orders o "
    "WHERE c.shop_id = :shop_id AND o.shop_id = c.shop_id AND o.order_id = c.order_id "
    "AND o.group_id = :group_id AND c.state IN ('PENDING', 'FROZEN') AND NOT c.held"
)
INSERT_FLAG = (
    "INSERT INTO fraud_flags (shop_id, flag_id, subject, line_id, group_id, order_id, beneficiary_id, rules, "
    "evidence, amount, state, flagged_at, flagged_by) VALUES (:shop_id, :flag_id, :subject, :line_id, "
    ":group_id, :order_id, :beneficiary_id, CAST(:rules AS jsonb), CAST(:evidence AS jsonb), :amount, "
    "'OPEN', :now, 'system')"
)


def _flag(
    ledger: LedgerBatch,
    *,
    subject: str,
    flags: tuple[fr.Flag, ...],
    amount: int,
    line_id: str | None = None,
    group_id: str | None = None,
    order_id: str | None = None,
    beneficiary_id: str | None = None,
) -> str:
    flag_id = new_id("ff_")
    rules = [f.rule.value for f in flags]
    evidence = {f.rule.value: dict(f.evidence) for f in flags}
    ledger.row(
        INSERT_FLAG,
        flag_id=flag_id,
        subject=subject,
        line_id=line_id,
        group_id=group_id,
        order_id=order_id,
        beneficiary_id=beneficiary_id,
        rules=json.dumps(rules),
        evidence=json.dumps(evidence),
        amount=amount,
        now=ledger.now,
    )
    ledger.event(
        type=EventType.FRAUD_FLAGGED,
        aggregate_type="group" if subject == "GROUP" else "order",
        aggregate_id=(group_id if subject == "GROUP" else order_id) or "",
        rule="FR-3",
        payload={
            "flag_id": flag_id,
            "subject": subject,
            "rules": rules,
            "evidence": evidence,
            "line_id": line_id,
            "group_id": group_id,
            "order_id": order_id,
            "beneficiary_id": beneficiary_id,
            "amount": amount,
            "by": "system",
        },
    )
    return flag_id


async def screen_paid_order(
    session: AsyncSession,
    ledger: LedgerBatch,
    *,
    order,
    lines: list[cm.CommissionLine],
    rules_json: Mapping[str, Any] | None,
    now: datetime,
) -> list[cm.CommissionLine]:
    """FR-1..FR-3 for an order whose payment just posted `lines` into `ledger`: keep its fingerprints, run the
    shop's rules, hold what they flag. Returns the lines as they now stand (held or not; amounts unchanged)."""
    fps = session.info.get(FINGERPRINTS, {}).pop(order.order_id, frozenset())
    if fps:
        ledger.row(
            "INSERT INTO payment_fingerprints (shop_id, order_id, kind, hash, buyer_id, paid_at) "
            "SELECT :shop_id, :order_id, v.kind, v.hash, :buyer_id, :now "
            "FROM unnest(CAST(:kinds AS text[]), CAST(:hashes AS text[])) AS v(kind, hash) ON CONFLICT DO NOTHING",
            order_id=order.order_id,
            buyer_id=order.buyer_id,
            now=now,
            kinds=[f.kind.value for f in sorted(fps, key=lambda f: f.kind.value)],
            hashes=[f.hash for f in sorted(fps, key=lambda f: f.kind.value)],
        )
    rules = rules_from_json(rules_json)
    group_id = getattr(order, "group_id", None)
    # (a) and (b) compare this payment's fingerprints: without any, only (d) has something to look at
    screen_lines = bool(lines) and (rules.refund_rate or (bool(fps) and (rules.self_dealing or rules.velocity)))
    screen_group = bool(group_id) and rules.scalper_group
    if not (screen_lines or screen_group):
        return lines
    bens = sorted({ln.beneficiary_id for ln in lines})
    got = (
        await session.execute(
            SCREEN_SQL,
            {
                "s": order.shop_id,
                "bens": bens,
                "buyer": order.buyer_id,
                "oid": order.order_id,
                "g": group_id,
                "hashes": [f.hash for f in fps],
                "vhashes": [f.hash for f in fps if f.kind in fr.VELOCITY_KINDS],
                "since_v": now - timedelta(seconds=rules.velocity_window),
                "since_r": now - timedelta(seconds=rules.refund_rate_window),
            },
        )
    ).one()
    signals = fr.OrderSignals(
        buyer_id=order.buyer_id,
        fingerprints=fps,
        shared_with={b: frozenset(fr.FingerprintKind(k) for k in kinds) for b, kinds in (_j(got.shared) or {}).items()},
        velocity={b: int(n) for b, n in (_j(got.velocity) or {}).items()},
        downline={b: fr.DownlineRefunds(int(n), int(p), int(r)) for b, (n, p, r) in (_j(got.downline) or {}).items()},
    )
    by_ben = fr.screen_order(rules, signals, [ln.beneficiary_id for ln in lines]) if screen_lines else {}

    hold_all = void_all = False
    if screen_group:
        flag = _j(got.group_flag)
        if flag is not None:
            # flagged before: while the flag is open its new lines are held too; once the admin voided the
            # group's commission, they are voided as they post; a cleared flag is not raised again
            hold_all, void_all = flag[1] == "OPEN", flag[1] == "VOIDED"
        else:
            seats: dict[str, set[fr.Fingerprint]] = {}
            for oid, kind, h in _j(got.seats) or []:
                seats.setdefault(oid, set()).add(fr.Fingerprint(fr.FingerprintKind(kind), h))
            seats[order.order_id] = set(fps)
            g = fr.screen_group(rules, {k: frozenset(v) for k, v in seats.items()})
            if g is not None:
                hold_all = True
                _flag(
                    ledger,
                    subject="GROUP",
                    flags=(g,),
                    group_id=group_id,
                    amount=int(got.group_standing) + sum(ln.standing for ln in lines),
                )
                ledger.row(HOLD_GROUP_LINES, group_id=group_id)
    out = []
    for ln in lines:
        flags = by_ben.get(ln.beneficiary_id, ())
        if void_all:
            ln = _void_as_posted(session, ledger, ln)
        elif flags or hold_all:
            held = fr.hold_line(ln)
            ledger.line(session, (held, ()), hold=True)
            if flags:
                _flag(
                    ledger,
                    subject="LINE",
                    flags=flags,
                    line_id=ln.id,
                    order_id=ln.order_id,
                    beneficiary_id=ln.beneficiary_id,
                    amount=ln.standing,
                )
            ln = held
        out.append(ln)
    return out


def _void_as_posted(session: AsyncSession, ledger: LedgerBatch, line: cm.CommissionLine) -> cm.CommissionLine:
    """FR-3: a line of a group whose commission the admin voided is voided as it posts (held, then voided)."""
    new, postings = fr.void_held_line(fr.hold_line(line))
    ledger.line(session, (new, postings), hold=True)
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
    return new


async def hold_if_group_flagged(
    session: AsyncSession, ledger: LedgerBatch, *, line: cm.CommissionLine, shop_id: str, group_id: str
) -> cm.CommissionLine:
    """FR-3 at forming: a leader reward (团长佣金) of a group under an open flag is held like its other lines; of a
    group whose flag the admin voided, it is voided as it posts."""
    state = (
        await session.execute(
            text(
                "SELECT state FROM fraud_flags WHERE shop_id = :s AND subject = 'GROUP' AND group_id = :g "
                "ORDER BY flagged_at DESC LIMIT 1"
            ),
            {"s": shop_id, "g": group_id},
        )
    ).scalar()
    if state == "VOIDED":
        return _void_as_posted(session, ledger, line)
    if state != "OPEN":
        return line
    held = fr.hold_line(line)
    ledger.line(session, (held, ()), hold=True)
    return held
