"""The one applier of the engine's money decisions (LG-1, CM-5, CM-6, LG-2).

`engine/` decides every money movement — commission-line transitions (`engine.commission`), ledger
postings and payout fees (`engine.ledger`), refund arithmetic (`engine.refunds`) — and returns values:
new lines, postings, decisions. `LedgerBatch` is where the service hands those values over; it builds no
posting and decides nothing, it only writes:

- postings, per distributor, as immutable ledger entries plus the relative balance UPDATE they imply
  (x = x + delta, LG-1), distributor by distributor in sorted order, so two transactions touching the
  same distributors lock their rows in one order;
- commission lines: new ones (`post_line`) and the final state of changed ones (`freeze_line`,
  `make_available`, `void_line`, `refund_line`);
- the rows a use case writes beside them (`row`: a payout, a refund, an order's amounts; `rows`: order
  lines), and outbox events (`event`).

`flush` writes all of it in ONE statement: each part is a data-modifying CTE of a single `WITH …
SELECT`, so a use case's write is one round trip (docs/architecture.md, "Decisions and the applier").
A row is changed by at most one part (balances are summed per distributor, a line keeps its final
state), as PostgreSQL requires of the CTEs of one statement.
"""

from __future__ import annotations

import json
import re
import weakref
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any

import orjson
from sqlalchemy import select, text
from sqlalchemy.ext.asyncio import AsyncSession

from engine import commission as cm
from engine.events import EventType
from engine.ledger import Bucket, Posting
from service.tx import events
from service.tx.ids import new_id
from store.models import Shop

BALANCE_COLUMN = {
    Bucket.PENDING: "pending",
    Bucket.FROZEN: "frozen",
    Bucket.AVAILABLE: "available",
    Bucket.IN_PAYOUT: "in_payout",
    Bucket.PAID: "paid",
    Bucket.FEES: "fees",
}
BALANCES = tuple(BALANCE_COLUMN.values())

# A batch with unwritten lines is registered on its session, so a function that reads commission lines
# in the same transaction writes them first (`flush_pending`) and never decides on a stale line.
_PENDING = "sharecart.ledger_batches"


def line_from_row(r) -> cm.CommissionLine:
    """A `commission_lines` row (ORM object or Core row) as the engine's value (CM-5 base and refunds)."""
    return cm.CommissionLine(
        id=r.line_id,
        order_id=r.order_id,
        beneficiary_id=r.beneficiary_id,
        level=r.level,
        original=r.original,
        standing=r.standing,
        state=cm.CommissionState(r.state),
        releasable=r.releasable,
        available_at=r.available_at,
        paid_base=r.base,
        refunded=r.base_refunded,
        held=bool(getattr(r, "held", False)),
    )


@dataclass
class _NewLine:
    line: cm.CommissionLine
    group_id: str | None
    created_at: Any


@dataclass(eq=False)  # identity: a batch is registered on its session (`flush_pending`)
class LedgerBatch:
    shop_id: str
    now: object
    _entries: dict[str, list[tuple[Posting, str, str]]] = field(default_factory=lambda: defaultdict(list))
    _new: dict[str, _NewLine] = field(default_factory=dict)
    _changed: dict[str, cm.CommissionLine] = field(default_factory=dict)
    _holds: dict[str, bool] = field(default_factory=dict)  # FR-3: lines whose hold this batch sets or lifts
    _rows: list[tuple[str, dict[str, Any]]] = field(default_factory=list)
    _events: list[dict[str, Any]] = field(default_factory=list)
    _levels: dict[str, tuple[int, list[int]]] = field(default_factory=dict)  # LV-2..LV-4: grade, bonuses

    # ------------------------------------------------------------ what the engine decided
    def add(self, distributor_id: str, postings, *, ref_type: str, ref_id: str) -> None:
        """Postings the engine returned, for `distributor_id` (zero amounts are no entries)."""
        for p in postings:
            if p.amount:
                self._entries[distributor_id].append((p, ref_type, ref_id))

    def new_line(self, session: AsyncSession, transition: cm.Transition, *, group_id: str | None = None) -> None:
        """CM-6: a line `cm.post_line` created, with its postings."""
        line, postings = transition
        self._new[line.id] = _NewLine(line, group_id, self.now)
        self.add(line.beneficiary_id, postings, ref_type="commission", ref_id=line.id)
        _register(session, self)

    def line(self, session: AsyncSession, transition: cm.Transition, *, hold: bool = False) -> None:
        """CM-5/CM-6: a line's new state and the postings of its transition. Only with `hold=True` (a fraud
        review transition, FR-3) is the line's `held` written; otherwise the stored one stands, so a use case
        that loaded a line without it can never lift a hold."""
        line, postings = transition
        if hold:
            self._holds[line.id] = line.held
        if line.id in self._new:
            self._new[line.id].line = line
        else:
            self._changed[line.id] = line
        self.add(line.beneficiary_id, postings, ref_type="commission", ref_id=line.id)
        _register(session, self)

    def level(self, distributor_id: str, *, grade: int, bonuses_credited: list[int]) -> None:
        """LV-2..LV-4: the distributor's grade and credited bonuses as the engine's level decision leaves
        them. Written by the same UPDATE of `distributors` as the balances (a row is changed by one part)."""
        self._levels[distributor_id] = (grade, sorted(bonuses_credited))

    def row(self, sql: str, *, key: str | None = None, **params: Any) -> None:
        """One more data-modifying statement of the same write (an INSERT or UPDATE with `:name` binds).
        With `key`, the statement ends in `RETURNING …` and `flush` answers its first row under `key`
        (as JSON values), or None when it wrote nothing (an `ON CONFLICT DO NOTHING` that met a row)."""
        self._rows.append((sql, {**params, "__key": key}))

    def event(
        self,
        *,
        type: EventType,
        aggregate_type: str,
        aggregate_id: str,
        payload: dict[str, Any],
        rule: str | None = None,
    ) -> None:
        """An outbox event written with the change it reports (the shop's currency added, SH-2)."""
        self._events.append(
            {
                "type": getattr(type, "value", type),
                "aggregate_type": aggregate_type,
                "aggregate_id": aggregate_id,
                "rule": rule,
                "payload": {**payload, **({"rule": rule} if rule else {})},
            }
        )

    def current(self, line: cm.CommissionLine) -> cm.CommissionLine:
        """The line as this batch leaves it (its last transition), or `line` if the batch has not changed it."""
        if line.id in self._new:
            return self._new[line.id].line
        return self._changed.get(line.id, line)

    @property
    def has_lines(self) -> bool:
        return bool(self._new or self._changed)

    # ------------------------------------------------------------ writing it
    def _parts(self) -> list[tuple[str, dict[str, Any]]]:
        # On Citus (issue 17, docs/sharding.md) an INSERT … SELECT from unnest alone is pulled through the
        # coordinator and copied back to the shard, with two-phase commit. Commission lines are therefore
        # selected beside the shop's own row (`FROM shops sh CROSS JOIN unnest(…) WHERE sh.shop_id = :shop_id`,
        # colocated: it runs on the shop's shard). Ledger entries and events have an identity column, whose
        # nextval Citus will not push down in an INSERT … SELECT: they are a multi-row VALUES, numbered on the
        # coordinator in the order given, carrying the shop's currency as a plain value (no sub-select).
        parts: list[tuple[str, dict[str, Any]]] = list(self._rows)
        if self._new:
            ls = [n.line for n in self._new.values()]
            parts.append(
                (
                    "INSERT INTO commission_lines (shop_id, line_id, order_id, beneficiary_id, level, group_id, base, "
                    "base_refunded, original, standing, state, releasable, created_at, available_at, held) "
                    "SELECT sh.shop_id, v.* FROM shops sh CROSS JOIN unnest(CAST(:ids AS text[]), CAST(:orders AS text[]), "
                    "CAST(:bens AS text[]), CAST(:levels AS int[]), CAST(:groups AS text[]), CAST(:bases AS bigint[]), "
                    "CAST(:refunded AS bigint[]), CAST(:originals AS bigint[]), CAST(:standings AS bigint[]), "
                    "CAST(:states AS text[]), CAST(:releasable AS bool[]), CAST(:created AS timestamptz[]), "
                    "CAST(:available AS timestamptz[]), CAST(:held AS bool[])) AS v WHERE sh.shop_id = :shop_id",
                    {
                        "ids": [ln.id for ln in ls],
                        "orders": [ln.order_id for ln in ls],
                        "bens": [ln.beneficiary_id for ln in ls],
                        "levels": [ln.level for ln in ls],
                        "groups": [n.group_id for n in self._new.values()],
                        "bases": [ln.paid_base for ln in ls],
                        "refunded": [ln.refunded for ln in ls],
                        "originals": [ln.original for ln in ls],
                        "standings": [ln.standing for ln in ls],
                        "states": [ln.state.value for ln in ls],
                        "releasable": [ln.releasable for ln in ls],
                        "created": [n.created_at for n in self._new.values()],
                        "available": [ln.available_at for ln in ls],
                        "held": [ln.held for ln in ls],
                    },
                )
            )
        if self._changed:
            ls = sorted(self._changed.values(), key=lambda ln: ln.id)
            parts.append(
                (
                    "UPDATE commission_lines c SET state = v.state, standing = v.standing, base_refunded = v.refunded, "
                    "releasable = v.releasable, available_at = v.available_at, held = COALESCE(v.held, c.held) "
                    "FROM unnest(CAST(:ids AS text[]), CAST(:states AS text[]), CAST(:standings AS bigint[]), "
                    "CAST(:refunded AS bigint[]), CAST(:releasable AS bool[]), CAST(:available AS timestamptz[]), "
                    "CAST(:held AS bool[])) "
                    "AS v(line_id, state, standing, refunded, releasable, available_at, held) "
                    "WHERE c.shop_id = :shop_id AND c.line_id = v.line_id",
                    {
                        "ids": [ln.id for ln in ls],
                        "states": [ln.state.value for ln in ls],
                        "standings": [ln.standing for ln in ls],
                        "refunded": [ln.refunded for ln in ls],
                        "releasable": [ln.releasable for ln in ls],
                        "available": [ln.available_at for ln in ls],
                        "held": [self._holds.get(ln.id) for ln in ls],
                    },
                )
            )
        items = [(d, p, rt, ri) for d in sorted(self._entries) for p, rt, ri in self._entries[d]]
        if items or self._levels:
            deltas: dict[str, dict[str, int]] = {u: dict.fromkeys(BALANCES, 0) for u in self._levels}
            for d, p, _, _ in items:
                deltas.setdefault(d, dict.fromkeys(BALANCES, 0))[BALANCE_COLUMN[p.bucket]] += p.amount
            users = sorted(deltas)
            sets = ", ".join(f"{c} = d.{c} + v.{c}" for c in BALANCES)
            casts = ", ".join(f"CAST(:{c} AS bigint[])" for c in BALANCES)
            levels = [self._levels.get(u) for u in users]
            # the rows are locked in user_id order (ORDER BY … FOR UPDATE, whatever the join's plan), so two
            # transactions moving the balances of the same distributors never wait on each other in a cycle;
            # a level decision (LV-2..LV-4) rides on the same UPDATE: grade and bonuses are NULL (kept) for a
            # distributor whose level this batch does not change
            parts.append(
                (
                    f"UPDATE distributors d SET {sets}, grade = COALESCE(v.grade, d.grade), "
                    "bonuses_credited = COALESCE(CAST(v.bonuses AS jsonb), d.bonuses_credited) "
                    "FROM (SELECT l.user_id AS uid, v.* FROM "
                    "(SELECT user_id FROM distributors WHERE shop_id = :shop_id AND user_id = ANY(CAST(:users AS text[])) "
                    "ORDER BY user_id FOR UPDATE) l "
                    f"JOIN unnest(CAST(:users AS text[]), {casts}, CAST(:grades AS int[]), CAST(:bonuses AS text[])) "
                    f"AS v(user_id, {', '.join(BALANCES)}, grade, bonuses) "
                    "ON v.user_id = l.user_id) v WHERE d.shop_id = :shop_id AND d.user_id = v.uid "
                    f"RETURNING d.user_id, {', '.join('d.' + c for c in BALANCES)}, d.grade, d.bonuses_credited",
                    {
                        "__key": _BALANCES_KEY,
                        "users": users,
                        **{c: [deltas[u][c] for u in users] for c in BALANCES},
                        "grades": [lv[0] if lv else None for lv in levels],
                        "bonuses": [json.dumps(lv[1]) if lv else None for lv in levels],
                    },
                )
            )
        if items:
            le = [(new_id("le_"), d, p.bucket.value, p.amount, p.kind.value, rt, ri) for d, p, rt, ri in items]
            parts.append(
                (
                    "INSERT INTO ledger_entries (shop_id, entry_id, distributor_id, bucket, amount, kind, ref_type, "
                    "ref_id, created_at) VALUES "
                    + ", ".join(
                        f"(:shop_id, :e{n}, :d{n}, :b{n}, :a{n}, :k{n}, :t{n}, :r{n}, :now)" for n in range(len(le))
                    ),
                    {"now": self.now, **{f"{c}{n}": v for n, row in enumerate(le) for c, v in zip("edbaktr", row)}},
                )
            )
        if self._events:
            currency = events.known_currency(self.shop_id)
            evs = [
                (
                    new_id("evt_"),
                    e["type"],
                    e["aggregate_type"],
                    e["aggregate_id"],
                    e["rule"],
                    _payload_json({"currency": currency, **e["payload"]}),
                )
                for e in self._events
            ]
            parts.append(
                (
                    "INSERT INTO events (shop_id, event_id, type, aggregate_type, aggregate_id, rule, occurred_at, "
                    "payload) VALUES "
                    + ", ".join(
                        f"(:shop_id, :e{n}, :t{n}, :g{n}, :i{n}, :r{n}, :now, CAST(:p{n} AS jsonb))"
                        for n in range(len(evs))
                    ),
                    {"now": self.now, **{f"{c}{n}": v for n, row in enumerate(evs) for c, v in zip("etgirp", row)}},
                )
            )
        return parts

    async def flush(self, session: AsyncSession) -> dict[str, Any]:
        """Write everything collected in one statement. Answers the first row of every `row(key=…)` part
        (None if it wrote none). Distributors of the session's identity map get their new balances."""
        if self._events and events.known_currency(self.shop_id) is None:  # once per shop and process (SH-2)
            events.remember_currency(
                self.shop_id,
                (await session.execute(select(Shop.currency).where(Shop.shop_id == self.shop_id))).scalar_one(),
            )
        parts = self._parts()
        self._entries.clear()
        self._new.clear()
        self._changed.clear()
        self._holds.clear()
        self._rows.clear()
        self._events.clear()
        self._levels.clear()
        pending = session.info.get(_PENDING)
        if pending is not None:
            pending.discard(self)
        if not parts:
            return {}
        # the parts' binds are numbered for the driver as they are joined (one pass a part): `$1` is the shop id
        # — cast to one type wherever a part uses it (a bare parameter in an INSERT's select list and one compared
        # with a column could be deduced as text and varchar: "inconsistent types deduced") — and each part's own
        # names get positions of their own, so two parts may use the same name
        args: list[Any] = [self.shop_id]
        ctes, cols = [], []
        for i, (sql, ps) in enumerate(parts):
            key = ps.get("__key")
            ctes.append(f"w{i} AS ({_number_part(sql, ps, args)})")
            if key == _BALANCES_KEY:
                cols.append(f'(SELECT json_agg(w{i}) FROM w{i}) AS "{key}"')
            elif key:
                cols.append(f'(SELECT row_to_json(w{i}) FROM w{i} LIMIT 1) AS "{key}"')
        stmt = f"WITH {', '.join(ctes)} SELECT {', '.join(cols) or '1 AS one'}"
        got = dict((await execute_driver_sql(session, stmt, tuple(args))).mappings().one())
        _sync_balances(session, self.shop_id, got.pop(_BALANCES_KEY, None))
        return got


def _payload_json(payload: dict[str, Any]) -> str:
    """An event's payload as JSON text, by orjson (a worker's batch writes hundreds of events). As
    `json.dumps(payload, default=str)` wrote it: a datetime or other value JSON has no type for is its str()."""
    return orjson.dumps(payload, default=str, option=orjson.OPT_PASSTHROUGH_DATETIME | orjson.OPT_NON_STR_KEYS).decode()


_BALANCES_KEY = "__balances"


def _sync_balances(session: AsyncSession, shop_id: str, rows) -> None:
    """The identity map's Distributor objects take the balances, grade and bonuses just written (as an ORM
    UPDATE would)."""
    if not rows:
        return
    from sqlalchemy.orm.attributes import set_committed_value
    from sqlalchemy.orm.util import identity_key

    from store.models import Distributor

    for r in rows:
        obj = session.identity_map.get(identity_key(Distributor, (shop_id, r["user_id"])))
        if obj is not None:
            for c in (*BALANCES, "grade", "bonuses_credited"):
                set_committed_value(obj, c, r[c])


# the bind syntax of SQLAlchemy's text() (`:name`, not `::cast`, `\\:` or a word's colon)
_BIND = re.compile(r"(?<![:\w\\]):(\w+)(?!:)")


async def execute_sql(session: AsyncSession, sql: str, params: dict[str, Any]):
    """`session.execute(text(sql), params)` without SQLAlchemy's statement machinery: a write built anew
    for every batch (its text names thousands of binds) was compiled, cache-keyed and bound by
    SQLAlchemy each time — in the worker's profile a quarter of its Python. Here the `:name` binds become
    asyncpg's `$n` in one pass and the text goes to the driver as written (asyncpg still prepares and
    caches it). Untyped binds, as text() gives them; no autoflush, as with text() (not an ORM statement)."""
    order: dict[str, int] = {}

    def number(m: re.Match) -> str:
        return f"${order.setdefault(m[1], len(order) + 1)}"

    driver_sql = _BIND.sub(number, sql)
    return await execute_driver_sql(session, driver_sql, tuple(params[k] for k in order))


async def execute_driver_sql(session: AsyncSession, sql: str, args: tuple):
    """`sql` with asyncpg's `$n` binds, on the session's connection (the session's transaction)."""
    conn = await session.connection()
    return await conn.exec_driver_sql(sql, args)


def _number_part(sql: str, params: dict[str, Any], args: list[Any]) -> str:
    """One part of `LedgerBatch.flush`'s statement with its binds numbered: `:shop_id` is `$1` (as varchar),
    every other `:name` the position of this part's `params[name]`, appended to `args` once per name."""
    own: dict[str, str] = {}

    def number(m: re.Match) -> str:
        name = m[1]
        if name == "shop_id":
            return "CAST($1 AS varchar)"
        got = own.get(name)
        if got is None:
            args.append(params[name])
            got = own[name] = f"${len(args)}"
        return got

    return _BIND.sub(number, sql)


def _register(session: AsyncSession, batch: LedgerBatch) -> None:
    session.info.setdefault(_PENDING, weakref.WeakSet()).add(batch)


async def flush_pending(session: AsyncSession) -> None:
    """Write the lines (and everything else) of batches of this transaction not yet written, before
    commission lines are read again (a line posted at payment is frozen when its group forms, CM-6)."""
    for batch in list(session.info.get(_PENDING, ())):
        if batch.has_lines:
            await batch.flush(session)


MISMATCH_SQL = text(
    """
    SELECT d.user_id, b.col, b.stored, COALESCE(s.total, 0) AS summed
    FROM distributors d
    CROSS JOIN LATERAL (VALUES ('PENDING', d.pending), ('FROZEN', d.frozen), ('AVAILABLE', d.available),
                               ('IN_PAYOUT', d.in_payout), ('PAID', d.paid), ('FEES', d.fees)) AS b(col, stored)
    LEFT JOIN (
        SELECT distributor_id, bucket, SUM(amount) AS total
        FROM ledger_entries WHERE shop_id = :shop_id GROUP BY distributor_id, bucket
    ) s ON s.distributor_id = d.user_id AND s.bucket = b.col
    WHERE d.shop_id = :shop_id AND b.stored <> COALESCE(s.total, 0)
    """
)


async def balance_mismatches(session: AsyncSession, shop_id: str) -> list[tuple]:
    """LG-1 check: every stored balance equals the sum of its entries. Empty list = consistent."""
    return [tuple(r) for r in (await session.execute(MISMATCH_SQL, {"shop_id": shop_id})).all()]
