"""GET /metrics (Prometheus text format) and the GraphQL extension that counts operations.

An operation is labelled "<type> <root field>" (`mutation joinGroup`, `query me`): the root field is
checked against the schema, so a client cannot mint label values (a document naming an unknown field is
"(invalid)"; several different root fields are "<type> (several)"). Operation names chosen by clients are
never labels.
"""

from __future__ import annotations

import time

from graphql import FieldNode, OperationDefinitionNode
from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, CollectorRegistry, generate_latest
from starlette.requests import Request
from starlette.responses import Response
from strawberry.extensions import SchemaExtension

from engine.errors import RuleViolation
from service import metrics
from service.availability import UNAVAILABLE, is_database_unavailable


def _registry():
    from service.settings import settings

    if settings().prometheus_multiproc_dir:  # prometheus-client itself reads the variable at import
        from prometheus_client import multiprocess

        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)
        return registry
    return REGISTRY


async def metrics_endpoint(request: Request) -> Response:
    body = generate_latest(_registry())
    try:
        body += generate_latest(await metrics.database_gauges(request.app.state.svc))
    except Exception as e:  # noqa: BLE001 - the process metrics are still worth answering with
        body += f"# database gauges unavailable: {type(e).__name__}\n".encode()
    return Response(body, media_type=CONTENT_TYPE_LATEST)


def operation_label(execution_context) -> str:
    doc = execution_context.graphql_document
    if doc is None:
        return "(invalid)"
    ops = [d for d in doc.definitions if isinstance(d, OperationDefinitionNode)]
    name = execution_context.operation_name
    op = (
        next((d for d in ops if d.name and d.name.value == name), None) if name else (ops[0] if len(ops) == 1 else None)
    )
    if op is None:
        return "(invalid)"
    kind = op.operation.value
    root = {"query": "query_type", "mutation": "mutation_type", "subscription": "subscription_type"}[kind]
    root_type = getattr(execution_context.schema._schema, root)
    fields = {s.name.value for s in op.selection_set.selections if isinstance(s, FieldNode)} - {"__typename"}
    if len(op.selection_set.selections) != len([s for s in op.selection_set.selections if isinstance(s, FieldNode)]):
        fields.add("(fragment)")
    if not fields:
        return f"{kind} __typename"
    if len(fields) > 1:
        return f"{kind} (several)"
    (field,) = fields
    if field in ("__schema", "__type"):
        return f"{kind} {field}"
    return f"{kind} {field}" if root_type is not None and field in root_type.fields else "(invalid)"


def outcome_of(result) -> str:
    """ok | refused (a coded refusal: payload errors or a coded GraphQL error) | unavailable | error."""
    if result is None:
        return "error"
    worst = None
    for error in result.errors or ():
        code = (error.extensions or {}).get("code")
        original = error.original_error
        if code == UNAVAILABLE or is_database_unavailable(original):
            return "unavailable"
        if code == "INTERNAL" or (
            code is None and original is not None and not isinstance(original, RuleViolation) and error.path is not None
        ):
            worst = "error"
        elif worst is None:
            worst = "refused"
    if worst:
        return worst
    data = result.data if isinstance(result.data, dict) else {}
    if any(isinstance(v, dict) and v.get("errors") for v in data.values()):
        return "refused"
    return "ok"


class OperationMetrics(SchemaExtension):
    """Counts and times every operation; with the database away it also makes the HTTP status 503."""

    def on_operation(self):
        started = time.perf_counter()
        yield
        ec = self.execution_context
        try:
            label = operation_label(ec)
        except Exception:  # noqa: BLE001 - a label must never break a request
            label = "(invalid)"
        outcome = outcome_of(ec.result)
        metrics.GRAPHQL_OPERATIONS.labels(label, outcome).inc()
        metrics.GRAPHQL_LATENCY.labels(label).observe(time.perf_counter() - started)
        field = label.partition(" ")[2]
        if field in metrics.JOIN_FIELDS:
            metrics.JOINS.labels(outcome).inc()
        elif field in metrics.PAYMENT_FIELDS:
            metrics.PAYMENTS.labels(outcome).inc()
        if outcome == "unavailable":
            response = getattr(ec.context, "response", None)
            if response is not None and hasattr(response, "status_code"):
                response.status_code = 503


def prepare_multiprocess(processes: int) -> None:
    """For `serve --workers N`: call before the server processes start. With more than one process and no
    PROMETHEUS_MULTIPROC_DIR, make a fresh folder for this run and set the variable, so the processes (which
    inherit the environment, and in which prometheus-client reads it at import) report together. A folder
    that is already set is emptied of the previous run's files (prometheus-client's documented requirement)."""
    import tempfile
    from pathlib import Path

    from service.settings import settings

    folder = settings().prometheus_multiproc_dir
    if folder is None:
        if processes <= 1:
            return
        folder = Path(tempfile.mkdtemp(prefix="sharecart-metrics-"))
        import os

        os.environ["PROMETHEUS_MULTIPROC_DIR"] = str(folder)
    folder.mkdir(parents=True, exist_ok=True)
    for stale in folder.glob("*.db"):
        stale.unlink()
