#!/usr/bin/env python3
"""Mutation testing for Sharecart: does a test guard the line that runs? (issue 12, point 1)

    .venv/bin/python tools/mutate.py engine/commission.py            # every mutant of one module
    .venv/bin/python tools/mutate.py engine/ --sample 200 --seed 1   # a random sample of a package
    .venv/bin/python tools/mutate.py store/mapping.py --ops kwarg --tests tests/integration/test_rules_wired.py
    .venv/bin/python tools/mutate.py service/usecases/groups.py --lines 120-200 --report /tmp/groups.md
    .venv/bin/python tools/mutate.py service/ --select coverage --sample 200 --seed 21   # tests by coverage

A small AST mutator on top of pytest (mutmut and cosmic-ray rewrite files in the work tree and run
the whole suite per mutant; this one works on a copy and picks the tests by module):

1. The repository (without .git and .venv) is copied to a scratch folder; the work tree is never
   touched, so an interrupted run leaves nothing behind.
2. Each target module is parsed; every site one of the operators below applies to is a mutant:
     cmp     a comparison flipped: < <=, > >=, == !=, in / not in, is / is not
     arith   + -, * //, // *, % *  (money arithmetic)
     const   an int constant n -> n + 1 (0 -> 1, 1 -> 2, 10000 -> 10001)
     bool    True <-> False, `and` <-> `or`, `not x` -> `not not x`
     stmt    a statement that is a call (`emit(...)`, `await f(...)`) or a `raise` becomes `pass`
     kwarg   one keyword argument dropped from a call (the "wiring": a field not mapped, a flag
             not passed, a setting not loaded)
   The `field=`/`rule=` of a refusal (`refuse(...)`) are not dropped: error metadata, checked by
   the API tests of ER-1, not wiring. Docstrings, `assert` statements (invariants: a mutant there only disables a check) and
   `__all__`/type annotations are left alone.
3. For each mutant the module is written back (``ast.unparse``) into the copy and pytest runs the
   module's tests (TESTS below, or --tests) with ``-x`` in a forked child of a process that has
   already imported pytest and the libraries, so a mutant costs its tests, not the start-up.
   Killed = the tests fail (or time out); survived = they pass.
4. The report lists the kill rate per module and every survivor as ``file:line  op  before -> after``.

``--select coverage`` (like mutmut 3) picks the tests per mutant instead of per module: one run of a
broad test set (MAP_TESTS: the engine, integration and API tests and the module sets of TESTS) under
``coverage`` with one context per test (its pytest node id, set for its setup, call and teardown)
gives a map file:line -> the node ids of the tests that execute it (``.mutate/``, rebuilt when a
source or test file changes). A mutant then runs only the tests that execute a line of the node it
changes (fastest first, with ``-x``), in the same forked child. A line that runs only at import
(a ``def`` default, a decorator, a class body) runs in no test's context: its mutants run the
module's TESTS set as before. The map misses some lines that do run (docs/testing.md), so a mutant
that survives its picked tests, or that no test executes, also runs its module's TESTS set before it
counts as a survivor (*survived (no test runs it)* when the map had none). A kill is checked afterwards:
each test that killed a mutant is run alone on the unmutated code, and a mutant whose killer fails there
too counts as an error.

Not in CI: it runs the tests once per mutant (minutes to hours). Needs DATABASE_URL for the tests
that use PostgreSQL, like the suite. Its latest report is in docs/testing.md.
"""

from __future__ import annotations

import argparse
import ast
import copy
import hashlib
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

# Which tests guard which module. A module not listed gets the default of its package.
ENGINE_DEFAULT = ["tests/engine"]
GAPS = "tests/integration/test_service_mutation_gaps.py"  # survivors of the service samples, killed
PLUMB_GAPS = (
    "tests/integration/test_gaps_plumb.py"  # survivors of the per-module runs (docs/testing.md, "Session 2026-12-02 c")
)
PLUMB_UNIT = "tests/test_gaps_plumb.py"  # the same, needing no database
SERVICE_DEFAULT = [
    "tests/integration/test_rules_wired.py",
    "tests/integration/test_group_flows.py",
    "tests/integration/test_distribution_flows.py",
    GAPS,  # the seed-21 gaps are spread over modules with no entry below (visits, reach, campaigns, shops, …)
]
TESTS: dict[str, list[str]] = {
    "engine/groupbuy.py": [
        "tests/engine/test_validation_bounds.py",
        "tests/engine/test_groupbuy_rules.py",
        "tests/engine/test_worked_examples_groupbuy.py",
        "tests/engine/test_groupbuy_properties.py",
        "tests/engine/test_groupbuy_statemachine.py",
        "tests/engine/test_groupbuy_v2_properties.py",  # GB-12..15
        "tests/engine/test_worked_examples_groupbuy_v2.py",
    ],
    "engine/commission.py": [
        "tests/engine/test_validation_bounds.py",
        "tests/engine/test_commission.py",
        "tests/engine/test_worked_examples_distribution.py",
    ],
    "engine/distribution.py": [
        "tests/engine/test_validation_bounds.py",
        "tests/engine/test_distribution_rules.py",
        "tests/engine/test_commission.py",
        "tests/engine/test_referral.py",
        "tests/engine/test_ledger.py",
    ],
    "engine/referral.py": [
        "tests/engine/test_validation_bounds.py",
        "tests/engine/test_referral.py",
        "tests/engine/test_worked_examples_distribution.py",
    ],
    "engine/levels.py": [
        "tests/engine/test_validation_bounds.py",
        "tests/engine/test_levels.py",
        "tests/engine/test_worked_examples_distribution.py",
    ],
    "engine/ledger.py": ["tests/engine/test_validation_bounds.py", "tests/engine/test_ledger.py"],
    "engine/lottery.py": ["tests/engine/test_lottery.py", "tests/engine/test_groupbuy_rules.py"],
    "engine/variants.py": ["tests/engine/test_variants.py"],
    "engine/stats.py": ["tests/engine/test_validation_bounds.py", "tests/engine/test_stats.py"],
    "engine/segments.py": ["tests/engine/test_segments.py"],
    "engine/money.py": ["tests/engine/test_money.py", "tests/engine/test_commission.py", "tests/engine/test_ledger.py"],
    "engine/errors.py": ENGINE_DEFAULT,
    "engine/events.py": ["tests/engine/test_validation_bounds.py", "tests/engine/test_event_catalog.py"],
    "store/mapping.py": ["tests/integration/test_rules_wired.py"],
    "service/usecases/refunds.py": SERVICE_DEFAULT + ["tests/integration/test_refunds.py"],
    "service/usecases/payouts.py": [
        "tests/integration/test_rules_wired.py",
        "tests/integration/test_concurrency.py",
        GAPS,
    ],
    "service/tx/commissions.py": SERVICE_DEFAULT + ["tests/integration/test_worker_batch.py"],
    "service/usecases/orders.py": SERVICE_DEFAULT
    + ["tests/integration/test_money_paths.py", "tests/integration/test_refunds.py"],
    "service/usecases/groups.py": SERVICE_DEFAULT + ["tests/integration/test_groupbuy_v2.py"],  # GB-12..15
    "service/tx/fraud.py": SERVICE_DEFAULT + ["tests/integration/test_fraud_review.py"],
    "service/usecases/fraud.py": SERVICE_DEFAULT + ["tests/integration/test_fraud_review.py"],  # FR-4 events
    "service/usecases/settlements.py": ["tests/integration/test_settlements.py"],
    "service/usecases/webhooks.py": [
        "tests/integration/test_webhooks.py",
        "tests/integration/test_webhook_hardening.py",
        GAPS,
    ],
    "service/tx/events.py": ["tests/integration/test_events.py", "tests/engine/test_event_catalog.py"],
    "service/tx/idempotency.py": ["tests/integration/test_idempotency.py"],
    "service/tx/ledger.py": [
        "tests/integration/test_books_in_the_database.py",
        "tests/integration/test_money_paths.py",
        "tests/integration/test_rules_wired.py",
        "tests/integration/test_worker_batch.py",
    ],
    "service/tx/lean.py": ["tests/integration/test_lean_path.py"] + SERVICE_DEFAULT,
    "service/reads/reports.py": ["tests/integration/test_reports.py", GAPS],
    "service/reads/exports.py": ["tests/integration/test_settlements.py"],
    "service/reads/queries.py": ["tests/integration/test_reads_catch_up.py", "tests/integration/test_event_feed.py"],
    "service/reads/listings.py": ["tests/api/test_staff_lists.py"],
    "service/jobs/worker.py": [
        "tests/integration/test_worker.py",
        "tests/integration/test_worker_ops.py",
        GAPS,
        PLUMB_GAPS,
    ],
    "service/jobs/heartbeat.py": ["tests/integration/test_worker_ops.py", PLUMB_GAPS],
    "service/jobs/feed.py": ["tests/integration/test_event_feed.py", PLUMB_GAPS],
    "service/settings.py": ["tests/test_settings.py", PLUMB_UNIT],
    "service/currencies.py": ["tests/test_currencies.py", PLUMB_UNIT],
    "service/metrics.py": [PLUMB_UNIT, "tests/test_availability.py", PLUMB_GAPS],
    "service/webhook_targets.py": ["tests/integration/test_webhook_hardening.py", GAPS],
    "service/availability.py": ["tests/test_availability.py", PLUMB_UNIT, "tests/integration/test_worker_ops.py"],
    "service/usecases/demo.py": [PLUMB_GAPS, "tests/api/test_walkthrough.py", GAPS],
}

CMP_FLIP = {
    ast.Lt: ast.LtE,
    ast.LtE: ast.Lt,
    ast.Gt: ast.GtE,
    ast.GtE: ast.Gt,
    ast.Eq: ast.NotEq,
    ast.NotEq: ast.Eq,
    ast.In: ast.NotIn,
    ast.NotIn: ast.In,
    ast.Is: ast.IsNot,
    ast.IsNot: ast.Is,
}
ARITH_FLIP = {ast.Add: ast.Sub, ast.Sub: ast.Add, ast.Mult: ast.FloorDiv, ast.FloorDiv: ast.Mult, ast.Mod: ast.Mult}
REFUSALS = {"refuse", "_invalid"}  # their `field=`/`rule=` are error metadata, not wiring: not mutated
OPS = ("cmp", "arith", "const", "bool", "stmt", "kwarg")


@dataclass(frozen=True)
class Mutant:
    path: str  # relative to the repository
    index: int  # the n-th site of this operator in the module, in ast.walk order
    op: str
    line: int
    before: str
    after: str
    span: tuple[int, int] = (0, 0)  # the lines of the node it changes: --select coverage runs the tests of these


def _skipped_nodes(tree: ast.AST) -> set[int]:
    """ids of nodes never mutated: docstrings, asserts, annotations, __all__."""
    skip: set[int] = set()

    def mark(node: ast.AST) -> None:
        for n in ast.walk(node):
            skip.add(id(n))

    for node in ast.walk(tree):
        if isinstance(node, (ast.Module, ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            body = node.body
            if (
                body
                and isinstance(body[0], ast.Expr)
                and isinstance(body[0].value, ast.Constant)
                and isinstance(body[0].value.value, str)
            ):
                mark(body[0])
        if isinstance(node, ast.Assert):
            mark(node)
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            if node.returns is not None:
                mark(node.returns)
            for a in node.args.args + node.args.kwonlyargs + node.args.posonlyargs:
                if a.annotation is not None:
                    mark(a.annotation)
        if isinstance(node, ast.AnnAssign):
            mark(node.annotation)
        if isinstance(node, ast.Assign) and any(isinstance(t, ast.Name) and t.id == "__all__" for t in node.targets):
            mark(node)
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            mark(node)
    return skip


def _sites(tree: ast.AST, op: str):
    """Yield (node, parent_info, mutate) for every site of `op`; `mutate(node)` changes a deep copy in place."""
    skip = _skipped_nodes(tree)
    for node in ast.walk(tree):
        if id(node) in skip:
            continue
        if op == "cmp" and isinstance(node, ast.Compare):
            for i, o in enumerate(node.ops):
                if type(o) in CMP_FLIP:
                    yield node, (lambda n, i=i: n.ops.__setitem__(i, CMP_FLIP[type(n.ops[i])]()))
        elif op == "arith" and isinstance(node, (ast.BinOp, ast.AugAssign)) and type(node.op) in ARITH_FLIP:
            yield node, (lambda n: setattr(n, "op", ARITH_FLIP[type(n.op)]()))
        elif op == "const" and isinstance(node, ast.Constant) and type(node.value) is int:
            yield node, (lambda n: setattr(n, "value", n.value + 1))
        elif op == "bool":
            if isinstance(node, ast.Constant) and type(node.value) is bool:
                yield node, (lambda n: setattr(n, "value", not n.value))
            elif isinstance(node, ast.BoolOp):
                yield node, (lambda n: setattr(n, "op", ast.Or() if isinstance(n.op, ast.And) else ast.And()))
            elif isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.Not):
                yield node, (lambda n: setattr(n, "operand", ast.UnaryOp(ast.Not(), n.operand)))  # not not x
        elif op == "stmt":
            for field in ("body", "orelse", "finalbody"):
                stmts = getattr(node, field, None)
                if not isinstance(stmts, list):
                    continue
                for i, st in enumerate(stmts):
                    if id(st) in skip:
                        continue
                    if (isinstance(st, ast.Expr) and isinstance(st.value, (ast.Call, ast.Await))) or isinstance(
                        st, ast.Raise
                    ):
                        yield st, (lambda n, parent=node, f=field, i=i: None)  # replaced via parent below
        elif op == "kwarg" and isinstance(node, ast.Call):
            refusal = isinstance(node.func, ast.Name) and node.func.id in REFUSALS
            for i, kw in enumerate(node.keywords):
                if kw.arg is not None and not (refusal and kw.arg in ("field", "rule")):
                    yield node, (lambda n, i=i: n.keywords.pop(i))


def _apply(tree: ast.Module, op: str, index: int) -> tuple[ast.Module, ast.AST, ast.AST]:
    """A deep copy of `tree` with the `index`-th site of `op` mutated; returns (tree, before, after)."""
    new = copy.deepcopy(tree)
    for k, (node, mutate) in enumerate(_sites(new, op)):
        if k != index:
            continue
        before = copy.deepcopy(node)
        if op == "stmt":
            _replace_stmt(new, node)
            return new, before, ast.Pass()
        mutate(node)
        return new, before, node
    raise IndexError(index)


def _replace_stmt(tree: ast.AST, target: ast.stmt) -> None:
    for node in ast.walk(tree):
        for field in ("body", "orelse", "finalbody"):
            stmts = getattr(node, field, None)
            if isinstance(stmts, list):
                for i, st in enumerate(stmts):
                    if st is target:
                        stmts[i] = ast.copy_location(ast.Pass(), target)
                        return
    raise LookupError("statement not found")


def _short(node: ast.AST, limit: int = 70) -> str:
    s = " ".join(ast.unparse(node).split())
    return s if len(s) <= limit else s[: limit - 1] + "…"


def mutants_of(path: str, ops=OPS, lines: tuple[int, int] | None = None) -> list[Mutant]:
    tree = ast.parse((ROOT / path).read_text(), filename=path)
    out: list[Mutant] = []
    for op in ops:
        for k, (node, mutate) in enumerate(_sites(tree, op)):
            line = getattr(node, "lineno", 0)
            if lines and op != "kwarg" and not lines[0] <= line <= lines[1]:  # a kwarg: its argument's line, below
                continue
            # what _apply(tree, op, k) does to the k-th site, on a copy of that node only (a copy of the whole
            # tree per site made listing the 4 000 sites of service/ take minutes)
            before = copy.deepcopy(node)
            after: ast.AST = ast.Pass()
            if op != "stmt":
                after = copy.deepcopy(node)
                mutate(after)
            if op == "kwarg":  # name the dropped argument, on its own line
                dropped = next(kw for kw in before.keywords if not any(kw.arg == a.arg for a in after.keywords))  # type: ignore[attr-defined]
                line = dropped.value.lineno
                if lines and not lines[0] <= line <= lines[1]:
                    continue
                out.append(Mutant(path, k, op, line, _short(dropped), "(argument dropped)", _span(node)))
                continue
            out.append(Mutant(path, k, op, line, _short(before), _short(after), _span(node)))
    return out


def _span(node: ast.AST) -> tuple[int, int]:
    start = getattr(node, "lineno", 0)
    return start, getattr(node, "end_lineno", None) or start


def _gap_files() -> list[str]:
    """Every `tests/integration/test_gaps_*.py`: each kills survivors of several modules, so each module's set
    has them all (a gap test left out of a set let its mutant survive the fallback again: seed 71)."""
    return sorted(str(p.relative_to(ROOT)) for p in (ROOT / "tests" / "integration").glob("test_gaps_*.py"))


def tests_for(path: str) -> list[str]:
    if path.startswith("engine/"):
        return TESTS.get(path, ENGINE_DEFAULT)
    own = TESTS.get(path, SERVICE_DEFAULT)
    return own + [g for g in _gap_files() if g not in own]


def fallback_for(path: str) -> list[str]:
    """With --select coverage: what a mutant the map cannot place (a line run at import) or a survivor of its
    picked tests meets before it counts. An engine module's is every engine test (pure, well under a minute):
    a module set misses the tests of a later rule version (seed 72 met GB-15's defaults that way)."""
    return ENGINE_DEFAULT if path.startswith("engine/") else tests_for(path)


# ---------------------------------------------------------------- running
def _copy_tree(dest: Path) -> None:
    ignore = shutil.ignore_patterns(".git", ".venv", ".mutate", "__pycache__", ".pytest_cache", "*.pyc", ".hypothesis")
    shutil.copytree(ROOT, dest, ignore=ignore, dirs_exist_ok=True)


def _run_pytest_forked(
    workdir: Path, tests: list[str], timeout: float, plugins: list | None = None, report: Path | None = None
) -> str:
    """'killed', 'survived', 'timeout' or 'error' for one pytest run in a forked child.

    Each child is a pytest session of its own, so it makes (tests/conftest.py) and drops a database of its
    own, named after its pid: mutants never share database state. A child killed at its timeout cannot drop
    it, so the parent does (`_drop_databases_of`). With `report`, the child writes there the node id of the
    first test that failed (the killer)."""
    pid = os.fork()
    if pid == 0:  # child
        try:
            os.setpgid(0, 0)  # its own process group: a timeout also ends what the tests started
            os.chdir(workdir)
            sys.path.insert(0, str(workdir))
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, 1)
            os.dup2(devnull, 2)
            import pytest

            extra = list(plugins or [])
            if report is not None:
                extra.append(_FirstFailure(report))
            code = pytest.main(
                ["-x", "-q", "-p", "no:cacheprovider", "-p", "no:randomly", "-o", "addopts=", "--no-header", *tests],
                plugins=extra,
            )
            os._exit(int(code))
        except BaseException:
            os._exit(3)
    deadline = time.monotonic() + timeout
    while True:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            code = os.waitstatus_to_exitcode(status)
            if code == 0:
                return "survived"
            if code in (1,):  # tests failed
                return "killed"
            return "killed" if code not in (4, 5) else "error"  # 2/3 interrupted/internal: the mutant broke it
        if time.monotonic() > deadline:
            try:
                os.killpg(pid, signal.SIGKILL)
            except ProcessLookupError:
                os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
            _drop_databases_of(pid)
            return "timeout"
        time.sleep(0.05)


class _FirstFailure:
    """pytest plugin (in the child): the node id of the first failed test goes to `path`."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def pytest_runtest_logreport(self, report) -> None:  # noqa: ANN001
        if report.failed and not self.path.exists():
            self.path.write_text(report.nodeid)

    def pytest_collectreport(self, report) -> None:  # noqa: ANN001
        if report.failed and not self.path.exists():
            self.path.write_text(f"(collection of {report.nodeid})")


def _drop_databases_of(pid: int) -> None:
    """Drop the test databases a killed child left (tests/conftest.py names them sharecart_t_<pid>_<hex>)."""
    url = os.environ.get("DATABASE_URL")
    if not url:
        return
    code = f"""
import asyncio, asyncpg
async def main():
    c = await asyncpg.connect({url!r})
    try:
        for (name,) in await c.fetch("SELECT datname FROM pg_database WHERE datname LIKE $1", "sharecart_t_{pid}_%"):
            await c.execute('DROP DATABASE IF EXISTS "' + name + '" WITH (FORCE)')
    finally:
        await c.close()
asyncio.run(main())
"""
    subprocess.run([sys.executable, "-c", code], check=False, timeout=60, stdout=subprocess.DEVNULL)


# ---------------------------------------------------------------- --select coverage
# The broad set whose coverage maps each line to its tests (plus every file of TESTS).
MAP_TESTS = [
    "tests/engine",
    "tests/integration",
    "tests/api",
    "tests/test_settings.py",
    "tests/test_currencies.py",
    "tests/test_availability.py",
]
MAP_SOURCES = ("engine", "service", "store")  # the packages measured
MAP_DIR = ROOT / ".mutate"


def _map_tests(extra: list[str] | None) -> list[str]:
    tests = list(extra) if extra else list(MAP_TESTS)
    if not extra:
        for ts in TESTS.values():
            tests += [t for t in ts if not any(t == m or t.startswith(m.rstrip("/") + "/") for m in MAP_TESTS)]
    return sorted(set(tests))


def _digest(map_tests: list[str]) -> str:
    """What the map depends on: every Python file of the project and its tests, and the test set."""
    h = hashlib.sha256(json.dumps(map_tests).encode())
    for top in ("engine", "service", "store", "api", "tests"):
        for f in sorted((ROOT / top).rglob("*.py")):
            h.update(str(f.relative_to(ROOT)).encode())
            h.update(f.read_bytes())
    return h.hexdigest()


class _Contexts:
    """pytest plugin (in the map child): coverage's context is the node id of the running test, from its setup
    to its teardown; between tests (collection, imports) it is empty. Also records each test's outcome and time."""

    def __init__(self, cov) -> None:  # noqa: ANN001
        self.cov = cov
        self.outcomes: dict[str, str] = {}
        self.seconds: dict[str, float] = {}

    def pytest_runtest_logstart(self, nodeid, location) -> None:  # noqa: ANN001
        self.cov.switch_context(nodeid)
        self._t0 = time.monotonic()

    def pytest_runtest_logfinish(self, nodeid, location) -> None:  # noqa: ANN001
        self.cov.switch_context("")
        self.seconds[nodeid] = time.monotonic() - self._t0

    def pytest_runtest_logreport(self, report) -> None:  # noqa: ANN001
        if report.failed:
            self.outcomes[report.nodeid] = "failed"
        elif report.skipped:
            self.outcomes.setdefault(report.nodeid, "skipped")
        elif report.when == "call":
            self.outcomes.setdefault(report.nodeid, "passed")


def build_map(work: Path, map_tests: list[str], out: Path, timeout: float) -> dict:
    """Run `map_tests` once in a forked child under coverage, one context per test; write and return the map
    {"lines": {path: {line: [test indexes]}}, "tests": [node ids], "seconds": [...], "failed": [...]}."""
    data_file = out.with_suffix(".coverage")
    side = out.with_suffix(".tests.json")
    for f in (data_file, side):
        f.unlink(missing_ok=True)
    pid = os.fork()
    if pid == 0:
        try:
            os.setpgid(0, 0)
            os.chdir(work)
            sys.path.insert(0, str(work))
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, 1)
            os.dup2(devnull, 2)
            import coverage
            import pytest

            cov = coverage.Coverage(
                data_file=str(data_file), source=[str(work / p) for p in MAP_SOURCES], branch=False, config_file=False
            )
            cov.start()
            plugin = _Contexts(cov)
            code = pytest.main(
                ["-q", "-p", "no:cacheprovider", "-p", "no:randomly", "-o", "addopts=", "--no-header", *map_tests],
                plugins=[plugin],
            )
            cov.stop()
            cov.save()
            side.write_text(json.dumps({"outcomes": plugin.outcomes, "seconds": plugin.seconds, "code": int(code)}))
            os._exit(0)
        except BaseException:
            os._exit(3)
    t0 = time.monotonic()
    while True:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            break
        if time.monotonic() - t0 > timeout:
            os.killpg(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
            _drop_databases_of(pid)
            raise SystemExit(f"the coverage run of {map_tests} took more than {timeout:.0f} s")
        time.sleep(0.2)
    if os.waitstatus_to_exitcode(status) != 0 or not side.exists():
        raise SystemExit("the coverage run failed (run the map tests by hand to see why)")
    import coverage

    side_data = json.loads(side.read_text())
    cov_data = coverage.CoverageData(basename=str(data_file))
    cov_data.read()
    tests = sorted(n for n, o in side_data["outcomes"].items() if o == "passed")
    index = {n: i for i, n in enumerate(tests)}
    lines: dict[str, dict[str, list[int]]] = {}
    import_time: dict[str, list[int]] = {}
    for f in cov_data.measured_files():
        rel = str(Path(f).resolve().relative_to(work.resolve()))
        by_line = cov_data.contexts_by_lineno(f)
        lines[rel] = {str(ln): sorted({index[c] for c in cs if c in index}) for ln, cs in by_line.items()}
        import_time[rel] = sorted(ln for ln, cs in by_line.items() if "" in cs)
    result = {
        "tests": tests,
        "seconds": [side_data["seconds"].get(n, 0.0) for n in tests],
        "failed": sorted(n for n, o in side_data["outcomes"].items() if o == "failed"),
        "skipped": sorted(n for n, o in side_data["outcomes"].items() if o == "skipped"),
        "lines": lines,
        "import_time": import_time,
        "minutes": (time.monotonic() - t0) / 60,
    }
    out.write_text(json.dumps(result))
    data_file.unlink(missing_ok=True)
    return result


def load_map(work: Path, map_tests: list[str], rebuild: bool, timeout: float) -> dict:
    MAP_DIR.mkdir(exist_ok=True)
    digest = _digest(map_tests)
    path = MAP_DIR / f"map-{digest[:16]}.json"
    if path.exists() and not rebuild:
        return json.loads(path.read_text())
    print(
        f"building the coverage map: {len(map_tests)} test paths under coverage (once per code state) ...", flush=True
    )
    m = build_map(work, map_tests, path, timeout)
    print(
        f"map: {len(m['tests'])} tests passed ({len(m['failed'])} failed, {len(m['skipped'])} skipped: not used), "
        f"{m['minutes']:.1f} min",
        flush=True,
    )
    return m


def select_tests(cmap: dict, m: Mutant) -> tuple[str, list[str]]:
    """('tests', node ids fastest first) | ('module', []) for an import-time line | ('none', []) when no test runs it."""
    by_line = cmap["lines"].get(m.path, {})
    lo, hi = m.span
    chosen: set[int] = set()
    for ln in range(lo, hi + 1):
        chosen.update(by_line.get(str(ln), ()))
    if any(lo <= ln <= hi for ln in cmap["import_time"].get(m.path, ())):
        return "module", []
    if not chosen:  # not executed, or only by tests that failed or were skipped in the map run
        return "none", []
    seconds = cmap["seconds"]
    return "tests", [cmap["tests"][i] for i in sorted(chosen, key=lambda i: (seconds[i], i))]


def main(argv: list[str]) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("targets", nargs="+", help="modules or packages (engine/, service/usecases/groups.py, …)")
    ap.add_argument("--ops", default=",".join(OPS), help=f"comma-separated subset of {','.join(OPS)}")
    ap.add_argument("--tests", nargs="*", help="test files to run instead of the module's own (TESTS)")
    ap.add_argument("--sample", type=int, help="run only N mutants drawn at random (with --seed)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--skip", type=int, default=0, help="leave out the first N mutants of the (sampled) list")
    ap.add_argument("--lines", help="only mutants on lines A-B (one target)")
    ap.add_argument(
        "--positions", help="only these positions (1-based, comma-separated) of the sampled list, after --skip"
    )
    ap.add_argument("--timeout", type=float, default=120.0, help="seconds per mutant (a timeout counts as killed)")
    ap.add_argument("--report", help="also write the report (markdown) to this file")
    ap.add_argument(
        "--budget",
        type=float,
        help="minutes: start no mutant after this (a shared machine); the report says how many ran",
    )
    ap.add_argument("--list", action="store_true", help="list the mutants and exit")
    ap.add_argument(
        "--select",
        choices=("module", "coverage"),
        default="module",
        help="module: each mutant runs its module's TESTS (or --tests); coverage: the tests that execute its lines",
    )
    ap.add_argument(
        "--map-tests", nargs="*", help="with --select coverage: the tests to map (default MAP_TESTS + TESTS)"
    )
    ap.add_argument("--rebuild-map", action="store_true", help="build the coverage map again even if it is current")
    ap.add_argument(
        "--no-fallback", action="store_true", help="with --select coverage: a survivor does not also run the module set"
    )
    ap.add_argument("--map-timeout", type=float, default=3600.0, help="seconds for the coverage run")
    args = ap.parse_args(argv)

    ops = tuple(o for o in args.ops.split(",") if o)
    assert set(ops) <= set(OPS), f"unknown operator in {ops}"
    paths: list[str] = []
    for t in args.targets:
        p = (ROOT / t).resolve()
        if p.is_dir():
            paths += sorted(str(f.relative_to(ROOT)) for f in p.rglob("*.py") if f.name != "__init__.py")
        else:
            paths.append(str(p.relative_to(ROOT)))
    lines = tuple(int(x) for x in args.lines.split("-")) if args.lines else None
    mutants = [m for p in paths for m in mutants_of(p, ops, lines)]  # type: ignore[arg-type]
    total_sites = len(mutants)
    if args.sample and args.sample < len(mutants):
        mutants = random.Random(args.seed).sample(mutants, args.sample)  # random order: a --budget stops anywhere
    if args.skip:  # a second process on the same sample: positions skip+1 … (still a random draw)
        mutants = mutants[args.skip :]
    if args.positions:  # re-check some mutants of a run (its survivors, say) by their [n/N] positions
        wanted = {int(x) for x in args.positions.split(",")}
        mutants = [m for n, m in enumerate(mutants, 1) if n in wanted]
    if args.list:
        for m in mutants:
            print(f"{m.path}:{m.line}  {m.op:<5}  {m.before}  ->  {m.after}")
        print(f"{len(mutants)} mutants")
        return 0

    sys.dont_write_bytecode = True
    # import what the tests need once, before forking (not the project: the child imports the mutant)
    import hypothesis  # noqa: F401
    import pytest  # noqa: F401
    import sqlalchemy.ext.asyncio  # noqa: F401

    work = Path(tempfile.mkdtemp(prefix="sharecart-mutate-"))
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # so the scratch copy is removed (finally below)
    results: list[tuple[Mutant, str, float]] = []
    started = time.monotonic()
    try:
        _copy_tree(work)
        trees = {p: ast.parse((ROOT / p).read_text()) for p in paths}
        checked: set[tuple[str, ...]] = set()
        for p in paths:  # baseline: the unmutated module must pass its tests, else the run means nothing
            if args.select == "coverage":
                break  # the coverage run is the baseline (a test that failed there is never picked)
            tests = tuple(args.tests or tests_for(p))
            if not any(m.path == p for m in mutants) or tests in checked:
                continue  # one baseline per distinct test set: most service modules share one
            checked.add(tests)
            base = _run_pytest_forked(work, list(tests), args.timeout * 3)
            if base != "survived":
                print(f"baseline failed for {p} ({base}): fix the tests first", file=sys.stderr)
                return 2
        cmap = None
        if args.select == "coverage":
            cmap = load_map(work, _map_tests(args.map_tests), args.rebuild_map, args.map_timeout)
        killers: dict[Mutant, str] = {}
        for n, m in enumerate(mutants, 1):
            if args.budget and time.monotonic() - started > args.budget * 60:
                print(f"budget of {args.budget} min spent: {n - 1} of {len(mutants)} mutants run", flush=True)
                break
            tests = args.tests or tests_for(m.path)
            how = "module"
            if cmap is not None:
                how, picked = select_tests(cmap, m)
                tests = picked if how == "tests" else args.tests or fallback_for(m.path)
            t0 = time.monotonic()
            mutated, _, _ = _apply(trees[m.path], m.op, m.index)
            target = work / m.path
            target.write_text(ast.unparse(ast.fix_missing_locations(mutated)) + "\n")
            killer = work / ".mutate-killer"
            killer.unlink(missing_ok=True)
            if how == "none":
                outcome = "no test"
            else:
                outcome = _run_pytest_forked(work, tests, args.timeout, report=killer)
            if cmap is not None and how != "module" and outcome in ("survived", "no test") and not args.no_fallback:
                # the map can miss a line that runs (coverage's C tracer loses some lines of coroutines on
                # Python 3.11: docs/testing.md), so a survivor also meets its module's tests: never weaker
                # than --select module
                killer.unlink(missing_ok=True)
                again = _run_pytest_forked(work, args.tests or fallback_for(m.path), args.timeout, report=killer)
                if again in ("killed", "timeout"):
                    outcome, how = again, how + "+module"
            target.write_text((ROOT / m.path).read_text())
            if outcome == "killed" and killer.exists():
                killers[m] = killer.read_text()
            dt = time.monotonic() - t0
            results.append((m, outcome, dt))
            mark = {"killed": ".", "timeout": "T", "survived": "S", "error": "E", "no test": "N"}[outcome]
            picked_note = {
                "tests": f" [{len(tests)} tests]",
                "module": " [module set]",
                "none": " [no test]",
                "tests+module": f" [{len(tests)} tests survived; killed by the module set]",
                "none+module": " [no test; killed by the module set]",
            }[how]
            picked_note = picked_note if cmap is not None else ""
            print(
                f"[{n}/{len(mutants)}] {mark} {m.path}:{m.line} {m.op} {m.before} -> {m.after} ({dt:.1f}s){picked_note}",
                flush=True,
            )
        if cmap is not None:  # a kill counts only if its killer passes alone on the unmutated code
            verdict: dict[str, str] = {}
            for nodeid in sorted(set(killers.values())):
                if nodeid.startswith("(collection"):
                    verdict[nodeid] = "survived"  # the mutant broke an import: a kill
                    continue
                verdict[nodeid] = _run_pytest_forked(work, [nodeid], args.timeout * 3)
                if verdict[nodeid] != "survived":
                    print(f"killer {nodeid} fails on the unmutated code too ({verdict[nodeid]})", flush=True)
            results = [
                (m, "error" if o == "killed" and verdict.get(killers.get(m, ""), "survived") != "survived" else o, dt)
                for m, o, dt in results
            ]
    finally:
        shutil.rmtree(work, ignore_errors=True)

    report = render(results, total_sites, args, time.monotonic() - started)
    print(report)
    if args.report:
        Path(args.report).write_text(report)
    return 0


def wilson_low(k: int, n: int, z: float = 1.96) -> float:
    """The lower end of the Wilson 95 % interval of a proportion k/n (0 when n is 0)."""
    if n == 0:
        return 0.0
    p = k / n
    centre = p + z * z / (2 * n)
    margin = z * ((p * (1 - p) + z * z / (4 * n)) / n) ** 0.5
    return (centre - margin) / (1 + z * z / n)


def render(results, total_sites: int, args, seconds: float) -> str:
    by_path: dict[str, list] = {}
    for m, outcome, _ in results:
        by_path.setdefault(m.path, []).append((m, outcome))
    out = [
        f"Mutants run: {len(results)} of {total_sites} sites (ops {args.ops}; "
        f"{'sample ' + str(args.sample) + ', seed ' + str(args.seed) if args.sample else 'all'}; "
        f"tests by {getattr(args, 'select', 'module')}), {seconds / 60:.1f} min",
        "",
        "| module | mutants | killed | timed out | survived | no test runs it | kill rate |",
        "|---|---|---|---|---|---|---|",
    ]
    k_all = t_all = n_all = z_all = 0
    for path, rs in sorted(by_path.items()):
        k = sum(1 for _, o in rs if o == "killed")
        t = sum(1 for _, o in rs if o == "timeout")
        z = sum(1 for _, o in rs if o == "no test")
        n = sum(1 for _, o in rs if o != "error")
        k_all, t_all, n_all, z_all = k_all + k, t_all + t, n_all + n, z_all + z
        out.append(f"| {path} | {n} | {k} | {t} | {n - k - t - z} | {z} | {100 * (k + t) / n if n else 100:.1f} % |")
    out.append(
        f"| **all** | {n_all} | {k_all} | {t_all} | {n_all - k_all - t_all - z_all} | {z_all} | "
        f"{100 * (k_all + t_all) / n_all if n_all else 100:.1f} % |"
    )
    out.append("")
    out.append(
        f"Kill rate {k_all + t_all}/{n_all}, Wilson 95 % lower bound {100 * wilson_low(k_all + t_all, n_all):.1f} %. "
        "A timeout counts as killed (as mutmut does); on a loaded machine a timeout may be slowness."
    )
    survivors = [m for m, o, _ in results if o in ("survived", "no test")]
    if survivors:
        out += ["", "Survivors:", ""]
        out += [
            f"- `{m.path}:{m.line}` {m.op}: `{m.before}` → `{m.after}`"
            + (" (survived: no test runs it)" if o == "no test" else "")
            for m, o, _ in results
            if o in ("survived", "no test")
        ]
    timeouts = [m for m, o, _ in results if o == "timeout"]
    if timeouts:
        out += ["", "Timed out:", ""]
        out += [f"- `{m.path}:{m.line}` {m.op}: `{m.before}` → `{m.after}`" for m in timeouts]
    errors = [m for m, o, _ in results if o == "error"]
    if errors:
        out += ["", "Not counted (pytest could not collect or run, or the killer fails unmutated too):", ""]
        out += [f"- `{m.path}:{m.line}` {m.op}: `{m.before}` → `{m.after}`" for m in errors]
    return "\n".join(out) + "\n"


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
