"""Issue 13 point 5: every environment variable in one Settings class (service/settings.py), each with its
default and meaning in docs/configuration.md, validated at start with one clear line."""

from __future__ import annotations

import ast
import re
import subprocess
import sys
from pathlib import Path

import pytest

from service.settings import Settings, env_names

ROOT = Path(__file__).resolve().parents[1]
PRODUCT = ("engine", "store", "service", "api", "migrations")
DOC = ROOT / "docs" / "configuration.md"


def _tables() -> tuple[dict[str, tuple[str, str]], set[str]]:
    """(service table: variable -> (default, meaning), tool variables) from docs/configuration.md."""
    text = DOC.read_text(encoding="utf-8")
    service_part, _, tools_part = text.partition("## Tools")
    row = re.compile(r"^\| `([A-Z0-9_]+)` \| ([^|]*) \| (.*) \|$", re.M)
    service = {m[1]: (m[2].strip(), m[3].strip()) for m in row.finditer(service_part)}
    tools = {m[1] for m in row.finditer(tools_part.split("## Adding")[0])}
    return service, tools


def _doc_default(value) -> str:
    if value is None:
        return "unset"
    if isinstance(value, bool):
        return "1" if value else "0"
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def test_the_table_lists_exactly_the_settings_with_their_defaults():
    service, _ = _tables()
    names = env_names()
    fields_by_env = {env: name for name, env in names.items()}
    assert set(service) == set(fields_by_env), (
        f"docs/configuration.md lacks {sorted(set(fields_by_env) - set(service))}, "
        f"lists unknown {sorted(set(service) - set(fields_by_env))}"
    )
    for env, (default, meaning) in service.items():
        field = Settings.model_fields[fields_by_env[env]]
        assert default == _doc_default(field.default), (env, default, field.default)
        assert meaning and field.description, f"{env} needs a meaning in the table and a description in Settings"


def _env_reads(path: Path) -> list[tuple[int, str]]:
    """(line, variable or '?') of every read of the environment: os.environ[...] / .get(...), os.getenv(...)."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    out = []
    for node in ast.walk(tree):
        target, key = None, None
        if isinstance(node, ast.Subscript) and isinstance(node.ctx, ast.Load):
            target, key = node.value, node.slice
        elif isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute):
            if node.func.attr == "get":
                target = node.func.value
            elif node.func.attr == "getenv":
                target = ast.Attribute(value=node.func.value, attr="environ")
            key = node.args[0] if node.args else None
        if (
            isinstance(target, ast.Attribute)
            and target.attr == "environ"
            or isinstance(target, ast.Name)
            and target.id == "environ"
        ):
            out.append((node.lineno, key.value if isinstance(key, ast.Constant) else "?"))
    return out


def test_no_product_code_reads_the_environment_but_the_settings_module():
    found = []
    for package in PRODUCT:
        for path in sorted((ROOT / package).rglob("*.py")):
            if path == ROOT / "service" / "settings.py":
                continue
            found += [f"{path.relative_to(ROOT)}:{line} reads {var}" for line, var in _env_reads(path)]
    assert found == [], (
        f"read settings through service.settings (add a field to Settings and a row to docs/configuration.md): {found}"
    )


def test_the_tools_variables_are_documented_too():
    _, tools = _tables()
    service, _ = _tables()
    read = {
        var
        for path in [ROOT / "tasks.py", *sorted((ROOT / "bench").rglob("*.py"))]
        for _, var in _env_reads(path)
        if var != "?"
    }
    assert read <= tools | set(service), sorted(read - tools - set(service))


def test_the_reader_finds_reads_in_every_spelling(tmp_path):
    """The checker above must not be blind (it guards every other test in this file)."""
    p = tmp_path / "m.py"
    p.write_text(
        "import os\nfrom os import environ\na = os.environ.get('A')\nb = os.environ['B']\n"
        "c = os.getenv('C')\nd = environ.get('D')\nos.environ['W'] = '1'\n"
    )
    assert [v for _, v in _env_reads(p)] == ["A", "B", "C", "D"]


@pytest.mark.parametrize(
    "env, var",
    [
        ({"SHARECART_LOG_LEVEL": "LOUD"}, "SHARECART_LOG_LEVEL"),
        ({"SHARECART_READY_WORKER_MAX_AGE": "-1"}, "SHARECART_READY_WORKER_MAX_AGE"),
        ({"SHARECART_SHUTDOWN_GRACE": "-1"}, "SHARECART_SHUTDOWN_GRACE"),  # seconds >= 0
        ({"SHARECART_TEST_CLOCK": "maybe"}, "SHARECART_TEST_CLOCK"),
    ],
)
def test_a_bad_value_stops_the_command_with_one_clear_line(env, var):
    import os

    r = subprocess.run(
        [sys.executable, "-m", "api.cli", "migrate"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        env={**os.environ, **env, "PYTHONPATH": str(ROOT)},
        timeout=120,
    )
    assert r.returncode == 2, r
    assert r.stderr.startswith(f"error INVALID_CONFIG: {var}="), r.stderr
    assert len(r.stderr.strip().splitlines()) == 1 and "Traceback" not in r.stderr
