"""The process model of `sharecart serve` and `sharecart worker` (issue 10).

- `serve --workers N` (default: the machine's cores) runs N API processes on one port: uvicorn's own
  supervisor forks them over one listening socket (it restarts one that dies). Each builds its app with
  `app_from_env` (its own engine and pool, its own LISTEN connection for live group progress, so
  subscriptions work whichever process a websocket lands on).
- The expiry worker (GB-11, CM-6) and webhook delivery run in a process of their own, `sharecart worker`,
  which `serve` starts beside the API unless `--no-worker`. Any number of workers may run, on any
  machine: every item is claimed with FOR UPDATE SKIP LOCKED in the transaction that applies it.
- `--test-clock` keeps everything in one process (one API process, the worker on its event loop): the
  test clock lives in the process that `advanceClock` reached, and the worker must see the same clock.

Migrations and the demo seed run once, in the parent, before any child starts. With no DATABASE_URL the
parent starts the embedded PostgreSQL and hands its URL to the children.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys

import typer

from api.server import server_config


def default_workers() -> int:
    return max(1, len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1))


def app_from_env():
    """uvicorn's factory in each API process: the app over this process's own engine, logging as the
    `sharecart` command configures it (a spawned process starts without)."""
    from api.app import create_app
    from api.logs import configure_logging

    configure_logging()
    from service.context import Services
    from store.database import create_engine

    app = create_app(Services(engine=create_engine()))
    tune_gc()
    return app


# gen-0 collections every 7,000 net allocations instead of 700 (a join's request allocates thousands of objects),
# older generations as usual relative to it
GC_THRESHOLDS = (7_000, 10, 10)


def tune_gc() -> None:
    """Python's cyclic GC in a long-running API or worker process (issue 10, p99): everything the imports and the
    app built so far (schema, mappers, compiled statements: hundreds of thousands of objects that live as long as
    the process) is moved out of the collector's sight (`gc.freeze`), so a full collection no longer walks it
    in the middle of a request, and young collections run less often (GC_THRESHOLDS). SHARECART_GC_TUNE=0 leaves
    the collector as Python sets it (to compare)."""
    import gc

    from service.settings import settings

    if not settings().gc_tune:
        return

    gc.collect()
    gc.freeze()
    gc.set_threshold(*GC_THRESHOLDS)


async def _prepare(demo: bool, host: str, port: int, embedded_admin: str | None = None) -> None:
    """Migrate (as the owner) and seed once, in the parent. On the embedded database the service then runs as
    the runtime role (store/roles.py): the children get its URL as DATABASE_URL."""
    from api.cli import _migrate, _print_demo, _services

    svc = _services()
    try:
        await _migrate(svc)
        if demo:
            from service.usecases.demo import seed_demo

            _print_demo(await seed_demo(svc), host, port)
    finally:
        await svc.engine.dispose()
    if embedded_admin:
        from store.roles import prepare_runtime

        os.environ["DATABASE_URL"] = await prepare_runtime(embedded_admin)


def serve(host: str, port: int, demo: bool, run_worker: bool, workers: int | None, test_clock: bool) -> None:
    import uvicorn

    from service.settings import settings
    from store.database import stop_embedded

    if not settings().database_url:
        from store.database import data_dir, embedded_url

        typer.echo(f"embedded PostgreSQL in {data_dir()} (set DATABASE_URL to use a server)")
        embedded_admin = os.environ["DATABASE_URL"] = embedded_url()  # the children attach to the parent's server
    else:
        embedded_admin = None
    try:
        if test_clock:
            if workers not in (None, 1):
                typer.echo("--test-clock runs one process (the clock is per process); --workers ignored")
            asyncio.run(_serve_one_process(host, port, demo, run_worker, embedded_admin))
            return
        asyncio.run(_prepare(demo, host, port, embedded_admin))
        n = workers or default_workers()
        child = _start_worker() if run_worker else None
        try:
            typer.echo(
                f"API: {n} process{'es' if n > 1 else ''} on {host}:{port}; "
                f"worker: {'its own process, pid ' + str(child.pid) if child else 'not started'}"
            )
            # logging is ours (api.logs: JSON, request ids, our access line); SIGTERM drains in-flight requests,
            # and uvicorn re-raises it to the previous handler when done: a no-op, so the cleanup below runs
            signal.signal(signal.SIGTERM, lambda *_: None)
            # connection limits and deadlines: api.server (docs/security.md)
            config = server_config(
                "api.process:app_from_env",
                factory=True,
                host=host,
                port=port,
                workers=n,
                log_level="info",
                log_config=None,
                access_log=False,
                timeout_graceful_shutdown=settings().shutdown_grace,
            )
            if n == 1:
                uvicorn.Server(config).run()
            else:
                _Supervisor(config, sockets=[config.bind_socket()]).run()
        finally:
            if child is not None and child.poll() is None:
                child.send_signal(signal.SIGTERM)
                try:
                    child.wait(15)
                except subprocess.TimeoutExpired:
                    child.kill()
    finally:
        stop_embedded()


def _Supervisor(config, sockets):
    """uvicorn's multiprocess supervisor, except that SIGTERM closes the parent's copy of the listening
    socket at once: the API processes drain what they have read, and no new connection is accepted
    meanwhile (docs/operations.md, "Shutdown")."""
    from uvicorn.supervisors import Multiprocess

    class Supervisor(Multiprocess):
        def handle_term(self) -> None:
            for sock in self.sockets:
                sock.close()
            super().handle_term()

    return Supervisor(config, sockets=sockets)


def _start_worker() -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "api.cli", "worker"], env=os.environ.copy())


async def _serve_one_process(
    host: str, port: int, demo: bool, run_worker: bool, embedded_admin: str | None = None
) -> None:
    """The API and the worker on one event loop (the --test-clock model)."""
    import uvicorn

    from api.app import create_app
    from api.cli import _services
    from service.jobs.worker import worker_loop

    from service.settings import settings

    await _prepare(demo, host, port, embedded_admin)
    svc = _services()
    server = uvicorn.Server(
        server_config(
            create_app(svc),
            host=host,
            port=port,
            log_level="info",
            log_config=None,
            access_log=False,
            timeout_graceful_shutdown=settings().shutdown_grace,
        )
    )
    signal.signal(signal.SIGTERM, lambda *_: None)  # see serve(): uvicorn drains, the cleanup below runs
    stop = asyncio.Event()
    tasks = [asyncio.create_task(server.serve())]
    if run_worker:
        tasks.append(asyncio.create_task(worker_loop(svc, stop)))
    try:
        await tasks[0]
    finally:
        stop.set()
        await asyncio.gather(*tasks[1:], return_exceptions=True)
        await svc.engine.dispose()


def work(interval: float) -> None:
    """`sharecart worker`: due work and webhook delivery until SIGTERM/SIGINT, then a clean stop."""
    from api.cli import _services
    from service.jobs.worker import worker_loop

    async def run() -> None:
        svc = _services()
        tune_gc()
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        try:
            await worker_loop(svc, stop, interval=interval)
        finally:
            await svc.engine.dispose()

    asyncio.run(run())
