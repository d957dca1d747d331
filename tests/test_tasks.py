"""tasks.py: the Debian packages some tests need (chromium, LibreOffice) in one apt-get call; the suite's workers."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest


@pytest.fixture
def tasks():
    spec = importlib.util.spec_from_file_location("sharecart_tasks", Path(__file__).resolve().parents[1] / "tasks.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _fake(monkeypatch, tasks, *, present: set[str], root: bool = True, apt_rc: int = 0) -> list[list[str]]:
    import shutil

    calls: list[list[str]] = []
    monkeypatch.setattr(shutil, "which", lambda cmd: f"/usr/bin/{cmd}" if cmd in present | {"apt-get"} else None)
    monkeypatch.setattr(tasks.os, "geteuid", lambda: 0 if root else 1000)
    monkeypatch.setattr(
        tasks.subprocess, "call", lambda args, **kw: calls.append(args) or (apt_rc if args[1] == "install" else 0)
    )
    return calls


def test_installs_both_missing_packages_in_one_call(monkeypatch, tasks):
    calls = _fake(monkeypatch, tasks, present=set())
    tasks.ensure_test_packages()
    assert calls == [["apt-get", "install", "-y", "-qq", "chromium", "libreoffice-calc-nogui"]]


def test_installs_only_what_is_missing_and_refreshes_lists_once_on_failure(monkeypatch, tasks):
    calls = _fake(monkeypatch, tasks, present={"chromium"}, apt_rc=100)
    tasks.ensure_test_packages()
    assert calls == [
        ["apt-get", "install", "-y", "-qq", "libreoffice-calc-nogui"],
        ["apt-get", "update", "-qq"],
        ["apt-get", "install", "-y", "-qq", "libreoffice-calc-nogui"],
    ]


def test_does_nothing_without_root_or_when_everything_is_there(monkeypatch, tasks):
    calls = _fake(monkeypatch, tasks, present=set(), root=False)
    tasks.ensure_test_packages()
    calls += _fake(monkeypatch, tasks, present={"chromium", "soffice"})
    tasks.ensure_test_packages()
    assert calls == []


def _pids_serving(port: int) -> list[int]:
    """Processes whose command line serves `port` (to clean up after a wrapper that left its server behind)."""
    import os

    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                cmd = open(f"/proc/{entry}/cmdline", "rb").read().split(b"\0")
            except OSError:
                continue
            if b"serve" in cmd and str(port).encode() in cmd:
                found.append(int(entry))
    return found


def test_sigterm_to_tasks_py_serve_stops_the_server(database_url):
    """Issue 13 point 6: `python3 tasks.py serve` used to exit on SIGTERM and leave the server running; now it
    execs the server, so the signal reaches it: the process ends and the port is closed."""
    import os
    import signal
    import socket
    import subprocess
    import sys
    import time

    import httpx

    root = Path(__file__).resolve().parents[1]
    tasks_py = root / "tasks.py"
    stamp = root / ".venv" / ".sharecart-installed"
    import hashlib

    if not stamp.exists() or stamp.read_text() != hashlib.sha256((root / "pyproject.toml").read_bytes()).hexdigest():
        pytest.skip("the .venv is not the one tasks.py installed for this pyproject.toml: run `python3 tasks.py test`")
    if os.name != "posix":
        pytest.skip("exec is POSIX")
    from tests.api.conftest import _free_port

    port = _free_port()
    env = {**os.environ, "DATABASE_URL": database_url}
    proc = subprocess.Popen(
        [sys.executable, str(tasks_py), "serve", "--port", str(port), "--no-demo", "--no-worker"],
        cwd=root,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 90
        while True:
            try:
                if httpx.get(f"http://127.0.0.1:{port}/health", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert proc.poll() is None and time.monotonic() < deadline, "the server did not start"
            time.sleep(0.3)
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=30) == 0
        with pytest.raises(OSError):
            socket.create_connection(("127.0.0.1", port), timeout=2).close()
    finally:
        if proc.poll() is None:
            proc.kill()
        for pid in _pids_serving(port):  # the old wrapper's orphan, by its own pid
            os.kill(pid, signal.SIGKILL)


def test_the_suite_runs_on_two_workers_against_a_server_unless_the_caller_chose(tasks, monkeypatch):
    """`python3 tasks.py test` with DATABASE_URL adds `-n 2` (pytest-xdist); not with the embedded server, not on
    Citus, and not when the arguments already say how many workers (or turn xdist off)."""
    monkeypatch.setenv("DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/test")
    monkeypatch.delenv("SHARECART_TEST_CITUS", raising=False)
    assert tasks.parallel_option(["tests/api", "-q"]) == ["-n", "2", "tests/api", "-q"]
    for chosen in (["-n", "4"], ["-n4"], ["--numprocesses=3"], ["-p", "no:xdist"]):
        assert tasks.parallel_option(chosen) == chosen
    monkeypatch.setenv("SHARECART_TEST_CITUS", "postgresql://postgres@127.0.0.1:9700/postgres")
    assert tasks.parallel_option(["-q"]) == ["-q"]
    monkeypatch.delenv("SHARECART_TEST_CITUS")
    monkeypatch.delenv("DATABASE_URL")
    assert tasks.parallel_option(["-q"]) == ["-q"]
