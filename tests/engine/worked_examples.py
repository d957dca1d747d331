"""The parsing every worked-examples runner shares: a document's table of examples, and the small
`key=value; …` and `a, b, …` cell languages its rows are written in (docs/worked-examples/)."""

from __future__ import annotations

from pathlib import Path

COLUMNS = ("id", "scenario", "inputs", "arithmetic", "expected")


def table_rows(doc: Path, header: str, columns: tuple[str, ...] = COLUMNS) -> list[dict[str, str]]:
    """The rows of the table under `header` in `doc`, each a dict of `columns`."""
    lines = doc.read_text(encoding="utf-8").splitlines()
    assert header in lines, "worked-examples table header missing"
    out = []
    for line in lines[lines.index(header) + 2 :]:
        if not line.startswith("|"):
            break
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        assert len(cells) == len(columns), f"row does not have {len(columns)} cells: {line}"
        out.append(dict(zip(columns, cells)))
    return out


def pairs(text: str) -> dict[str, str]:
    """`a=1; b=x` -> {"a": "1", "b": "x"}; a key given twice or a part without `=` is an error."""
    d: dict[str, str] = {}
    for part in text.split(";"):
        key, sep, value = part.strip().partition("=")
        assert sep and key and key not in d, f"cannot parse {part!r}"
        d[key] = value.strip()
    return d


def items(text: str | None) -> list[str]:
    """`a, b` -> ["a", "b"]; empty or `none` -> []."""
    return [] if not text or text == "none" else [t.strip() for t in text.split(",") if t.strip()]
