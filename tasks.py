#!/usr/bin/env python3
"""Bootstrap and run Sharecart with nothing but Python 3.11+ installed.

    python3 tasks.py serve   # embedded PostgreSQL, migrations, demo shop, GraphiQL URL + tokens
    python3 tasks.py test    # the whole test suite (pytest args may follow)
    python3 tasks.py test --citus postgresql://postgres@127.0.0.1:9700/postgres
                             # integration + API tests on a Citus cluster (docs/sharding.md)
    python3 tasks.py test --fast   # only the pure tests (engine/, no database): seconds
    python3 tasks.py lint    # ruff check + ruff format --check + mypy (strict engine/, baseline elsewhere), as .ci/run does
    python3 tasks.py typecheck   # mypy only (the pre-commit hook)
    python3 tasks.py lock    # rewrite requirements.lock (what the container installs) from pyproject.toml

Creates ./.venv on first use and reinstalls only when pyproject.toml changes. Then it execs the command
(on POSIX), so `kill <pid>` of `python3 tasks.py serve` stops the server itself.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import venv
from pathlib import Path

ROOT = Path(__file__).resolve().parent
VENV = ROOT / ".venv"
BIN = VENV / ("Scripts" if os.name == "nt" else "bin")
STAMP = VENV / ".sharecart-installed"


def ensure_env() -> None:
    if sys.version_info < (3, 11):
        sys.exit("Sharecart needs Python 3.11 or newer")
    want = hashlib.sha256((ROOT / "pyproject.toml").read_bytes()).hexdigest()
    if STAMP.exists() and STAMP.read_text() == want:
        return
    if not (BIN / "python").exists():
        print("creating .venv ...", flush=True)
        venv.EnvBuilder(with_pip=True).create(VENV)
    print("installing Sharecart and its dependencies into .venv ...", flush=True)
    pip = [str(BIN / "python"), "-m", "pip", "install", "--disable-pip-version-check", "-q"]
    subprocess.check_call(pip + ["--upgrade", "pip"])
    subprocess.check_call(pip + ["-e", f"{ROOT}[test,embedded]"])
    STAMP.write_text(want)


# Debian packages some tests need, by the command they provide: the GraphiQL browser test (chromium) and
# the spreadsheet check of the XLSX export (LibreOffice headless, `soffice`). Those tests skip without them.
TEST_PACKAGES = {"chromium": "chromium", "soffice": "libreoffice-calc-nogui"}


def ensure_test_packages() -> None:
    """Install the missing TEST_PACKAGES in one apt-get call when we can (root + apt-get), else do nothing."""
    import shutil

    missing = [pkg for cmd, pkg in TEST_PACKAGES.items() if not shutil.which(cmd)]
    if not missing or not shutil.which("apt-get") or not hasattr(os, "geteuid") or os.geteuid() != 0:
        return
    print(f"installing {', '.join(missing)} (Debian packages) for the browser and spreadsheet tests ...", flush=True)
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    quiet = {"stdout": subprocess.DEVNULL, "stderr": subprocess.DEVNULL, "env": env}
    install = ["apt-get", "install", "-y", "-qq", *missing]
    if subprocess.call(install, **quiet) != 0:  # stale package lists: refresh once and retry
        subprocess.call(["apt-get", "update", "-qq"], **quiet)
        subprocess.call(install, **quiet)


def parallel_option(args: list[str]) -> list[str]:
    """Two pytest-xdist workers against a PostgreSQL server (DATABASE_URL): the suite halves its time on
    two cores (docs/testing.md). Each worker is a pytest session of its own, so it makes (tests/conftest.py)
    and drops a database of its own. Not with the embedded server (one per session would start two), not on
    Citus (not run in parallel there yet), and not when the caller chose (`-n …`, `-p no:xdist`)."""
    chosen = any(a == "-n" or a.startswith(("-n", "--numprocesses")) or a == "no:xdist" for a in args)
    if chosen or not os.environ.get("DATABASE_URL") or os.environ.get("SHARECART_TEST_CITUS"):
        return args
    return ["-n", "2", *args]


def citus_option(args: list[str]) -> list[str]:
    """`--citus URL` (or `--citus=URL`): run against that Citus coordinator (SHARECART_TEST_CITUS for
    tests/conftest.py); without test paths, the integration and API tests."""
    out, url, it = [], None, iter(args)
    for a in it:
        if a == "--citus":
            url = next(it, None)
            if not url:
                sys.exit("--citus needs the coordinator's URL, e.g. postgresql://postgres@127.0.0.1:9700/postgres")
        elif a.startswith("--citus="):
            url = a.split("=", 1)[1]
        else:
            out.append(a)
    if url is None:
        return out
    os.environ["SHARECART_TEST_CITUS"] = url
    if not any(not a.startswith("-") and (ROOT / a.split("::")[0]).exists() for a in out):
        out = ["tests/integration", "tests/api", *out]
    return out


# The container installs exactly these pins, with their hashes (Dockerfile); uv resolves them for every
# platform at once (--universal) for the image's Python. tests/test_containers.py fails when a dependency of
# pyproject.toml is missing from the lock.
LOCK = [
    "-m",
    "uv",
    "pip",
    "compile",
    "pyproject.toml",
    "--universal",
    "--python-version",
    "3.12",
    "--generate-hashes",
    "--no-header",
    "--quiet",
    "-o",
    "requirements.lock",
]


def lock() -> int:
    pip = [str(BIN / "python"), "-m", "pip", "install", "--disable-pip-version-check", "-q"]
    if subprocess.call([str(BIN / "python"), "-m", "uv", "--version"], stdout=subprocess.DEVNULL) != 0:
        subprocess.check_call(pip + ["uv"])
    return subprocess.call([str(BIN / "python"), *LOCK], cwd=ROOT)


def main(argv: list[str]) -> int:
    if not argv or argv[0] not in ("serve", "test", "lint", "typecheck", "lock"):
        print(__doc__)
        return 2
    ensure_env()
    cmd, rest = argv[0], argv[1:]
    if cmd == "lock":
        return lock()
    if cmd == "serve":
        args = [str(BIN / "sharecart"), "serve", *rest]
    elif cmd == "typecheck":
        os.chdir(ROOT)
        return subprocess.call([str(BIN / "python"), "tools/typecheck.py", *rest])
    elif cmd == "lint":
        os.chdir(ROOT)
        if subprocess.call([str(BIN / "ruff"), "check", "."]) != 0:
            return 1
        if subprocess.call([str(BIN / "ruff"), "format", "--check", "."]) != 0:
            print("the files above are not formatted: `.venv/bin/ruff format .`", file=sys.stderr)
            return 1
        return subprocess.call([str(BIN / "python"), "tools/typecheck.py", *rest])
    elif "--fast" in rest:
        rest = [a for a in rest if a != "--fast"]
        if not any(not a.startswith("-") for a in rest):
            rest.append("tests/engine")
        args = [str(BIN / "python"), "-m", "pytest", "-m", "pure", *rest]
    else:
        ensure_test_packages()
        args = [str(BIN / "python"), "-m", "pytest", *parallel_option(citus_option(rest))]
    os.chdir(ROOT)
    if os.name == "posix":
        # Become the server (or pytest) instead of waiting on it: SIGTERM from a supervisor, Ctrl-C, and the
        # exit status all reach it and come back from it directly, and nothing is left running behind us.
        sys.stdout.flush()
        os.execv(args[0], args)
    return subprocess.call(args)  # Windows has no exec: wait for it (Ctrl-C reaches the whole console)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
