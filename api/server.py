"""The HTTP server's own limits (issue 11 point 5): how long a client may take to send a request, how many
connections and requests one process holds, how long an idle keep-alive connection stays.

uvicorn bounds idle keep-alive connections (`timeout_keep_alive`) and concurrent requests
(`limit_concurrency`: over it, a request is answered 503 at once), but has no deadline for a request that is
being sent: 2,000 half-sent requests stayed open for a minute. `GuardedHttpTools` — uvicorn's own httptools
protocol with two timers — closes a connection that has not sent its request line and headers within
HEADER_TIMEOUT_S of connecting (or of starting a request), or its body within BODY_TIMEOUT_S of its
headers, and refuses connections beyond MAX_CONNECTIONS per process at once (so idle sockets cannot use up
the file descriptors that fresh requests need). Every value is an argument of `server_config`; the
production reverse proxy in front (docs/security.md) adds its own, tighter, per-client limits.
"""

from __future__ import annotations

import asyncio

import uvicorn
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

HEADER_TIMEOUT_S = 10.0
BODY_TIMEOUT_S = 30.0
KEEP_ALIVE_S = 5
MAX_CONNECTIONS = 2000
LIMIT_CONCURRENCY = 1000  # connections + running requests, uvicorn's count; over it new requests get 503
BACKLOG = 1024
GRACEFUL_SHUTDOWN_S = 20


class GuardedHttpTools(HttpToolsProtocol):
    """HttpToolsProtocol with a deadline for receiving each request (see the module docstring)."""

    header_timeout = HEADER_TIMEOUT_S
    body_timeout = BODY_TIMEOUT_S
    max_connections = MAX_CONNECTIONS
    _deadline: asyncio.TimerHandle | None = None

    def connection_made(self, transport) -> None:
        super().connection_made(transport)
        if len(self.connections) > self.max_connections:
            self.logger.warning(
                "refused a connection: %d open, at most %d", len(self.connections) - 1, self.max_connections
            )
            transport.close()
            return
        self._arm(self.header_timeout)

    def _arm(self, seconds: float) -> None:
        self._disarm()
        self._deadline = self.loop.call_later(seconds, self._too_slow)

    def _disarm(self) -> None:
        if self._deadline is not None:
            self._deadline.cancel()
            self._deadline = None

    def _too_slow(self) -> None:
        self._deadline = None
        if not self.transport.is_closing():
            self.transport.close()  # the app, if it started, sees http.disconnect

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._arm(self.header_timeout)

    def on_headers_complete(self) -> None:
        super().on_headers_complete()
        self._arm(self.body_timeout)

    def on_message_complete(self) -> None:
        super().on_message_complete()
        self._disarm()

    def handle_websocket_upgrade(self) -> None:
        self._disarm()  # the transport now belongs to the websocket protocol
        super().handle_websocket_upgrade()

    def connection_lost(self, exc) -> None:
        self._disarm()
        super().connection_lost(exc)


def guarded(header_timeout: float, body_timeout: float, max_connections: int) -> type[GuardedHttpTools]:
    """The protocol class for these limits. With the defaults, the module's own class: `serve --workers N`
    hands the config to spawned processes, which can re-import a named class but not one made here."""
    if (header_timeout, body_timeout, max_connections) == (HEADER_TIMEOUT_S, BODY_TIMEOUT_S, MAX_CONNECTIONS):
        return GuardedHttpTools
    return type(
        "GuardedHttpTools",
        (GuardedHttpTools,),
        {"header_timeout": header_timeout, "body_timeout": body_timeout, "max_connections": max_connections},
    )


def server_config(
    app,
    *,
    host: str,
    port: int,
    header_timeout: float = HEADER_TIMEOUT_S,
    body_timeout: float = BODY_TIMEOUT_S,
    max_connections: int = MAX_CONNECTIONS,
    limit_concurrency: int = LIMIT_CONCURRENCY,
    keep_alive: int = KEEP_ALIVE_S,
    **more,
) -> uvicorn.Config:
    """uvicorn's Config with Sharecart's connection limits (`more` passes other uvicorn options through and
    overrides these defaults, e.g. `timeout_graceful_shutdown` from the settings)."""
    options = dict(
        http=guarded(header_timeout, body_timeout, max_connections),
        limit_concurrency=limit_concurrency,
        timeout_keep_alive=keep_alive,
        backlog=BACKLOG,
        timeout_graceful_shutdown=GRACEFUL_SHUTDOWN_S,
        h11_max_incomplete_event_size=16 * 1024,
        server_header=False,
    )
    return uvicorn.Config(app, host=host, port=port, **{**options, **more})
