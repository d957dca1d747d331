"""The committed SDL matches the code (regenerate: `.venv/bin/sharecart export-schema`)."""

from pathlib import Path

from api.schema import schema


def test_schema_graphql_matches_code():
    committed = (Path(__file__).resolve().parents[2] / "schema.graphql").read_text()
    assert committed == str(schema) + "\n", "schema.graphql is stale: regenerate it"
