"""Relay and scalar plumbing shared by every domain module of `api/`.

Ids: every object with an identity is a Relay `Node`; its `id` is a global id (opaque base64 of
`Type:raw-id`). Inputs that name objects take those global ids (`ID!`); `raw_id()` decodes them and
refuses an id of the wrong type (INVALID_INPUT). A global id carries no shop: it is always looked up
in the caller's shop, so an id from another shop finds nothing (SH-1).

Money: the `MinorUnits` scalar — an integer amount in minor units (fen, cents) of the shop currency,
serialized as a JSON number. It is not GraphQL's `Int` (32-bit: ¥21,474,836.47 would overflow);
values stay within ±2^53 so JavaScript clients read them exactly. Every object with money carries the
shop's ISO 4217 `currency` beside it (SH-2: one currency per shop).

Lists are connections (`edges { cursor node }`, `pageInfo`, `totalCount`), paged forwards with
`first` (default 20, at most 100; larger values are capped, not refused) and `after`. Lists that
change while a client pages through them (owed refunds, events, webhook deliveries) use keyset
cursors (`Keyset`): `after` is the sort key of the last row seen, so rows leaving or joining the list
never make a page skip one.

Whether a caller may see an object fetched by id is decided in one place, `api.visibility`; every
`resolve_nodes` goes through `resolve_visible`.
"""

from __future__ import annotations

import base64
import json
from dataclasses import dataclass
from datetime import date
from typing import Any, Awaitable, Callable, Iterable, NewType, Optional

import strawberry
from strawberry import relay
from strawberry.relay.types import NodeType
from strawberry.types import Info

from api.permissions import HasShopKey
from api.visibility import may_see
from engine.errors import ErrorCode, refuse


MinorUnits = NewType("MinorUnits", int)


def _parse_minor_units(value: Any) -> int:
    """Client input: the ValueError's message reaches the client (api.errors), so it says what is wrong."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValueError("MinorUnits is a whole number of minor units (fen, cents), without a fraction or exponent")
    if abs(value) > 2**53:
        raise ValueError("MinorUnits must be within ±2^53 (9007199254740992)")
    return value


MINOR_UNITS = strawberry.scalar(
    name="MinorUnits",
    serialize=int,
    parse_value=_parse_minor_units,
    description="An amount in integer minor units (fen, cents) of the shop currency; a JSON number "
    "within ±2^53 (not the 32-bit Int).",
)


DEFAULT_PAGE, MAX_PAGE = 20, 100


MAX_OFFSET = 10**9  # a cursor further than this is not one this API gave out (10^21 overflowed OFFSET)


FIRST_DAY, LAST_DAY = date(1900, 1, 1), date(9000, 1, 1)  # calendar days an input may name


MAX_MINOR = 2**53 - 1  # what MinorUnits can carry: an order total beyond it could never be paid


def bounded_day(day: date, field: str) -> date:
    """A calendar day of an input, refused (INVALID_INPUT) outside FIRST_DAY..LAST_DAY: 0001-01-01 in a shop's
    time zone is before the first instant a datetime can hold."""
    if not FIRST_DAY <= day <= LAST_DAY:
        raise refuse(ErrorCode.INVALID_INPUT, f"a day from {FIRST_DAY} to {LAST_DAY}", field=field)
    return day


# ---------------------------------------------------------------- ids

# The prefixes of Sharecart's own ids (service/tx/ids.py). Webhook payloads and exports carry these raw ids,
# so an input takes them as well as the global id: a backend acting on a webhook needs no re-encoding.
RAW_PREFIX = {
    "Order": "ord_",
    "Group": "grp_",
    "Refund": "rf_",
    "Campaign": "cmp_",
    "Payout": "po_",
    "Settlement": "st_",
    "WebhookEndpoint": "wh_",
    "CommissionLine": "cl_",
}


def raw_id(value: str, type_name: str, field: str) -> str:
    """The raw id of a global id of `type_name` (or the raw id itself, by its prefix); INVALID_INPUT (with
    `field`) for anything else."""
    prefix = RAW_PREFIX.get(type_name)
    if prefix and value.startswith(prefix) and len(value) > len(prefix):
        return value
    try:
        gid = relay.GlobalID.from_id(value)
    except Exception:
        raise refuse(ErrorCode.INVALID_INPUT, f"not a global id: expected a {type_name} id", field=field)
    if gid.type_name != type_name:
        raise refuse(ErrorCode.INVALID_INPUT, f"expected a {type_name} id, got a {gid.type_name} id", field=field)
    return gid.node_id


def global_id(type_name: str, raw: str) -> str:
    return str(relay.GlobalID(type_name, raw))


# ---------------------------------------------------------------- connections


@strawberry.type(name="Connection", description="A page of a list: edges with cursors, page info, total count.")
class Connection(relay.Connection[NodeType]):
    total_count: int = strawberry.field(description="How many items the whole list has.")


def _cursor(position: int) -> str:
    return base64.b64encode(f"c:{position}".encode()).decode()


def page_args(first: Optional[int], after: Optional[str]) -> tuple[int, int]:
    """(limit, offset) from `first`/`after`: first defaults to 20 and is capped at 100."""
    if first is None:
        first = DEFAULT_PAGE
    if first < 0:
        raise refuse(ErrorCode.INVALID_INPUT, "first must be >= 0", field="first")
    offset = 0
    if after:
        try:
            kind, n = base64.b64decode(after, validate=True).decode().split(":")
            assert kind == "c"
            offset = int(n)
            assert 0 <= offset <= MAX_OFFSET
        except Exception:
            raise refuse(ErrorCode.INVALID_INPUT, "after: not a cursor of this list", field="after")
    return min(first, MAX_PAGE), offset


def make_connection(items: list, total: int, offset: int) -> Connection:
    edges = [relay.Edge(cursor=_cursor(offset + i + 1), node=n) for i, n in enumerate(items)]
    return Connection(
        edges=edges,
        total_count=total,
        page_info=relay.PageInfo(
            has_next_page=offset + len(items) < total,
            has_previous_page=offset > 0,
            start_cursor=edges[0].cursor if edges else None,
            end_cursor=edges[-1].cursor if edges else None,
        ),
    )


async def paginate(
    fetch: Callable[..., Awaitable[tuple[list, int]]],
    first: Optional[int],
    after: Optional[str],
    convert: Callable[[Any], Any],
) -> Connection:
    """`fetch(limit=, offset=)` returns (rows, total); each row becomes a node through `convert`."""
    limit, offset = page_args(first, after)
    rows, total = await fetch(limit=limit, offset=offset)
    return make_connection([convert(r) for r in rows], total, offset)


@dataclass(frozen=True)
class Keyset:
    """A keyset cursor for a list whose rows can appear or vanish while a client pages through it (owed
    refunds leave the list as they are confirmed; events arrive): the cursor is the sort key of the last
    row seen, so the next page starts right after it whatever happened before it. An offset would skip
    rows when the list shrinks and repeat them when it grows."""

    kind: str  # names the list, so a cursor of another list is refused
    key: Callable[[Any], list]  # row -> its sort key as JSON values
    parse: Callable[[list], tuple]  # JSON values -> the key the query compares with


def keyset_args(first: Optional[int], after: Optional[str], ks: Keyset) -> tuple[int, Optional[tuple]]:
    """(limit, key after which the page starts) from `first`/`after`; first defaults to 20, capped at 100."""
    limit, _ = page_args(first, None)
    if not after:
        return limit, None
    try:
        kind, *values = json.loads(base64.b64decode(after, validate=True))
        assert kind == ks.kind
        return limit, ks.parse(values)
    except Exception:
        raise refuse(ErrorCode.INVALID_INPUT, "after: not a cursor of this list", field="after")


def _keyset_cursor(ks: Keyset, row) -> str:
    return base64.b64encode(json.dumps([ks.kind, *ks.key(row)], separators=(",", ":")).encode()).decode()


async def paginate_keyset(
    fetch: Callable[..., Awaitable[tuple[list, int]]],
    first: Optional[int],
    after: Optional[str],
    ks: Keyset,
    convert: Callable[[Any], Any],
) -> Connection:
    """`fetch(limit=, after=)` returns (up to `limit` rows after the key in sort order, total); one row more
    than the page is asked for, to know whether a next page exists."""
    limit, key = keyset_args(first, after, ks)
    rows, total = await fetch(limit=limit + 1, after=key)
    page = rows[:limit]
    edges = [relay.Edge(cursor=_keyset_cursor(ks, r), node=convert(r)) for r in page]
    return Connection(
        edges=edges,
        total_count=total,
        page_info=relay.PageInfo(
            has_next_page=len(rows) > limit,
            has_previous_page=key is not None,
            start_cursor=edges[0].cursor if edges else None,
            end_cursor=edges[-1].cursor if edges else None,
        ),
    )


def _one_int(v: list) -> tuple[int]:
    (position,) = v  # a cursor of the old (txid, seq) order has two values: refused, not misread
    return (int(position),)


# ---------------------------------------------------------------- node resolution


async def resolve_visible(info: Info, kind: str, node_ids: Iterable[str], convert) -> list:
    """`resolve_nodes` of every Node type: load by id with the request's DataLoader `kind` (one query for
    the lot), then keep what `api.visibility` lets the caller see (None for the rest, as for a missing id)."""
    ctx = info.context
    rows = await getattr(ctx.loaders, kind).load_many(list(node_ids))
    return [convert(r, ctx) if r is not None and may_see(ctx, kind, r) else None for r in rows]


@strawberry.field(
    permission_classes=[HasShopKey],
    description="Refetch any object by its global id (null when it is not yours to see).",
)
async def node(info: Info, id: strawberry.ID) -> Optional[relay.Node]:
    try:
        gid = relay.GlobalID.from_id(id)
        gid.resolve_type(info)
    except ValueError:
        raise refuse(
            ErrorCode.INVALID_INPUT, "not a global id of this API: use the `id` of an object it returned", field="id"
        )
    return await gid.resolve_node(info, required=False)
