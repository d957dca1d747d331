"""ER-1 in GraphQL: refusal codes are defined once (engine.errors.ErrorCode) and mapped here, once.

- A mutation's rule refusal is a payload error: `errors: [UserError!]!` (never a GraphQL error).
- An authentication/authorization refusal, or a bad argument of a query, is a GraphQL error whose
  `extensions` carry `code` (and `rule`, `field` where known).
- Anything else (a bug, the database going away) is masked: message "internal error",
  `extensions.code = INTERNAL`, no stack trace, no SQL.
"""

from __future__ import annotations

from typing import Optional

import strawberry
from graphql import GraphQLError
from strawberry.extensions import MaskErrors

from engine.errors import ErrorCode as _ErrorCode
from engine.errors import RuleViolation

ErrorCode = strawberry.enum(_ErrorCode, name="ErrorCode", description="ER-1: stable machine-readable refusal codes.")


@strawberry.type(description="A refusal (ER-1): switch on `code`; `message` is for people; `rule` names the rule.")
class UserError:
    code: ErrorCode
    field: Optional[str]
    message: str
    rule: Optional[str]


def user_error(e: RuleViolation) -> UserError:
    return UserError(code=e.code, field=e.field, message=e.message, rule=e.rule)


def public_error(error: GraphQLError, e: RuleViolation) -> GraphQLError:
    ext = {"code": e.code.value}
    if e.rule:
        ext["rule"] = e.rule
    if e.field:
        ext["field"] = e.field
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
            elif original is None or (error.extensions or {}).get("code"):
                out.append(error)  # syntax/validation errors, limiter refusals: no Python exception behind them
            else:
                masked = self.anonymise_error(error)
                masked.extensions = {"code": "INTERNAL"}
                out.append(masked)
        return out
