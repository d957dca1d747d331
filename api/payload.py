"""The one shape of every mutation: `XxxInput` -> `XxxPayload { ...result..., errors }` (ER-1).

Mutation root. Each mutation takes one `input` and returns a payload whose `errors` carry every rule
refusal (ER-1) — a refused mutation has changed nothing (the service rolled back). Every mutation but the
test-only `advanceClock` takes `idempotencyKey` (GB-10); payment and refund confirmations are also idempotent by
`providerRef`, reported orders by `externalId`.

Object ids in inputs are global ids (see api.relay); a malformed or wrong-type id is INVALID_INPUT on
that field, an id of another shop is NOT_FOUND (SH-1).

`payload_mutation(XxxPayload, permission_classes=..., description=...)` turns an async function
`(info, input) -> dict` (the payload's result fields) into the mutation field: a refusal it raises —
a `RuleViolation`, or what `api.errors.refusal_of` reads as one (a value the database or a datetime
cannot hold) — becomes the payload's `errors`, never a GraphQL error; anything else is an internal error.
"""

from __future__ import annotations

import functools
import inspect
from typing import Any, Awaitable, Callable, Mapping, Optional

import strawberry

from api.errors import UserError, refusal_of, user_error
from engine.errors import RuleViolation

KEY_DESCRIPTION = (
    "GB-10: a retry with the same key and the same input returns the first result without a "
    "second effect; the same key with another input is IDEMPOTENCY_CONFLICT."
)


def idempotency_key_field(description: str = KEY_DESCRIPTION) -> Optional[str]:
    """Every mutation input but advanceClock's has this field (tests/api/test_idempotency_keys.py)."""
    return strawberry.field(default=None, description=description)


def _input_error(refusal: RuleViolation, fields: Mapping[str, Optional[str]] | None) -> UserError:
    error = user_error(refusal)
    if fields and error.field is not None and error.field in fields:
        error.field = fields[error.field]
    return error


def payload_mutation(
    payload: type, *, fields: Mapping[str, Optional[str]] | None = None, **field: Any
) -> Callable[[Callable[..., Awaitable[dict]]], Any]:
    """`@payload_mutation(XxxPayload, permission_classes=[...], description=...)` over
    `async def xxx(info: Info, input: XxxInput) -> dict`: the mutation field answering `XxxPayload`.

    A refusal's `field` names the input that is wrong (ER-1). The engine and the service name what they
    check (`duration`, `from`, a distributor's `status`); where that is not the input's name, `fields`
    says which input it is (keys as a client sees them: `{"paymentWindow": "paymentWindowSeconds"}`), or None where no input is wrong (the
    caller's own standing). tests/api/test_payload_error_fields.py holds every mutation to it."""

    def decorate(fn: Callable[..., Awaitable[dict]]) -> Any:
        @functools.wraps(fn)
        async def resolve(*args: Any, **kwargs: Any) -> Any:
            try:
                return payload(**(await fn(*args, **kwargs)), errors=[])
            except Exception as e:
                refusal = refusal_of(e)  # a RuleViolation is itself
                if refusal is None:
                    raise
                return payload(errors=[_input_error(refusal, fields)])

        setattr(resolve, "__signature__", inspect.signature(fn).replace(return_annotation=payload))
        setattr(resolve, "renamed_fields", dict(fields or {}))  # read by tests/api/test_payload_error_fields.py
        return strawberry.mutation(resolver=resolve, **field)

    return decorate
