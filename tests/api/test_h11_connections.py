"""Issue 11 point 5: the server closes half-sent requests and idle connections after its deadlines, holds at
most its connection cap, and keeps answering fresh requests meanwhile (bounded, loopback only)."""

from __future__ import annotations

import socket
import time

import httpx
import pytest

from tests.api.conftest import AppServer


@pytest.fixture(scope="module")
def tight(database_url):
    """The app under the server limits of `sharecart serve`, with short deadlines and a small cap."""
    from api.app import create_app

    srv = AppServer(
        database_url,
        lambda s: create_app(s, dev=False),
        header_timeout=1.0,
        body_timeout=1.0,
        keep_alive=1,
        max_connections=60,
    )
    yield srv
    srv.stop()


def _open(port: int, first: bytes = b"") -> socket.socket:
    s = socket.create_connection(("127.0.0.1", port), timeout=5)
    if first:
        s.sendall(first)
    return s


def _closed_by_server(s: socket.socket, within: float) -> bool:
    s.settimeout(within)
    try:
        while True:
            data = s.recv(4096)
            if not data:
                return True
    except (socket.timeout, TimeoutError):
        return False
    except (ConnectionResetError, BrokenPipeError):
        return True


def test_h11_5_half_sent_requests_are_closed_and_fresh_ones_answered(tight):
    headers_only = [_open(tight.port, b"POST /graphql HTTP/1.1\r\nHost: x\r\nContent-Le") for _ in range(20)]
    body_short = [
        _open(
            tight.port,
            b"POST /graphql HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            b'Content-Length: 100\r\n\r\n{"query"',
        )
        for _ in range(20)
    ]
    silent = [_open(tight.port) for _ in range(10)]
    try:
        # fresh requests are answered at once while 50 slow clients hang on
        started = time.monotonic()
        assert httpx.get(f"{tight.base}/health", timeout=5).status_code == 200
        assert time.monotonic() - started < 2
        started = time.monotonic()
        assert all(_closed_by_server(s, 5) for s in headers_only + body_short + silent)
        assert time.monotonic() - started < 6, "the slow clients were not cut off at the deadlines"
    finally:
        for s in headers_only + body_short + silent:
            s.close()


def test_h11_5_idle_keep_alive_connections_are_closed(tight):
    s = _open(tight.port, b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n")
    try:
        assert b"200" in s.recv(4096)
        assert _closed_by_server(s, 4)  # keep-alive: 1 s
    finally:
        s.close()


def test_h11_5_connections_over_the_cap_are_refused_and_the_server_recovers(tight):
    idle = [_open(tight.port) for _ in range(80)]
    try:
        over = sum(_closed_by_server(s, 0.5) for s in idle[60:])
        assert over >= 15, f"only {over} of the 20 connections over the cap of 60 were refused"
    finally:
        for s in idle:
            s.close()
    time.sleep(0.3)
    assert httpx.get(f"{tight.base}/health", timeout=5).status_code == 200
