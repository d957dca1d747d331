"""Issue 13 point 3: the client examples in examples/ run against a real server (curl, Python with gql);
the TypeScript example's operations are valid against schema.graphql (graphql-codegen itself needs an
`npm install`, which the suite does not do)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from graphql import build_schema, parse, validate

from api.auth import mint_token

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


@pytest.fixture
def env(world):
    return {
        **os.environ,
        "SHARECART_URL": f"{world['base']}/graphql",
        "SHARECART_SHOP_KEY": world["shop"].public_key,
        "SHARECART_BACKEND_TOKEN": mint_token(world["shop"], "shop-backend", ["backend"], 600),
    }


@pytest.mark.skipif(not (shutil.which("curl") and shutil.which("jq")), reason="curl.sh needs curl and jq")
def test_h13_3_curl_example_runs(env):
    r = subprocess.run(["sh", str(EXAMPLES / "curl.sh")], env=env, capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "issued a customer token" in r.stdout and '"mySegment":"NEW"' in r.stdout


def test_h13_3_python_gql_example_runs(env):
    r = subprocess.run(
        [sys.executable, str(EXAMPLES / "python" / "client.py")], env=env, capture_output=True, text=True, timeout=60
    )
    assert r.returncode == 0, r.stdout + r.stderr
    assert "ann is NEW with 0 orders" in r.stdout


def test_h13_3_typescript_example_matches_the_schema():
    schema = build_schema((EXAMPLES.parent / "schema.graphql").read_text())
    document = parse((EXAMPLES / "typescript" / "src" / "operations.graphql").read_text())
    assert validate(schema, document) == []
    config = (EXAMPLES / "typescript" / "codegen.ts").read_text()
    assert '"../../schema.graphql"' in config and (EXAMPLES / "typescript" / "../../schema.graphql").exists()
    client = (EXAMPLES / "typescript" / "src" / "client.ts").read_text()
    names = {d.name.value for d in document.definitions}
    assert all(f"{n}Document" in client for n in names)


def test_h13_3_typescript_example_type_checks():
    if not shutil.which("tsc") or not (EXAMPLES / "typescript" / "node_modules").exists():
        pytest.skip(
            "typescript (tsc) is not installed: operations checked against schema.graphql only; "
            "run `npm install && npm run codegen && npx tsc --noEmit` in examples/typescript"
        )
    r = subprocess.run(
        ["npm", "run", "codegen"], cwd=EXAMPLES / "typescript", capture_output=True, text=True, timeout=300
    )
    assert r.returncode == 0, r.stdout + r.stderr
    r = subprocess.run(
        ["tsc", "--noEmit", "--module", "nodenext", "--target", "es2022", "src/client.ts"],
        cwd=EXAMPLES / "typescript",
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert r.returncode == 0, r.stdout + r.stderr
