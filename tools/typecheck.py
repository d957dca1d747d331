#!/usr/bin/env python3
"""mypy for Sharecart: strict on engine/ (no error allowed), checked on the rest against a baseline.

    .venv/bin/python tools/typecheck.py            # what .ci/run runs (via `python3 tasks.py lint`)
    .venv/bin/python tools/typecheck.py --update   # rewrite the baseline after fixing errors

The rest (store/, service/, api/) had 89 errors when mypy was introduced (mostly SQLAlchemy rows read
as optional and strawberry types). They are listed in tools/mypy-baseline.txt by file, error code and
message (no line numbers, so unrelated edits do not disturb it). An error that is not in the baseline
fails the check; a baseline entry that no longer occurs is reported so the list only shrinks.
"""

from __future__ import annotations

import re
import subprocess
import sys
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BASELINE = ROOT / "tools" / "mypy-baseline.txt"
LINE = re.compile(r"^(?P<file>[^:]+):\d+(?::\d+)?: error: (?P<msg>.*?)\s+\[(?P<code>[a-z-]+)\]$")


def mypy(*args: str) -> tuple[int, list[str]]:
    r = subprocess.run([sys.executable, "-m", "mypy", *args], cwd=ROOT, capture_output=True, text=True)
    return r.returncode, r.stdout.splitlines()


def errors_of(lines: list[str]) -> Counter[str]:
    out: Counter[str] = Counter()
    for ln in lines:
        m = LINE.match(ln)
        if m:
            out[f"{m['file']}: [{m['code']}] {m['msg']}"] += 1
    return out


def main(argv: list[str]) -> int:
    code, lines = mypy("--strict", "engine")
    if code != 0:
        print("\n".join(lines))
        print("mypy --strict engine/: failed", file=sys.stderr)
        return 1
    _, lines = mypy("store", "service", "api")
    found = errors_of(lines)
    if "--update" in argv:
        BASELINE.write_text("".join(f"{e}\n" * n for e, n in sorted(found.items())))
        print(f"baseline: {sum(found.values())} errors")
        return 0
    known = Counter(BASELINE.read_text().splitlines()) if BASELINE.exists() else Counter()
    new, gone = found - known, known - found
    for e in sorted(gone):
        print(f"fixed (remove from the baseline with --update): {e}")
    if new:
        for ln in lines:
            m = LINE.match(ln)
            if m and f"{m['file']}: [{m['code']}] {m['msg']}" in new:
                print(ln)
        print(f"mypy: {sum(new.values())} new error(s) outside the baseline", file=sys.stderr)
        return 1
    print(f"mypy: engine/ strict clean; rest {sum(found.values())} known errors, none new")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
