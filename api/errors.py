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

import re
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
    return GraphQLError(
        e.message, nodes=error.nodes, source=error.source, positions=error.positions, path=error.path, extensions=ext
    )


class PublicErrors(MaskErrors):
    """MaskErrors that lets deliberate errors through with their code and masks everything else."""

    def __init__(self) -> None:
        super().__init__(error_message="internal error")

    def _process_errors(self, errors: list[GraphQLError]) -> list[GraphQLError]:
        out = []
        for error in errors:
            original = error.original_error
            refusal = refusal_of(original) if original is not None else None
            if refusal is not None:
                out.append(public_error(error, refusal))
            elif (error.extensions or {}).get("code"):
                out.append(error)  # limiter refusals: deliberate, coded where they are raised
            elif is_database_unavailable(original):  # not a bug: say so, with a code clients can retry on
                out.append(
                    GraphQLError(
                        "the database is unavailable; retry later",
                        nodes=error.nodes,
                        path=error.path,
                        extensions={"code": UNAVAILABLE},
                    )
                )
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
    other than a scalar's ValueError (whose message is written for clients: api.relay)."""
    if error.path is not None:
        return False
    original = error.original_error
    if original is None or isinstance(original, GraphQLError):
        return True
    return isinstance(original, ValueError) and bool(error.nodes)


# ---------------------------------------------------------------- refusals the database or Python makes
# (issue 11 point 11): input that passes every rule but that a column or a datetime cannot hold is the
# client's mistake, refused with a code like every other refusal — never INTERNAL. The transaction that
# met it rolled back, so nothing changed.
UNIQUE_REFUSALS = {  # constraint → (code, field, message)
    "uq_refunds_shop_id_provider_ref": (
        _ErrorCode.IDEMPOTENCY_CONFLICT,
        "providerRef",
        "provider reference already belongs to another refund",
    ),
    "pk_payments": (
        _ErrorCode.IDEMPOTENCY_CONFLICT,
        "providerRef",
        "provider reference already belongs to another payment",
    ),
}
SQLSTATE_REFUSALS = {
    "22001": "a text is longer than its field allows",
    "22003": "a number is out of range",
    "22008": "a date or time is out of range",
    "22007": "a date or time is out of range",
    "22021": "a text holds a character that cannot be stored (such as NUL)",
    "22P05": "a text holds a character that cannot be stored (such as NUL)",
    "54001": "the input is too deeply nested",
}


def _sqlstate(exc) -> tuple[str | None, str | None]:
    """(SQLSTATE, constraint name) of a database error, through SQLAlchemy's and asyncpg's wrappers."""
    seen, e = set(), exc
    state = constraint = None
    while e is not None and id(e) not in seen:
        seen.add(id(e))
        state = state or getattr(e, "sqlstate", None) or getattr(e, "pgcode", None)
        constraint = constraint or getattr(e, "constraint_name", None)
        if constraint is None:  # Citus relays a worker's error without its constraint field: only the message
            named = _NAMED_CONSTRAINT.search(str(e))
            constraint = named[1] if named else None
        e = getattr(e, "orig", None) or e.__cause__
    if constraint and constraint not in UNIQUE_REFUSALS:  # on Citus, the shard's: `<name>_<shard id>`
        constraint = re.sub(r"_[0-9]+$", "", constraint)
    return state, constraint


_NAMED_CONSTRAINT = re.compile(r'violates unique constraint "([a-z0-9_]+)"')


def refusal_of(exc: BaseException) -> RuleViolation | None:
    """The coded refusal an exception stands for, or None for a real internal error."""
    from sqlalchemy.exc import DBAPIError

    if isinstance(exc, RuleViolation):
        return exc
    if isinstance(exc, DBAPIError):
        state, constraint = _sqlstate(exc)
        if state == "23505" and constraint in UNIQUE_REFUSALS:
            code, field, message = UNIQUE_REFUSALS[constraint]
            return RuleViolation(code, message, field=field, rule="GB-10")
        if state in SQLSTATE_REFUSALS or (state or "").startswith("22"):  # class 22: data exception
            return RuleViolation(
                _ErrorCode.INVALID_INPUT, SQLSTATE_REFUSALS.get(state, "a value is out of range or of the wrong form")
            )
        return None
    if isinstance(exc, OverflowError):  # datetime arithmetic past year 9999 (a date like 0001-01-01 in a zone)
        return RuleViolation(_ErrorCode.INVALID_INPUT, "a date, time or amount is out of range")
    if isinstance(exc, RecursionError):
        return RuleViolation(_ErrorCode.INVALID_INPUT, "the input is too deeply nested")
    return None
