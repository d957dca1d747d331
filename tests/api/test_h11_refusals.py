"""Issue 11 point 11: input the rules never meant to accept is a clear coded refusal, never INTERNAL."""

from __future__ import annotations

import base64
import json
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest

from tests.api.conftest import codes, payload_codes


def _all_codes(body: dict) -> list[str]:
    """Top-level error codes plus every payload's `errors` codes."""
    out = codes(body)
    for value in (body.get("data") or {}).values():
        if isinstance(value, dict):
            out += [e["code"] for e in value.get("errors") or []]
    return out


NUL = "a\x00b"


@pytest.mark.parametrize(
    "request_",
    [
        ("query($c: String!) { resolveInvite(code: $c) { valid } }", {"c": NUL}, "public"),
        ('{ resolveInvite(code: "a\\u0000b") { valid } }', {}, "public"),
        (
            "mutation($i: BindReferrerInput!) { bindReferrer(input: $i) { errors { code } } }",
            {"i": {"inviteCode": NUL}},
            "customer",
        ),
        (
            "mutation($i: OpenGroupInput!) { openGroup(input: $i) { errors { code } } }",
            {"i": {"campaignId": "cmp_x", "idempotencyKey": NUL}},
            "customer",
        ),
        ("query($p: String!) { product(productRef: $p) { title } }", {"p": NUL}, "backend"),
        ("query($id: ID!) { group(id: $id) { id } }", {"id": "grp_\x00"}, "public"),
    ],
    ids=["resolveInvite", "literal", "bindReferrer", "idempotencyKey", "product", "id"],
)
def test_h11_11_nul_in_any_string_or_id_is_invalid_input(world, request_):
    query, variables, who = request_
    caller = world["public"] if who == "public" else world["as"]("u", who)
    body = caller.gql(query, **variables)
    assert _all_codes(body) == ["INVALID_INPUT"], body


def test_h11_11_year_one_in_reports_and_close_period(world):
    dist, fin, admin = world["as"]("d", "distributor"), world["as"]("f", "finance"), world["as"]("a", "admin")
    body = dist.gql(
        '{ me { earningsSeries(granularity: DAY, periodFrom: "0001-01-01", periodTo: "0001-01-10") { paid } } }'
    )
    assert codes(body) == ["INVALID_INPUT"], body
    body = admin.gql('{ retention(periodFrom: "0001-01-01", periodTo: "2026-01-01") { buyers } }')
    assert codes(body) == ["INVALID_INPUT"], body
    r = fin.mutate("closePeriod", {"fromDate": "0001-01-01", "toDate": "0001-01-02"}, "settlement { id }")
    assert payload_codes(r) == ["INVALID_INPUT"]
    body = dist.gql(
        '{ me { earnings(periodFrom: "0001-01-01T00:00:00+14:00", periodTo: "9999-12-31T23:59:59-12:00") { paid } } }'
    )
    assert _all_codes(body) in ([], ["INVALID_INPUT"]), body


def test_h11_11_cursor_offset_of_ten_to_the_21(world):
    after = base64.b64encode(b"c:" + str(10**21).encode()).decode()
    body = world["as"]("ann", "customer").gql("query($a: String) { myOrders(after: $a) { totalCount } }", a=after)
    assert codes(body) == ["INVALID_INPUT"], body
    body = world["public"].gql("query($a: String) { campaigns(after: $a) { totalCount } }", a=after)
    assert codes(body) == ["INVALID_INPUT"], body


def test_h11_11_order_totals_above_2_53_are_refused(world):
    backend = world["as"]("be", "backend")
    r = backend.mutate(
        "reportOrder",
        {"externalId": "big", "buyerId": "ann", "lines": [{"productRef": "x", "quantity": 2**20, "unitPrice": 2**40}]},
        "order { id }",
    )
    assert payload_codes(r) == ["INVALID_INPUT"] and r["order"] is None
    r = backend.mutate(
        "reportOrder",
        {
            "externalId": "big2",
            "buyerId": "ann",
            "lines": [{"productRef": "x", "quantity": 1, "unitPrice": 2**53 - 1}],
            "shippingAmount": 10,
        },
        "order { id }",
    )
    assert payload_codes(r) == ["INVALID_INPUT"]
    r = backend.mutate(
        "reportOrder",
        {"externalId": "ok", "buyerId": "ann", "lines": [{"productRef": "x", "quantity": 3, "unitPrice": 10**12}]},
        "order { id goodsAmount }",
    )
    assert r["errors"] == [] and r["order"]["goodsAmount"] == 3 * 10**12


def test_h11_11_deeply_nested_json_body(world):
    deep = b'{"query": "{ __typename }", "variables": {"x": ' + b"[" * 50_000 + b"]" * 50_000 + b"}}"
    r = httpx.post(f"{world['base']}/graphql", content=deep, headers={"Content-Type": "application/json"})
    assert r.status_code == 400 and r.json()["errors"][0]["extensions"]["code"] == "INVALID_INPUT"
    nested = {"query": "query($x: [String]) { __typename }", "variables": {"x": []}}
    v = nested["variables"]
    for _ in range(60):  # a nesting within the limit is fine
        v = v.setdefault("y", {})
    r = httpx.post(f"{world['base']}/graphql", content=json.dumps(nested), headers={"Content-Type": "application/json"})
    assert r.status_code == 200


def test_h11_11_one_refund_provider_ref_used_concurrently_on_two_orders(world):
    backend = world["as"]("be", "backend")
    orders = []
    for n in range(2):
        o = backend.mutate(
            "reportOrder",
            {
                "externalId": f"rf-{n}",
                "buyerId": "ann",
                "lines": [{"productRef": "x", "quantity": 1, "unitPrice": 5000}],
            },
            "order { id }",
        )["order"]["id"]
        assert backend.mutate(
            "confirmPayment", {"orderId": o, "amount": 5000, "providerRef": f"pay-rf-{n}"}, "accepted"
        )["accepted"]
        orders.append(o)
    for attempt in range(5):  # a race: the database's unique (shop, providerRef) decides, coded
        ref = f"refund-same-{attempt}"
        with ThreadPoolExecutor(2) as pool:
            results = list(
                pool.map(
                    lambda o: backend.gql(
                        "mutation($i: RefundOrderInput!) { refundOrder(input: $i) { refund { id } errors { code field } } }",
                        i={"orderId": o, "amount": 100, "providerRef": ref},
                    ),
                    orders,
                )
            )
        got = sorted(_all_codes(r) and _all_codes(r)[0] or "OK" for r in results)
        assert got == ["IDEMPOTENCY_CONFLICT", "OK"], results


def test_h11_11_test_clock_cannot_pass_year_9999(world, database_url):
    """On a server of its own: the session's server keeps its clock."""
    from api.app import create_app
    from api.auth import mint_token
    from tests.api.conftest import AppServer, Client

    own = AppServer(database_url, lambda s: create_app(s, dev=True, test_clock=True))
    try:
        _clock_bounded(
            Client(own.base, mint_token(world["shop"], "boss", ["admin"], 600)),
            Client(own.base, shop_key=world["shop"].public_key),
        )
    finally:
        own.stop()


def _clock_bounded(admin, public):
    step = {"seconds": 2**31 - 1}  # an Int's largest: 68 years a call; 119 calls were past year 9999
    moved = [payload_codes(admin.mutate("advanceClock", step, "now")) for _ in range(3)]
    assert moved[0] == [] and moved[-1] == ["INVALID_INPUT"], moved
    year = admin.mutate("advanceClock", {"seconds": 0}, "now")["now"][:4]
    assert int(year) < 2200
    # every shop still works
    assert "errors" not in public.gql("{ campaigns { totalCount } }")


@pytest.mark.parametrize(
    "constraint, field",
    [
        ("uq_refunds_shop_id_provider_ref", True),
        ("uq_refunds_shop_id_provider_ref_102458", True),
        ("uq_refunds_shop_id_provider_ref_102458", False),
    ],
)
def test_h11_11_a_unique_refusal_is_known_by_its_constraint_on_a_citus_shard_too(constraint, field):
    """On Citus the unique violation names the shard's constraint (`<name>_<shard id>`), and only in its message
    (the coordinator relays a worker's error without the constraint field): the same refusal."""
    from sqlalchemy.exc import IntegrityError

    from api.errors import refusal_of

    class Violation(Exception):
        sqlstate = "23505"
        constraint_name = constraint if field else None

    def violation(name: str) -> Exception:
        return Violation(f'duplicate key value violates unique constraint "{name}"')

    r = refusal_of(IntegrityError("INSERT …", {}, violation(constraint)))
    assert r is not None and r.code == "IDEMPOTENCY_CONFLICT" and r.field == "providerRef"
    Violation.constraint_name = "uq_something_else_102458" if field else None
    assert refusal_of(IntegrityError("INSERT …", {}, violation("uq_something_else_102458"))) is None
