"""The list call's query language, parsed into one backend-neutral `Query`.

Each store compiles a `Query` itself (`engine.store.sqlite_query`, `engine.store.mongo_query`),
so the same request gives the same rows on both. The language (the platform's REST
conventions, `/work/shared/DESIGN.md`):

- `field=value` filters, with the value functions `range`, `gt`, `gte`, `lt`, `lte`, `in`,
  `ne`, `regex`; several filters are ANDed;
- `_filter`: a boolean expression over the same conditions (`(status=failed or
  status=running) and not name=DEMO`) or a MongoDB-style JSON filter restricted to
  `SAFE_OPERATORS`, strict or relaxed (`{_id:/AB/i}`: `engine.relaxed_json`);
- `_search`: free text (`engine.search`); `_sort`, `_project`, `_limit`, `_skip`, `_distinct`;
- `_fieldinfo` (`field_buckets`) and `_aggregate` (a safe pipeline: `engine.pipeline`), which
  answer with counts instead of documents.

Every malformed parameter raises `BadRequest` with a message that starts with its name.
"""

from __future__ import annotations

import functools
import json
import math
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import date
from typing import TYPE_CHECKING, Any, Literal

from procexec.engine import relaxed_json
from procexec.engine.domain import DEFAULT_ENVIRONMENT
from procexec.engine.errors import BadRequest
from procexec.engine.limits import DEFAULT_LIMIT, MAX_DISTINCT, MAX_LIMIT
from procexec.engine.search import AllOf, SearchNode, parse_search
from procexec.engine.timeutil import iso_ms, parse_iso

if TYPE_CHECKING:
    from procexec.engine.pipeline import Pipeline

Op = Literal["eq", "ne", "gt", "gte", "lt", "lte", "in", "regex", "exists"]
#: what a condition compares with: filter values are strings; JSON filters may use numbers
Scalar = str | int | float | None


@dataclass(frozen=True)
class Condition:
    """`field <op> value`, with MongoDB's meaning on every backend.

    On a path through an array (`phases.status`), true when any element matches; `ne` is true
    when no element equals the value; a missing field equals `None`. `in` takes a tuple of
    values, `exists` the value True (present, even when null). Comparisons only hold between
    values of one type (a string is never greater than a number).
    """

    field: str
    op: Op
    value: Any


@dataclass(frozen=True)
class And:
    items: tuple[Node, ...]


@dataclass(frozen=True)
class Or:
    items: tuple[Node, ...]


@dataclass(frozen=True)
class Not:
    item: Node


Node = Condition | And | Or | Not


@dataclass(frozen=True)
class Query:
    """What to list: a filter tree, a search, an order, a page and a projection, in one environment.

    `project` keeps `_id` and the named fields; `exclude` drops the named fields (never `_id`);
    `distinct` asks for the distinct values of one field instead of documents, `fieldinfo` for
    its values and how many executions hold each, `aggregate` for a pipeline's results.
    """

    environment: str = DEFAULT_ENVIRONMENT
    where: Node | None = None
    sort: tuple[tuple[str, int], ...] = (("start", -1),)
    limit: int = DEFAULT_LIMIT
    skip: int = 0
    project: tuple[str, ...] | None = None
    search: SearchNode | None = None
    exclude: tuple[str, ...] | None = None
    distinct: str | None = None
    fieldinfo: str | None = None
    aggregate: Pipeline | None = None

    @functools.cached_property
    def compiled(self) -> dict[Any, Any]:
        """Room for a store's compiled forms of this query (SQL clauses), kept with it: a query
        is immutable, and the API hands out one object per distinct query string."""
        return {}


#: fields that hold timestamps; their filter values are dates or datetimes
DATE_FIELDS = frozenset({"start", "end", "phases.start", "phases.end"})
#: the operators a JSON `_filter` may use; anything else is refused by name
SAFE_OPERATORS = (
    "$and", "$or", "$nor", "$not", "$eq", "$ne", "$gt", "$gte", "$lt", "$lte",
    "$in", "$nin", "$exists", "$regex",
)  # fmt: skip
#: a field path has at most this many parts
MAX_PATH_PARTS = 8
#: how deeply a `_filter` may nest, and how many conditions it may hold
MAX_FILTER_DEPTH = 20
MAX_CONDITIONS = 100
#: longest regular expression accepted
MAX_REGEX = 500
#: integers a JSON filter may compare with (those both SQLite and MongoDB store exactly)
MAX_INTEGER = 2**53

_FIELD = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z0-9_:#-]+)*\Z")
_FUNCTION = re.compile(r"^([A-Za-z]+)\((.*)\)$", re.DOTALL)
_BARE_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}$")
_FUNCTIONS = ("range", "gt", "gte", "lt", "lte", "in", "ne", "regex")
#: fields a list can be sorted by: the document's top-level scalar fields
SORT_FIELDS = (
    "_id",
    "service",
    "name",
    "environment",
    "trigger",
    "status",
    "message",
    "reason",
    "start",
    "end",
    "runAs",
    "loaderMessage",
)
_DIRECTIONS = {"asc": 1, "ascending": 1, "desc": -1, "descending": -1}
#: the parameters that answer with something else than documents: one at a time
ANSWERS = ("_distinct", "_fieldinfo", "_aggregate")


def check_field(name: str, param: str) -> str:
    """A field path as the user gave it, or a `BadRequest` naming `param`."""
    if not _FIELD.match(name):
        raise BadRequest(f"{param}: '{name}' is not a field name")
    if name.count(".") >= MAX_PATH_PARTS:
        raise BadRequest(
            f"{param}: '{name}' is too deep (a path has at most {MAX_PATH_PARTS} parts)"
        )
    return name


def check_document_field(name: str, param: str) -> str:
    """A field of the execution document: hidden bookkeeping (`_meta`…) is not one."""
    check_field(name, param)
    if name.startswith("_") and name.split(".")[0] != "_id":  # `_id.name`: a group's key
        raise BadRequest(f"{param}: '{name}' is not a field of an execution")
    return name


def _split_args(text: str) -> list[str]:
    return [part.strip() for part in text.split(",")] if text.strip() else []


def _date_bound(field_name: str, text: str, *, upper: bool) -> str:
    """A date filter value as a stored timestamp; a bare date is its first or last instant."""
    try:
        if _BARE_DATE.match(text):
            date.fromisoformat(text)  # a real day
            return text + ("T23:59:59.999Z" if upper else "T00:00:00.000Z")
        return iso_ms(parse_iso(text))
    except (ValueError, OverflowError):
        raise BadRequest(f"{field_name}: '{text}' is not a date or an ISO 8601 datetime") from None


def _scalar(text: str) -> str | None:
    return None if text == "null" else text


def _date_equals(field_name: str, raw: str) -> Node:
    """`field = raw` on a date field: a bare date is its whole day, `null` is a missing value."""
    if raw == "null":
        return Condition(field_name, "eq", None)
    lower = _date_bound(field_name, raw, upper=False)
    if _BARE_DATE.match(raw):
        upper = _date_bound(field_name, raw, upper=True)
        return And((Condition(field_name, "gte", lower), Condition(field_name, "lte", upper)))
    return Condition(field_name, "eq", lower)


def _check_regex(field_name: str, pattern: str) -> str:
    if len(pattern) > MAX_REGEX:
        raise BadRequest(f"{field_name}: regular expression longer than {MAX_REGEX} characters")
    try:
        re.compile(pattern)
    except (re.error, RecursionError, OverflowError) as exc:
        raise BadRequest(f"{field_name}: bad regular expression '{pattern}': {exc}") from None
    return pattern


def _refuse_operators(field_name: str, raw: str) -> None:
    if raw.startswith("{") or raw.startswith("$"):
        raise BadRequest(f"{field_name}: operators are not allowed in a value ('{raw}')")


def _equals(field_name: str, raw: str) -> Node:
    _refuse_operators(field_name, raw)
    if field_name in DATE_FIELDS:
        return _date_equals(field_name, raw)
    return Condition(field_name, "eq", _scalar(raw))


def _apply(field_name: str, function: str, args: list[str], body: str) -> Node:
    """A value function applied to its (already split) arguments."""
    is_date = field_name in DATE_FIELDS
    if function == "regex":
        return Condition(field_name, "regex", _check_regex(field_name, body))
    if function == "in":
        if not args:
            raise BadRequest(f"{field_name}: in() needs at least one value")
        for arg in args:
            _refuse_operators(field_name, arg)
        if is_date:
            # Each value as `field=value` would take it: a bare date is its whole day.
            return Or(tuple(_date_equals(field_name, a) for a in args))
        return Condition(field_name, "in", tuple(_scalar(a) for a in args))
    if function == "range":
        if len(args) != 2:
            raise BadRequest(f"{field_name}: range() takes two values, got {len(args)}")
        low, high = args
        for arg in args:
            _refuse_operators(field_name, arg)
        if is_date:
            low = _date_bound(field_name, low, upper=False)
            high = _date_bound(field_name, high, upper=True)
        return And((Condition(field_name, "gte", low), Condition(field_name, "lte", high)))
    if len(args) != 1:
        raise BadRequest(f"{field_name}: {function}() takes one value, got {len(args)}")
    _refuse_operators(field_name, args[0])
    value: str | None = args[0]
    if function == "ne":
        if is_date and args[0] != "null":
            equals = _date_equals(field_name, args[0])
            if isinstance(equals, Condition):
                return Condition(field_name, "ne", equals.value)
            return Not(equals)  # a bare date: not on that day
        return Condition(field_name, "ne", _scalar(args[0]))
    if is_date:
        # A bare date is a whole day: gt(d) is after it, lt(d) before it.
        value = _date_bound(field_name, args[0], upper=function in ("gt", "lte"))
    return Condition(field_name, function, value)  # type: ignore[arg-type]


def parse_condition(field_name: str, raw: str) -> Node:
    """One `field=value` pair, value functions included."""
    check_field(field_name, field_name)
    match = _FUNCTION.match(raw)
    if not match:
        return _equals(field_name, raw)
    function, body = match.group(1), match.group(2)
    if function not in _FUNCTIONS:
        raise BadRequest(
            f"{field_name}: unknown function '{function}' (known: {', '.join(_FUNCTIONS)})"
        )
    return _apply(field_name, function, _split_args(body), body)


# --- _filter as a boolean expression ---------------------------------------------------------

#: the comparison operators of an expression, as the value function each stands for
_COMPARISONS = {"!=": "ne", ">=": "gte", "<=": "lte", ">": "gt", "<": "lt", "=": "eq"}
_KEYWORDS = ("and", "or", "not")
_FIELD_START = re.compile(r"[A-Za-z_]")
_FIELD_TEXT = re.compile(r"[A-Za-z0-9_.:#-]*")
_FUNCTION_NAME = re.compile(r"[A-Za-z]+\(")


class _ExpressionParser:
    """A recursive-descent parser of `_filter` expressions.

    ```
    expression := disjunction
    disjunction := conjunction ("or" conjunction)*
    conjunction := negation ("and" negation)*
    negation := "not" negation | "(" expression ")" | condition
    condition := FIELD ("=" | "!=" | ">" | ">=" | "<" | "<=") VALUE
    VALUE := "quoted text" | 'quoted text' | function(…) | word
    ```
    Keywords are case-insensitive. A word runs to the next space or parenthesis; a function's
    arguments run to its matching parenthesis (`\\(` and `\\)` do not count). `=` takes the
    value functions as a filter parameter does; the other operators take a plain value.
    """

    def __init__(self, text: str, param: str) -> None:
        self.text = text
        self.param = param
        self.pos = 0
        self.conditions = 0

    def fail(self, message: str) -> BadRequest:
        return BadRequest(f"{self.param}: {message}")

    def peek(self) -> str:
        while self.pos < len(self.text) and self.text[self.pos].isspace():
            self.pos += 1
        return self.text[self.pos] if self.pos < len(self.text) else ""

    def keyword(self, *names: str) -> str | None:
        """The keyword at the cursor (consumed), when it is one of `names`."""
        self.peek()
        for name in names:
            end = self.pos + len(name)
            if self.text[self.pos : end].lower() != name:
                continue
            after = self.text[end : end + 1]
            if after == "" or after.isspace() or after == "(":
                self.pos = end
                return name
        return None

    def found(self) -> str:
        rest = self.text[self.pos :].split()
        return f"'{rest[0]}'" if rest else "the end"

    def parse(self) -> Node:
        if not self.text.strip():
            raise self.fail("empty expression (write conditions such as status=failed)")
        node = self.disjunction(0)
        if self.peek() == ")":
            raise self.fail(f"unbalanced parentheses: ')' at position {self.pos} closes nothing")
        if self.pos < len(self.text):
            raise self.fail(
                f"expected 'and', 'or' or the end at position {self.pos}, found {self.found()}"
            )
        return node

    def disjunction(self, depth: int) -> Node:
        items = [self.conjunction(depth)]
        while self.keyword("or"):
            items.append(self.conjunction(depth))
        return items[0] if len(items) == 1 else Or(tuple(items))

    def conjunction(self, depth: int) -> Node:
        items = [self.negation(depth)]
        while self.keyword("and"):
            items.append(self.negation(depth))
        return items[0] if len(items) == 1 else And(tuple(items))

    def negation(self, depth: int) -> Node:
        if depth > MAX_FILTER_DEPTH:
            raise self.fail(f"nested too deeply (at most {MAX_FILTER_DEPTH} levels)")
        char = self.peek()
        start = self.pos
        if char == "(":
            self.pos += 1
            if self.peek() == ")":
                raise self.fail(f"empty parentheses at position {start}")
            node = self.disjunction(depth + 1)
            if self.peek() != ")":
                if self.pos >= len(self.text):
                    raise self.fail(
                        f"unbalanced parentheses: '(' at position {start} is never closed"
                    )
                raise self.fail(
                    f"expected 'and', 'or' or ')' at position {self.pos}, found {self.found()}"
                )
            self.pos += 1
            return node
        # `not` is a keyword unless it is a field's name (`not=1`)
        saved = self.pos
        if self.keyword("not"):
            if self.peek() not in ("=", "!", "<", ">"):
                return Not(self.negation(depth + 1))
            self.pos = saved
        return self.condition()

    def condition(self) -> Node:
        start = self.pos
        if not _FIELD_START.match(self.text, self.pos):
            if self.pos >= len(self.text):
                raise self.fail("expected a condition such as status=failed at the end")
            if self.text[self.pos] == ")":
                raise self.fail(
                    f"unbalanced parentheses: ')' at position {self.pos} closes nothing"
                )
            raise self.fail(
                f"expected a condition such as status=failed at position {self.pos}, "
                f"found {self.found()}"
            )
        match = _FIELD_TEXT.match(self.text, self.pos + 1)
        assert match is not None
        name = self.text[start : match.end()]
        self.pos = match.end()
        if name.lower() in _KEYWORDS:
            raise self.fail(f"expected a condition at position {start}, found the keyword '{name}'")
        check_document_field(name, self.param)
        self.peek()
        operator = next((op for op in _COMPARISONS if self.text.startswith(op, self.pos)), None)
        if operator is None:
            raise self.fail(
                f"expected =, !=, >, >=, < or <= after '{name}' at position {self.pos}, "
                f"found {self.found()}"
            )
        self.pos += len(operator)
        self.peek()
        raw, quoted = self.value(name)
        self.conditions += 1
        if self.conditions > MAX_CONDITIONS:
            raise self.fail(f"too many conditions (at most {MAX_CONDITIONS})")
        try:
            function = _COMPARISONS[operator]
            if function == "eq":
                return _equals(name, raw) if quoted else parse_condition(name, raw)
            if not quoted and _FUNCTION.match(raw):
                raise BadRequest(f"{name}: '{operator}' takes a plain value, not '{raw}'")
            return _apply(name, function, [raw], raw)
        except BadRequest as exc:
            raise self.fail(str(exc)) from None

    def value(self, name: str) -> tuple[str, bool]:
        """The value after an operator, and whether it was quoted."""
        start = self.pos
        if start >= len(self.text) or self.text[start] == ")":
            raise self.fail(f"'{name}' has no value at position {start}")
        quote = self.text[start]
        if quote in "\"'":
            chars: list[str] = []
            index = start + 1
            while index < len(self.text):
                char = self.text[index]
                if char == "\\" and index + 1 < len(self.text):
                    chars.append(self.text[index + 1])
                    index += 2
                    continue
                if char == quote:
                    self.pos = index + 1
                    return "".join(chars), True
                chars.append(char)
                index += 1
            raise self.fail(f"unterminated quote: {quote} at position {start} is never closed")
        if _FUNCTION_NAME.match(self.text, start):
            index = self.text.index("(", start) + 1
            depth = 1
            while index < len(self.text) and depth:
                char = self.text[index]
                if char == "\\":
                    index += 2
                    continue
                depth += {"(": 1, ")": -1}.get(char, 0)
                index += 1
            if depth:
                opening = self.text.index("(", start)
                raise self.fail(
                    f"unbalanced parentheses: '(' at position {opening} is never closed"
                )
            self.pos = index
            return self.text[start:index], False
        index = start
        while index < len(self.text) and not (
            self.text[index].isspace() or self.text[index] in "()"
        ):
            index += 1
        self.pos = index
        return self.text[start:index], False


# --- _filter as MongoDB-style JSON -------------------------------------------------------------

_COMBINATORS = {"$and", "$or", "$nor"}
_FIELD_OPERATORS: dict[str, Op] = {
    "$eq": "eq",
    "$ne": "ne",
    "$gt": "gt",
    "$gte": "gte",
    "$lt": "lt",
    "$lte": "lte",
}
_REGEX_OPTIONS = re.compile(r"^[imsx]*\Z")


class _JsonFilter:
    """Turns a MongoDB-style filter into a `Node` tree, refusing every operator not listed."""

    def __init__(self, param: str) -> None:
        self.param = param
        self.conditions = 0

    def fail(self, message: str) -> BadRequest:
        return BadRequest(f"{self.param}: {message}")

    def refuse(self, operator: str, where: str) -> BadRequest:
        allowed = ", ".join(SAFE_OPERATORS)
        return self.fail(f"operator '{operator}' is not allowed{where} (allowed: {allowed})")

    def document(self, spec: Any, depth: int) -> Node:
        if depth > MAX_FILTER_DEPTH:
            raise self.fail(f"nested too deeply (at most {MAX_FILTER_DEPTH} levels)")
        if not isinstance(spec, dict):
            raise self.fail(
                'a filter must be a JSON object such as {"status": "failed"}, '
                f"not {_json_type(spec)}"
            )
        items: list[Node] = []
        for key, value in spec.items():
            if key.startswith("$"):
                if key not in _COMBINATORS:
                    if key in SAFE_OPERATORS:
                        raise self.fail(f"operator '{key}' must be applied to a field")
                    raise self.refuse(key, "")
                if not isinstance(value, list) or not value:
                    raise self.fail(f"'{key}' takes a non-empty array of filters")
                parts = tuple(self.document(item, depth + 1) for item in value)
                group = (
                    parts[0] if len(parts) == 1 else (And(parts) if key == "$and" else Or(parts))
                )
                items.append(Not(group) if key == "$nor" else group)
            else:
                check_document_field(key, self.param)
                items.append(self.field(key, value, depth))
        if not items:
            return And(())
        return items[0] if len(items) == 1 else And(tuple(items))

    def field(self, name: str, value: Any, depth: int) -> Node:
        if isinstance(value, dict) and value and all(key.startswith("$") for key in value):
            return self.operators(name, value, depth)
        if isinstance(value, dict):
            if any(key.startswith("$") for key in value):
                raise self.fail(f"'{name}' mixes operators and fields in one object")
            raise self.fail(
                f"value of '{name}' must be a string, number or null, or an object of operators"
            )
        return self.condition(name, "eq", self.scalar(name, value))

    def operators(self, name: str, spec: dict[str, Any], depth: int) -> Node:
        items: list[Node] = []
        options = spec.get("$options")
        if options is not None and "$regex" not in spec:
            raise self.fail(f"'$options' of '{name}' needs '$regex'")
        for operator, value in spec.items():
            if operator in _FIELD_OPERATORS:
                items.append(
                    self.condition(name, _FIELD_OPERATORS[operator], self.scalar(name, value))
                )
            elif operator in ("$in", "$nin"):
                if not isinstance(value, list):
                    raise self.fail(f"'{operator}' of '{name}' takes an array of values")
                values = tuple(self.scalar(name, item) for item in value)
                inside = self.condition(name, "in", values)
                items.append(inside if operator == "$in" else Not(inside))
            elif operator == "$exists":
                if not isinstance(value, bool):
                    raise self.fail(f"'$exists' of '{name}' takes true or false")
                present = self.condition(name, "exists", True)
                items.append(present if value else Not(present))
            elif operator == "$regex":
                if not isinstance(value, str):
                    raise self.fail(f"'$regex' of '{name}' takes a string")
                if options is not None and (
                    not isinstance(options, str) or not _REGEX_OPTIONS.match(options)
                ):
                    raise self.fail(f"'$options' of '{name}' takes some of the letters i, m, s, x")
                pattern = f"(?{options}){value}" if options else value
                try:
                    _check_regex(name, pattern)
                except BadRequest as exc:
                    raise self.fail(str(exc)) from None
                items.append(self.condition(name, "regex", pattern))
            elif operator == "$options":
                continue
            elif operator == "$not":
                if not (
                    isinstance(value, dict) and value and all(k.startswith("$") for k in value)
                ):
                    raise self.fail(f"'$not' of '{name}' takes an object of operators")
                items.append(Not(self.operators(name, value, depth + 1)))
            elif operator in SAFE_OPERATORS:
                raise self.fail(f"operator '{operator}' cannot be applied to the field '{name}'")
            else:
                raise self.refuse(operator, f" (in '{name}')")
        return items[0] if len(items) == 1 else And(tuple(items))

    def condition(self, name: str, op: Op, value: Any) -> Condition:
        self.conditions += 1
        if self.conditions > MAX_CONDITIONS:
            raise self.fail(f"too many conditions (at most {MAX_CONDITIONS})")
        return Condition(name, op, value)

    def scalar(self, name: str, value: Any) -> Scalar:
        if value is None or isinstance(value, str):
            return value
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise self.fail(
                f"value of '{name}' must be a string, number or null, not {_json_type(value)}"
            )
        if isinstance(value, float) and not math.isfinite(value):
            raise self.fail(f"value of '{name}' must be a finite number")
        if abs(value) > MAX_INTEGER:
            raise self.fail(f"value of '{name}' is out of range (at most {MAX_INTEGER} either way)")
        return value


def _json_type(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, list):
        return "an array"
    if isinstance(value, dict):
        return "an object"
    if isinstance(value, str):
        return "a string"
    return "a number"


def _refuse_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def _load_json(param: str, raw: str) -> Any:
    try:
        return json.loads(raw, parse_constant=_refuse_constant)
    except json.JSONDecodeError as exc:
        raise BadRequest(f"{param}: malformed JSON: {exc.msg} at position {exc.pos}") from None
    except ValueError as exc:
        raise BadRequest(f"{param}: malformed JSON: {exc}") from None
    except RecursionError:
        raise BadRequest(f"{param}: malformed JSON: nested too deeply") from None


def _load_relaxed_json(param: str, raw: str) -> Any:
    """A JSON filter, strict or in the platform's relaxed form (`{_id:/AB/i}`, bare keys)."""
    try:
        return json.loads(raw, parse_constant=_refuse_constant)
    except json.JSONDecodeError:
        pass  # not strict JSON: the relaxed form, or malformed (said by the relaxed reader)
    except (ValueError, RecursionError):
        return _load_json(param, raw)  # NaN, Infinity, or too deep: refused as JSON is
    try:
        return relaxed_json.loads(raw)
    except relaxed_json.RelaxedJsonError as exc:
        raise BadRequest(f"{param}: malformed JSON: {exc.msg} at position {exc.pos}") from None


def parse_filter(raw: str, param: str = "_filter") -> Node:
    """A `_filter` value: a JSON filter when it starts with `{`, else a boolean expression.

    The JSON may be the platform's relaxed form (`engine.relaxed_json`): bare keys and
    `/regex/flags` literals, read as `{"$regex": …, "$options": …}`."""
    if raw.lstrip().startswith(("{", "[")):
        return _JsonFilter(param).document(_load_relaxed_json(param, raw), 0)
    return _ExpressionParser(raw, param).parse()


def json_filter(spec: Any, param: str) -> Node:
    """A MongoDB-style filter already read from JSON, checked as `_filter` checks it."""
    return _JsonFilter(param).document(spec, 0)


# --- _limit, _skip, _sort, _project, _distinct ---------------------------------------------------


def _parse_int(param: str, raw: str, low: int, high: int) -> int:
    try:
        value = int(raw)
    except ValueError:
        raise BadRequest(f"{param}: '{raw}' is not a whole number") from None
    if not low <= value <= high:
        raise BadRequest(f"{param}: {value} is out of range ({low} to {high})")
    return value


def sort_keys(spec: dict[str, Any], param: str) -> list[tuple[str, int]]:
    """The keys of a JSON sort object (`{"start": -1}`, `{"name": "asc"}`)."""
    keys: list[tuple[str, int]] = []
    for name, direction in spec.items():
        if isinstance(direction, str) and direction.lower() in _DIRECTIONS:
            direction = _DIRECTIONS[direction.lower()]
        if isinstance(direction, bool) or direction not in (1, -1):
            raise BadRequest(f"{param}: direction of '{name}' must be 1 or -1")
        keys.append((check_field(name, param), int(direction)))
    return keys


def check_sortable(
    keys: list[tuple[str, int]], param: str, sortable: Sequence[str]
) -> list[tuple[str, int]]:
    """The keys, each a field of `sortable` given once."""
    seen: set[str] = set()
    for name, _ in keys:
        if name not in sortable:
            raise BadRequest(f"{param}: cannot sort by '{name}' (sortable: {', '.join(sortable)})")
        if name in seen:
            raise BadRequest(f"{param}: '{name}' is given twice")
        seen.add(name)
    return keys


def _parse_sort(raw: str) -> tuple[tuple[str, int], ...]:
    raw = raw.strip()
    keys: list[tuple[str, int]] = []
    if raw.startswith("{"):
        spec = _load_json("_sort", raw)
        if not isinstance(spec, dict):
            raise BadRequest('_sort: JSON form must be an object such as {"start":-1}')
        keys = sort_keys(spec, "_sort")
    else:
        for part in _split_args(raw):
            direction = -1 if part.startswith("-") else 1
            name = part[1:] if part[:1] in "+-" else part
            keys.append((check_field(name, "_sort"), direction))
    if not keys:
        raise BadRequest("_sort: no sort key given")
    return tuple(check_sortable(keys, "_sort", SORT_FIELDS))


def _outermost(fields: list[str]) -> tuple[str, ...]:
    """The paths, once each, without those inside another (MongoDB refuses such pairs)."""
    return tuple(
        dict.fromkeys(
            name
            for name in fields
            if not any(name.startswith(other + ".") for other in fields if other != name)
        )
    )


def _parse_project(raw: str) -> tuple[tuple[str, ...] | None, tuple[str, ...] | None]:
    """`(kept, dropped)`: an inclusion projection, or an exclusion one (`-phases`, `{"data":0}`)."""
    raw = raw.strip()
    kept: list[str] = []
    dropped: list[str] = []
    if raw.startswith("{"):
        spec = _load_json("_project", raw)
        if not isinstance(spec, dict):
            raise BadRequest('_project: JSON form must be an object such as {"name":1}')
        for name, keep in spec.items():
            if keep not in (0, 1) or (isinstance(keep, float)):
                raise BadRequest(f"_project: value of '{name}' must be 1 or 0")
            (kept if keep else dropped).append(name)
        if kept:
            dropped = []  # an inclusion keeps what it names: a 0 beside it changes nothing
    else:
        for part in _split_args(raw):
            (dropped if part.startswith("-") else kept).append(part.removeprefix("-"))
        if kept and dropped:
            raise BadRequest("_project: list either fields to keep or fields to drop (-name)")
    for name in (*kept, *dropped):
        check_field(name, "_project")
    if dropped:
        dropped = [name for name in dropped if name != "_id"]  # _id always comes back
        return None, _outermost(dropped) if dropped else None
    return _outermost(kept), None


def parse_query(
    params: Iterable[tuple[str, str]],
    environment: str = DEFAULT_ENVIRONMENT,
    *,
    ignore: Iterable[str] = (),
) -> Query:
    """Turn the list call's query parameters into a `Query`; a bad one raises `BadRequest`."""
    conditions: list[Node] = []
    searches: list[SearchNode] = []
    limit, skip = DEFAULT_LIMIT, 0
    sort: tuple[tuple[str, int], ...] = (("start", -1),)
    project: tuple[str, ...] | None = None
    exclude: tuple[str, ...] | None = None
    distinct: str | None = None
    fieldinfo: str | None = None
    pipeline: Pipeline | None = None
    given: list[str] = []  # the parameters met, in order
    skipped = set(ignore)
    for name, raw in params:
        if name in skipped:
            continue
        answer = next((other for other in given if other in ANSWERS), None)
        given.append(name)
        if name in ANSWERS and answer is not None:
            if answer == name:
                what = "pipeline" if name == "_aggregate" else "field"
                raise BadRequest(f"{name}: given twice (one {what} at a time)")
            raise BadRequest(
                f"{name}: cannot be combined with {answer} (one of {', '.join(ANSWERS)} at a time)"
            )
        if name == "_limit":
            limit = MAX_LIMIT if raw.strip() == "-1" else _parse_int(name, raw, 0, MAX_LIMIT)
        elif name == "_skip":
            skip = _parse_int(name, raw, 0, 10**9)
        elif name == "_sort":
            sort = _parse_sort(raw)
        elif name == "_project":
            project, exclude = _parse_project(raw)
        elif name == "_filter":
            conditions.append(parse_filter(raw))
        elif name == "_search":
            found = parse_search(raw)
            if found is not None:
                searches.append(found)
        elif name == "_distinct":
            distinct = check_document_field(raw.strip(), name)
        elif name == "_fieldinfo":
            fieldinfo = check_document_field(raw.strip(), name)
        elif name == "_aggregate":
            from procexec.engine.pipeline import parse_pipeline  # which builds on this module

            pipeline = parse_pipeline(raw)
        elif name.startswith("_") and name != "_id":
            raise BadRequest(f"{name}: unknown query parameter")
        else:
            conditions.append(parse_condition(name, raw))
    where: Node | None = None
    if len(conditions) == 1:
        where = conditions[0]
    elif conditions:
        where = And(tuple(conditions))
    search: SearchNode | None = None
    if searches:
        search = searches[0] if len(searches) == 1 else AllOf(tuple(searches))
    if pipeline is not None or fieldinfo is not None:
        answer, why = (
            ("_aggregate", "use a $project stage")
            if pipeline is not None
            else ("_fieldinfo", "its buckets have one shape")
        )
        if "_project" in given:
            raise BadRequest(f"_project: cannot be combined with {answer} ({why})")
        if "_sort" in given and fieldinfo is not None:
            raise BadRequest("_sort: cannot be combined with _fieldinfo (buckets come by count)")
    return Query(
        environment=environment,
        where=where,
        sort=sort,
        limit=limit,
        skip=skip,
        project=project,
        search=search,
        exclude=exclude,
        distinct=distinct,
        fieldinfo=fieldinfo,
        aggregate=None if pipeline is None else pipeline.with_input_order(sort),
    )


def distinct_key(value: Any) -> tuple[Any, ...]:
    """Orders JSON values as MongoDB compares them: null, numbers, strings, objects (element by
    element: the value's type, the name, the value), arrays (item by item), booleans."""
    if value is None:
        return (0,)
    if isinstance(value, bool):
        return (5, value)
    if isinstance(value, int | float):
        return (1, value)
    if isinstance(value, str):
        return (2, value)
    if isinstance(value, dict):
        keys = ((name, distinct_key(item)) for name, item in value.items())
        return (3, tuple((key[0], name, key) for name, key in keys))
    if isinstance(value, list):
        return (4, tuple(distinct_key(item) for item in value))
    return (6, repr(value))


def _identity(value: Any) -> Any:
    """What makes two values one: `7` and `7.0` are one value, `1` and `true` two."""
    if isinstance(value, dict | list):
        return json.dumps(value, sort_keys=True)
    return (type(value) is bool, value)


def sorted_distinct(values: Iterable[Any]) -> list[Any]:
    """Distinct values, once each, in `distinct_key` order; `None` (absent) is left out."""
    seen: dict[Any, Any] = {}
    for value in values:
        if value is not None:
            seen.setdefault(_identity(value), value)
    return sorted(seen.values(), key=distinct_key)


def too_many_values(param: str, field: str) -> BadRequest:
    return BadRequest(
        f"{param}: more than {MAX_DISTINCT} distinct values of '{field}'; narrow the filters"
    )


def field_buckets(field: str, counted: Iterable[tuple[Any, int]]) -> list[dict[str, Any]]:
    """The `_fieldinfo` answer: each value of `field`, how many executions hold it, and the
    filter that selects them (`{field: value}`); most held first, then in `distinct_key` order.

    `counted` pairs a value with how many executions hold it; an array stands for each of its
    distinct items (the values `values_at` finds in one execution), so that an execution counts
    once for each distinct value it holds. Null is left out. More than `MAX_DISTINCT` values
    is a `BadRequest`.
    """
    buckets: dict[Any, list[Any]] = {}
    for value, count in counted:
        items = value if isinstance(value, list) else [value]
        for key, item in {_identity(item): item for item in items if item is not None}.items():
            buckets.setdefault(key, [item, 0])[1] += count
        if len(buckets) > MAX_DISTINCT:
            raise too_many_values("_fieldinfo", field)
    ordered = sorted(buckets.values(), key=lambda bucket: (-bucket[1], distinct_key(bucket[0])))
    return [{"_id": value, "count": count, "filter": {field: value}} for value, count in ordered]


def values_at(doc: Any, parts: Sequence[str]) -> list[Any]:
    """The values at a path, as MongoDB's distinct sees them: through arrays, arrays unwound."""
    current = [doc]
    for part in parts:
        found = []
        for value in current:
            if isinstance(value, dict):
                if part in value:
                    found.append(value[part])
            elif isinstance(value, list):
                found.extend(
                    item[part] for item in value if isinstance(item, dict) and part in item
                )
        current = found
    values: list[Any] = []
    for value in current:
        values.extend(value) if isinstance(value, list) else values.append(value)
    return values


def project_document(
    doc: dict[str, Any],
    include: Iterable[str] | None = None,
    exclude: Iterable[str] | None = None,
) -> dict[str, Any]:
    """A document as MongoDB projects it, for stores that project in Python.

    `include` keeps `_id` and the named (possibly dotted) fields; `exclude` drops the named
    fields. A dotted path reaches into every element of an array of sub-documents
    (`phases.name`, `phases.log`); fields stay in the document's order.
    """
    if include:
        return _pick(doc, _tree(["_id", *include]))
    if exclude:
        return _omit(doc, _tree(exclude))
    return doc


def _tree(fields: Iterable[str]) -> dict[str, Any]:
    tree: dict[str, Any] = {}
    for name in fields:
        node = tree
        *parents, last = name.split(".")
        for part in parents:
            child = node.setdefault(part, {})
            if child is True:
                break
            node = child
        else:
            node[last] = True
    return tree


def _pick(doc: dict[str, Any], tree: dict[str, Any]) -> dict[str, Any]:
    result: dict[str, Any] = {}
    for key, value in doc.items():
        spec = tree.get(key)
        if spec is None:
            continue
        if spec is True:
            result[key] = value
        elif isinstance(value, dict):
            result[key] = _pick(value, spec)
        elif isinstance(value, list):
            result[key] = [_pick(item, spec) for item in value if isinstance(item, dict)]
    return result


def _omit(doc: dict[str, Any], tree: dict[str, Any]) -> dict[str, Any]:
    result: dict[str, Any] = {}
    for key, value in doc.items():
        spec = tree.get(key)
        if spec is True:
            continue
        if spec is None:
            result[key] = value
        elif isinstance(value, dict):
            result[key] = _omit(value, spec)
        elif isinstance(value, list):
            result[key] = [_omit(item, spec) if isinstance(item, dict) else item for item in value]
        else:
            result[key] = value
    return result
