"""HTTP-level hardening of the app (issue 11 points 1, 11, 12), as ASGI middleware around Starlette:

- SecurityHeaders: on every HTTP response — nosniff, no framing, no referrer, a same-origin CSP, no
  caching of API answers; HSTS when the request came over TLS (directly or per the proxy's
  X-Forwarded-Proto, which uvicorn applies for trusted proxies).
- GraphQLResponse, on POST/GET /graphql only:
  * the response body is capped (MAX_RESPONSE bytes): a bigger answer is replaced by a coded
    QUERY_TOO_COMPLEX error, never sent;
  * `Accept: application/graphql-response+json` is honoured as the GraphQL-over-HTTP spec says: that
    media type, and 400 for a request error (nothing executed: a syntax, validation or limit refusal —
    the `data` entry is then absent); 2xx whenever execution ran. Without it (`application/json`), every
    GraphQL answer is 200, as before.
- Access-log lines carry the path without its query string (a GET query's variables, an export's
  parameters never reach the logs): `strip_query_strings()`.
"""

from __future__ import annotations

import json
import logging

MAX_RESPONSE = 4 * 1024 * 1024
GRAPHQL_RESPONSE = "application/graphql-response+json"
CSP = (
    "default-src 'self'; script-src 'self' 'unsafe-inline'; style-src 'self' 'unsafe-inline'; "
    "img-src 'self' data:; font-src 'self' data:; connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'"
)
SECURITY_HEADERS = [
    (b"x-content-type-options", b"nosniff"),
    (b"x-frame-options", b"DENY"),
    (b"referrer-policy", b"no-referrer"),
    (b"content-security-policy", CSP.encode()),
    (b"cross-origin-opener-policy", b"same-origin"),
    (b"cross-origin-resource-policy", b"same-origin"),
    (b"permissions-policy", b"camera=(), microphone=(), geolocation=()"),
]
HSTS = (b"strict-transport-security", b"max-age=31536000; includeSubDomains")


class SecurityHeaders:
    def __init__(self, app) -> None:
        self.app = app

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        tls = scope.get("scheme") == "https"

        async def with_headers(message):
            if message["type"] == "http.response.start":
                present = {k.lower() for k, _ in message.get("headers", [])}
                extra = [(k, v) for k, v in SECURITY_HEADERS if k not in present]
                if tls:
                    extra.append(HSTS)
                if b"cache-control" not in present:
                    extra.append((b"cache-control", b"no-store"))
                message = {**message, "headers": [*message.get("headers", []), *extra]}
            await send(message)

        return await self.app(scope, receive, with_headers)


def _coded(message: str, code: str, **extra) -> bytes:
    return json.dumps({"errors": [{"message": message, "extensions": {"code": code, **extra}}]}).encode()


def wants_graphql_response(headers) -> bool:
    accept = dict(headers).get(b"accept", b"").decode("latin-1").lower()
    return GRAPHQL_RESPONSE in accept


def request_error(body: dict) -> bool:
    """A GraphQL-over-HTTP "request error": nothing executed, so no error has a path and data is null."""
    errors = body.get("errors") or []
    return bool(errors) and body.get("data") is None and all(not e.get("path") for e in errors)


class GraphQLResponse:
    """Bound and shape the answers of /graphql (see the module docstring)."""

    def __init__(self, app, *, path: str = "/graphql", limit: int = MAX_RESPONSE) -> None:
        self.app, self.path, self.limit = app, path, limit

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http" or scope.get("path") != self.path:
            return await self.app(scope, receive, send)
        graphql_response = wants_graphql_response(scope.get("headers") or [])
        start: dict | None = None
        chunks: list[bytes] = []
        size = 0
        over = False

        async def buffered(message):
            nonlocal start, size, over
            if message["type"] == "http.response.start":
                start = message
                return
            if message["type"] != "http.response.body":
                return await send(message)
            if not over:
                chunk = message.get("body", b"")
                size += len(chunk)
                if size > self.limit:
                    over, chunks[:] = True, []
                else:
                    chunks.append(chunk)
            if not message.get("more_body", False):
                await self._finish(send, start, b"".join(chunks), over, graphql_response)

        return await self.app(scope, receive, buffered)

    async def _finish(self, send, start, body: bytes, over: bool, graphql_response: bool) -> None:
        status = start["status"]
        headers = [(k, v) for k, v in start.get("headers", []) if k.lower() not in (b"content-length",)]
        if over:
            logging.getLogger("sharecart.api").info("refused QUERY_TOO_COMPLEX: response over %d bytes", self.limit)
            status, body = (
                200,
                _coded(
                    f"the answer is over {self.limit} bytes: ask for fewer fields, fewer aliases or smaller pages",
                    "QUERY_TOO_COMPLEX",
                    limit="responseSize",
                    maxBytes=self.limit,
                ),
            )
            headers = [(k, v) for k, v in headers if k.lower() != b"content-type"]
            headers.append((b"content-type", b"application/json"))
        content_type = dict((k.lower(), v) for k, v in headers).get(b"content-type", b"")
        if graphql_response and content_type.startswith(b"application/json"):
            try:
                parsed = json.loads(body)
            except ValueError:
                parsed = None
            if isinstance(parsed, dict):
                if status == 200 and request_error(parsed):
                    status = 400
                    parsed.pop("data", None)
                    body = json.dumps(parsed).encode()
            headers = [(k, v) for k, v in headers if k.lower() != b"content-type"]
            headers.append((b"content-type", f"{GRAPHQL_RESPONSE}; charset=utf-8".encode()))
        headers.append((b"content-length", str(len(body)).encode()))
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": body, "more_body": False})


class _NoQueryString(logging.Filter):
    """uvicorn's access log record args are (client, method, full_path, http_version, status)."""

    def filter(self, record: logging.LogRecord) -> bool:
        args = record.args
        if isinstance(args, tuple) and len(args) >= 3 and isinstance(args[2], str) and "?" in args[2]:
            record.args = (*args[:2], args[2].split("?", 1)[0] + "?…", *args[3:])
        return True


def strip_query_strings() -> None:
    logger = logging.getLogger("uvicorn.access")
    if not any(isinstance(f, _NoQueryString) for f in logger.filters):
        logger.addFilter(_NoQueryString())
