"""Every state and status of the schema is a GraphQL enum, not a String (issue 12 point 3): clients switch on
a closed set the SDL spells out, and a filter argument with a value that does not exist is refused by
GraphQL instead of silently matching nothing. The wire values are the UPPER_CASE names the strings were."""

from __future__ import annotations

import re

from graphql import GraphQLInputObjectType, GraphQLObjectType, GraphQLScalarType, get_named_type

from api.schema import full_schema

ENUM_NAMED = re.compile(r"^(state|states|status|statuses|mode|binding|kind|role)$")


def _named_fields():
    s = full_schema()._schema
    for t in s.type_map.values():
        if t.name.startswith("__") or not isinstance(t, (GraphQLObjectType, GraphQLInputObjectType)):
            continue
        for fname, f in t.fields.items():
            yield f"{t.name}.{fname}", fname, f.type
            for aname, a in (getattr(f, "args", None) or {}).items():
                yield f"{t.name}.{fname}({aname})", aname, a.type


def test_every_state_status_mode_kind_and_role_is_an_enum():
    found = {where: get_named_type(typ) for where, name, typ in _named_fields() if ENUM_NAMED.match(name)}
    not_enum = sorted(w for w, t in found.items() if isinstance(t, GraphQLScalarType))  # objects may be named so
    assert not_enum == []
    # the ones the issue names, and the filter arguments
    for where, enum in {
        "Group.state": "GroupState",
        "Order.state": "OrderState",
        "Payout.state": "PayoutState",
        "WebhookDelivery.state": "WebhookDeliveryState",
        "DistributorProfile.status": "DistributorStatus",
        "CommissionLine.state": "CommissionLineState",
        "Seat.state": "SeatState",
        "Refund.state": "RefundState",
        "DistributionSettings.mode": "DistributionMode",
        "Campaign.groups(states)": "GroupState",
        "WebhookEndpoint.deliveries(state)": "WebhookDeliveryState",
        "Query.distributors(statuses)": "DistributorStatus",
    }.items():
        assert found[where].name == enum, where


def test_enum_values_are_the_stored_upper_case_names():
    s = full_schema()._schema
    assert list(s.type_map["GroupState"].values) == ["PENDING", "OPEN", "FORMED", "FAILED", "CANCELLED"]
    assert list(s.type_map["OrderState"].values) == ["CREATED", "PAID", "COMPLETED", "CANCELLED"]
    assert list(s.type_map["PayoutState"].values) == ["REQUESTED", "APPROVED", "REJECTED", "FAILED"]
    assert list(s.type_map["WebhookDeliveryState"].values) == ["PENDING", "HELD", "DELIVERED", "DEAD"]
    assert list(s.type_map["CommissionLineState"].values) == ["PENDING", "FROZEN", "AVAILABLE", "VOID"]


def test_a_state_filter_takes_the_enum_and_refuses_what_is_not_one(world):
    admin = world["as"]("boss", "admin")
    c = admin.mutate(
        "createCampaign",
        {
            "productRef": "p",
            "title": "t",
            "listPrice": 100,
            "tiers": [{"members": 2, "unitPrice": 80}],
            "durationSeconds": 3600,
            "paymentWindowSeconds": 600,
            "startsAt": "2020-01-01T00:00:00Z",
            "endsAt": "2999-01-01T00:00:00Z",
        },
        "campaign { id }",
    )["campaign"]
    lead = world["as"]("lea", "customer").mutate("openGroup", {"campaignId": c["id"]}, "group { state }")
    assert lead["group"]["state"] == "PENDING"
    q = "query($id: ID!, $s: [GroupState!]) { campaign(id: $id) { groups(states: $s) { totalCount } } }"
    assert admin.data(q, id=c["id"], s=["PENDING"])["campaign"]["groups"]["totalCount"] == 1
    assert admin.data(q, id=c["id"], s=["OPEN", "FORMED"])["campaign"]["groups"]["totalCount"] == 0
    body = admin.gql(q, id=c["id"], s=["pending"])
    assert body["errors"][0]["extensions"]["code"] == "INVALID_INPUT"
