"""GraphiQL loads in a real headless Chromium (Debian's `chromium`) from local assets and runs a query."""

from __future__ import annotations

import shutil
import subprocess
import tempfile
import urllib.parse

import pytest

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


@pytest.mark.skipif(CHROMIUM is None, reason="Debian package chromium is not installed (apt-get install chromium)")
def test_graphiql_renders_and_runs_a_query_in_headless_chromium(server):
    url = f"{server['base']}/graphiql?smoke=" + urllib.parse.quote("{ __typename }")
    with tempfile.TemporaryDirectory() as profile:
        dom = subprocess.run(
            [
                CHROMIUM,
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-quic",
                "--no-first-run",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                f"--user-data-dir={profile}",
                "--virtual-time-budget=15000",
                "--dump-dom",
                url,
            ],
            capture_output=True,
            text=True,
            timeout=120,
        ).stdout
    assert "graphiql-container" in dom  # React rendered GraphiQL from /static, no CDN
    assert '"__typename":"Query"' in dom  # and its fetcher ran a query against /graphql
