"""Limits on what one request may ask for, each refused with `extensions.code = QUERY_TOO_COMPLEX`:

- depth: at most MAX_DEPTH levels of selections (strawberry's depth rule, with our code attached);
- tokens: at most MAX_TOKENS lexical tokens (the parser stops there);
- cost: at most MAX_COST field resolutions in the worst case, counted before execution with the
  request's variables — every field costs 1, and everything selected inside a connection counts
  `first` times (DEFAULT_PAGE when absent, at most MAX_PAGE), through every level of nesting.
  So 60 aliases of `campaigns(first: 100) { … openGroups(first: 100) { … } }` cost millions and are
  refused before a single resolver runs, while a page of 100 orders with their groups is cheap.
  Fields that are work of their own cost what they do (issue 11 point 1), and every alias counts again:
  a root field or a DistributorProfile field reads the database by itself and costs READ_COST; a bounded
  list that is not a connection (LIST_BOUNDS: earningsSeries has up to 366 periods) multiplies what is
  selected inside it by its bound; `__schema` costs the number of elements of the schema it returns and
  `__type` the size of the largest type — so one introspection fits, 550 aliases of it do not.
- introspection (`__schema`, `__type`) is answered only in development (SHARECART_DEV=1) or to an admin
  token; anyone else gets FORBIDDEN before anything runs. (`__typename` is always allowed.)
- strings: a NUL character in any string argument or variable is INVALID_INPUT (PostgreSQL text cannot
  hold it), refused before anything runs.

Page sizes themselves are capped (`first` > MAX_PAGE reads MAX_PAGE) in api.relay.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Iterator
from dataclasses import dataclass
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

from api.relay import DEFAULT_PAGE, MAX_PAGE

MAX_DEPTH = 10
MAX_TOKENS = 4000
MAX_COST = 10_000
TOO_COMPLEX = "QUERY_TOO_COMPLEX"
READ_COST = 50  # a field that runs at least one query of its own: at most MAX_COST / READ_COST per request
READ_TYPES = ("Query", "Mutation", "DistributorProfile")  # whose fields each read (or write) by themselves
LIST_BOUNDS = {
    "DistributorProfile.earningsSeries": 366,
    "Query.shopEarningsSeries": 366,
    "Query.retention": 366,
    "Query.segmentCounts": 10,
}
INTROSPECTION_FIELDS = ("__schema", "__type")
INTROSPECTION_OBJECTS = 5
DEV_ENV = "SHARECART_DEV"


def dev_mode() -> bool:
    """SHARECART_DEV=1: development conveniences — introspection for every caller and the GraphiQL page.
    Off by default (production); `sharecart serve` of the demo turns it on unless --no-dev."""
    from service.settings import settings

    return settings().dev


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
        return _clamped_page(value)
    return DEFAULT_PAGE


def _clamped_page(value: Any) -> int:
    """A `first` as the cost counts it: absent/null the default page, not an integer the worst case (coercion
    refuses it later), else within 0..MAX_PAGE."""
    if value is None:
        return DEFAULT_PAGE
    if isinstance(value, bool) or not isinstance(value, int):
        return MAX_PAGE
    return max(0, min(value, MAX_PAGE))


def _is_connection(t) -> bool:
    return isinstance(t, GraphQLObjectType) and "edges" in t.fields and "pageInfo" in t.fields


_SIZES: dict[int, tuple[int, int]] = {}


def introspection_sizes(schema: GraphQLSchema) -> tuple[int, int]:
    """(elements of the whole schema, elements of its largest type): what `__schema` and `__type` return
    at most — types, fields, arguments, input fields and enum values, each with its own sub-selection."""
    key = id(schema)
    if key not in _SIZES:
        sizes = []
        for t in schema.type_map.values():
            n = 1
            for f in (getattr(t, "fields", None) or {}).values():
                n += 1 + len(getattr(f, "args", None) or {})
            n += len(getattr(t, "values", None) or {})
            sizes.append(n)
        _SIZES[key] = (sum(sizes) + 10 * len(schema.directives), max(sizes))
    return _SIZES[key]


class Walk:
    """One pass over an operation: its worst-case cost, whether it introspects, and (for fragments
    expanded) nothing else. Every branch of an abstract type is counted: an upper bound."""

    def __init__(
        self, schema: GraphQLSchema, fragments: Mapping[str, FragmentDefinitionNode], variables: Mapping[str, Any]
    ) -> None:
        self.schema, self.fragments, self.variables = schema, fragments, variables
        self.introspects = False

    def cost(self, selection_set: SelectionSetNode | None, parent) -> int:
        if selection_set is None:
            return 0
        total = 0
        for sel in selection_set.selections:
            if isinstance(sel, FieldNode):
                total += self._field(sel, parent)
            elif isinstance(sel, InlineFragmentNode):
                on = self.schema.get_type(sel.type_condition.name.value) if sel.type_condition else parent
                total += self.cost(sel.selection_set, on)
            elif isinstance(sel, FragmentSpreadNode):
                fragment = self.fragments.get(sel.name.value)
                if fragment is not None:  # validation (which ran first) refuses unknown and cyclic fragments
                    total += self.cost(fragment.selection_set, self.schema.get_type(fragment.type_condition.name.value))
        return total

    def _field(self, sel: FieldNode, parent) -> int:
        name = sel.name.value
        if name in INTROSPECTION_FIELDS:
            self.introspects = True
            whole, largest = introspection_sizes(self.schema)
            # each element comes back with its name, description and type references: ~5 objects each
            return INTROSPECTION_OBJECTS * (whole if name == "__schema" else largest)
        fields = parent.fields if isinstance(parent, (GraphQLObjectType, GraphQLInterfaceType)) else {}
        definition = fields.get(name)
        if definition is None:  # __typename
            return 1 + self.cost(sel.selection_set, None)
        child_type = get_named_type(definition.type)
        qualified = f"{parent.name}.{name}"
        if _is_connection(child_type):
            times = _page_size(sel, self.variables)
        else:
            times = LIST_BOUNDS.get(qualified, 1)
        own = READ_COST if parent.name in READ_TYPES else 1
        return own + times * self.cost(sel.selection_set, child_type)


def selection_cost(
    schema: GraphQLSchema,
    selection_set: SelectionSetNode | None,
    parent,
    fragments: Mapping[str, FragmentDefinitionNode],
    variables: Mapping[str, Any],
) -> int:
    """Worst-case cost of `selection_set` on `parent` (see the module docstring)."""
    return Walk(schema, fragments, variables).cost(selection_set, parent)


def walk_operation(schema: GraphQLSchema, document, operation, variables: Mapping[str, Any] | None) -> Walk:
    fragments = {d.name.value: d for d in document.definitions if isinstance(d, FragmentDefinitionNode)}
    walk = Walk(schema, fragments, variables or {})
    walk.total = walk.cost(operation.selection_set, schema.get_root_type(operation.operation))
    return walk


def operation_cost(schema: GraphQLSchema, document, operation, variables: Mapping[str, Any] | None) -> int:
    return walk_operation(schema, document, operation, variables).total


def _has_nul(value: Any) -> bool:
    if isinstance(value, str):
        return "\x00" in value
    if isinstance(value, dict):
        return any(_has_nul(k) or _has_nul(v) for k, v in value.items())
    if isinstance(value, list):
        return any(_has_nul(v) for v in value)
    return False


def _document_has_nul(document) -> bool:
    from graphql import StringValueNode, visit
    from graphql.language import Visitor

    found = False

    class Find(Visitor):
        def enter_string_value(self, node: StringValueNode, *_):
            nonlocal found
            if "\x00" in node.value:
                found = True
                return self.BREAK

    visit(document, Find())
    return found


@dataclass(frozen=True)
class Analysis:
    """What the limits need of an operation: its worst-case cost (with the request's page sizes), whether it
    introspects, whether a string literal of the document holds a NUL."""

    total: int
    introspects: bool
    nul_in_document: bool


ANALYSIS_CACHE_SIZE = 512


class AnalysisCache:
    """Per process, bounded (LRU, `maxsize` entries): the analysis of an operation, keyed by the schema, the
    document's text, the operation's name and the page sizes its variables give `first` (clamped as the walk
    clamps them) — so a cached cost is the cost of exactly these page sizes, and other variables are analysed
    afresh. The names of the variables that feed `first` are themselves cached per document."""

    def __init__(self, maxsize: int = ANALYSIS_CACHE_SIZE) -> None:
        self.maxsize = maxsize
        self._first_vars: OrderedDict[tuple, tuple[str, ...]] = OrderedDict()
        self._items: OrderedDict[tuple, Analysis] = OrderedDict()
        self.hits = self.misses = 0

    def clear(self) -> None:
        self._first_vars.clear()
        self._items.clear()
        self.hits = self.misses = 0

    def _put(self, cache: OrderedDict, key: tuple, value: Any) -> None:
        cache[key] = value
        if len(cache) > self.maxsize:
            cache.popitem(last=False)

    def analyse(
        self, schema: GraphQLSchema, text: str | None, document, operation, variables: Mapping[str, Any] | None
    ) -> Analysis:
        variables = variables or {}
        if text is None:
            return _analyse(schema, document, operation, variables)
        base = (schema, text, operation.name.value if operation.name else None)
        names = self._first_vars.get(base)
        if names is None:
            names = _first_variables(document)
            self._put(self._first_vars, base, names)
        else:
            self._first_vars.move_to_end(base)
        key = base + tuple(_clamped_page(variables.get(n, DEFAULT_PAGE)) for n in names)
        got = self._items.get(key)
        if got is not None:
            self._items.move_to_end(key)
            self.hits += 1
            return got
        self.misses += 1
        got = _analyse(schema, document, operation, variables)
        self._put(self._items, key, got)
        return got


def _analyse(schema: GraphQLSchema, document, operation, variables: Mapping[str, Any]) -> Analysis:
    walk = walk_operation(schema, document, operation, variables)
    return Analysis(total=walk.total, introspects=walk.introspects, nul_in_document=_document_has_nul(document))


def _first_variables(document) -> tuple[str, ...]:
    """The variables any `first` argument of the document reads (in any operation or fragment)."""
    from graphql import visit
    from graphql.language import Visitor

    names: set[str] = set()

    class Find(Visitor):
        def enter_argument(self, node, *_):
            if node.name.value == "first" and isinstance(node.value, VariableNode):
                names.add(node.value.name.value)

    visit(document, Find())
    return tuple(sorted(names))


ANALYSES = AnalysisCache()


class CostLimit(SchemaExtension):
    """Refuse an operation whose worst-case cost is over MAX_COST before anything executes. The analysis of a
    document already seen with the same page sizes comes from `ANALYSES` (issue 10 point 4)."""

    def __init__(self, budget: int = MAX_COST) -> None:
        self.budget = budget

    def on_execute(self) -> Iterator[None]:
        ec = self.execution_context
        operation = get_operation_ast(ec.graphql_document, ec.operation_name)
        walk = (
            ANALYSES.analyse(ec.schema._schema, ec.query, ec.graphql_document, operation, ec.variables)
            if operation
            else None
        )
        cost = walk.total if walk else 0
        error = None
        if operation is None:
            pass  # graphql-core refuses a document without the named operation itself
        elif _has_nul(ec.variables) or (walk is not None and walk.nul_in_document):
            error = GraphQLError(
                "a string holds a NUL character (U+0000), which no field accepts", extensions={"code": "INVALID_INPUT"}
            )
        elif walk is not None and walk.introspects and not _may_introspect(ec.context):
            error = GraphQLError(
                "introspection is off: it is served in development (SHARECART_DEV=1) or to an "
                "admin token; the schema is published as schema.graphql",
                extensions={"code": "FORBIDDEN"},
            )
        if error is not None:
            if operation.operation == OperationType.SUBSCRIPTION:
                raise error
            ec.result = ExecutionResult(data=None, errors=[error])
        elif cost > self.budget:
            error = GraphQLError(
                f"query too complex: worst-case cost {cost} is over the budget of {self.budget} (each field "
                f"counts 1, one that reads by itself {READ_COST}, times `first` — default {DEFAULT_PAGE}, at most "
                f"{MAX_PAGE} — inside connections); "
                "ask for fewer fields or smaller pages",
                extensions={"code": TOO_COMPLEX, "cost": cost, "budget": self.budget},
            )
            if operation.operation == OperationType.SUBSCRIPTION:
                raise error  # strawberry turns an on_execute exception of a subscription into its error
            ec.result = ExecutionResult(data=None, errors=[error])
        yield


def _may_introspect(ctx) -> bool:
    if dev_mode() or getattr(ctx, "dev", False):
        return True
    principal = getattr(ctx, "principal", None)
    return principal is not None and "admin" in principal.roles
