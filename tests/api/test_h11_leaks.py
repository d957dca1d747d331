"""Issue 11 point 10: customers and distributors see other users only by the alias the shop gives them."""

from __future__ import annotations

from tests.api.test_e2e import SEAT, make_campaign

GROUP = "query($id: ID!) { group(id: $id) { leaderUserId leaderAlias } }"
LIST = "query($c: ID!) { campaign(id: $c) { openGroups { edges { node { leaderUserId leaderAlias } } } } }"


def test_h11_10_group_leaders_are_aliases_to_other_customers_and_distributors(world):
    admin, backend = world["as"]("boss", "admin"), world["as"]("be", "backend")
    cid = make_campaign(admin, world["svc"])
    ann = world["as"]("ann", "customer")
    lead = ann.mutate("openGroup", {"campaignId": cid}, SEAT)
    assert backend.mutate(
        "confirmPayment", {"orderId": lead["order"]["id"], "amount": 8000, "providerRef": "p-1"}, "accepted"
    )["accepted"]
    gid = lead["group"]["id"]
    alias = admin.data(GROUP, id=gid)["group"]["leaderAlias"]
    assert alias.startswith("member-") and "ann" not in alias
    assert admin.data(GROUP, id=gid)["group"]["leaderUserId"] == "ann"  # staff see the user id
    assert backend.data(GROUP, id=gid)["group"]["leaderUserId"] == "ann"
    assert ann.data(GROUP, id=gid)["group"]["leaderUserId"] == "ann"  # and so does the leader
    for caller in (
        world["as"]("bob", "customer"),
        world["as"]("dora", "distributor"),
        world["as"]("eve", "customer", "distributor"),
    ):
        assert caller.data(GROUP, id=gid)["group"] == {"leaderUserId": None, "leaderAlias": alias}
        listed = caller.data(LIST, c=cid)["campaign"]["openGroups"]["edges"]
        assert [e["node"] for e in listed] == [{"leaderUserId": None, "leaderAlias": alias}]
    assert world["public"].data(GROUP, id=gid)["group"] == {"leaderUserId": None, "leaderAlias": None}
    # one alias per user across the shop's groups, another for another user
    second = ann.mutate("openGroup", {"campaignId": make_campaign(admin, world["svc"], productRef="sku-2")}, SEAT)
    assert admin.data(GROUP, id=second["group"]["id"])["group"]["leaderAlias"] == alias
    bob = world["as"]("bob", "customer").mutate("openGroup", {"campaignId": cid}, SEAT)
    assert admin.data(GROUP, id=bob["group"]["id"])["group"]["leaderAlias"] not in (alias, None)
