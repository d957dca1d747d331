"""Issue 3 / docs/architecture.md: engine/ is a pure core — stdlib values only, no IO, no clock, no
randomness, no floats. Checked on the syntax tree of every engine/*.py, so a new module is covered the
moment it is added."""

from __future__ import annotations

import ast
import pathlib

import pytest

import engine

ENGINE_DIR = pathlib.Path(engine.__file__).parent
MODULES = sorted(ENGINE_DIR.glob("*.py"))

# What the engine may import: pure stdlib value modules, and itself.
ALLOWED = {"__future__", "dataclasses", "datetime", "enum", "typing", "hashlib", "hmac", "math", "engine"}
# Named so a failure says why: persistence, async, web, network, clocks, randomness, decimals.
FORBIDDEN = {
    "sqlalchemy",
    "asyncio",
    "strawberry",
    "starlette",
    "asyncpg",
    "socket",
    "http",
    "urllib",
    "httpx",
    "requests",
    "aiohttp",
    "ssl",
    "select",
    "selectors",
    "subprocess",
    "os",
    "threading",
    "time",
    "random",
    "secrets",
    "uuid",
    "decimal",
    "fractions",
    "store",
    "service",
    "api",
}
# Exact rationals are fine for statistics (RP-2 rates and intervals, never money), so stats.py alone may
# use them; money stays integer minor units everywhere.
ALLOWED_IN = {"stats.py": {"fractions"}}
CLOCK_CALLS = {"now", "utcnow", "today", "time", "time_ns", "monotonic", "perf_counter"}


def _imports(tree: ast.AST) -> set[str]:
    roots = set()
    for node in ast.walk(tree):  # anywhere: module level, functions, `if TYPE_CHECKING:` blocks
        if isinstance(node, ast.Import):
            roots |= {a.name.split(".")[0] for a in node.names}
        elif isinstance(node, ast.ImportFrom):
            roots.add("engine" if node.level else node.module.split(".")[0])
    return roots


def test_every_engine_module_is_checked():
    names = {m.name for m in MODULES}
    assert {
        "groupbuy.py",
        "lottery.py",
        "variants.py",
        "commission.py",
        "referral.py",
        "levels.py",
        "ledger.py",
        "distribution.py",
        "segments.py",
        "stats.py",
        "money.py",
        "errors.py",
        "__init__.py",
    } <= names


@pytest.mark.parametrize("path", MODULES, ids=lambda p: p.name)
def test_engine_module_is_pure(path):
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    roots = _imports(tree) - ALLOWED_IN.get(path.name, set())
    assert not roots & FORBIDDEN, f"{path.name} imports {sorted(roots & FORBIDDEN)}"
    assert roots <= ALLOWED, f"{path.name} imports outside the pure stdlib: {sorted(roots - ALLOWED)}"
    for node in ast.walk(tree):
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute):
            # datetime.now(), date.today(), time.time() ...: "now" is always an argument (OR-5)
            assert node.func.attr not in CLOCK_CALLS, f"{path.name}:{node.lineno} reads a clock: .{node.func.attr}()"
        if isinstance(node, ast.Name):
            assert node.id not in {"float", "Decimal", "random", "time"}, f"{path.name}:{node.lineno} uses {node.id}"
        if isinstance(node, ast.Constant):
            assert not isinstance(node.value, float), f"{path.name}:{node.lineno} has a float literal"
