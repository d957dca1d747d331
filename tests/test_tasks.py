"""tasks.py installs the Debian packages some tests need (chromium, LibreOffice) in one apt-get call."""

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
    monkeypatch.setattr(tasks.subprocess, "call", lambda args, **kw: calls.append(args) or
                        (apt_rc if args[1] == "install" else 0))
    return calls


def test_installs_both_missing_packages_in_one_call(monkeypatch, tasks):
    calls = _fake(monkeypatch, tasks, present=set())
    tasks.ensure_test_packages()
    assert calls == [["apt-get", "install", "-y", "-qq", "chromium", "libreoffice-calc-nogui"]]


def test_installs_only_what_is_missing_and_refreshes_lists_once_on_failure(monkeypatch, tasks):
    calls = _fake(monkeypatch, tasks, present={"chromium"}, apt_rc=100)
    tasks.ensure_test_packages()
    assert calls == [["apt-get", "install", "-y", "-qq", "libreoffice-calc-nogui"], ["apt-get", "update", "-qq"],
                     ["apt-get", "install", "-y", "-qq", "libreoffice-calc-nogui"]]


def test_does_nothing_without_root_or_when_everything_is_there(monkeypatch, tasks):
    calls = _fake(monkeypatch, tasks, present=set(), root=False)
    tasks.ensure_test_packages()
    calls += _fake(monkeypatch, tasks, present={"chromium", "soffice"})
    tasks.ensure_test_packages()
    assert calls == []
