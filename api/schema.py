"""The GraphQL schema (code-first strawberry), assembled here from the domain modules.

Each domain module holds its types, queries and mutations: api.groupbuy, api.orders, api.distribution,
api.payouts, api.reports, api.webhooks, api.shops (shops and admin); Relay ids, money and connections are
in api.relay, the Input -> Payload + errors shape in api.payload, who may call what in api.permissions,
who may see which object in api.visibility, how much one request may ask for in api.limits. This module
only lists the root fields: their order here is their order in the SDL.

`schema` is the production schema. With SHARECART_TEST_CLOCK=1 the app serves `full_schema()`
(`make_schema(test_clock=True)`), which adds the dev/test-only mutation `advanceClock`. The committed
/schema.graphql is the SDL of `full_schema()` (`sharecart export-schema`, compared by
tests/api/test_schema_file.py): every field a client can meet is in it, and `advanceClock` says there that
it exists only on a test-clock server.
"""

from __future__ import annotations

import functools
import logging

import strawberry
from sqlalchemy.exc import StatementError
from strawberry.extensions import ValidationCache
from strawberry.schema.config import StrawberryConfig

from api.errors import PublicErrors, _refused_request, refusal_of
from api.metrics import OperationMetrics
from api.limits import CachedParse, CostLimit, TokenLimit, depth_limiter
from api import distribution, groupbuy, orders, payouts, relay, reports, shops, webhooks
from api.relay import MAX_PAGE, MINOR_UNITS, MinorUnits
from api.subscriptions import Subscription

log = logging.getLogger("sharecart.api")


@strawberry.type
class Query:
    node = relay.node
    viewer = shops.viewer
    # public campaign pages (DS-2)
    campaign = groupbuy.campaign
    campaigns = groupbuy.campaigns
    group = groupbuy.group
    resolve_invite = distribution.resolve_invite
    # customer
    my_orders = orders.my_orders
    my_groups = groupbuy.my_groups
    my_segment = reports.my_segment
    commission_preview = distribution.commission_preview  # CM-7 (customer and distributor)
    my_referral = distribution.my_referral  # RF-3
    # distributor
    me = distribution.me
    my_downline = distribution.my_downline  # RP-5
    my_funnel = reports.my_funnel  # RP-6
    # backend
    owed_refunds = orders.owed_refunds
    product = shops.product
    products = shops.products
    # finance
    pending_payouts = payouts.pending_payouts
    settlements = payouts.settlements
    shop_earnings_series = reports.shop_earnings_series
    # admin
    campaign_stats = reports.campaign_stats
    segment_counts = reports.segment_counts
    user_segment = reports.user_segment
    retention = reports.retention
    distribution_settings = distribution.distribution_settings
    levels = distribution.levels
    distributors = distribution.distributors
    referral_binding = distribution.referral_binding  # RF-3
    leaderboard = reports.leaderboard  # RP-5
    funnel = reports.funnel  # RP-6
    events = webhooks.events
    webhook_endpoints = webhooks.webhook_endpoints
    group_buy_settings = groupbuy.group_buy_settings
    fraud_review_queue = distribution.fraud_review_queue
    fraud_rules = distribution.fraud_rules


@strawberry.type
class Mutation:
    """Each mutation takes one `input` and returns a payload whose `errors` carry every refusal (api.payload)."""

    # credentials
    issue_token = shops.issue_token
    rotate_jwt_secret = shops.rotate_jwt_secret
    revoke_tokens = shops.revoke_tokens
    update_webhook = webhooks.update_webhook
    delete_webhook = webhooks.delete_webhook
    # customer
    open_group = groupbuy.open_group
    join_group = groupbuy.join_group
    quick_join = groupbuy.quick_join
    leave_group = groupbuy.leave_group
    bind_referrer = distribution.bind_referrer
    apply_as_distributor = distribution.apply_as_distributor
    record_visit = distribution.record_visit  # RP-6 (public key)
    # backend
    confirm_payment = orders.confirm_payment
    confirm_refund = orders.confirm_refund
    report_order = orders.report_order
    refund_order = orders.refund_order
    complete_order = orders.complete_order
    upsert_product = shops.upsert_product
    # distributor
    request_payout = payouts.request_payout
    # admin
    create_campaign = groupbuy.create_campaign
    end_campaign = groupbuy.end_campaign
    update_group_buy_settings = groupbuy.update_group_buy_settings
    update_distribution_settings = distribution.update_distribution_settings
    set_levels = distribution.set_levels
    approve_distributor = distribution.approve_distributor
    suspend_distributor = distribution.suspend_distributor
    reinstate_distributor = distribution.reinstate_distributor
    set_distributor_level = distribution.set_distributor_level
    rebind_referrer = distribution.rebind_referrer  # RF-3 (c)
    register_webhook = webhooks.register_webhook
    rotate_webhook_secret = webhooks.rotate_webhook_secret
    enable_webhook = webhooks.enable_webhook
    disable_webhook = webhooks.disable_webhook
    redeliver_events = webhooks.redeliver_events
    set_fraud_rules = distribution.set_fraud_rules
    clear_fraud_flag = distribution.clear_fraud_flag
    void_fraud_flag = distribution.void_fraud_flag
    dissolve_flagged_group = distribution.dissolve_flagged_group
    # finance
    approve_payout = payouts.approve_payout
    reject_payout = payouts.reject_payout
    close_period = payouts.close_period
    fail_payout = payouts.fail_payout  # finance or backend (LG-4)


@strawberry.type(name="Mutation")
class MutationWithTestClock(Mutation):
    """The schema served when SHARECART_TEST_CLOCK=1: `advanceClock` exists only there."""

    advance_clock = shops.advance_clock


class SharecartSchema(strawberry.Schema):
    """Logs a refusal (a coded error: FORBIDDEN, INVALID_INPUT, QUERY_TOO_COMPLEX, …) as one line, and an
    internal error with its traceback but without the request's query or variables (issue 11 point 12)."""

    def process_errors(self, errors, execution_context=None) -> None:
        operation = getattr(execution_context, "operation_name", None) or "-"
        for error in errors:
            original = error.original_error
            path = ".".join(str(p) for p in error.path or ()) or "-"
            refusal = refusal_of(original) if original is not None else None
            if refusal is not None:
                log.info(
                    "refused %s op=%s path=%s rule=%s: %s",
                    refusal.code.value,
                    operation,
                    path,
                    refusal.rule or "-",
                    refusal.message,
                )
            elif (error.extensions or {}).get("code") or _refused_request(error):
                code = (error.extensions or {}).get("code") or "INVALID_INPUT"
                log.info("refused %s op=%s path=%s: %s", code, operation, path, error.message)
            else:
                if isinstance(original, StatementError):
                    original.hide_parameters = True  # the SQL may be logged, the values bound to it never
                log.error(
                    "internal error op=%s path=%s: %s",
                    operation,
                    path,
                    type(original).__name__ if original else error.message,
                    exc_info=(type(original), original, original.__traceback__) if original else None,
                )


def make_schema(*, test_clock: bool = False) -> strawberry.Schema:
    return SharecartSchema(
        query=Query,
        mutation=MutationWithTestClock if test_clock else Mutation,
        subscription=Subscription,
        config=StrawberryConfig(scalar_map={MinorUnits: MINOR_UNITS}, relay_max_results=MAX_PAGE),
        extensions=[
            depth_limiter,
            TokenLimit,
            CostLimit,
            lambda: CachedParse(maxsize=512),
            lambda: ValidationCache(maxsize=512),
            PublicErrors,
            OperationMetrics,
        ],
    )


schema = make_schema()


@functools.cache
def full_schema() -> strawberry.Schema:
    """The schema with every field a client can meet, test-only ones included: the committed SDL."""
    return make_schema(test_clock=True)
