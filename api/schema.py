"""The GraphQL schema (code-first strawberry), assembled from api.queries, api.mutations and
api.subscriptions. Conventions (ids, money, connections, errors) are described in api.types and
api.errors; who may call what in api.permissions; how much one request may ask for in api.limits.

`schema` is the production schema, exported to /schema.graphql
(`strawberry export-schema api.schema:schema`, compared by tests/api/test_schema_file.py).
With SHARECART_TEST_CLOCK=1 the app serves `make_schema(test_clock=True)`, which adds `advanceClock`.
"""

from __future__ import annotations

import logging

import strawberry
from sqlalchemy.exc import StatementError
from strawberry.extensions import ValidationCache
from strawberry.schema.config import StrawberryConfig

from api.errors import PublicErrors, _refused_request, refusal_of
from api.metrics import OperationMetrics
from api.limits import CachedParse, CostLimit, TokenLimit, depth_limiter
from api.mutations import Mutation, MutationWithTestClock
from api.queries import Query
from api.subscriptions import Subscription
from api.types import MAX_PAGE, MINOR_UNITS, MinorUnits

log = logging.getLogger("sharecart.api")


class SharecartSchema(strawberry.Schema):
    """Logs a refusal (a coded error: FORBIDDEN, INVALID_INPUT, QUERY_TOO_COMPLEX, …) as one line, and an
    internal error with its traceback but without the request's query or variables (issue 11 point 12)."""

    def process_errors(self, errors, execution_context=None) -> None:
        operation = getattr(execution_context, "operation_name", None) or "-"
        for error in errors:
            original = error.original_error
            path = ".".join(str(p) for p in error.path or ()) or "-"
            refusal = refusal_of(original) if original is not None else None
            if refusal is not None:
                log.info("refused %s op=%s path=%s rule=%s: %s", refusal.code.value, operation, path,
                         refusal.rule or "-", refusal.message)
            elif (error.extensions or {}).get("code") or _refused_request(error):
                code = (error.extensions or {}).get("code") or "INVALID_INPUT"
                log.info("refused %s op=%s path=%s: %s", code, operation, path, error.message)
            else:
                if isinstance(original, StatementError):
                    original.hide_parameters = True  # the SQL may be logged, the values bound to it never
                log.error("internal error op=%s path=%s: %s", operation, path,
                          type(original).__name__ if original else error.message,
                          exc_info=(type(original), original, original.__traceback__) if original else None)


def make_schema(*, test_clock: bool = False) -> strawberry.Schema:
    return SharecartSchema(
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
