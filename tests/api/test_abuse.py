"""Safe under abuse, through real HTTP: body size, depth, tokens and cost are refused with a stable code
before anything runs; a client's mistake is INVALID_INPUT with a message that says what is wrong; no
response ever carries a stack trace or SQL."""

from __future__ import annotations

import json

import httpx
import pytest

from api.limits import MAX_COST, MAX_DEPTH, MAX_TOKENS
from tests.api.conftest import codes

LEAKS = ("Traceback", 'File "', "SELECT ", "INSERT ", "sqlalchemy", "asyncpg", "psycopg", ".py")


def post(world, body: bytes | dict, headers: dict | None = None) -> httpx.Response:
    headers = {"Content-Type": "application/json", **(headers or {})}
    content = body if isinstance(body, bytes) else json.dumps(body).encode()
    return httpx.post(f"{world['base']}/graphql", content=content, headers=headers, timeout=30)


def no_leaks(text: str) -> None:
    for needle in LEAKS:
        assert needle not in text, f"{needle!r} in response: {text[:500]}"


# ---------------------------------------------------------------- request size
def test_body_over_the_limit_is_413_by_content_length(world):
    big = json.dumps({"query": "{ __typename }", "pad": "x" * (300 * 1024)}).encode()
    r = post(world, big)
    assert r.status_code == 413 and r.json()["errors"][0]["extensions"]["code"] == "INVALID_INPUT"


def test_body_over_the_limit_is_413_without_content_length(world):
    """A chunked body has no Content-Length: the limit counts what arrives."""

    def chunks():
        yield b'{"query": "{ __typename }", "pad": "'
        for _ in range(300):
            yield b"x" * 1024
        yield b'"}'

    r = httpx.post(
        f"{world['base']}/graphql", content=chunks(), headers={"Content-Type": "application/json"}, timeout=30
    )
    assert r.request.headers.get("transfer-encoding") == "chunked" and "content-length" not in r.request.headers
    assert r.status_code == 413


def test_a_small_chunked_body_still_works(world):
    def chunks():
        yield b'{"query": "{ __typename }"}'

    r = httpx.post(f"{world['base']}/graphql", content=chunks(), headers={"Content-Type": "application/json"})
    assert r.status_code == 200 and r.json() == {"data": {"__typename": "Query"}}


# ---------------------------------------------------------------- depth, tokens, cost
def test_depth_over_the_limit_is_refused_with_a_code(world):
    inner = "id"
    for _ in range(MAX_DEPTH // 4):  # group → campaign → openGroups → edges → node → campaign …
        inner = f"campaign {{ openGroups(first: 1) {{ edges {{ node {{ {inner} }} }} }} }}"
    query = f"{{ me {{ commissionLines(first: 1) {{ edges {{ node {{ order {{ group {{ {inner} }} }} }} }} }} }} }}"
    body = world["as"]("d", "distributor").gql(query)
    assert codes(body) == ["QUERY_TOO_COMPLEX"] and body["data"] is None


def test_tokens_over_the_limit_are_refused_with_a_code(world):
    query = "{" + " ".join(f"a{i}: __typename" for i in range(MAX_TOKENS)) + "}"
    body = world["public"].gql(query)
    assert codes(body) == ["QUERY_TOO_COMPLEX"]


def test_sixty_aliases_of_nested_pages_are_refused_by_cost_before_running(world):
    """The reviewer's query: 60 aliases × 100 campaigns × 100 groups. Under the depth and token limits,
    refused by cost alone."""
    one = "campaigns(first: 100) { edges { node { openGroups(first: 100) { edges { node { id } } } } } }"
    query = "{" + " ".join(f"a{i}: {one}" for i in range(60)) + "}"
    body = world["public"].gql(query)
    assert codes(body) == ["QUERY_TOO_COMPLEX"] and body["data"] is None
    assert body["errors"][0]["extensions"]["cost"] > MAX_COST
    single = world["public"].gql("{" + one + "}")
    assert codes(single) == ["QUERY_TOO_COMPLEX"]  # one alias is already 100 × 100 groups


def test_cost_multiplies_first_from_variables_and_defaults_through_nesting(world):
    q = (
        "query($n: Int) { campaigns(first: $n) { edges { node { title openGroups(first: $n) { edges { node { "
        "id seatsLeft } } } } } } }"
    )
    assert codes(world["public"].gql(q, n=100)) == ["QUERY_TOO_COMPLEX"]
    assert "errors" not in world["public"].gql(q, n=10)
    # no `first`: the default page (20) counts, so 20 × 20 nested pages are fine …
    assert "errors" not in world["public"].gql(
        "{ campaigns { edges { node { openGroups { edges { node { id } } } } } } }"
    )
    # … and the same through a fragment
    frag = (
        "query($n: Int) { campaigns(first: $n) { ...C } } fragment C on CampaignConnection { edges { node { "
        "openGroups(first: $n) { edges { node { id seatsLeft } } } } } }"
    )
    assert codes(world["public"].gql(frag, n=100)) == ["QUERY_TOO_COMPLEX"]


def test_ordinary_pages_are_well_within_the_budget(world):
    q = (
        "{ myOrders(first: 100) { totalCount edges { cursor node { id externalId state paidAmount refundedAmount "
        "currency group { id state seatsLeft tierReached { members unitPrice } campaign { id title } } } } } }"
    )
    assert "errors" not in world["as"]("ann", "customer").gql(q)


# ---------------------------------------------------------------- client mistakes
@pytest.mark.parametrize(
    "query, variables, says",
    [
        ("query($f: Int) { myOrders(first: $f) { totalCount } }", {"f": "abc"}, "Int"),
        ("query($f: Int) { myOrders(first: $f) { totalCount } }", {"f": 1e300}, "Int"),
        (
            "mutation($i: RequestPayoutInput!) { requestPayout(input: $i) { errors { code } } }",
            {"i": {"amount": 1e300}},
            "MinorUnits",
        ),
        (
            "mutation($i: RequestPayoutInput!) { requestPayout(input: $i) { errors { code } } }",
            {"i": {"amount": 2**60}},
            "MinorUnits",
        ),
        (
            "mutation($i: RequestPayoutInput!) { requestPayout(input: $i) { errors { code } } }",
            {"i": {"amount": "12.50"}},
            "MinorUnits",
        ),
        ("mutation { requestPayout(input: {amount: 1e300}) { errors { code } } }", {}, "MinorUnits"),
        ("mutation($i: RequestPayoutInput!) { requestPayout(input: $i) { errors { code } } }", {"i": {}}, "amount"),
        ('{ node(id: "zzz") { id } }', {}, "global id"),
        ('{ node(id: "Rm9vOjE=") { id } }', {}, "global id"),  # "Foo:1": no such type
        ('{ group(id: "zzz") { id } }', {}, "Group"),
        (
            "query($d: DateTime!) { me { earnings(periodFrom: $d, periodTo: $d) { paid } } }",
            {"d": "yesterday"},
            "DateTime",
        ),
        ("{ nope }", {}, "nope"),
        ("{ myOrders { ", {}, "Syntax Error"),
    ],
    ids=[
        "int-string",
        "int-huge",
        "money-1e300",
        "money-2^60",
        "money-string",
        "money-literal",
        "missing-field",
        "node-zzz",
        "node-unknown-type",
        "group-zzz",
        "datetime",
        "unknown-field",
        "syntax",
    ],
)
def test_client_mistakes_are_invalid_input_with_a_helpful_message(world, query, variables, says):
    r = post(
        world, {"query": query, "variables": variables}, headers=world["as"]("ann", "customer", "distributor").headers
    )
    no_leaks(r.text)
    body = r.json()
    assert codes(body) == ["INVALID_INPUT"], body
    assert says in body["errors"][0]["message"] and body["errors"][0]["message"] != "internal error"


def test_nothing_internal_leaks_from_garbage(world):
    for raw in (b"not json", b'{"query": 5}', b'{"query": "{ __typename }", "variables": "x"}', b"[]", b"{}"):
        r = post(world, raw)
        assert r.status_code in (200, 400), (raw, r.status_code)
        no_leaks(r.text)
    r = httpx.get(f"{world['base']}/graphql", params={"query": "mutation { __typename }"})
    no_leaks(r.text)


@pytest.mark.parametrize(
    "body, content_type",
    [(b"{bad", "application/json"), (b"{}", "application/json"), (b"{ __typename }", "text/plain")],
)
def test_an_unreadable_request_is_json_with_a_code_ER1(world, body, content_type):
    """A request strawberry cannot read (not JSON, no query, an unsupported content type) is answered in
    GraphQL's error shape with INVALID_INPUT, like every other refusal, never as bare text."""
    r = post(world, body, {"Content-Type": content_type})
    assert r.status_code == 400 and r.headers["content-type"].startswith("application/json"), r.text
    assert codes(r.json()) == ["INVALID_INPUT"] and r.json()["errors"][0]["message"]


def test_payload_error_fields_are_named_as_in_the_schema_ER1(world):
    """The engine names fields in Python; a payload error names the input field as the client wrote it."""
    admin = world["as"]("boss", "admin")
    r = admin.mutate(
        "createCampaign",
        {
            "productRef": "p",
            "title": "t",
            "listPrice": 1000,
            "tiers": [{"members": 2, "unitPrice": 900}],
            "durationSeconds": 3600,
            "paymentWindowSeconds": 600,
            "startsAt": "2026-02-01T00:00:00+00:00",
            "endsAt": "2026-01-01T00:00:00+00:00",
        },
        "campaign { id }",
    )
    assert [(e["code"], e["field"]) for e in r["errors"]] == [("INVALID_INPUT", "endsAt")], r
