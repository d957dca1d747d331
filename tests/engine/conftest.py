"""The engine's tests are pure (no database, server or browser): every one is marked `pure`, the fast
lane (`python3 tasks.py test --fast`, or `pytest -m pure`)."""

from __future__ import annotations

from pathlib import Path

import pytest

HERE = Path(__file__).parent


def pytest_collection_modifyitems(config, items):
    for item in items:
        if HERE in Path(item.fspath).parents:
            item.add_marker(pytest.mark.pure)
