#!/usr/bin/env python3
"""Regenerate the screenshots of docs/console.md (docs/console/*.png).

    python3 tools/console_screenshots.py          # DATABASE_URL optional, as for `tasks.py test`

It runs the browser tests (tests/browser) with SHARECART_SCREENSHOTS set: they walk through every
screen as a person would (a fresh demo shop, real clicks in Debian's chromium) and save a PNG of each
one on the way, so a picture in the docs is always a screen that a passing test has just seen.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

if __name__ == "__main__":
    env = {**os.environ, "SHARECART_SCREENSHOTS": str(ROOT / "docs" / "console")}
    sys.exit(
        subprocess.call(
            [sys.executable, str(ROOT / "tasks.py"), "test", "tests/browser", "-q", *sys.argv[1:]], env=env, cwd=ROOT
        )
    )
