"""A real uvicorn server on a free port against the test database, driven over HTTP (and websockets)."""

from __future__ import annotations

import asyncio
import os
import secrets
import socket
import threading
import time

import httpx
import pytest
import uvicorn


class AppServer:
    """An app (built by `make_app(svc)` inside the server's thread) under a real uvicorn on a free loopback
    port, with the connection limits `sharecart serve` uses (api.server)."""

    def __init__(self, database_url: str, make_app, **config) -> None:
        from api.server import server_config
        from service.context import Services
        from store.database import create_engine

        self.port = _free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        holder: dict = {}
        started = threading.Event()

        def serve():
            loop = asyncio.new_event_loop()
            asyncio.set_event_loop(loop)
            svc = Services(engine=create_engine(database_url))
            holder["svc"] = svc
            holder["app"] = app = make_app(svc)
            srv = uvicorn.Server(server_config(app, host="127.0.0.1", port=self.port, log_level="warning", **config))
            holder["server"], holder["loop"] = srv, loop
            started.set()
            loop.run_until_complete(srv.serve())
            loop.run_until_complete(svc.engine.dispose())  # give the pooled connections back at once

        self.thread = threading.Thread(target=serve, daemon=True)
        self.thread.start()
        started.wait(30)
        for _ in range(100):
            try:
                if httpx.get(f"{self.base}/health").status_code == 200:
                    break
            except httpx.HTTPError:
                time.sleep(0.1)
        else:
            raise RuntimeError("the test server did not start (see the thread's traceback above)")
        self.svc, self.server, self.loop, self.app = holder["svc"], holder["server"], holder["loop"], holder["app"]

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=10)


@pytest.fixture(scope="session")
def server(runtime_url):
    """uvicorn in a background thread with its own event loop and engine (the runtime role, as `serve` runs:
    issue 11.6), SHARECART_TEST_CLOCK=1, in development mode (introspection and GraphiQL on: docs/security.md)."""
    os.environ["SHARECART_TEST_CLOCK"] = "1"
    from api.app import create_app

    srv = AppServer(runtime_url, lambda svc: create_app(svc, dev=True))
    yield {"base": srv.base, "svc": srv.svc, "app": srv.app}
    srv.stop()


@pytest.fixture(scope="session")
def prod_server(runtime_url):
    """The same app with the production defaults: development mode off."""
    from api.app import create_app

    srv = AppServer(runtime_url, lambda svc: create_app(svc, dev=False))
    yield {"base": srv.base, "svc": srv.svc}
    srv.stop()


class Client:
    def __init__(self, base: str, token: str | None = None, shop_key: str | None = None):
        self.base, self.headers = base, {}
        if token:
            self.headers["Authorization"] = f"Bearer {token}"
        if shop_key:
            self.headers["X-Shop-Key"] = shop_key

    def gql(self, query: str, **variables) -> dict:
        r = httpx.post(
            f"{self.base}/graphql", json={"query": query, "variables": variables}, headers=self.headers, timeout=30
        )
        assert r.status_code == 200, r.text
        return r.json()

    def data(self, query: str, **variables) -> dict:
        body = self.gql(query, **variables)
        assert "errors" not in body, body
        return body["data"]

    def mutate(self, name: str, input: dict, fields: str = "", input_type: str | None = None) -> dict:
        input_type = input_type or name[0].upper() + name[1:] + "Input"
        q = f"mutation($input: {input_type}!) {{ {name}(input: $input) {{ {fields} errors {{ code field rule }} }} }}"
        body = self.gql(q, input=input)
        assert "errors" not in body, body
        return body["data"][name]


def codes(body: dict) -> list[str]:
    """The `extensions.code` of each top-level GraphQL error."""
    return [e.get("extensions", {}).get("code") for e in body.get("errors", [])]


def payload_codes(payload: dict) -> list[str]:
    return [e["code"] for e in payload["errors"]]


@pytest.fixture
async def world(server, svc):
    """Two fresh shops (SH-1) and a way to act in them with a token of any user and roles."""
    from api.auth import mint_token
    from service.usecases.shops import create_shop

    shop = await create_shop(svc, shop_id=f"e2e-{secrets.token_hex(4)}", name="E2E", currency="CNY")
    other = await create_shop(svc, shop_id=f"e2e-{secrets.token_hex(4)}", name="Other", currency="JPY")
    base = server["base"]

    def as_(user, *roles, s=shop):
        return Client(base, mint_token(s, user, list(roles), 3600))

    return {
        "shop": shop,
        "other": other,
        "as": as_,
        "base": base,
        "svc": server["svc"],
        "public": Client(base, shop_key=shop.public_key),
    }


# ---------------------------------------------------------------- `sharecart serve` as a separate process
REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


class ServiceProcess:
    """`python -m api.cli serve …` (the `sharecart serve` command) on a free port against the test
    database: a second service process, with its own clock, engine and LISTEN connection."""

    def __init__(self, database_url: str, *args: str) -> None:
        import subprocess
        import sys

        self.port = _free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        env = {k: v for k, v in os.environ.items() if k != "SHARECART_TEST_CLOCK"}
        env.update(DATABASE_URL=database_url, PYTHONPATH=REPO, PYTHONUNBUFFERED="1")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "api.cli", "serve", "--port", str(self.port), *args],
            cwd=REPO,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        self.lines: list[str] = []
        threading.Thread(target=self._read, daemon=True).start()
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError("sharecart serve exited:\n" + self.output)
            try:
                if httpx.get(f"{self.base}/health", timeout=1).status_code == 200:
                    return
            except httpx.HTTPError:
                time.sleep(0.2)
        self.stop()
        raise RuntimeError("sharecart serve did not start:\n" + self.output)

    def _read(self) -> None:
        for line in self.proc.stdout:
            self.lines.append(line.rstrip("\n"))

    @property
    def output(self) -> str:
        return "\n".join(self.lines)

    def stop(self) -> None:
        import signal
        import subprocess

        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


def _free_port() -> int:
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    sock.close()
    return port
