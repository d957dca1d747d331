"""The committed SDL matches the code (regenerate: `.venv/bin/sharecart export-schema`)."""

from pathlib import Path

from api.schema import schema


def test_schema_graphql_matches_code():
    committed = (Path(__file__).resolve().parents[2] / "schema.graphql").read_text()
    assert committed == str(schema) + "\n", "schema.graphql is stale: regenerate it"


def test_docs_api_md_names_every_operation_and_the_limits():
    from api.limits import MAX_COST, MAX_DEPTH, MAX_TOKENS
    from api.schema import make_schema

    doc = (Path(__file__).resolve().parents[2] / "docs" / "api.md").read_text()
    s = make_schema(test_clock=True)._schema
    ops = [*s.query_type.fields, *s.mutation_type.fields, *s.subscription_type.fields]
    assert [op for op in ops if f"`{op}" not in doc] == [], "docs/api.md: add the operation to the role table"
    for value in (MAX_DEPTH, MAX_TOKENS, f"{MAX_COST:,}".replace(",", " ")):
        assert f"| {value}" in doc, f"docs/api.md: the limit {value} is not documented"
