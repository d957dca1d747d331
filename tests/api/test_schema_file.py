"""The committed SDL matches the code (regenerate: `.venv/bin/sharecart export-schema`)."""

from pathlib import Path

from api.schema import full_schema, schema


def test_schema_graphql_matches_code():
    """The committed SDL is the full schema: the production one plus the test-only advanceClock, so a client
    that validates its documents against schema.graphql (codegen) accepts every documented operation."""
    committed = (Path(__file__).resolve().parents[2] / "schema.graphql").read_text()
    assert committed == str(full_schema()) + "\n", "schema.graphql is stale: regenerate it"


def test_the_committed_sdl_has_every_field_and_marks_advance_clock_test_only():
    from graphql import build_schema

    sdl = build_schema((Path(__file__).resolve().parents[2] / "schema.graphql").read_text())
    prod = schema._schema
    for root in ("query_type", "mutation_type", "subscription_type"):
        assert set(getattr(prod, root).fields) <= set(getattr(sdl, root).fields)
    assert set(sdl.mutation_type.fields) - set(prod.mutation_type.fields) == {"advanceClock"}
    assert "Tests only (SHARECART_TEST_CLOCK=1)" in (sdl.mutation_type.fields["advanceClock"].description or "")


def test_docs_api_md_names_every_operation_and_the_limits():
    from api.limits import MAX_COST, MAX_DEPTH, MAX_TOKENS
    from api.schema import make_schema

    doc = (Path(__file__).resolve().parents[2] / "docs" / "api.md").read_text()
    s = make_schema(test_clock=True)._schema
    ops = [*s.query_type.fields, *s.mutation_type.fields, *s.subscription_type.fields]
    assert [op for op in ops if f"`{op}" not in doc] == [], "docs/api.md: add the operation to the role table"
    for value in (MAX_DEPTH, MAX_TOKENS, f"{MAX_COST:,}".replace(",", " ")):
        assert f"| {value}" in doc, f"docs/api.md: the limit {value} is not documented"
