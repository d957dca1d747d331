"""Issue 10 point 4: the cost/depth analysis of a document is cached per process (bounded, LRU), keyed by the
schema, the document's text and the page sizes its variables give — a cached document's cost still limits,
and a different document (or the same one with larger pages) is analysed afresh."""

from __future__ import annotations

from graphql import get_operation_ast, parse

from api.limits import ANALYSES, MAX_COST, AnalysisCache
from api.schema import schema

COSTLY = "{ campaigns(first: 100) { edges { node { openGroups(first: 100) { edges { node { id } } } } } } }"
CHEAP = "{ campaigns(first: 1) { edges { node { id } } } }"
PAGED = (
    "query($n: Int) { campaigns(first: $n) { edges { node { title openGroups(first: $n) { edges { node { "
    "id seatsLeft } } } } } } }"
)


def analyse(cache: AnalysisCache, text: str, variables=None):
    document = parse(text)
    return cache.analyse(schema._schema, text, document, get_operation_ast(document), variables)


def test_a_cached_document_still_costs_what_it_costs_and_another_is_analysed():
    cache = AnalysisCache(maxsize=3)
    first = analyse(cache, COSTLY)
    again = analyse(cache, COSTLY)
    assert first.total > MAX_COST and again == first and (cache.hits, cache.misses) == (1, 1)
    assert analyse(cache, CHEAP).total < MAX_COST and cache.misses == 2  # another text: analysed
    # the same text with other page sizes is another analysis; the same page sizes hit
    big, small = analyse(cache, PAGED, {"n": 100}), analyse(cache, PAGED, {"n": 10})
    assert big.total > MAX_COST >= small.total and cache.misses == 4
    assert analyse(cache, PAGED, {"n": 100}) == big and cache.hits == 2
    assert analyse(cache, PAGED, {"n": 500}) == big and cache.hits == 3  # clamped to MAX_PAGE like the walk
    assert len(cache._items) <= 3  # bounded: the least recently used went


async def test_a_refused_document_is_refused_again_from_the_cache():
    ANALYSES.clear()
    for _ in range(2):
        result = await schema.execute(COSTLY)
        assert [e.extensions["code"] for e in result.errors] == ["QUERY_TOO_COMPLEX"] and result.data is None
    assert ANALYSES.hits == 1 and ANALYSES.misses == 1
    result = await schema.execute("{ __typename }")
    assert result.errors is None and ANALYSES.misses == 2
