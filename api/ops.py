"""Operations endpoints and the middleware every request passes (docs/operations.md).

- GET /health: the process is alive and serving (no database call): for a liveness probe.
- GET /ready: 200 only when the database answers, its schema is at the migrations' head, and (unless
  SHARECART_READY_WORKER_MAX_AGE=0) some worker beat within that many seconds; else 503 naming the check
  that failed. For a readiness probe / load balancer and the container HEALTHCHECK.
- GET /metrics: Prometheus text (service.metrics; api.metrics for GraphQL operations).
- `Operations` middleware: request id (api.logs), one access-log line, HTTP metrics, and an exception that
  escapes the app answered as JSON with a code — 503 UNAVAILABLE (with Retry-After) when the database is
  away, 500 INTERNAL otherwise — never starlette's plain-text 500.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import time

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from structlog.contextvars import bound_contextvars

from api.logs import request_id_from
from service.availability import UNAVAILABLE, is_database_unavailable

log = logging.getLogger("sharecart.api")
access = logging.getLogger("sharecart.access")
READY_TIMEOUT_S = 2.0
ROUTES = ("/graphql", "/health", "/ready", "/metrics", "/graphiql", "/")
PREFIXES = ("/static/", "/exports/", "/console", "/demo/")


def route_label(path: str) -> str:
    """A bounded label for metrics: the known routes, a prefix for the families, else "other"."""
    if path in ROUTES:
        return path
    for prefix in PREFIXES:
        if path.startswith(prefix):
            return prefix.rstrip("/") + "/*"
    return "other"


async def health(_request: Request) -> Response:
    return JSONResponse({"ok": True})


@functools.cache
def migration_heads() -> frozenset[str]:
    from alembic.script import ScriptDirectory

    from store.migrate import alembic_config

    return frozenset(ScriptDirectory.from_config(alembic_config("postgresql://")).get_heads())


async def readiness(svc) -> tuple[bool, dict]:
    """(ready, checks): each check "ok" or what is wrong."""
    from sqlalchemy import text

    from service.jobs.heartbeat import freshest_age
    from service.settings import settings

    max_age = settings().ready_worker_max_age
    checks: dict[str, str] = {}

    async def probe() -> None:
        async with svc.engine.connect() as c:
            await c.execute(text("SELECT 1"))
            checks["database"] = "ok"
            versions = set((await c.execute(text("SELECT version_num FROM alembic_version"))).scalars())
            heads = migration_heads()
            checks["migrations"] = (
                "ok" if versions == heads else f"at {sorted(versions) or 'none'}, head is {sorted(heads)}"
            )
            if max_age > 0:
                age = await freshest_age(c)
                checks["worker"] = (
                    "ok"
                    if age is not None and age <= max_age
                    else ("no worker heartbeat" if age is None else f"last worker heartbeat {age:.0f} s ago")
                )

    for attempt in (1, 2):  # a pooled connection left from before a database restart fails once: retry on a new one
        try:
            await asyncio.wait_for(probe(), READY_TIMEOUT_S)
            break
        except Exception as e:  # noqa: BLE001 - any failure is "not ready", said in the answer
            checks.clear()
            checks["database"] = (
                f"unavailable ({type(e).__name__})"
                if is_database_unavailable(e) or isinstance(e, asyncio.TimeoutError)
                else f"error ({type(e).__name__})"
            )
            if attempt == 1 and is_database_unavailable(e):
                continue
            break
    return all(v == "ok" for v in checks.values()) and "database" in checks, checks


async def ready(request: Request) -> Response:
    ok, checks = await readiness(request.app.state.svc)
    return JSONResponse({"ready": ok, "checks": checks}, status_code=200 if ok else 503)


class Operations:
    """Request id + access log + HTTP metrics + JSON for what escapes (pure ASGI: no body buffering)."""

    def __init__(self, app) -> None:
        from service.settings import settings

        self.app, self.access_log = app, settings().access_log

    async def __call__(self, scope, receive, send):
        if scope["type"] not in ("http", "websocket"):
            return await self.app(scope, receive, send)
        rid = request_id_from(dict(scope.get("headers") or []).get(b"x-request-id"))
        header = (b"x-request-id", rid.encode())
        state = {"status": None}

        async def send_with_id(message):
            if message["type"] in ("http.response.start", "websocket.accept"):
                state["status"] = message.get("status", 101)
                message = {**message, "headers": [*message.get("headers", []), header]}
            await send(message)

        started = time.perf_counter()
        with bound_contextvars(request_id=rid):
            try:
                await self.app(scope, receive, send_with_id)
            except Exception as e:
                if scope["type"] != "http" or state["status"] is not None:
                    raise
                await self._error(e)(scope, receive, send_with_id)
            finally:
                if scope["type"] == "http":
                    self._record(scope, state["status"] or 500, time.perf_counter() - started)

    @staticmethod
    def _error(e: Exception) -> Response:
        if is_database_unavailable(e):
            log.warning("database unavailable: %s: %s", type(e).__name__, e)
            return JSONResponse(
                {
                    "errors": [
                        {"message": "the database is unavailable; retry later", "extensions": {"code": UNAVAILABLE}}
                    ]
                },
                status_code=503,
                headers={"Retry-After": "1"},
            )
        log.exception("unhandled error")
        return JSONResponse(
            {"errors": [{"message": "internal error", "extensions": {"code": "INTERNAL"}}]}, status_code=500
        )

    def _record(self, scope, status: int, seconds: float) -> None:
        from service.metrics import HTTP_LATENCY, HTTP_REQUESTS

        route = route_label(scope.get("path", ""))
        HTTP_REQUESTS.labels(route, scope.get("method", "GET"), f"{status // 100}xx").inc()
        HTTP_LATENCY.labels(route).observe(seconds)
        if self.access_log and access.isEnabledFor(logging.INFO):
            access.info(
                "request",
                extra={
                    "method": scope.get("method"),
                    "path": scope.get("path"),
                    "status": status,
                    "duration_ms": round(seconds * 1000, 2),
                },
            )
