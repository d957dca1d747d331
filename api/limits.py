"""Limits on what one request may ask for, each refused with `extensions.code = QUERY_TOO_COMPLEX`:

- depth: at most MAX_DEPTH levels of selections (strawberry's depth rule, with our code attached);
- tokens: at most MAX_TOKENS lexical tokens (the parser stops there);
- cost: at most MAX_COST field resolutions in the worst case, counted before execution with the
  request's variables — every field costs 1, and everything selected inside a connection counts
  `first` times (DEFAULT_PAGE when absent, at most MAX_PAGE), through every level of nesting.
  So 60 aliases of `campaigns(first: 100) { … openGroups(first: 100) { … } }` cost millions and are
  refused before a single resolver runs, while a page of 100 orders with their groups is cheap.

Page sizes themselves are capped (`first` > MAX_PAGE reads MAX_PAGE) in api.types.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any, Mapping

from graphql import (
    ExecutionResult,
    FieldNode,
    FragmentDefinitionNode,
    FragmentSpreadNode,
    GraphQLError,
    GraphQLInterfaceType,
    GraphQLObjectType,
    GraphQLSchema,
    InlineFragmentNode,
    IntValueNode,
    OperationType,
    SelectionSetNode,
    ValidationContext,
    ValidationRule,
    VariableNode,
    get_named_type,
    get_operation_ast,
)
from graphql.error import GraphQLSyntaxError
from strawberry.extensions import AddValidationRules, MaxTokensLimiter, ParserCache, SchemaExtension
from strawberry.extensions.query_depth_limiter import create_validator

from api.types import DEFAULT_PAGE, MAX_PAGE

MAX_DEPTH = 10
MAX_TOKENS = 4000
MAX_COST = 10_000
TOO_COMPLEX = "QUERY_TOO_COMPLEX"


def _coded(error: GraphQLError, **extra: Any) -> GraphQLError:
    error.extensions = {**(error.extensions or {}), "code": TOO_COMPLEX, **extra}
    return error


# ---------------------------------------------------------------- depth
_DepthRule = create_validator(MAX_DEPTH, None)


class DepthLimit(ValidationRule):
    """strawberry's depth rule, its refusals carrying our code. Built once (not per request), so the
    validation cache, keyed by the rule classes, actually hits."""

    def __init__(self, context: ValidationContext) -> None:
        report = context.report_error
        context.report_error = lambda error: report(_coded(error, maxDepth=MAX_DEPTH))
        try:
            _DepthRule(context)
        finally:
            context.report_error = report
        super().__init__(context)


def depth_limiter() -> AddValidationRules:
    return AddValidationRules([DepthLimit])


# ---------------------------------------------------------------- tokens
class TokenLimit(MaxTokensLimiter):
    """The parser refuses documents over MAX_TOKENS tokens; mark that refusal (and only it) with our code."""

    def __init__(self) -> None:
        super().__init__(max_token_count=MAX_TOKENS)

    def on_parse(self) -> Iterator[None]:
        yield
        marker = f"more than {self.max_token_count} tokens"
        for error in self.execution_context.pre_execution_errors or ():
            if isinstance(error, GraphQLSyntaxError) and marker in error.message:
                _coded(error, maxTokens=self.max_token_count)


# ---------------------------------------------------------------- parsing
class CachedParse(ParserCache):
    """strawberry's parser cache, except that a document that does not parse (a syntax error, too many
    tokens) is left to strawberry's own parse step: there the error becomes a normal GraphQL error that
    the other extensions see (TokenLimit codes it, api.errors.PublicErrors codes the rest), instead of an
    exception escaping every extension from inside this hook."""

    def on_parse(self) -> Iterator[None]:
        ec = self.execution_context
        try:
            ec.graphql_document = self.cached_parse_document(ec.query, **ec.parse_options)
        except GraphQLError:
            ec.graphql_document = None
        yield


# ---------------------------------------------------------------- cost
def _page_size(field: FieldNode, variables: Mapping[str, Any]) -> int:
    for arg in field.arguments or ():
        if arg.name.value != "first":
            continue
        value: Any = None
        if isinstance(arg.value, IntValueNode):
            value = int(arg.value.value)
        elif isinstance(arg.value, VariableNode):
            value = variables.get(arg.value.name.value, DEFAULT_PAGE)
            if value is None:
                value = DEFAULT_PAGE
        if isinstance(value, bool) or not isinstance(value, int):
            return MAX_PAGE  # not an integer: coercion refuses it later; count the worst case meanwhile
        return max(0, min(value, MAX_PAGE))
    return DEFAULT_PAGE


def _is_connection(t) -> bool:
    return isinstance(t, GraphQLObjectType) and "edges" in t.fields and "pageInfo" in t.fields


def selection_cost(schema: GraphQLSchema, selection_set: SelectionSetNode | None, parent,
                   fragments: Mapping[str, FragmentDefinitionNode], variables: Mapping[str, Any]) -> int:
    """Worst-case field resolutions of `selection_set` on `parent` (fragments expanded, every branch of
    an abstract type counted: an upper bound)."""
    if selection_set is None:
        return 0
    total = 0
    for sel in selection_set.selections:
        if isinstance(sel, FieldNode):
            fields = parent.fields if isinstance(parent, (GraphQLObjectType, GraphQLInterfaceType)) else {}
            definition = fields.get(sel.name.value)
            if definition is None:  # __typename, introspection meta fields
                total += 1 + selection_cost(schema, sel.selection_set, None, fragments, variables)
                continue
            child_type = get_named_type(definition.type)
            times = _page_size(sel, variables) if _is_connection(child_type) else 1
            total += 1 + times * selection_cost(schema, sel.selection_set, child_type, fragments, variables)
        elif isinstance(sel, InlineFragmentNode):
            on = schema.get_type(sel.type_condition.name.value) if sel.type_condition else parent
            total += selection_cost(schema, sel.selection_set, on, fragments, variables)
        elif isinstance(sel, FragmentSpreadNode):
            fragment = fragments.get(sel.name.value)
            if fragment is not None:  # validation (which ran first) refuses unknown and cyclic fragments
                total += selection_cost(schema, fragment.selection_set,
                                        schema.get_type(fragment.type_condition.name.value), fragments, variables)
    return total


def operation_cost(schema: GraphQLSchema, document, operation, variables: Mapping[str, Any] | None) -> int:
    root = schema.get_root_type(operation.operation)
    fragments = {d.name.value: d for d in document.definitions if isinstance(d, FragmentDefinitionNode)}
    return selection_cost(schema, operation.selection_set, root, fragments, variables or {})


class CostLimit(SchemaExtension):
    """Refuse an operation whose worst-case cost is over MAX_COST before anything executes."""

    def __init__(self, budget: int = MAX_COST) -> None:
        self.budget = budget

    def on_execute(self) -> Iterator[None]:
        ec = self.execution_context
        operation = get_operation_ast(ec.graphql_document, ec.operation_name)
        cost = operation_cost(ec.schema._schema, ec.graphql_document, operation, ec.variables) if operation else 0
        if cost > self.budget:
            error = GraphQLError(
                f"query too complex: worst-case cost {cost} is over the budget of {self.budget} (each field "
                f"counts 1, times `first` — default {DEFAULT_PAGE}, at most {MAX_PAGE} — inside connections); "
                "ask for fewer fields or smaller pages",
                extensions={"code": TOO_COMPLEX, "cost": cost, "budget": self.budget})
            if operation.operation == OperationType.SUBSCRIPTION:
                raise error  # strawberry turns an on_execute exception of a subscription into its error
            ec.result = ExecutionResult(data=None, errors=[error])
        yield
