"""docs/architecture.md "Where a new thing goes" draws the tree; the tree must match it (issue 12, "Done
when": a newcomer names from the tree alone where a rule, a mutation, a report and an event type go)."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DOC = (ROOT / "docs" / "architecture.md").read_text()
SECTION = DOC.split("## Where a new thing goes", 1)[1].split("\n## ", 1)[0]
TREE = SECTION.split("```", 2)[1]


def _named(stem: str) -> bool:
    return re.search(rf"(?<![\w/]){re.escape(stem)}(\.py|/|\b)", TREE) is not None


def test_every_module_of_api_and_service_is_in_the_drawn_tree():
    missing = [
        str(p.relative_to(ROOT))
        for d in ("api", "service")
        for p in sorted((ROOT / d).rglob("*.py"))
        if p.name != "__init__.py" and "console" not in p.parts and not _named(p.stem)
    ]
    assert missing == [], "docs/architecture.md: draw these in the tree (or move them where the tree says)"


def test_every_api_module_the_tree_names_exists():
    """The other direction: a module folded away (as api/distribution_v2.py, api/fraud.py and
    api/groupbuy_v2.py were, into their domain modules) leaves no name behind in the tree."""
    api = TREE.split("\napi/\n", 1)[1]
    named = set(re.findall(r"(?<![\w/])(\w+)\.py\b", api))
    assert named and sorted(n for n in named if not (ROOT / "api" / f"{n}.py").exists()) == []


def test_no_module_is_cut_by_release():
    """Modules are cut by domain, not by when a feature came: no `*_v2.py` under api/ or service/."""
    assert [str(p.relative_to(ROOT)) for d in ("api", "service") for p in (ROOT / d).rglob("*_v2.py")] == []


def test_the_seams_the_tree_draws_exist():
    for pkg in ("service/usecases", "service/tx", "service/reads", "service/jobs"):
        assert (ROOT / pkg / "__init__.py").exists(), pkg
        assert pkg.split("/")[1] + "/" in TREE
    for domain in ("groupbuy", "orders", "distribution", "payouts", "reports", "webhooks", "shops"):
        assert (ROOT / "api" / f"{domain}.py").exists(), domain
    assert {"rule", "use case", "mutation", "report", "event type", "background job"} <= {
        m.group(1).strip() for m in re.finditer(r"^\| ([^|]+?) (?:\(|\|)", SECTION, re.M)
    }


def test_service_files_sit_in_their_seam():
    """A read applying due work says so (`_caught_up`) and lives in reads/ or a use case; jobs/ holds the
    loops the worker runs."""
    reads = (ROOT / "service" / "reads").glob("*.py")
    for p in reads:
        for m in re.finditer(r"^async def (\w+)", p.read_text(), re.M):
            body = p.read_text().split(f"async def {m.group(1)}", 1)[1].split("\nasync def ", 1)[0]
            if re.search(r"await (catch_up|catch_up_orders|sequence)\(", body):
                assert m.group(1).endswith("_caught_up"), f"{p.name}: {m.group(1)} applies due work"
