"""The GraphQL schema (code-first strawberry), assembled from api.queries, api.mutations and
api.subscriptions. Conventions (ids, money, connections, errors) are described in api.types and
api.errors; who may call what in api.permissions; how much one request may ask for in api.limits.

`schema` is the production schema, exported to /schema.graphql
(`strawberry export-schema api.schema:schema`, compared by tests/api/test_schema_file.py).
With SHARECART_TEST_CLOCK=1 the app serves `make_schema(test_clock=True)`, which adds `advanceClock`.
"""

from __future__ import annotations

import strawberry
from strawberry.extensions import ValidationCache
from strawberry.schema.config import StrawberryConfig

from api.errors import PublicErrors
from api.metrics import OperationMetrics
from api.limits import CachedParse, CostLimit, TokenLimit, depth_limiter
from api.mutations import Mutation, MutationWithTestClock
from api.queries import Query
from api.subscriptions import Subscription
from api.types import MAX_PAGE, MINOR_UNITS, MinorUnits

def make_schema(*, test_clock: bool = False) -> strawberry.Schema:
    return strawberry.Schema(
        query=Query,
        mutation=MutationWithTestClock if test_clock else Mutation,
        subscription=Subscription,
        config=StrawberryConfig(scalar_map={MinorUnits: MINOR_UNITS}, relay_max_results=MAX_PAGE),
        extensions=[
            depth_limiter,
            TokenLimit,
            CostLimit,
            lambda: CachedParse(maxsize=512),
            lambda: ValidationCache(maxsize=512),
            PublicErrors,
            OperationMetrics,
        ],
    )


schema = make_schema()
