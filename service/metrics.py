"""Prometheus metrics (prometheus-client): the counters and histograms every process updates, and the
gauges read from the database at scrape time. Listed, with their meaning, in docs/operations.md.

Multi-process: with PROMETHEUS_MULTIPROC_DIR set (to a folder the processes of one host share, emptied at
deploy), prometheus-client keeps these values in files there and /metrics of any process adds up all of
them — `serve --workers N` and `sharecart worker` on one host report together. Without it each process
reports itself (scrape each one). The database gauges are computed by the scraping process and are the
same from every process, so they are never summed.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, disable_created_metrics
from sqlalchemy import text

disable_created_metrics()  # no `_created` twin of every series: nothing here reads them

LATENCY_BUCKETS = (0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)

HTTP_REQUESTS = Counter(
    "sharecart_http_requests", "HTTP requests by route, method and status class", ["route", "method", "status"]
)
HTTP_LATENCY = Histogram(
    "sharecart_http_request_duration_seconds", "HTTP request latency by route", ["route"], buckets=LATENCY_BUCKETS
)
GRAPHQL_OPERATIONS = Counter(
    "sharecart_graphql_operations",
    "GraphQL operations by operation (type and root field) and outcome: ok, "
    "refused (a coded refusal, ER-1), unavailable (database away), error (masked INTERNAL)",
    ["operation", "outcome"],
)
GRAPHQL_LATENCY = Histogram(
    "sharecart_graphql_operation_duration_seconds", "GraphQL operation latency", ["operation"], buckets=LATENCY_BUCKETS
)
JOINS = Counter("sharecart_joins", "Seats taken through openGroup and joinGroup (GB-*), by outcome", ["outcome"])
PAYMENTS = Counter("sharecart_payments", "confirmPayment calls by outcome", ["outcome"])
WEBHOOK_ATTEMPTS = Counter(
    "sharecart_webhook_attempts", "Webhook POSTs made, by outcome: delivered, failed", ["outcome"]
)
WEBHOOK_FAILURES = Counter("sharecart_webhook_failures", "Webhook POSTs that failed (non-2xx or no answer)")
WORKER_PASSES = Counter(
    "sharecart_worker_passes", "Worker loop passes by loop and outcome: ok, unavailable, error", ["loop", "outcome"]
)

# root fields counted as joins / payments beside the per-operation counter
JOIN_FIELDS = {"openGroup", "joinGroup"}
PAYMENT_FIELDS = {"confirmPayment"}


def webhook_attempt(delivered: bool) -> None:
    WEBHOOK_ATTEMPTS.labels("delivered" if delivered else "failed").inc()
    if not delivered:
        WEBHOOK_FAILURES.inc()


# ---------------------------------------------------------------- read from the database at scrape time
# All four use partial indexes (ix_webhook_deliveries_due, ix_groups_due, ix_commission_lines_due) and
# the primary key of worker_heartbeats; on Citus each fans out once over the shards (no lock taken).
DEPTH_SQL = text("""
SELECT
  (SELECT count(*) FROM webhook_deliveries WHERE state = 'PENDING') AS pending,
  (SELECT extract(epoch FROM :now - min(next_attempt_at)) FROM webhook_deliveries
     WHERE state = 'PENDING' AND next_attempt_at <= :now) AS outbox_lag,
  (SELECT extract(epoch FROM :now - min(due_at)) FROM groups WHERE due_at <= :now) AS groups_lag,
  (SELECT extract(epoch FROM :now - min(available_at)) FROM commission_lines
     WHERE state = 'FROZEN' AND available_at <= :now AND NOT held) AS lines_lag,
  (SELECT extract(epoch FROM now() - max(beat_at)) FROM worker_heartbeats) AS heartbeat_age
""")


async def database_gauges(svc) -> CollectorRegistry:
    """A registry of the gauges read now from the database (a fresh one per scrape)."""
    registry = CollectorRegistry()
    async with svc.sessionmaker() as s:
        row = (await s.execute(DEPTH_SQL, {"now": svc.now()})).one()
    Gauge(
        "sharecart_outbox_pending_deliveries", "Webhook deliveries owed (PENDING), due or not", registry=registry
    ).set(row.pending)
    Gauge(
        "sharecart_outbox_lag_seconds",
        "How long the most overdue PENDING webhook delivery has been due (0: none)",
        registry=registry,
    ).set(float(row.outbox_lag or 0))
    lag = Gauge(
        "sharecart_worker_lag_seconds",
        "How long the most overdue item of each worker queue has been due (0: none due)",
        ["queue"],
        registry=registry,
    )
    lag.labels("groups").set(float(row.groups_lag or 0))
    lag.labels("commission_lines").set(float(row.lines_lag or 0))
    age = Gauge(
        "sharecart_worker_heartbeat_age_seconds",
        "Age of the freshest worker heartbeat (absent: no worker has ever beaten)",
        registry=registry,
    )
    if row.heartbeat_age is not None:
        age.set(float(row.heartbeat_age))
    return registry
