"""Webhooks and events (docs/webhooks.md): signed endpoints, what each is owed and was sent, the shop's
event feed (pull replay). Types, queries, mutations. The event types themselves are the catalog in
engine/events.py."""

from __future__ import annotations

import json
from datetime import datetime, timedelta
from enum import Enum
from typing import Iterable, Optional

import strawberry
from strawberry import relay
from strawberry.types import Info

from api.errors import UserError
from api.payload import idempotency_key_field, payload_mutation
from api.permissions import IsAdmin, IsAdminOrFinance
from api.relay import Connection, Keyset, _one_int, global_id, paginate_keyset, raw_id, resolve_visible
from service.reads import queries
from service.usecases import webhooks as webhooks_svc


# ---------------------------------------------------------------- types
@strawberry.enum(
    name="WebhookDeliveryState",
    description="PENDING (due at nextAttemptAt), HELD (the endpoint is disabled: kept, not lost), "
    "DELIVERED, or DEAD (given up after the retries; redeliverEvents owes it again)",
)
class WebhookDeliveryState(Enum):
    PENDING = "PENDING"
    HELD = "HELD"
    DELIVERED = "DELIVERED"
    DEAD = "DEAD"


EVENTS_KEYSET = Keyset("events", key=lambda e: [e.position], parse=_one_int)  # the feed position (service/jobs/feed.py)


ENDPOINTS_KEYSET = Keyset(
    "endpoints",
    key=lambda e: [e.created_at.isoformat(), e.endpoint_id],
    parse=lambda v: (datetime.fromisoformat(v[0]), str(v[1])),
)


DELIVERIES_KEYSET = Keyset("deliveries", key=lambda d: [d.seq], parse=lambda v: (int(v[0]),))  # newest first


ATTEMPTS_KEYSET = Keyset(
    "attempts",
    key=lambda a: [a.at.isoformat(), a.attempt_id],  # newest first
    parse=lambda v: (datetime.fromisoformat(v[0]), str(v[1])),
)


@strawberry.type(description="A signed webhook endpoint and its health (docs/webhooks.md).")
class WebhookEndpoint(relay.Node):
    id: relay.NodeID[str]
    url: str
    event_types: list[str] = strawberry.field(description="Event types it receives; empty: all of them.")
    enabled: bool = strawberry.field(
        description="False once disabled after failing for 24 h: deliveries are held (not lost) until enableWebhook."
    )
    secret: str = strawberry.field(description="Shown to admins to verify signatures (docs/webhooks.md).")
    consecutive_failures: int = strawberry.field(description="Failed attempts since the last success.")
    failing_since: Optional[datetime] = strawberry.field(description="First failed attempt since the last success.")
    disabled_at: Optional[datetime]
    created_at: datetime

    @strawberry.field(
        description="What it is owed and was sent, newest event first; filter by state "
        "(PENDING, HELD, DELIVERED, DEAD)."
    )
    async def deliveries(
        self,
        info: Info,
        state: Optional[WebhookDeliveryState] = None,
        first: Optional[int] = None,
        after: Optional[str] = None,
    ) -> Connection["WebhookDelivery"]:
        from service.reads import queries

        ctx = info.context
        return await paginate_keyset(
            lambda **p: queries.page_deliveries(
                ctx.svc, shop_id=ctx.shop_id, endpoint_id=self.id, state=state.value if state else None, **p
            ),
            first,
            after,
            DELIVERIES_KEYSET,
            delivery_type,
        )

    @strawberry.field(description="Every POST made to it, newest first, with the HTTP status or error.")
    async def attempts(
        self, info: Info, first: Optional[int] = None, after: Optional[str] = None
    ) -> Connection["WebhookAttempt"]:
        from service.reads import queries

        ctx = info.context
        return await paginate_keyset(
            lambda **p: queries.page_attempts(ctx.svc, shop_id=ctx.shop_id, endpoint_id=self.id, **p),
            first,
            after,
            ATTEMPTS_KEYSET,
            attempt_type,
        )

    @classmethod
    async def resolve_nodes(cls, *, info: Info, node_ids: Iterable[str], required: bool = False):
        return await resolve_visible(info, "webhook_endpoint", node_ids, lambda e, ctx: endpoint_type(e))


def endpoint_type(e) -> WebhookEndpoint:
    return WebhookEndpoint(
        id=e.endpoint_id,
        url=e.url,
        event_types=list(e.event_types or []),
        enabled=e.enabled,
        secret=e.secret,
        consecutive_failures=e.consecutive_failures,
        failing_since=e.failing_since,
        disabled_at=e.disabled_at,
        created_at=e.created_at,
    )


def _event_field():
    async def event(self, info: Info) -> Optional["ShopEvent"]:
        e = await info.context.loaders.event.load(self._event)
        return event_type(e) if e else None

    return strawberry.field(resolver=event, description="The event (null if it no longer exists).")


@strawberry.type(
    description="One event owed to one endpoint: PENDING (due at nextAttemptAt), HELD (endpoint "
    "disabled), DELIVERED or DEAD (gave up; redeliverEvents owes it again)."
)
class WebhookDelivery(relay.Node):
    id: relay.NodeID[str]
    endpoint_id: strawberry.ID
    seq: int
    state: WebhookDeliveryState
    attempts: int
    next_attempt_at: datetime
    created_at: datetime
    delivered_at: Optional[datetime]
    last_status: Optional[int]
    last_error: Optional[str]
    _event: strawberry.Private[str]
    event: Optional["ShopEvent"] = _event_field()

    @classmethod
    async def resolve_nodes(cls, *, info: Info, node_ids: Iterable[str], required: bool = False):
        return await resolve_visible(info, "webhook_delivery", node_ids, lambda d, ctx: delivery_type(d))


def delivery_key(endpoint_id: str, event_id: str) -> str:
    return f"{endpoint_id}:{event_id}"


def delivery_type(d) -> WebhookDelivery:
    return WebhookDelivery(
        id=delivery_key(d.endpoint_id, d.event_id),
        endpoint_id=strawberry.ID(global_id("WebhookEndpoint", d.endpoint_id)),
        seq=d.seq,
        state=WebhookDeliveryState(d.state),
        attempts=d.attempts,
        next_attempt_at=d.next_attempt_at,
        created_at=d.created_at,
        delivered_at=d.delivered_at,
        last_status=d.last_status,
        last_error=d.last_error,
        _event=d.event_id,
    )


@strawberry.type(description="One POST to an endpoint: the HTTP status, or the error when there was no answer.")
class WebhookAttempt(relay.Node):
    id: relay.NodeID[str]
    at: datetime
    status_code: Optional[int]
    error: Optional[str]
    duration_ms: int
    _event: strawberry.Private[str]
    event: Optional["ShopEvent"] = _event_field()

    @classmethod
    async def resolve_nodes(cls, *, info: Info, node_ids: Iterable[str], required: bool = False):
        return await resolve_visible(info, "webhook_attempt", node_ids, lambda a, ctx: attempt_type(a))


def attempt_type(a) -> WebhookAttempt:
    return WebhookAttempt(
        id=a.attempt_id, at=a.at, status_code=a.status_code, error=a.error, duration_ms=a.duration_ms, _event=a.event_id
    )


@strawberry.type(
    description="An event of the shop's outbox (docs/webhooks.md). `seq` numbers events (the ranges of "
    "redeliverEvents; per aggregate it is their order); page `events` by cursor."
)
class ShopEvent(relay.Node):
    id: relay.NodeID[str]
    seq: int
    type: str
    aggregate_type: str
    aggregate_id: str
    rule: Optional[str]
    occurred_at: datetime
    payload_json: str

    @classmethod
    async def resolve_nodes(cls, *, info: Info, node_ids: Iterable[str], required: bool = False):
        return await resolve_visible(info, "event", node_ids, lambda e, ctx: event_type(e))


def event_type(e) -> ShopEvent:
    return ShopEvent(
        id=e.event_id,
        seq=e.seq,
        type=e.type,
        aggregate_type=e.aggregate_type,
        aggregate_id=e.aggregate_id,
        rule=e.rule,
        occurred_at=e.occurred_at,
        payload_json=json.dumps(e.payload, sort_keys=True),
    )


# ---------------------------------------------------------------- queries


@strawberry.field(
    permission_classes=[IsAdminOrFinance],  # finance audits draws (GB-7) and refunds
    description="Replay by pull: the shop's events, oldest first, paged with `after: endCursor` "
    "(a keyset: an event never commits behind a cursor already read; see "
    "docs/webhooks.md). Keep the last endCursor to resume.",
)
async def events(
    info: Info, types: Optional[list[str]] = None, first: Optional[int] = None, after: Optional[str] = None
) -> Connection[ShopEvent]:
    ctx = info.context
    return await paginate_keyset(
        lambda **p: queries.page_events_caught_up(ctx.svc, shop_id=ctx.shop_id, types=types, **p),
        first,
        after,
        EVENTS_KEYSET,
        event_type,
    )


@strawberry.field(
    permission_classes=[IsAdmin],
    description="The shop's webhook endpoints with their state, deliveries and attempts, oldest "
    "first (docs/webhooks.md).",
)
async def webhook_endpoints(
    info: Info, first: Optional[int] = None, after: Optional[str] = None
) -> Connection[WebhookEndpoint]:
    ctx = info.context
    return await paginate_keyset(
        lambda **p: queries.page_endpoints(ctx.svc, shop_id=ctx.shop_id, **p),
        first,
        after,
        ENDPOINTS_KEYSET,
        endpoint_type,
    )


# ---------------------------------------------------------------- mutations


@strawberry.input
class RegisterWebhookInput:
    url: str
    event_types: Optional[list[str]] = None
    idempotency_key: Optional[str] = idempotency_key_field(
        description="GB-10: a retry with the same key and input returns the endpoint of the first "
        "call; no second endpoint is registered."
    )


@strawberry.input
class RotateWebhookSecretInput:
    endpoint_id: strawberry.ID
    overlap_seconds: int = 86400
    idempotency_key: Optional[str] = idempotency_key_field(
        description="GB-10: a retry with the same key and input does not rotate again (which would "
        "cut the overlap of the secret receivers still verify with)."
    )


@strawberry.input
class EnableWebhookInput:
    endpoint_id: strawberry.ID
    idempotency_key: Optional[str] = idempotency_key_field()


@strawberry.input
class DisableWebhookInput:
    endpoint_id: strawberry.ID
    idempotency_key: Optional[str] = idempotency_key_field()


@strawberry.type
class WebhookPayload:
    endpoint: Optional[WebhookEndpoint] = None
    errors: list[UserError]


@strawberry.input
class RedeliverEventsInput:
    endpoint_id: strawberry.ID
    from_seq: int
    to_seq: int
    idempotency_key: Optional[str] = idempotency_key_field()


@strawberry.type
class RedeliverEventsPayload:
    queued: Optional[int] = None
    errors: list[UserError]


@strawberry.input
class DeleteWebhookInput:
    endpoint_id: strawberry.ID
    idempotency_key: Optional[str] = idempotency_key_field()


@strawberry.input
class UpdateWebhookInput:
    endpoint_id: strawberry.ID
    url: Optional[str] = strawberry.field(
        default=None,
        description="Re-point the endpoint (checked as at registration); its secret and what it is owed stay",
    )
    event_types: Optional[list[str]] = None
    idempotency_key: Optional[str] = idempotency_key_field()


@strawberry.type
class EndpointPayload:
    endpoint: Optional[WebhookEndpoint] = None
    errors: list[UserError]


@strawberry.type
class DeleteWebhookPayload:
    deleted: bool = False
    errors: list[UserError]


def _endpoint_id(value) -> str:
    return raw_id(value, "WebhookEndpoint", "endpointId")


async def _switch_endpoint(info: Info, input, use_case) -> dict:
    """enableWebhook / disableWebhook: one endpoint id in, the endpoint as it is now out."""
    ctx = info.context
    e = await use_case(
        ctx.svc, shop_id=ctx.shop_id, endpoint_id=_endpoint_id(input.endpoint_id), idempotency_key=input.idempotency_key
    )
    return dict(endpoint=endpoint_type(e))


@payload_mutation(
    EndpointPayload,
    permission_classes=[IsAdmin],
    description="Re-point an endpoint (new URL) and/or change its event types.",
)
async def update_webhook(info: Info, input: UpdateWebhookInput) -> dict:
    ctx = info.context
    return dict(
        endpoint=endpoint_type(
            await webhooks_svc.update_endpoint(
                ctx.svc,
                shop_id=ctx.shop_id,
                endpoint_id=_endpoint_id(input.endpoint_id),
                url=input.url,
                event_types=input.event_types,
                idempotency_key=input.idempotency_key,
            )
        )
    )


@payload_mutation(
    DeleteWebhookPayload,
    permission_classes=[IsAdmin],
    description="Delete an endpoint and what it is still owed (the events stay in the event pull API).",
)
async def delete_webhook(info: Info, input: DeleteWebhookInput) -> dict:
    ctx = info.context
    return dict(
        deleted=await webhooks_svc.delete_endpoint(
            ctx.svc,
            shop_id=ctx.shop_id,
            endpoint_id=_endpoint_id(input.endpoint_id),
            idempotency_key=input.idempotency_key,
        )
    )


@payload_mutation(WebhookPayload, permission_classes=[IsAdmin], description="Register a signed webhook endpoint.")
async def register_webhook(info: Info, input: RegisterWebhookInput) -> dict:
    ctx = info.context
    e = await webhooks_svc.register_endpoint(
        ctx.svc,
        shop_id=ctx.shop_id,
        url=input.url,
        event_types=input.event_types,
        idempotency_key=input.idempotency_key,
    )
    return dict(endpoint=endpoint_type(e))


@payload_mutation(
    WebhookPayload, permission_classes=[IsAdmin], description="New secret; the old one signs too for the overlap."
)
async def rotate_webhook_secret(info: Info, input: RotateWebhookSecretInput) -> dict:
    ctx = info.context
    e = await webhooks_svc.rotate_secret(
        ctx.svc,
        shop_id=ctx.shop_id,
        endpoint_id=raw_id(input.endpoint_id, "WebhookEndpoint", "endpointId"),
        overlap=timedelta(seconds=input.overlap_seconds),
        idempotency_key=input.idempotency_key,
    )
    return dict(endpoint=endpoint_type(e))


@payload_mutation(
    WebhookPayload,
    permission_classes=[IsAdmin],
    description="Enable an endpoint (after it was disabled for "
    "failing): what it was owed while disabled, and what waits out a backoff, is due now.",
)
async def enable_webhook(info: Info, input: EnableWebhookInput) -> dict:
    return await _switch_endpoint(info, input, webhooks_svc.enable_endpoint)


@payload_mutation(
    WebhookPayload,
    permission_classes=[IsAdmin],
    description="Stop deliveries to an endpoint: what it is owed is held (not lost) until enableWebhook.",
)
async def disable_webhook(info: Info, input: DisableWebhookInput) -> dict:
    return await _switch_endpoint(info, input, webhooks_svc.disable_endpoint)


@payload_mutation(
    RedeliverEventsPayload,
    permission_classes=[IsAdmin],
    description="Replay: owe the endpoint again every event with "
    "fromSeq <= seq <= toSeq that its event-type filter takes; returns how many.",
)
async def redeliver_events(info: Info, input: RedeliverEventsInput) -> dict:
    ctx = info.context
    n = await webhooks_svc.redeliver(
        ctx.svc,
        shop_id=ctx.shop_id,
        endpoint_id=raw_id(input.endpoint_id, "WebhookEndpoint", "endpointId"),
        from_seq=input.from_seq,
        to_seq=input.to_seq,
        idempotency_key=input.idempotency_key,
    )
    return dict(queued=n)
