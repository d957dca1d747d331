"""ER-1 in GraphQL: refusal codes are defined once (engine.errors.ErrorCode) and mapped here, once.

- A mutation's rule refusal is a payload error: `errors: [UserError!]!` (never a GraphQL error).
- An authentication/authorization refusal, or a bad argument of a query, is a GraphQL error whose
  `extensions` carry `code` (and `rule`, `field` where known).
- A request GraphQL itself refuses before anything runs — a syntax error, an unknown field, a variable
  or literal of the wrong type (an Int that is a string, MinorUnits of 1e300) — keeps graphql-core's
  message, which names the field and the expected type, with `code = INVALID_INPUT`; a request over
  the limits of api.limits has `code = QUERY_TOO_COMPLEX`.
- The database away (connection refused, lost, timed out): message "the database is unavailable; retry
  later", `extensions.code = UNAVAILABLE`, HTTP 503 (api.metrics.OperationMetrics sets it).
- Anything else (a bug) is masked: message "internal error",
  `extensions.code = INTERNAL`, no stack trace, no SQL.
"""

from __future__ import annotations

from typing import Optional

import strawberry
from graphql import GraphQLError
from strawberry.extensions import MaskErrors

from engine.errors import ErrorCode as _ErrorCode
from engine.errors import RuleViolation
from service.availability import UNAVAILABLE, is_database_unavailable

ErrorCode = strawberry.enum(_ErrorCode, name="ErrorCode", description="ER-1: stable machine-readable refusal codes.")


@strawberry.type(description="A refusal (ER-1): switch on `code`; `message` is for people; `rule` names the rule.")
class UserError:
    code: ErrorCode
    field: Optional[str]
    message: str
    rule: Optional[str]


def client_field(name: Optional[str]) -> Optional[str]:
    """The engine names fields in Python (`starts_at`); clients know them as the schema does (`startsAt`)."""
    if not name:
        return name
    head, *rest = name.split("_")
    return head + "".join(part[:1].upper() + part[1:] for part in rest)


def user_error(e: RuleViolation) -> UserError:
    return UserError(code=e.code, field=client_field(e.field), message=e.message, rule=e.rule)


def public_error(error: GraphQLError, e: RuleViolation) -> GraphQLError:
    ext = {"code": e.code.value}
    if e.rule:
        ext["rule"] = e.rule
    if e.field:
        ext["field"] = client_field(e.field)
    return GraphQLError(e.message, nodes=error.nodes, source=error.source, positions=error.positions,
                        path=error.path, extensions=ext)


class PublicErrors(MaskErrors):
    """MaskErrors that lets deliberate errors through with their code and masks everything else."""

    def __init__(self) -> None:
        super().__init__(error_message="internal error")

    def _process_errors(self, errors: list[GraphQLError]) -> list[GraphQLError]:
        out = []
        for error in errors:
            original = error.original_error
            if isinstance(original, RuleViolation):
                out.append(public_error(error, original))
            elif (error.extensions or {}).get("code"):
                out.append(error)  # limiter refusals: deliberate, coded where they are raised
            elif is_database_unavailable(original):  # not a bug: say so, with a code clients can retry on
                out.append(GraphQLError("the database is unavailable; retry later", nodes=error.nodes,
                                        path=error.path, extensions={"code": UNAVAILABLE}))
            elif _refused_request(error):
                error.extensions = {**(error.extensions or {}), "code": _ErrorCode.INVALID_INPUT.value}
                out.append(error)
            else:
                masked = self.anonymise_error(error)
                masked.extensions = {"code": "INTERNAL"}
                out.append(masked)
        return out


def _refused_request(error: GraphQLError) -> bool:
    """graphql-core's own refusal of the request (parse, validation, variable/literal coercion): it has
    no path (nothing was executing), points at the document, and has no exception of ours behind it
    other than a scalar's ValueError (whose message is written for clients: api.types)."""
    if error.path is not None:
        return False
    original = error.original_error
    if original is None or isinstance(original, GraphQLError):
        return True
    return isinstance(original, ValueError) and bool(error.nodes)
