"""The README's promise, replayed: `sharecart serve --test-clock` seeds the demo and prints ids and tokens;
every GraphQL block of docs/walkthrough.md is then run, in order, as the caller it names, with the
printed values and the values earlier steps keep, and its `# expect:` lines are checked. A change that
breaks the walkthrough (a renamed field, a different balance, a missing token) fails here."""

from __future__ import annotations

import json
import re
from pathlib import Path

import httpx
import pytest

from service.usecases.demo import DEMO_CALLERS
from tests.api.conftest import REPO, ServiceProcess

DOC = Path(REPO) / "docs" / "walkthrough.md"
BLOCK = re.compile(r"```graphql\n(.*?)```", re.S)
PLACEHOLDER = re.compile(r'"([A-Z][A-Z0-9_]*)"')


def parse_steps(doc: str) -> list[dict]:
    """Each ```graphql block: `# as: NAME`, `# keep: NAME = path.in.answer`, `# expect: path = JSON`."""
    steps = []
    for body in BLOCK.findall(doc):
        step = {"query": body, "as": None, "keep": {}, "expect": []}
        for line in body.splitlines():
            m = re.match(r"#\s*(as|keep|expect):\s*(.+)$", line.strip())
            if not m:
                continue
            kind, rest = m.groups()
            left, _, right = rest.partition("=")
            if kind == "as":
                step["as"] = rest.strip()
            elif kind == "keep":
                step["keep"][left.strip()] = right.strip()
            else:
                step["expect"].append((left.strip(), json.loads(right.strip())))
        steps.append(step)
    return steps


def dig(data, path: str):
    for part in path.split("."):
        data = data[int(part)] if isinstance(data, list) else data[part]
    return data


def printed(output: str) -> tuple[dict, dict, str]:
    """The ids, tokens and public key `serve` printed."""
    ids = dict(re.findall(r"^\s+([A-Z][A-Z_]*_ID)\s+(\S+)", output, re.M))
    tokens = {name: token for name, token in re.findall(r"^\s+(\w+)\s+[a-z,]+\s+(eyJ\S+)$", output, re.M)}
    key = re.search(r'"X-Shop-Key": "(pk_[^"]+)"', output).group(1)
    return ids, tokens, key


@pytest.fixture(scope="module")
def demo_service(database_url):
    service = ServiceProcess(database_url, "--test-clock")
    yield service
    service.stop()


def test_serve_prints_ids_and_a_token_for_every_demo_caller(demo_service):
    ids, tokens, key = printed(demo_service.output)
    assert set(tokens) == set(DEMO_CALLERS), demo_service.output
    assert {"PAIR_CAMPAIGN_ID", "PAIR_GROUP_ID", "LADDER_CAMPAIGN_ID"} <= set(ids), demo_service.output
    assert "docs/walkthrough.md" in demo_service.output and "advanceClock: on" in demo_service.output


def test_the_walkthrough_runs_as_written(demo_service):
    ids, tokens, key = printed(demo_service.output)
    values = dict(ids)
    steps = parse_steps(DOC.read_text())
    assert len(steps) >= 9 and all(s["as"] for s in steps), "every block names its caller: # as: NAME"
    for n, step in enumerate(steps, 1):
        who = step["as"]
        headers = {"X-Shop-Key": key} if who == "public" else {"Authorization": f"Bearer {tokens[who]}"}
        lines = step["query"].splitlines()  # sent as pasted, comments and all; placeholders outside comments
        missing = [
            p for ln in lines if not ln.lstrip().startswith("#") for p in PLACEHOLDER.findall(ln) if p not in values
        ]
        assert not missing, f"step {n} uses {missing}, which neither serve prints nor an earlier step keeps"
        query = "\n".join(
            ln if ln.lstrip().startswith("#") else PLACEHOLDER.sub(lambda m: json.dumps(values[m.group(1)]), ln)
            for ln in lines
        )
        r = httpx.post(f"{demo_service.base}/graphql", json={"query": query}, headers=headers, timeout=30)
        body = r.json()
        assert r.status_code == 200 and "errors" not in body, (n, who, body)
        data = body["data"]
        for payload in data.values():  # a mutation's refusal would be a payload error: none is expected
            if isinstance(payload, dict) and "errors" in payload:
                assert payload["errors"] == [], (n, who, payload)
        for path, want in step["expect"]:
            assert dig(data, path) == want, (n, who, path, dig(data, path), want)
        for name, path in step["keep"].items():
            values[name] = dig(data, path)
    assert values.get("PAYOUT_ID") and values.get("ORDER_ID")


def test_serve_again_finds_the_demo_instead_of_seeding_it_twice(database_url, demo_service):
    again = ServiceProcess(database_url, "--no-worker")
    try:
        ids, tokens, _ = printed(again.output)
        first, _, _ = printed(demo_service.output)
        assert ids["PAIR_CAMPAIGN_ID"] == first["PAIR_CAMPAIGN_ID"]
        assert set(tokens) == set(DEMO_CALLERS)
    finally:
        again.stop()


def test_serve_points_at_the_console_and_the_storefront_demo(demo_service):
    """Issue 14: next to GraphiQL, the console and the storefront (with the shop key in its link) are
    printed, and both pages are served."""
    import httpx

    _, _, key = printed(demo_service.output)
    base = demo_service.base
    assert f"Console:    {base}/console" in demo_service.output
    assert f"Storefront: {base}/demo/storefront?key={key}" in demo_service.output
    for path in ("/console", f"/demo/storefront?key={key}"):
        r = httpx.get(base + path, timeout=10)
        assert r.status_code == 200 and r.headers["content-type"].startswith("text/html"), path
    assert httpx.get(f"{base}/console/assets/vendor/graphql-ws.min.js", timeout=10).status_code == 200
