"""GB-10 through the API: every mutation a client may retry takes `idempotencyKey`.

The first test derives the list from the schema, so a mutation added without the key fails it. The
table-driven test calls representative mutations twice with one key (the same payload, one effect) and
once with the same key and another input (IDEMPOTENCY_CONFLICT, still one effect)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from typing import Callable

import pytest
from graphql import GraphQLInputObjectType, GraphQLNonNull, GraphQLScalarType
from sqlalchemy import text

from api.schema import make_schema
from tests.api.conftest import payload_codes

# advanceClock only moves the test clock (SHARECART_TEST_CLOCK=1): nothing to retry
WITHOUT_KEY = {"advanceClock"}


@pytest.mark.parametrize("test_clock", [False, True], ids=["production", "test-clock"])
def test_every_mutation_input_has_an_optional_idempotency_key_GB10(test_clock):
    mutations = make_schema(test_clock=test_clock)._schema.mutation_type.fields
    missing = []
    for name, field in mutations.items():
        if name in WITHOUT_KEY:
            continue
        arg = field.args.get("input")
        input_type = arg.type.of_type if arg and isinstance(arg.type, GraphQLNonNull) else getattr(arg, "type", None)
        key = input_type.fields.get("idempotencyKey") if isinstance(input_type, GraphQLInputObjectType) else None
        if key is None or not (isinstance(key.type, GraphQLScalarType) and key.type.name == "String"):
            missing.append(name)  # absent, or required (a key is never required)
    assert missing == [], f"mutations without an optional `idempotencyKey: String` input field: {missing}"
    assert WITHOUT_KEY <= set(make_schema(test_clock=True)._schema.mutation_type.fields), "stale exemption"


# ---------------------------------------------------------------- one key, retried
@dataclass
class Case:
    mutation: str
    role: str
    scope: str  # the use case's idempotency scope (service layer)
    fields: str
    setup: Callable[[dict], tuple[dict, dict, str]]  # world -> (input, another input, effect SQL)
    user: str | None = None  # who calls (default: "<role>-1")


def _user(world, name, *roles):
    return world["as"](name, *roles)


def _admin(world):
    return _user(world, "boss", "admin")


def _backend(world):
    return _user(world, "be", "backend")


def _events(type_: str) -> str:
    return f"SELECT count(*) FROM events WHERE shop_id = :shop AND type = '{type_}'"


def _paid_order(world, external_id: str, pay: bool = True) -> str:
    be = _backend(world)
    o = be.mutate(
        "reportOrder",
        {"externalId": external_id, "buyerId": "eve", "lines": [{"productRef": "x", "quantity": 1, "unitPrice": 5000}]},
        "order { id }",
    )
    assert o["errors"] == [], o
    if pay:
        p = be.mutate(
            "confirmPayment",
            {"orderId": o["order"]["id"], "amount": 5000, "providerRef": f"pay-{external_id}"},
            "accepted",
        )
        assert p["errors"] == [] and p["accepted"], p
    return o["order"]["id"]


def _distributor_with_levels(world, user: str) -> None:
    admin = _admin(world)
    lv = admin.mutate(
        "setLevels",
        {
            "levels": [
                {"grade": 0, "name": "Member", "level1Bp": 1000, "level2Bp": 500},
                {"grade": 1, "name": "Silver", "level1Bp": 1200, "level2Bp": 500, "upgradeBonus": 5000},
                {"grade": 2, "name": "Gold", "level1Bp": 1500, "level2Bp": 600},
            ]
        },
        "levels { grade }",
    )
    assert lv["errors"] == [], lv
    assert admin.mutate("approveDistributor", {"userId": user}, "distributor { status }")["errors"] == []


def setup_approve_payout(world):
    _distributor_with_levels(world, "dora")
    up = _admin(world).mutate(
        "setDistributorLevel", {"userId": "dora", "grade": 1, "reason": "bonus"}, "distributor { grade }"
    )
    assert up["errors"] == [], up  # LV-4: the upgrade bonus of 5000 is available
    p = _user(world, "dora", "customer", "distributor").mutate("requestPayout", {"amount": 1000}, "payout { id }")
    assert p["errors"] == [], p
    pid = p["payout"]["id"]
    return (
        {"payoutId": pid, "externalRef": "bank-1"},
        {"payoutId": pid, "externalRef": "bank-2"},
        "SELECT count(*) FROM ledger_entries WHERE shop_id = :shop AND ref_type = 'payout'",
    )


def setup_request_payout(world):
    # No natural idempotency here: without the key a retry would be a second payout.
    _distributor_with_levels(world, "rita")
    up = _admin(world).mutate(
        "setDistributorLevel", {"userId": "rita", "grade": 1, "reason": "bonus"}, "distributor { grade }"
    )
    assert up["errors"] == [], up  # LV-4: 5000 available
    return (
        {"amount": 1000},
        {"amount": 1200},
        "SELECT count(*) FROM payouts WHERE shop_id = :shop AND distributor_id = 'rita'",
    )


def setup_complete_order(world):
    first, other = _paid_order(world, "ord-a"), _paid_order(world, "ord-b")
    return {"orderId": first}, {"orderId": other}, _events("order.completed")


def setup_confirm_payment(world):
    order = _paid_order(world, "ord-c", pay=False)
    return (
        {"orderId": order, "amount": 5000, "providerRef": "pay-1"},
        {"orderId": order, "amount": 5000, "providerRef": "pay-2"},
        _events("order.paid"),
    )


def setup_set_distributor_level(world):
    _distributor_with_levels(world, "gus")
    return (
        {"userId": "gus", "grade": 1, "reason": "VIP"},
        {"userId": "gus", "grade": 2, "reason": "VIP"},
        "SELECT count(*) FROM distributor_audit WHERE shop_id = :shop AND user_id = 'gus'",
    )


def setup_close_period(world):
    today = world["svc"].now().date()
    day = lambda n: (today - timedelta(days=n)).isoformat()  # noqa: E731
    return (
        {"fromDate": day(10), "toDate": day(3)},
        {"fromDate": day(10), "toDate": day(2)},
        _events("settlement.closed"),
    )


def setup_upsert_product(world):
    # xmin changes with every write of the row, also one that writes the same values
    return (
        {"productRef": "tea-1", "title": "Tea", "category": "tea", "level1Amount": 200},
        {"productRef": "tea-1", "title": "Green tea", "category": "tea", "level1Amount": 200},
        "SELECT xmin::text FROM products WHERE shop_id = :shop AND product_ref = 'tea-1'",
    )


def setup_update_settings(world):
    return (
        {"level1Bp": 1100, "minPayout": 300},
        {"level1Bp": 1200, "minPayout": 300},
        "SELECT xmin::text FROM distribution_settings WHERE shop_id = :shop",
    )


CASES = [
    Case(
        "requestPayout", "distributor", "payout:rita", "payout { id amount state }", setup_request_payout, user="rita"
    ),
    Case(
        "approvePayout",
        "finance",
        "approve_payout",
        "payout { id state fee net externalRef decidedAt }",
        setup_approve_payout,
    ),
    Case("completeOrder", "backend", "complete_order", "order { id state completedAt }", setup_complete_order),
    Case(
        "confirmPayment", "backend", "confirm_payment", "order { id state paidAmount } accepted", setup_confirm_payment
    ),
    Case(
        "setDistributorLevel",
        "admin",
        "set_distributor_level",
        "distributor { id grade status }",
        setup_set_distributor_level,
    ),
    Case("closePeriod", "finance", "close_period", "settlement { id localFrom localTo closing }", setup_close_period),
    Case(
        "upsertProduct", "backend", "upsert_product", "product { id title category level1Amount }", setup_upsert_product
    ),
    Case(
        "updateDistributionSettings",
        "admin",
        "update_distribution_settings",
        "settings { level1Bp minPayout }",
        setup_update_settings,
    ),
]


async def _scalar(svc, sql: str, **params):
    async with svc.engine.connect() as c:
        return (await c.execute(text(sql), params)).scalar()


@pytest.mark.parametrize("case", CASES, ids=[c.mutation for c in CASES])
async def test_a_retry_with_one_key_has_one_effect_and_another_input_is_a_conflict_GB10(world, svc, case):
    shop = world["shop"].shop_id
    first_input, other_input, effect_sql = case.setup(world)
    caller = _user(world, case.user or f"{case.role}-1", case.role)
    key = f"{case.mutation}-key-1"

    first = caller.mutate(case.mutation, {**first_input, "idempotencyKey": key}, case.fields)
    assert first["errors"] == [], first
    effect = await _scalar(svc, effect_sql, shop=shop)
    stored = await _scalar(
        svc,
        "SELECT result FROM idempotency_keys WHERE shop_id = :shop AND scope = :scope AND key = :key",
        shop=shop,
        scope=case.scope,
        key=key,
    )
    assert stored is not None, "the key is kept in the mutation's transaction, with what a replay needs"

    again = caller.mutate(case.mutation, {**first_input, "idempotencyKey": key}, case.fields)
    assert again == first  # the first result
    assert await _scalar(svc, effect_sql, shop=shop) == effect  # no second effect

    conflict = caller.mutate(case.mutation, {**other_input, "idempotencyKey": key}, case.fields)
    assert payload_codes(conflict) == ["IDEMPOTENCY_CONFLICT"]
    assert [e["field"] for e in conflict["errors"]] == ["idempotencyKey"]
    assert await _scalar(svc, effect_sql, shop=shop) == effect


def test_a_replayed_confirmation_says_it_was_replayed_GB10(world):
    order = _paid_order(world, "ord-r", pay=False)
    be = _backend(world)
    inp = {"orderId": order, "amount": 5000, "providerRef": "pay-r", "idempotencyKey": "confirm-r"}
    assert be.mutate("confirmPayment", inp, "accepted replayed") == {"accepted": True, "replayed": False, "errors": []}
    assert be.mutate("confirmPayment", inp, "accepted replayed") == {"accepted": True, "replayed": True, "errors": []}


def test_a_too_long_key_is_refused_and_a_long_user_id_keeps_its_own_scope_GB10(world):
    be = _backend(world)
    long_key = be.mutate("upsertProduct", {"productRef": "p", "idempotencyKey": "k" * 129}, "product { id }")
    assert payload_codes(long_key) == ["INVALID_INPUT"] and long_key["errors"][0]["field"] == "idempotencyKey"
    # a per-user scope (`apply:<user id>`) with a 64-character user id is longer than the scope column
    for user in ("a" * 64, "a" * 63 + "b"):
        applicant = world["as"](user, "customer")
        first = applicant.mutate("applyAsDistributor", {"idempotencyKey": "apply-1"}, "status")
        assert first["errors"] == [] and first["status"], first
        assert applicant.mutate("applyAsDistributor", {"idempotencyKey": "apply-1"}, "status") == first
