"""Filters compiled to SQL: the WHERE clause of a `Query` and its parameters, and the ORDER BY
of sort keys.

Top-level fields with a generated column (`COLUMNS`) compare that column, so the indexes serve
them; every other path is read from the JSON document with MongoDB's meaning (a path through an
array matches when any element does; comparisons hold within one type). A search becomes a
MATCH on the full-text index (`search`). Over a counter table only `name` and `status` may be
used: a filter on anything else cannot be answered there (`NeedsDocument`).

A query's compiled clauses are remembered in it (`Query.compiled`).
"""

from __future__ import annotations

import functools
import json
import sqlite3
from collections.abc import Callable, Iterable, Sequence
from typing import Any

from procexec.engine.query import And, Condition, Node, Not, Or, Query
from procexec.engine.store.sqlite.schema import COLUMNS
from procexec.engine.store.sqlite.search import FTS_SOURCE, search_sql


class NeedsDocument(Exception):
    """A filter that a counter table cannot answer: it reads more than `name` and `status`."""


def json_path(parts: Sequence[str]) -> str:
    return "$" + "".join(f'."{part}"' for part in parts)


def expression(field: str) -> str:
    """The SQL expression of a top-level field: its column when it has one."""
    if field == "_id":
        return "id"
    if field in COLUMNS:
        return COLUMNS[field]
    return f"json_extract(doc, '{json_path(field.split('.'))}')"


def _is_plain(value: Any) -> bool:
    """A value a text column compares with directly: a string or null."""
    if isinstance(value, tuple):
        return all(_is_plain(item) for item in value)
    return value is None or isinstance(value, str)


#: an AND or OR of more terms is written as runs of this many, each in parentheses: SQLite
#: reads `a OR b OR c …` as a tree as deep as it is long, and refuses one past 1000 levels
CHAIN = 50
#: an `in` of more values is bound as one JSON array, read with `json_each`, rather than one
#: parameter (and, on a path, one comparison) per value
LISTED_IN = 16


def normal(node: Node, negated: bool = False) -> Node:
    """`node` (negated when `negated`) with its negations pushed down to the conditions (De
    Morgan's laws; `not not x` is `x`) and nested ANDs and ORs merged: the same filter, written
    as shallow as its ANDs and ORs alternate. Sound because a negation is two-valued here (a
    condition's unknown is false, `Compiler.node`), so that `not (a and b)` is `not a or not b`
    whatever a comparison with a missing field gives; it keeps a deep `not not not …` or
    `$nor` within SQLite's parser stack."""
    if isinstance(node, Not):
        return normal(node.item, not negated)
    if isinstance(node, Condition):
        return Not(node) if negated else node
    kind: type[And] | type[Or] = (Or if isinstance(node, And) else And) if negated else type(node)
    items: list[Node] = []
    for item in node.items:
        found = normal(item, negated)
        if isinstance(found, kind):
            items.extend(found.items)
        else:
            items.append(found)
    return items[0] if len(items) == 1 else kind(tuple(items))


def _chain(terms: list[str], joint: str) -> str:
    """The terms joined by `joint` (AND, OR), in runs of at most `CHAIN` (see there)."""
    if len(terms) > CHAIN:
        terms = [_chain(terms[i : i + CHAIN], joint) for i in range(0, len(terms), CHAIN)]
    return "(" + f" {joint} ".join(terms) + ")"


class Compiler:
    """Compiles a filter tree into a WHERE clause and its parameters.

    With `columns` set, only those fields may be used (they are columns of a counter table),
    and anything else raises `NeedsDocument`.
    """

    def __init__(self, columns: frozenset[str] | None = None) -> None:
        self.params: list[Any] = []
        self.columns = columns
        self._aliases = 0

    def node(self, node: Node) -> str:
        """The SQL of `node`, its negations pushed down first (`normal`)."""
        return self._node(normal(node))

    def _node(self, node: Node) -> str:
        if isinstance(node, Condition):
            return self.condition(node)
        if isinstance(node, And):
            if not node.items:
                return "1"
            return _chain([self._node(item) for item in node.items], "AND")
        if isinstance(node, Or):
            if not node.items:
                return "0"
            merged = _one_in(node)
            if merged is not None:
                return self.condition(merged)
            return _chain([self._node(item) for item in node.items], "OR")
        if isinstance(node, Not):
            # A comparison with a missing field is false, so its negation is true (as with
            # MongoDB's $nor); SQL would make both unknown.
            return f"(NOT coalesce({self._node(node.item)}, 0))"
        raise TypeError(f"unknown query node {node!r}")

    def condition(self, cond: Condition) -> str:
        if cond.op == "ne":
            return self.node(Not(Condition(cond.field, "eq", cond.value)))
        column = "id" if cond.field == "_id" else COLUMNS.get(cond.field)
        if self.columns is not None and (
            cond.field not in self.columns or cond.op == "exists" or not _is_plain(cond.value)
        ):
            raise NeedsDocument(cond.field)
        if column is not None and cond.op != "exists" and _is_plain(cond.value):
            return self._column(column, cond)
        parts = cond.field.split(".")
        return self._path("executions.doc", json_path(parts[:1]), parts[1:], cond)

    def _column(self, column: str, cond: Condition) -> str:
        """A condition on a column that holds a string (or null): served by the indexes."""
        value = cond.value
        if cond.op == "eq" or (cond.op in ("gte", "lte") and value is None):
            if value is None:
                return f"{column} IS NULL"
            self.params.append(value)
            return f"{column} = ?"
        if cond.op == "in":
            present = [v for v in value if v is not None]
            clauses = []
            if len(present) > LISTED_IN:
                self.params.append(json.dumps(present))
                clauses.append(f"{column} IN (SELECT value FROM json_each(?))")
            elif present:
                self.params.extend(present)
                clauses.append(f"{column} IN ({', '.join('?' * len(present))})")
            if len(present) != len(value):
                clauses.append(f"{column} IS NULL")
            return "(" + " OR ".join(clauses) + ")" if clauses else "0"
        if value is None:  # gt / lt null: nothing is
            return "0"
        self.params.append(value)
        if cond.op == "regex":
            return f"regexp(?, {column})"
        return f"{column} {_SQL_OPS[cond.op]} ?"

    def _alias(self) -> str:
        self._aliases += 1
        return f"j{self._aliases}"

    def _path(self, source: str, path: str, rest: Sequence[str], cond: Condition) -> str:
        """The condition on the value at `path` of the JSON `source`, through arrays.

        As MongoDB: where the path meets an array, it goes on into each element (a
        sub-document) and the condition holds when it holds for one of them.
        """
        if not rest:
            return self._terminal(source, path, cond)
        part, deeper = rest[0], rest[1:]
        # parameters are taken in the order the SQL text holds them: the array branch first
        if part.isdigit():  # a position in an array
            first = self._path(source, f"{path}[{part}]", deeper, cond)
        else:
            alias = self._alias()
            inner = self._path(f"{alias}.value", json_path([part]), deeper, cond)
            first = (
                f"EXISTS (SELECT 1 FROM json_each({source}, '{path}') AS {alias} "
                f"WHERE {alias}.type = 'object' AND {inner})"
            )
        direct = self._path(source, f'{path}."{part}"', deeper, cond)
        return f"(CASE json_type({source}, '{path}') WHEN 'array' THEN {first} ELSE {direct} END)"

    def _terminal(self, source: str, path: str, cond: Condition) -> str:
        kind = f"json_type({source}, '{path}')"
        if cond.op == "exists":
            return f"({kind} IS NOT NULL)"
        alias = self._alias()
        each = self._value(f"{alias}.value", f"{alias}.type", cond)
        whole = self._value(f"json_extract({source}, '{path}')", kind, cond)
        return (
            f"(CASE {kind} WHEN 'array' THEN EXISTS (SELECT 1 FROM json_each({source}, '{path}') "
            f"AS {alias} WHERE {each}) ELSE {whole} END)"
        )

    def _value(self, value: str, kind: str, cond: Condition) -> str:
        """The condition on one JSON value (`value` its SQL value, `kind` its JSON type)."""
        if cond.op == "in":
            if not cond.value:
                return "0"
            if len(cond.value) > LISTED_IN:
                return self._listed_in(value, kind, cond.value)
            return _chain([self._compare(value, kind, "eq", v) for v in cond.value], "OR")
        if cond.op == "regex":
            self.params.append(cond.value)
            return f"({kind} = 'text' AND regexp(?, {value}))"
        return self._compare(value, kind, cond.op, cond.value)

    def _listed_in(self, value: str, kind: str, values: Sequence[Any]) -> str:
        """`value` equal to one of `values`, each kind bound as one JSON array: a string equals
        a text, a number a number (as `_compare`), null a null or missing value. Each array is
        read into a table once a statement (its subquery reads nothing of the row), then
        looked up, not walked, for every value compared."""
        clauses = []
        texts = [v for v in values if isinstance(v, str)]
        numbers = [v for v in values if v is not None and not isinstance(v, str)]
        for group, kinds in ((texts, "= 'text'"), (numbers, "IN ('integer', 'real')")):
            if group:
                self.params.append(json.dumps(group))
                clauses.append(
                    f"({kind} {kinds} AND {value} IN (SELECT value FROM json_each(?) "
                    f"WHERE type {kinds}))"
                )
        if len(texts) + len(numbers) != len(values):
            clauses.append(f"({kind} IS NULL OR {kind} = 'null')")
        return "(" + " OR ".join(clauses) + ")"

    def _compare(self, value: str, kind: str, op: str, operand: Any) -> str:
        if operand is None:
            if op in ("eq", "gte", "lte"):
                return f"({kind} IS NULL OR {kind} = 'null')"
            return "0"
        types = "= 'text'" if isinstance(operand, str) else "IN ('integer', 'real')"
        self.params.append(operand)
        return f"({kind} {types} AND {value} {_SQL_OPS[op]} ?)"


def _one_in(node: Or) -> Condition | None:
    """`a = x OR a = y` on one column, as `a IN (x, y)`: SQLite checks an IN list against an
    index entry faster than a chain of ORs (`_filter=status=failed or status=running`)."""
    items = [item for item in node.items if isinstance(item, Condition)]
    if len(items) != len(node.items) or len({item.field for item in items}) != 1:
        return None
    field = items[0].field
    if (field != "_id" and field not in COLUMNS) or not all(
        item.op == "eq" and isinstance(item.value, str) for item in items
    ):
        return None
    return Condition(field, "in", tuple(item.value for item in items))


_SQL_OPS = {"eq": "=", "gt": ">", "gte": ">=", "lt": "<", "lte": "<="}


Clause = tuple[str, list[Any]]


def _remembered(
    compile_: Callable[[Query, Any], Clause | None],
) -> Callable[[Query, Any], Clause | None]:
    """`compile_`, remembered in the query (`Query.compiled`): dashboards send the same few
    queries again and again, and compiling one costs about as much as reading a page off an
    index. The parameters come back as a new list each time (callers add to them)."""

    @functools.wraps(compile_)
    def call(query: Query, option: Any) -> Clause | None:
        key = (compile_, option)
        try:
            clause = query.compiled[key]
        except KeyError:
            found = compile_(query, option)
            clause = query.compiled[key] = None if found is None else (found[0], tuple(found[1]))
        return None if clause is None else (clause[0], list(clause[1]))

    return call


def where_clause(query: Query) -> Clause:
    """The WHERE clause of a query."""
    clause = _where_remembered(query, False)
    assert clause is not None
    return clause


def _compile_where(query: Query, driven: bool) -> Clause:
    """`driven`: the search's matches drive the plan (the unary `+` keeps SQLite from walking
    an index of the environment instead)."""
    compiler = Compiler()
    compiler.params.append(query.environment)
    clauses = ["+executions.environment = ?" if driven else "executions.environment = ?"]
    if query.where is not None:
        clauses.append(compiler.node(query.where))
    if query.search is not None:
        clauses.append(search_sql(query.search, compiler.params))
    return " AND ".join(clauses), compiler.params


def counter_where(query: Query, columns: frozenset[str]) -> Clause | None:
    """The filter over a counter table, or None when it cannot answer it."""
    return _counter_where_remembered(query, columns)


def _compile_counter_where(query: Query, columns: frozenset[str]) -> Clause | None:
    if query.search is not None:
        return None
    compiler = Compiler(columns)
    compiler.params.append(query.environment)
    sql = "environment = ?"
    if query.where is not None:
        try:
            sql += " AND " + compiler.node(query.where)
        except NeedsDocument:
            return None
    return sql, compiler.params


_where_remembered = _remembered(_compile_where)
_counter_where_remembered = _remembered(_compile_counter_where)


def order_sql(keys: Iterable[tuple[str, int]]) -> str:
    return ", ".join(
        f"{expression(name)} {'DESC' if direction < 0 else 'ASC'}" for name, direction in keys
    )


#: a selective search's matches, listed (`listed_where_clause`)
_LISTED_SOURCE = "SELECT value FROM json_each(?)"


def listed_where_clause(query: Query, listed: str | None) -> Clause:
    """The WHERE clause of a query (`where_clause`); with `listed`, a JSON array of the rowids its
    search matches, read from the index once, in place of the search (the matches then drive
    the plan)."""
    if listed is None:
        return where_clause(query)
    clause = _listed_where_remembered(query, None)
    assert clause is not None
    sql, params = clause
    params[-1] = listed
    return sql, params


def _compile_listed_where(query: Query, _: Any) -> Clause:
    sql, params = _compile_where(query, driven=True)
    # a search the index answers alone is one MATCH, the last clause and parameter
    searched = f"executions.rowid IN ({FTS_SOURCE})"
    assert sql.endswith(searched), sql
    return sql[: -len(searched)] + f"executions.rowid IN ({_LISTED_SOURCE})", params


_listed_where_remembered = _remembered(_compile_listed_where)


#: what SQLite says of a statement too large or too deep to compile or run: the query's fault
TOO_LARGE = (
    "expression tree is too large",
    "parser stack overflow",
    "too many sql variables",
    "pattern too complex",
    "too many terms in compound select",
    "string or blob too big",
    "too many arguments on function",
    "tables in a join",
    "too many columns",
)


def too_large_for_sqlite(exc: BaseException) -> bool:
    """Whether SQLite refused a statement for its size or depth (`TOO_LARGE`), not for its state."""
    text = str(exc).lower()
    return isinstance(exc, sqlite3.Error) and any(words in text for words in TOO_LARGE)
