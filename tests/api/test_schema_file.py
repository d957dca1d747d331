"""The committed SDL matches the code (regenerate: python -c "from api.schema import schema; open('schema.graphql','w').write(str(schema)+'\\n')")."""

from pathlib import Path

from api.schema import schema


def test_schema_graphql_matches_code():
    committed = (Path(__file__).resolve().parents[2] / "schema.graphql").read_text()
    assert committed == str(schema) + "\n", "schema.graphql is stale: regenerate it"
