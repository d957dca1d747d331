"""ER-1 in the API: a payload error's `field` names the input that is wrong (issue 12 point 3).

The engine and the service name what they check in their own words (`duration`, `from`, a distributor's
`status`, the caller's `userId`); `api.payload.payload_mutation(..., fields=...)` says which input each of those
is. Two checks: every rename points at a real input field of its mutation (no stale names), and one or
more real refusals per mutation, through HTTP, each with the input field a client would highlight.
"""

from __future__ import annotations

import re
from datetime import datetime, timedelta, timezone

import pytest

from api.schema import MutationWithTestClock, full_schema


def _input_fields(mutation: str) -> set[str]:
    s = full_schema()._schema
    arg = s.mutation_type.fields[mutation].args["input"]
    return set(arg.type.of_type.fields)


def _root(field: str) -> str:
    """`lines.0` and `variants[1].tiers` name the input fields `lines` and `variants`."""
    return re.split(r"[.\[]", field, maxsplit=1)[0]


def test_every_rename_names_an_input_of_its_mutation():
    schema = full_schema()
    renames = {}
    for f in MutationWithTestClock.__strawberry_definition__.fields:
        wrapped = f.base_resolver.wrapped_func if f.base_resolver else None
        renames[schema.config.name_converter.get_graphql_name(f)] = getattr(wrapped, "renamed_fields", None)
    assert set(renames) == set(schema._schema.mutation_type.fields)
    for name, fields in renames.items():
        assert fields is not None, f"{name} is not built by payload_mutation"
        for target in fields.values():
            assert target is None or target in _input_fields(name), (name, target)
    assert renames["closePeriod"] == {"from": "fromDate", "to": "toDate"}


def _check(payload: dict, mutation: str, code: str, field: str | None) -> None:
    assert [(e["code"], e["field"]) for e in payload["errors"]] == [(code, field)], payload
    if field is not None:
        assert _root(field) in _input_fields(mutation), (mutation, field)


def _campaign(**over) -> dict:
    now = datetime.now(timezone.utc)
    c = {
        "productRef": "p-1",
        "title": "T",
        "listPrice": 1000,
        "tiers": [{"members": 2, "unitPrice": 800}],
        "durationSeconds": 3600,
        "paymentWindowSeconds": 600,
        "startsAt": (now - timedelta(hours=1)).isoformat(),
        "endsAt": (now + timedelta(days=1)).isoformat(),
    }
    return {**c, **over}


def test_close_period_names_from_date_or_to_date(world):
    """The issue's case: a bad toDate used to come back as fromDate."""
    fin = world["as"]("fin", "finance")
    m = "closePeriod"
    _check(
        fin.mutate(m, {"fromDate": "2024-03-02", "toDate": "2024-03-01"}, "settlement { id }"),
        m,
        "INVALID_INPUT",
        "toDate",
    )
    _check(
        fin.mutate(m, {"fromDate": "2024-03-01", "toDate": "9999-12-31"}, "settlement { id }"),
        m,
        "INVALID_INPUT",
        "toDate",
    )
    _check(
        fin.mutate(m, {"fromDate": "0001-01-01", "toDate": "2024-03-01"}, "settlement { id }"),
        m,
        "INVALID_INPUT",
        "fromDate",
    )
    today = world["svc"].now().date()  # the server's clock (OR-5): other tests may have moved it
    _check(
        fin.mutate(
            m,
            {"fromDate": (today - timedelta(days=3)).isoformat(), "toDate": (today + timedelta(days=30)).isoformat()},
            "settlement { id }",
        ),
        m,
        "PERIOD_NOT_ENDED",
        "toDate",
    )
    ok = fin.mutate(
        m,
        {"fromDate": (today - timedelta(days=20)).isoformat(), "toDate": (today - timedelta(days=10)).isoformat()},
        "settlement { id localFrom localTo }",
    )
    assert ok["errors"] == [] and ok["settlement"]["localTo"] == (today - timedelta(days=10)).isoformat()
    _check(
        fin.mutate(
            m,
            {"fromDate": (today - timedelta(days=15)).isoformat(), "toDate": (today - timedelta(days=5)).isoformat()},
            "settlement { id }",
        ),
        m,
        "PERIOD_OVERLAP",
        "fromDate",
    )
    body = fin.gql(
        'mutation { closePeriod(input: {fromDate: "2024-02-30", toDate: "2024-03-01"}) { errors { code } } }'
    )  # not a day: GraphQL refuses the Date itself, naming it
    assert body["errors"][0]["extensions"]["code"] == "INVALID_INPUT" and "2024-02-30" in body["errors"][0]["message"]


def test_create_campaign_names_the_seconds_inputs(world):
    admin = world["as"]("boss", "admin")
    m = "createCampaign"
    _check(admin.mutate(m, _campaign(durationSeconds=0), "campaign { id }"), m, "INVALID_INPUT", "durationSeconds")
    _check(
        admin.mutate(m, _campaign(paymentWindowSeconds=0), "campaign { id }"),
        m,
        "INVALID_INPUT",
        "paymentWindowSeconds",
    )
    r = admin.mutate(
        m, _campaign(endsAt=(datetime.now(timezone.utc) - timedelta(days=2)).isoformat()), "campaign { id }"
    )
    _check(r, m, "INVALID_INPUT", "endsAt")
    r = admin.mutate(m, _campaign(tiers=[{"members": 1, "unitPrice": 800}]), "campaign { id }")
    assert r["errors"][0]["code"] == "INVALID_INPUT" and _root(r["errors"][0]["field"]) == "tiers"
    _check(admin.mutate(m, _campaign(listPrice=-1), "campaign { id }"), m, "INVALID_INPUT", "listPrice")


def test_distributor_status_refusals_name_the_user(world):
    admin = world["as"]("boss", "admin")
    assert admin.mutate("updateDistributionSettings", {"mode": "APPROVAL"}, "settings { mode }")["errors"] == []
    applied = world["as"]("ann", "customer").mutate("applyAsDistributor", {}, "status")
    assert applied == {"status": "APPLIED", "errors": []}  # an enum now, same wire value
    for m in ("suspendDistributor", "reinstateDistributor"):  # APPLIED -> SUSPENDED / ACTIVE: not DS-1 moves
        _check(
            admin.mutate(m, {"userId": "ann", "reason": "r"}, "distributor { status }"), m, "INVALID_STATE", "userId"
        )
    _check(
        admin.mutate("suspendDistributor", {"userId": "ann", "reason": " "}, "distributor { status }"),
        "suspendDistributor",
        "INVALID_INPUT",
        "reason",
    )
    _check(
        admin.mutate("suspendDistributor", {"userId": "nobody", "reason": "r"}, "distributor { status }"),
        "suspendDistributor",
        "NOT_A_DISTRIBUTOR",
        "userId",
    )
    _check(
        admin.mutate("setDistributorLevel", {"userId": "nobody", "grade": 0, "reason": "r"}, "distributor { status }"),
        "setDistributorLevel",
        "NOT_A_DISTRIBUTOR",
        "userId",
    )


@pytest.mark.parametrize(
    "role,mutation,input,code,field",
    [
        ("customer", "openGroup", {"campaignId": "cmp_nope"}, "NOT_FOUND", "campaignId"),
        ("customer", "joinGroup", {"groupId": "grp_nope"}, "NOT_FOUND", "groupId"),
        ("customer", "leaveGroup", {"groupId": "grp_nope"}, "NOT_FOUND", "groupId"),
        ("customer", "bindReferrer", {"inviteCode": "NOPE1234"}, "INVALID_INVITE_CODE", "inviteCode"),
        ("backend", "confirmPayment", {"amount": 1, "providerRef": "p"}, "INVALID_INPUT", "orderId"),
        ("backend", "confirmRefund", {"refundId": "rf_nope", "providerRef": "p"}, "NOT_FOUND", "refundId"),
        (
            "backend",
            "reportOrder",
            {"externalId": "x", "buyerId": "", "lines": [{"productRef": "p", "quantity": 1, "unitPrice": 100}]},
            "INVALID_INPUT",
            "buyerId",
        ),
        ("backend", "refundOrder", {"orderId": "ord_nope", "amount": 1, "providerRef": "p"}, "NOT_FOUND", "orderId"),
        ("backend", "completeOrder", {"externalId": "nope"}, "NOT_FOUND", "orderId"),
        ("backend", "upsertProduct", {"productRef": "p", "level1Amount": -1}, "INVALID_INPUT", "level1Amount"),
        ("backend", "issueToken", {"userId": "u", "roles": []}, "INVALID_INPUT", "roles"),
        (
            "backend",
            "issueToken",
            {"userId": "u", "roles": ["CUSTOMER"], "ttlSeconds": 0},
            "INVALID_INPUT",
            "ttlSeconds",
        ),
        ("customer distributor", "requestPayout", {"amount": 100}, "NOT_A_DISTRIBUTOR", None),
        ("admin", "endCampaign", {"campaignId": "cmp_nope"}, "NOT_FOUND", "campaignId"),
        (
            "admin",
            "updateDistributionSettings",
            {"binding": "EXPIRING", "bindingDays": 0},
            "INVALID_INPUT",
            "bindingDays",
        ),
        ("admin", "updateDistributionSettings", {"level1Bp": 10001}, "INVALID_INPUT", "level1Bp"),
        (
            "admin",
            "setLevels",
            {"levels": [{"grade": 1, "name": "x", "level1Bp": 1, "level2Bp": 1}]},
            "INVALID_INPUT",
            "levels",
        ),
        ("admin", "registerWebhook", {"url": "not a url"}, "INVALID_INPUT", "url"),
        (
            "admin",
            "registerWebhook",
            {"url": "http://127.0.0.1:9/hook", "eventTypes": ["no.such"]},
            "INVALID_INPUT",
            "eventTypes",
        ),
        ("admin", "rotateWebhookSecret", {"endpointId": "wh_nope"}, "NOT_FOUND", "endpointId"),
        ("admin", "enableWebhook", {"endpointId": "wh_nope"}, "NOT_FOUND", "endpointId"),
        ("admin", "disableWebhook", {"endpointId": "wh_nope"}, "NOT_FOUND", "endpointId"),
        ("admin", "updateWebhook", {"endpointId": "wh_nope"}, "NOT_FOUND", "endpointId"),
        ("admin", "deleteWebhook", {"endpointId": "wh_nope"}, "NOT_FOUND", "endpointId"),
        ("admin", "redeliverEvents", {"endpointId": "wh_nope", "fromSeq": 1, "toSeq": 2}, "NOT_FOUND", "endpointId"),
        ("admin", "rotateJwtSecret", {"overlapSeconds": -1}, "INVALID_INPUT", "overlapSeconds"),
        ("admin", "advanceClock", {"seconds": -1}, "INVALID_INPUT", "seconds"),
        ("finance", "approvePayout", {"payoutId": "po_nope", "externalRef": "b"}, "NOT_FOUND", "payoutId"),
        ("finance", "rejectPayout", {"payoutId": "po_nope", "reason": " "}, "INVALID_INPUT", "reason"),
    ],
)
def test_a_refusal_names_the_input_that_is_wrong(world, role, mutation, input, code, field):
    client = world["as"]("u-1", *role.split())
    r = client.mutate(mutation, input, "__typename")
    _check(r, mutation, code, field)
