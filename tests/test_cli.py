"""Issue 13 point 8: every CLI refusal is one line `error CODE: message` with exit status 2 (an outage or a
bug: exit 1), never a traceback; time zones and currencies are checked; `--version`; `list-shops`."""

from __future__ import annotations

import json
import re
import secrets

import pytest

import api.cli as cli

LINE = re.compile(r"^error [A-Z_]+: \S.*$")


@pytest.fixture
def run(monkeypatch, capsys, database_url):
    """`sharecart ARGS…` in this process, against the run's test database; (exit status, stdout, stderr)."""
    import api.logs

    monkeypatch.setattr(api.logs, "configure_logging", lambda *a, **k: None)  # keep pytest's log capture
    monkeypatch.setenv("DATABASE_URL", database_url)

    def go(*args: str) -> tuple[int, str, str]:
        code = cli.main(list(args))
        out = capsys.readouterr()
        return code, out.out, out.err

    return go


def refused(result, code: str, status: int = 2) -> str:
    rc, _out, err = result
    assert rc == status, result
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1, err
    assert LINE.match(err.strip()) and err.startswith(f"error {code}: "), err
    return err


def test_version(run):
    from importlib.metadata import version

    rc, out, _ = run("--version")
    assert rc == 0 and out.strip() == f"sharecart {version('sharecart')}"


@pytest.mark.parametrize(
    "args, code, says",
    [
        (["create-shop", "s-tz", "--name", "X", "--timezone", "Mars/Base"], "INVALID_INPUT", "Mars/Base"),
        (["create-shop", "s-cur", "--name", "X", "--currency", "ABC"], "INVALID_INPUT", "ABC"),
        (["create-shop", "s-noname"], "INVALID_INPUT", "--name"),
        (["close-period", "demo", "--from", "2026-13-01", "--to", "2026-02-01"], "INVALID_INPUT", "--from"),
        (["close-period", "demo", "--from", "2026-01-01", "--to", "tomorrow"], "INVALID_INPUT", "--to"),
        (["export", "demo", "st_x", "--out", "/nonexistent-folder/x.csv"], "INVALID_INPUT", "does not exist"),
        (["export", "demo", "st_x", "--out", "/tmp"], "INVALID_INPUT", "is a folder"),
        (["export", "demo", "st_x", "--format", "pdf", "--out", "/tmp/x.pdf"], "INVALID_INPUT", "csv or xlsx"),
        (["mint-token", "demo", "--user", "u", "--role", "wizard"], "INVALID_INPUT", "wizard"),
        (["mint-token", "demo", "--user", "u", "--role", "customer", "--ttl", "0"], "INVALID_INPUT", "--ttl"),
        (["frobnicate"], "INVALID_INPUT", "frobnicate"),
        (["list-shops", "--limit", "nope"], "INVALID_INPUT", "--limit"),
    ],
)
def test_refusals_before_any_work_are_one_line_and_exit_2(run, args, code, says):
    assert says in refused(run(*args), code)


def test_refusals_that_need_the_database_are_one_line_and_exit_2(run, tmp_path):
    missing = f"no-{secrets.token_hex(4)}"
    assert missing in refused(run("mint-token", missing, "--user", "u", "--role", "customer"), "NOT_FOUND")
    assert missing in refused(run("close-period", missing, "--from", "2026-01-01", "--to", "2026-02-01"), "NOT_FOUND")
    assert "st_nope" in refused(run("export", missing, "st_nope", "--out", str(tmp_path / "x.csv")), "NOT_FOUND")
    shop = f"cli-{secrets.token_hex(4)}"
    assert run("create-shop", shop, "--name", "Shop", "--currency", "XOF", "--timezone", "Africa/Dakar")[0] == 0
    assert "exists" in refused(run("create-shop", shop, "--name", "Again"), "INVALID_INPUT")


def test_the_database_away_is_one_line_with_exit_1(run, monkeypatch):
    from tests.api.conftest import _free_port  # nothing listens there: the database is "stopped"

    monkeypatch.setenv("DATABASE_URL", f"postgresql://postgres@127.0.0.1:{_free_port()}/nothing")
    assert "unreachable" in refused(run("list-shops"), "UNAVAILABLE", status=1)


def test_an_unexpected_error_is_one_line_with_exit_1(run, monkeypatch):
    def boom(*_a, **_k):
        raise ZeroDivisionError("a bug")

    monkeypatch.setattr(cli, "_services", boom)
    assert "ZeroDivisionError: a bug" in refused(run("list-shops"), "INTERNAL", status=1)


def test_list_shops_shows_each_shop_with_currency_and_time_zone(run):
    shop = f"cli-{secrets.token_hex(4)}"
    assert (
        run("create-shop", shop, "--name", "Ugandan Tea", "--currency", "UGX", "--timezone", "Africa/Kampala")[0] == 0
    )
    rc, out, _ = run("list-shops")
    assert rc == 0 and out.splitlines()[0].split() == ["SHOP", "CURRENCY", "TIMEZONE", "CREATED", "NAME"]
    line = next(line for line in out.splitlines() if line.startswith(shop + " "))
    assert line.split()[1:3] == ["UGX", "Africa/Kampala"] and line.endswith("Ugandan Tea")
    rc, out, _ = run("list-shops", "--json")
    rows = [json.loads(line) for line in out.splitlines()]
    mine = next(r for r in rows if r["shopId"] == shop)
    assert mine["currency"] == "UGX" and mine["timezone"] == "Africa/Kampala" and mine["name"] == "Ugandan Tea"
    assert [r["shopId"] for r in rows] == sorted(r["shopId"] for r in rows)
